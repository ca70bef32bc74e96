"""Latency of paying a 402 through AutoAgent against the stub gateway, versus not paying.

Runs the stub gateway in-process, funds one agent wallet, then measures on the same gateway in
the same run:

* the baseline: an unpaid GET of a paywalled resource (answered 402 with a fresh invoice);
* a paid GET in SOL and one in USDC (HumanRPC invoices), and one x402 v2 "exact" payment
  (the gateway verifies, co-signs as fee payer and settles): 402, chain lookup over
  JSON-RPC, sign, paid retry, settlement on the LiteSVM ledger, 200. Each payment is written
  to the agent's payment journal on disk (SQLite, WAL, synchronous=FULL) three times;
* the SOL payment again with the journal in memory, to show what durability costs;
* the journal alone: one payment's three writes (reserve, signed, accepted), on disk and in
  memory.

It prints medians, p95, the paid/unpaid ratio, RPC round trips per payment (counted by the
agent and by the gateway) and payments per second. Not a test: figures vary by machine.

    make bench        # or: python benchmarks/bench_payment.py --requests 300
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import requests
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent, PaymentOffer
from human_rpc_sdk._io.journal import Journal
from stub_gateway import serve_in_thread


@dataclass
class Row:
    name: str
    samples: list[float]
    wall: float
    rpc_round_trips: int | None = None
    rpc_calls_at_gateway: int | None = None

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples) * 1000

    @property
    def p95_ms(self) -> float:
        return statistics.quantiles(self.samples, n=100)[94] * 1000

    @property
    def per_second(self) -> float:
        return len(self.samples) / self.wall


def measure(name: str, count: int, action: Callable[[], int], expect: int) -> Row:
    samples = []
    started = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        status = action()
        samples.append(time.perf_counter() - t0)
        if status != expect:
            raise SystemExit(f"{name}: expected HTTP {expect}, got {status}")
    return Row(name, samples, time.perf_counter() - started)


def _getter(agent: AutoAgent, url: str) -> Callable[[], int]:
    return lambda: agent.get(url).status_code


def _journal_cycle(journal: Journal) -> Callable[[], int]:
    """One payment's journal writes: reserve (with a budget check), signed, accepted."""
    offer = PaymentOffer(
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
    )

    def cycle() -> int:
        reserved = journal.reserve(offer, currency_key="SOL", invoice_key=None, budget=None)
        entry_id = reserved.entry.id  # type: ignore[union-attr]
        journal.mark(entry_id, "signed", {"signature": "s", "headers": {"X-PAYMENT": "h"}})
        journal.mark(entry_id, "accepted", {"http_status": 200})
        return 200

    return cycle


def _per_payment(total: int | None, count: int) -> str:
    return "-" if total is None else f"{total / count:.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per row (at least 200)")
    args = parser.parse_args()
    count = max(args.requests, 200)

    unlimited = dict.fromkeys(("SOL", "USDC"))
    with serve_in_thread() as server, tempfile.TemporaryDirectory() as folder:
        gateway = server.gateway
        wallet = Keypair()
        gateway.fund(wallet.pubkey(), {"SOL": Decimal(10), "USDC": Decimal(100)})
        agent = AutoAgent(
            wallet,
            rpc_url=server.rpc_url,
            journal_path=Path(folder) / "journal.sqlite3",
            budget=unlimited,
        )
        in_memory = AutoAgent(
            wallet, rpc_url=server.rpc_url, journal_path=":memory:", budget=unlimited
        )
        plain = requests.Session()
        urls = {c: f"{server.url}/api/v1/premium/{c}" for c in ("sol", "usdc")}
        urls["x402 v2"] = f"{server.url}/x402/v2/premium"
        for url in urls.values():  # warm up connections, caches and the blockhash
            plain.get(url, timeout=10)
            agent.get(url)
        in_memory.get(urls["sol"])

        rows = [
            measure(
                "unpaid GET (402 + invoice)",
                count,
                lambda: plain.get(urls["sol"], timeout=10).status_code,
                402,
            )
        ]
        for currency, url in urls.items():
            trips_before, served_before = agent.rpc_stats.round_trips, gateway.rpc.calls_served
            label = currency if currency.startswith("x402") else currency.upper()
            row = measure(f"paid GET, {label}", count, _getter(agent, url), 200)
            row.rpc_round_trips = agent.rpc_stats.round_trips - trips_before
            row.rpc_calls_at_gateway = gateway.rpc.calls_served - served_before
            rows.append(row)
        rows.append(
            measure("paid GET, SOL, memory jrnl", count, _getter(in_memory, urls["sol"]), 200)
        )
        agent.close()
        in_memory.close()
        for where, path in (("disk", str(Path(folder) / "alone.sqlite3")), ("memory", ":memory:")):
            journal = Journal(path)
            rows.append(measure(f"journal writes, {where}", count, _journal_cycle(journal), 200))
            journal.close()

    baseline = rows[0].median_ms
    python = sys.version.split()[0]
    print(f"\n{count} requests per row, one agent, stub gateway on loopback (Python {python})\n")
    columns = ("median ms", "p95 ms", "x unpaid", "req/s", "RPC trips/pay", "RPC calls/pay")
    widths = (10, 8, 9, 8, 14, 14)
    print(f"{'':28} " + " ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        cells = (
            f"{row.median_ms:.2f}",
            f"{row.p95_ms:.2f}",
            f"{row.median_ms / baseline:.2f}",
            f"{row.per_second:.1f}",
            _per_payment(row.rpc_round_trips, count),
            _per_payment(row.rpc_calls_at_gateway, count),
        )
        print(f"{row.name:28} " + " ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)))
    print(
        "\nRPC trips/pay: HTTP round trips the agent made to the RPC per payment (blockhash reused"
    )
    print(
        "for 20 s, mint data cached). RPC calls/pay: JSON-RPC calls the gateway served per payment."
    )
    disk, memory = rows[-2].median_ms, rows[-1].median_ms
    print(
        f"A payment's three journal writes take {disk:.2f} ms on disk (synchronous=FULL) and "
        f"{memory:.2f} ms in memory."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
