"""Latency of paying a 402 through AutoAgent against the stub gateway, versus not paying.

Runs the stub gateway in-process, funds one agent wallet, then measures on the same gateway in
the same run:

* the baseline: an unpaid GET of a paywalled resource (answered 402 with a fresh invoice);
* a paid GET in SOL and one in USDC (HumanRPC invoices), and one x402 v2 "exact" payment
  (the gateway verifies, co-signs as fee payer and settles): 402, chain lookup over
  JSON-RPC, sign, paid retry, settlement on the LiteSVM ledger, 200.

It prints medians, p95, the paid/unpaid ratio, RPC round trips per payment (counted by the
agent and by the gateway) and payments per second. Not a test: figures vary by machine.

    make bench        # or: python benchmarks/bench_payment.py --requests 300
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import requests
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent
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


def _per_payment(total: int | None, count: int) -> str:
    return "-" if total is None else f"{total / count:.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per row (at least 200)")
    args = parser.parse_args()
    count = max(args.requests, 200)

    with serve_in_thread() as server:
        gateway = server.gateway
        wallet = Keypair()
        gateway.fund(wallet.pubkey(), {"SOL": Decimal(10), "USDC": Decimal(100)})
        agent = AutoAgent(wallet, rpc_url=server.rpc_url)
        plain = requests.Session()
        urls = {c: f"{server.url}/api/v1/premium/{c}" for c in ("sol", "usdc")}
        urls["x402 v2"] = f"{server.url}/x402/v2/premium"
        for url in urls.values():  # warm up connections, caches and the blockhash
            plain.get(url, timeout=10)
            agent.get(url)

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
        agent.close()

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
