"""Paying through each driver: AutoAgent, PaymentAuth (requests, httpx), AsyncAutoAgent.

Starts the stub gateway in a process of its own (``python -m stub_gateway``: a server the
client shares no interpreter lock with, as a real one) and pays its x402 v2 route (verified,
co-signed and settled on the LiteSVM ledger) the same number of times through each way of
paying, in the same run, each with its own funded wallet and a journal on disk:

* ``AutoAgent`` (requests), the baseline every ratio is against;
* ``requests`` with ``auth=PaymentAuth(AutoAgent)``, and ``httpx.Client`` with it;
* ``AsyncAutoAgent`` one request at a time, then ``--concurrency`` at once (``gather``);
* ``httpx.AsyncClient`` with ``auth=PaymentAuth(AsyncAutoAgent)``.

It prints each one's median and p95 latency, payments per second and the ratio of its median
(or, for the concurrent run, of its throughput) to AutoAgent's. The rounds alternate between
the drivers so that a slower moment of the machine does not fall on one alone. Not a test:
figures vary by machine.

    make bench        # or: python benchmarks/bench_drivers.py --payments 200 --concurrency 10
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import requests
from bench_payment import funded, gateway_process

from human_rpc_sdk import AsyncAutoAgent, AutoAgent, PaymentAuth

ROUTE = "/x402/v2/premium"


@dataclass
class Row:
    name: str
    samples: list[float] = field(default_factory=list)
    wall: float = 0.0
    paid: int = 0

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples) * 1000

    @property
    def p95_ms(self) -> float:
        return statistics.quantiles(self.samples, n=100)[94] * 1000

    @property
    def per_second(self) -> float:
        return self.paid / self.wall


def timed(row: Row, call: Callable[[], int]) -> None:
    started = time.perf_counter()
    status = call()
    elapsed = time.perf_counter() - started
    if status != 200:
        raise SystemExit(f"{row.name}: expected HTTP 200, got {status}")
    row.samples.append(elapsed)
    row.wall += elapsed
    row.paid += 1


async def atimed(row: Row, call: Callable[[], Awaitable[httpx.Response]]) -> None:
    started = time.perf_counter()
    status = (await call()).status_code
    elapsed = time.perf_counter() - started
    if status != 200:
        raise SystemExit(f"{row.name}: expected HTTP 200, got {status}")
    row.samples.append(elapsed)
    row.wall += elapsed
    row.paid += 1


async def burst(row: Row, agent: AsyncAutoAgent, url: str, count: int) -> None:
    """``count`` payments at once; each one's latency, and the burst's wall time."""
    started = time.perf_counter()

    async def one() -> float:
        t0 = time.perf_counter()
        response = await agent.get(url)
        if response.status_code != 200:
            raise SystemExit(f"{row.name}: expected HTTP 200, got {response.status_code}")
        return time.perf_counter() - t0

    row.samples.extend(await asyncio.gather(*(one() for _ in range(count))))
    row.wall += time.perf_counter() - started
    row.paid += count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=100, help="payments per driver")
    parser.add_argument("--concurrency", type=int, default=10, help="payments at once (async)")
    args = parser.parse_args()
    rounds = max(1, args.payments // args.concurrency)

    with gateway_process() as server, tempfile.TemporaryDirectory() as folder:
        url = f"{server.url}{ROUTE}"
        journal = Path(folder)
        budget = {"USDC": "1000", "SOL": "10"}

        def sync_agent(name: str) -> AutoAgent:
            return AutoAgent(
                funded(server),
                rpc_url=server.rpc_url,
                journal_path=journal / f"{name}.sqlite3",
                budget=budget,
            )

        agent = sync_agent("agent")
        for_requests = sync_agent("requests-auth")
        for_httpx = sync_agent("httpx-auth")
        session = requests.Session()
        session.auth = PaymentAuth(for_requests)
        client = httpx.Client(auth=PaymentAuth(for_httpx))
        rows = {
            name: Row(name)
            for name in (
                "AutoAgent (requests)",
                "requests + PaymentAuth",
                "httpx.Client + PaymentAuth",
                "AsyncAutoAgent, one at a time",
                f"AsyncAutoAgent, {args.concurrency} at once",
                "httpx.AsyncClient + PaymentAuth",
            )
        }
        names = list(rows)

        async def run_async() -> None:
            async with (
                AsyncAutoAgent(
                    funded(server),
                    rpc_url=server.rpc_url,
                    journal_path=journal / "async.sqlite3",
                    budget=budget,
                ) as async_agent,
                AsyncAutoAgent(
                    funded(server),
                    rpc_url=server.rpc_url,
                    journal_path=journal / "async-auth.sqlite3",
                    budget=budget,
                ) as for_async_httpx,
                httpx.AsyncClient(auth=PaymentAuth(for_async_httpx)) as async_client,
            ):
                # One warm-up payment each: connections, blockhash and mint caches.
                agent.get(url)
                session.get(url, timeout=30)
                client.get(url, timeout=30)
                await async_agent.get(url)
                await async_client.get(url, timeout=30)
                for _ in range(rounds):
                    for _ in range(args.concurrency):
                        timed(rows[names[0]], lambda: agent.get(url).status_code)
                        timed(rows[names[1]], lambda: session.get(url, timeout=30).status_code)
                        timed(rows[names[2]], lambda: client.get(url, timeout=30).status_code)
                        await atimed(rows[names[3]], lambda: async_agent.get(url))
                        await atimed(rows[names[5]], lambda: async_client.get(url, timeout=30))
                    await burst(rows[names[4]], async_agent, url, args.concurrency)

        asyncio.run(run_async())
        for closing in (agent, for_requests, for_httpx):
            closing.close()
        session.close()
        client.close()

    base = rows[names[0]]
    print(f"{rounds * args.concurrency} x402 v2 payments per driver, journal on disk")
    print(f"{'driver':36} {'median ms':>10} {'p95 ms':>8} {'paid/s':>8} {'vs AutoAgent':>13}")
    for name, row in rows.items():
        if name == names[4]:
            ratio = f"{row.per_second / base.per_second:.2f}x rate"
        else:
            ratio = f"{row.median_ms / base.median_ms:.2f}x time"
        print(
            f"{name:36} {row.median_ms:10.2f} {row.p95_ms:8.2f} {row.per_second:8.1f} {ratio:>13}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
