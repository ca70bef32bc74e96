"""What reserving a payment costs as the journal's history grows: 0 rows against 300,000.

Reserving is the journal's one write under the lock that every payer on the host shares: it
checks the invoice is unpaid, checks the budget and inserts the row, in one SQLite transaction
(on disk, WAL, synchronous=FULL). The budget check reads running totals, so its cost must not
grow with the history. As a baseline, measured in the same run on the same files, the check
the first journal did: summing every payment of the currency (a scan of the history).

Also: opening the journal, and ``unsettled()`` (what recovery reads) at both sizes; by then
each journal also holds the rows the reserve samples left open, the same number at both sizes.

Then the fleet's figures (issue 15), on SQLite and on a PostgreSQL server this benchmark starts
for itself (Debian's binaries, a temporary folder, fsync on; skipped, saying why, without them
or without psycopg):

- one payment's journal work, as the payment flow does it: reserve (not synced), mark
  ``signed`` (durable: synced before the payment may leave) and mark ``accepted`` with the
  server's answer (not synced); median and p95 per payment, SQLite against PostgreSQL over its
  Unix socket and over TCP on 127.0.0.1;
- payments per second with 8 processes (``--processes``) on one journal, each looping those
  three writes against a budget that never runs out: all on one currency's running totals (the
  contended case: every reservation locks the same row), then each process on a currency of
  its own. Every payment also locks the SOL totals of its network (its fee counts there), so
  the second case shows what spreading currencies does and does not relieve.

    python benchmarks/bench_journal.py            # or: make bench
    python benchmarks/bench_journal.py --rows 300000 --samples 200 --fleet-payments 150
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from solders.keypair import Keypair

from human_rpc_sdk import PaymentOffer
from human_rpc_sdk._io.journal import Journal, rebuild_totals
from human_rpc_sdk._io.store import JournalStore, open_journal
from human_rpc_sdk._records import Reserved

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.postgres_server

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
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument(
        "--fleet-payments", type=int, default=150, help="payments per process, per fleet run"
    )
    args = parser.parse_args()
    history(args)
    fleet(args)


def history(args: argparse.Namespace) -> None:
    """Reserving against 0 rows and ``--rows`` rows of history (SQLite)."""

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


# -- fleets (issue 15) ---------------------------------------------------------------------------

WARM = 10
"""Payments each fleet process makes before the clock starts: its connections open and its
statements prepared (psycopg prepares a statement at its 6th run)."""
BIG = Decimal(10**12)
"""A budget no run reaches: every reservation is checked against it, none refused."""
SIGNED = {
    "signature": "5" * 88,
    "transaction_b64": "A" * 600,  # about what a signed x402 transfer takes
    "blockhash": "9" * 44,
    "fee_payer": "F" * 44,
    "last_valid_block_height": 1_000_150,
}
OUTCOME = {
    "http_status": 200,
    "headers": {"content-type": "application/json", "payment-response": "e30=" * 40},
    "settled": True,
}


def fleet_offer(currency: str, payer: str) -> PaymentOffer:
    return PaymentOffer(
        url="http://shop/item",
        amount=Decimal("0.01"),
        currency=currency,
        mint="mint-" + currency,
        recipient="recipient",
        destination="destination",
        network="devnet",
        payer=payer,
        format="x402-v2",
        atomic_amount=10_000,
        fee_lamports=5000,
    )


def one_payment(journal: JournalStore, currency: str, invoice: str) -> tuple[float, float]:
    """Reserve, mark signed (durable), mark accepted with the answer (not synced): the journal's
    writes for one payment. (seconds for the three, seconds for ``signed``)"""
    start = time.perf_counter()
    reserved = journal.reserve(
        fleet_offer(currency, "payer"), currency_key=currency, invoice_key=invoice, budget=BIG
    )
    if not isinstance(reserved, Reserved):
        raise RuntimeError(f"the reservation of {invoice} was refused: {reserved}")
    entry_id = reserved.entry.id
    signing = time.perf_counter()
    journal.mark(entry_id, "signed", SIGNED, expect=("reserved",))
    signed = time.perf_counter()
    journal.mark(entry_id, "accepted", OUTCOME, expect=("signed",), durable=False)
    return time.perf_counter() - start, signed - signing


def latency(locations: list[str], samples: int) -> list[tuple[list[float], list[float]]]:
    """Per payment and per journal: the three writes, and ``signed`` alone. The journals take
    turns, one payment each, so that whatever else the machine does weighs on all alike; each
    first makes ``WARM`` payments (its connections open, its statements prepared)."""
    journals = [open_journal(location) for location in locations]
    timed: list[list[tuple[float, float]]] = [[] for _ in journals]
    try:
        for n, journal in enumerate(journals):
            for w in range(WARM):
                one_payment(journal, "USDC", f"{n}-warm-{w}")
        for sample in range(samples):
            for n, journal in enumerate(journals):
                timed[n].append(one_payment(journal, "USDC", f"{n}-{sample}"))
    finally:
        for journal in journals:
            journal.close()
    return [([whole for whole, _ in pairs], [signed for _, signed in pairs]) for pairs in timed]


def fleet_worker(
    location: str, currency: str, count: int, start: Any, results: Any, name: str
) -> None:
    """One process of a fleet: ``count`` payments as fast as the journal takes them, started
    with the others (``start``, a barrier) after ``WARM`` payments of its own; puts (first
    monotonic instant, last, each payment's seconds), or the error that stopped it."""
    try:
        journal = open_journal(location)
        try:
            for n in range(WARM):
                one_payment(journal, currency, f"{name}-warm-{n}")
            start.wait()
            began = time.monotonic()  # CLOCK_MONOTONIC: one clock for the host's processes
            taken = [one_payment(journal, currency, f"{name}-{n}")[0] for n in range(count)]
            results.put((began, time.monotonic(), taken))
        finally:
            journal.close()
    except BaseException as exc:
        start.abort()  # the others stop waiting for this one
        results.put(f"{name}: {type(exc).__name__}: {exc}")
        raise


def payments_per_second(
    location: str, processes: int, count: int, spread: bool
) -> tuple[float, list[float]]:
    """Payments per second of ``processes`` processes on one journal (every payment of the
    fleet over the time from the first process's start to the last one's end), and each
    payment's seconds."""
    context = multiprocessing.get_context("spawn")  # no pool or lock inherited from this one
    start, results = context.Barrier(processes), context.Queue()
    running = [
        context.Process(
            target=fleet_worker,
            args=(
                location,
                f"TOK{n}" if spread else "USDC",
                count,
                start,
                results,
                f"{processes}-{spread}-{n}",  # invoices unique across the runs on one journal
            ),
        )
        for n in range(processes)
    ]
    for process in running:
        process.start()
    done: list[tuple[float, float, list[float]]] = []
    for _ in running:
        got = results.get()
        if isinstance(got, str):
            for process in running:
                process.terminate()
            raise RuntimeError(f"a fleet process failed: {got}")
        done.append(got)
    for process in running:
        process.join()
    began, ended = min(d[0] for d in done), max(d[1] for d in done)
    taken = [seconds for d in done for seconds in d[2]]
    return len(taken) / (ended - began), taken


@contextlib.contextmanager
def postgres() -> Iterator[tuple[str, str, str] | str]:
    """A PostgreSQL server of the benchmark's own: (URL over its Unix socket, URL over TCP,
    its version), or why there is none."""
    try:
        import port_for  # noqa: F401 - own_server's, checked here
        import psycopg

        from tests.postgres_server import ServerUnavailable, own_server
    except ImportError as exc:
        yield f"{exc.name} is not installed (pip install -e '.[dev,postgres]')"
        return
    try:
        with own_server({"fsync": "on", "synchronous_commit": "on"}) as server:
            with psycopg.connect(server.url(), autocommit=True) as db:
                db.execute("CREATE ROLE bench LOGIN PASSWORD 'bench'")
                for name in ("latency_socket", "latency_tcp", "fleet_one", "fleet_spread"):
                    db.execute(f"CREATE DATABASE {name} OWNER bench")
                shown = db.execute("SHOW server_version").fetchone()
                version = str(shown[0]).split()[0] if shown else "?"
            socket = server.url("{db}", user="bench")
            tcp = f"postgresql://bench:bench@127.0.0.1:{server.port}/{{db}}"
            yield socket, tcp, version
    except ServerUnavailable as exc:
        yield f"{exc} (apt-get install postgresql)"


def fleet(args: argparse.Namespace) -> None:
    """The fleet's figures: one payment's journal writes, and payments per second."""
    print()
    with tempfile.TemporaryDirectory() as folder, postgres() as server:
        stores: dict[str, str] = {"SQLite (WAL, synchronous=FULL for signed)": ""}
        if isinstance(server, str):
            print(f"PostgreSQL rows skipped: {server}")
        else:
            socket, tcp, version = server
            stores[f"PostgreSQL {version}, Unix socket"] = socket
            stores[f"PostgreSQL {version}, TCP 127.0.0.1"] = tcp
        print(
            f"one payment's journal writes ({args.samples} payments each, the stores taking "
            "turns): reserve, signed (durable), accepted with the answer"
        )
        print(f"{'store':44} {'median ms':>10} {'p95 ms':>8} {'signed ms':>10}  vs SQLite")
        locations = [
            url.format(db="latency_tcp" if "TCP" in name else "latency_socket")
            if url
            else str(Path(folder) / "latency.sqlite3")
            for name, url in stores.items()
        ]
        measured = latency(locations, args.samples)
        base = statistics.median(measured[0][0])
        for name, (whole, signed) in zip(stores, measured, strict=True):
            median, p95 = summary(whole)
            print(
                f"{name:44} {median:>10.3f} {p95:>8.3f} {statistics.median(signed) * 1000:>10.3f}"
                f"  {statistics.median(whole) / base:6.2f}x"
            )
        print()
        print(
            f"payments/s, {args.processes} processes x {args.fleet_payments} payments on one "
            f"journal ({os.cpu_count()} CPUs)"
        )
        print(
            f"{'store':24} {'processes':>9}  {'running totals':24} {'payments/s':>10}  vs 1"
            f"  {'median ms':>9} {'p95 ms':>7}"
        )
        runs = [("SQLite", str(Path(folder) / "fleet.sqlite3"), False)]
        if not isinstance(server, str):
            runs += [
                ("PostgreSQL, Unix socket", server[0].format(db="fleet_one"), False),
                ("PostgreSQL, Unix socket", server[0].format(db="fleet_spread"), True),
            ]
        alone: dict[str, float] = {}
        for name, location, spread in runs:
            for processes in (1, args.processes) if not spread else (args.processes,):
                rate, taken = payments_per_second(location, processes, args.fleet_payments, spread)
                alone.setdefault(name, rate)
                totals = "a currency per process" if spread else "one currency (contended)"
                median, p95 = summary(taken)
                print(
                    f"{name:24} {processes:>9}  {totals:24} {rate:>10.0f}  "
                    f"{rate / alone[name]:4.2f}x  {median:>9.3f} {p95:>7.3f}"
                )


if __name__ == "__main__":
    main()
