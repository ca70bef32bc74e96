"""What reserving a payment costs as the journal's history grows: 0 rows against 300,000.

Reserving is the journal's one write under the lock that every payer on the host shares: it
checks the invoice is unpaid, checks the budget and inserts the row, in one SQLite transaction
(on disk, WAL, synchronous=FULL). The budget check reads running totals, so its cost must not
grow with the history. As a baseline, measured in the same run on the same files, the check
the first journal did: summing every payment of the currency (a scan of the history).

Also: opening the journal, and ``unsettled()`` (what recovery reads) at both sizes; by then
each journal also holds the rows the reserve samples left open, the same number at both sizes.

    python benchmarks/bench_journal.py            # or: make bench
    python benchmarks/bench_journal.py --rows 300000 --samples 200
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from solders.keypair import Keypair

from human_rpc_sdk import PaymentOffer
from human_rpc_sdk._io.journal import Journal, rebuild_totals

NOW = "2026-11-26T00:00:00+00:00"


def offer() -> PaymentOffer:
    return PaymentOffer(
        url="http://shop/item",
        amount=Decimal("0.001"),
        currency="SOL",
        mint=None,
        recipient=str(Keypair().pubkey()),
        destination=str(Keypair().pubkey()),
        network="devnet",
        payer=str(Keypair().pubkey()),
        format="humanrpc",
        atomic_amount=1_000_000,
        fee_lamports=5000,
    )


def fill(path: Path, rows: int) -> None:
    """``rows`` settled payments, written in bulk (as years of use would leave them)."""
    if not rows:
        return
    Journal(path).close()
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO payments (invoice_key, state, created, updated, updated_unix, url, "
            "network, format, currency, currency_key, amount, atomic_amount, recipient, "
            "destination, payer, fee_lamports, signature, landed) VALUES (?, 'accepted', ?, ?, "
            "0, 'http://shop/item', 'devnet', 'humanrpc', 'SOL', 'SOL', '0.000001', '1000', "
            "'r', 'd', 'p', 5000, ?, 1)",
            ((f"invoice-{n}", NOW, NOW, f"sig-{n}") for n in range(rows)),
        )
        rebuild_totals(db)


def scan_budget(path: Path) -> Callable[[], object]:
    """The first journal's budget check: every payment of the currency, summed."""
    db = sqlite3.connect(path)

    def check() -> object:
        rows = db.execute(
            "SELECT amount FROM payments WHERE network = 'devnet' AND currency_key = 'SOL' "
            "AND state != 'failed'"
        )
        return sum((Decimal(row[0]) for row in rows), Decimal(0))

    return check


def timed(action: Callable[[], object], samples: int) -> list[float]:
    action()  # warm the caches once
    taken = []
    for _ in range(samples):
        start = time.perf_counter()
        action()
        taken.append(time.perf_counter() - start)
    return taken


def summary(samples: list[float]) -> tuple[float, float]:
    return statistics.median(samples) * 1000, statistics.quantiles(samples, n=100)[94] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()

    results: dict[str, dict[int, list[float]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for size in (0, args.rows):
            path = Path(folder) / f"journal-{size}.sqlite3"
            started = time.perf_counter()
            fill(path, size)
            print(f"filled {size:,} rows in {time.perf_counter() - started:.1f} s")

            def open_journal(path: Path = path) -> None:
                Journal(path).close()

            results.setdefault("open the journal", {})[size] = timed(
                open_journal, min(args.samples, 50)
            )
            journal = Journal(path)
            budget = Decimal(10**6)

            def reserve(journal: Journal = journal, budget: Decimal = budget) -> object:
                return journal.reserve(offer(), currency_key="SOL", invoice_key=None, budget=budget)

            results.setdefault("reserve (running totals)", {})[size] = timed(reserve, args.samples)
            results.setdefault("budget check, v1 scan (baseline)", {})[size] = timed(
                scan_budget(path), min(args.samples, 20)
            )
            results.setdefault("unsettled() for recovery", {})[size] = timed(
                journal.unsettled, min(args.samples, 50)
            )
            journal.close()

    print()
    print(f"{'operation':36} {'rows':>9} {'median ms':>10} {'p95 ms':>8}  vs 0 rows (median ratio)")
    for name, by_size in results.items():
        base = statistics.median(by_size[0])
        for size, samples in by_size.items():
            median, p95 = summary(samples)
            ratio = statistics.median(samples) / base if base else float("nan")
            print(f"{name:36} {size:>9,} {median:>10.3f} {p95:>8.3f}  {ratio:6.2f}x")
    reserve_ratio = statistics.median(results["reserve (running totals)"][args.rows]) / (
        statistics.median(results["reserve (running totals)"][0])
    )
    print()
    print(
        f"Reserving at {args.rows:,} rows costs {reserve_ratio:.2f}x what it costs at 0 rows; "
        "the v1 scan it replaces costs "
        f"{summary(results['budget check, v1 scan (baseline)'][args.rows])[0]:.1f} ms there."
    )


if __name__ == "__main__":
    main()
