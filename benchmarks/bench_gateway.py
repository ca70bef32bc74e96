"""The stub gateway's CPU per settled payment, and its payments per second.

Runs every measurement twice: on the gateway in one process (``python -m stub_gateway --port
<free> --quiet``), then split (``--workers 2``: the ledger and all state in the main process,
the HTTP work in two worker processes; see ``stub_gateway/workers.py``). It pays the gateway
from several funded wallets with payments built and signed here (solders, no journal, no RPC
on the way but one blockhash per wallet now and then), so that the gateway, not the client, is
what is measured. Before and after each batch it reads the CPU time (user + system, all
threads, from ``/proc/<pid>/stat``) of the gateway's main process and of all its processes,
and prints the CPU milliseconds per settled payment (in one process the two are the same;
split, the main process is the ledger process, and "all processes" adds the workers):

* x402 v2 (``GET /x402/v2/premium`` with ``PAYMENT-SIGNATURE``: verified, co-signed, simulated
  and executed on the LiteSVM ledger), one request per payment;
* HumanRPC SOL and USDC invoices (``GET /api/v1/premium/sol|usdc``: the 402 that issues the
  invoice, then the paid request), two requests per payment;

from one client, first on a fresh gateway, then after ``--warm`` payments (default 10,000, a
mix of the three from 4 clients, within the gateway's 120 s replay window, so its caches are
full), beside the CPU of a request that does no work at all (a 404: waitress and Flask, the
floor under every request; split, it is forwarded to the ledger process), and finally x402
payments per second with 1, 4 and 16 concurrent clients (threads of this process, one wallet
and one keep-alive connection each). The target, at most 0.5 ms of gateway CPU per payment,
is printed beside each figure (met or OVER). Not a test: figures vary by machine, and by what
else runs on it (the clients here share its cores). Linux only (``/proc``).

    python benchmarks/bench_gateway.py                 # --warm 2000 for a shorter run
    python benchmarks/bench_gateway.py --workers 0     # one process only
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import requests
from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from human_rpc_sdk._headers import b64json, encode_payment_header, unb64json
from human_rpc_sdk.solana_utils import (
    MintInfo,
    build_exact_transfer,
    build_sol_transfer,
    build_spl_transfer,
    sign_transaction,
)

TARGET_MS = 0.5
KINDS = ("x402 v2", "HumanRPC SOL", "HumanRPC USDC")
BLOCKHASH_EVERY = 100  # payments per blockhash (valid ~60 s on the gateway's ledger)


@dataclass(frozen=True)
class Gateway:
    url: str
    pid: int
    workers: int = 0

    def cpu(self) -> tuple[float, float]:
        """CPU seconds so far: (the gateway's main process, it and all its worker processes).

        In one process the two are the same; with ``--workers`` the main process is the
        ledger process (ledger and state), the workers do the HTTP work."""
        main = cpu_seconds(self.pid)
        return main, main + sum(cpu_seconds(child) for child in children(self.pid))


@contextlib.contextmanager
def gateway_process(threads: int | None = None, workers: int = 0) -> Iterator[Gateway]:
    """``python -m stub_gateway`` on a free port (``--threads`` threads, ``--workers``
    processes when ``workers``), until the block ends."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "stub_gateway", "--port", str(port), "--quiet"]
    if threads is not None:
        command += ["--threads", str(threads)]
    if workers:
        command += ["--workers", str(workers)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)  # noqa: S603 - our own
    gateway = Gateway(f"http://127.0.0.1:{port}", process.pid, workers)
    try:
        for _ in range(300):
            try:
                requests.get(f"{gateway.url}/api/v1/info", timeout=1).raise_for_status()
                if len(children(process.pid)) >= workers:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.05)
        else:
            raise SystemExit("the gateway did not start")
        yield gateway
    finally:
        process.terminate()
        process.wait(timeout=30)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads) so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (a gateway's workers)."""
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as file:
            found += [int(child) for child in file.read().split()]
    return found


class Payer:
    """One funded wallet paying the gateway over one keep-alive connection."""

    def __init__(self, gateway: Gateway, info: dict[str, Any], x402_offer: dict[str, Any]):
        self.gateway = gateway
        self.session = requests.Session()
        self.session.trust_env = False
        self.wallet = Keypair()
        self.network = str(info["network"])
        self.treasury = Pubkey.from_string(info["recipient"])
        usdc = info["mints"]["USDC"]
        self.usdc = MintInfo(
            Pubkey.from_string(usdc["mint"]),
            Pubkey.from_string(usdc["program"]),
            int(usdc["decimals"]),
        )
        self.offer = x402_offer
        self.blockhash = Hash.default()
        self.uses = BLOCKHASH_EVERY
        self.session.post(
            f"{gateway.url}/api/v1/faucet",
            json={"address": str(self.wallet.pubkey()), "sol": "500", "usdc": "100000"},
            timeout=30,
        ).raise_for_status()

    def recent_blockhash(self) -> Hash:
        if self.uses >= BLOCKHASH_EVERY:
            body = {"jsonrpc": "2.0", "id": 1, "method": "getLatestBlockhash", "params": []}
            answer = self.session.post(f"{self.gateway.url}/rpc", json=body, timeout=30).json()
            self.blockhash = Hash.from_string(answer["result"]["value"]["blockhash"])
            self.uses = 0
        self.uses += 1
        return self.blockhash

    def pay(self, kind: str) -> None:
        if kind == "x402 v2":
            self.pay_x402()
        else:
            self.pay_invoice(kind.rsplit(" ", 1)[1].lower())

    def pay_x402(self) -> None:
        offer = self.offer
        unsigned = build_exact_transfer(
            payer=self.wallet.pubkey(),
            fee_payer=Pubkey.from_string(offer["extra"]["feePayer"]),
            pay_to=Pubkey.from_string(offer["payTo"]),
            mint=self.usdc,
            amount=int(offer["amount"]),
            memo=secrets.token_hex(16),
            recent_blockhash=self.recent_blockhash(),
        )
        transaction = sign_transaction(unsigned, self.wallet)
        payload = {
            "x402Version": 2,
            "resource": {"url": f"{self.gateway.url}/x402/v2/premium"},
            "accepted": offer,
            "payload": {"transaction": _b64(transaction)},
        }
        answer = self.session.get(
            f"{self.gateway.url}/x402/v2/premium",
            headers={"PAYMENT-SIGNATURE": b64json(payload)},
            timeout=30,
        )
        _expect_paid(answer, "x402 v2")

    def pay_invoice(self, currency: str) -> None:
        url = f"{self.gateway.url}/api/v1/premium/{currency}"
        challenge = self.session.get(url, timeout=30)
        if challenge.status_code != 402:
            raise SystemExit(f"{url}: expected 402, got {challenge.status_code}")
        invoice = challenge.json()["invoice"]
        blockhash = self.recent_blockhash()
        if currency == "sol":
            lamports = int(Decimal(str(invoice["amount"])) * 10**9)
            unsigned = build_sol_transfer(
                self.wallet, self.treasury, lamports, blockhash, reference=invoice["reference"]
            )
        else:
            units = int(Decimal(str(invoice["amount"])) * 10**self.usdc.decimals)
            unsigned = build_spl_transfer(
                self.wallet,
                self.treasury,
                self.usdc.address,
                units,
                decimals=self.usdc.decimals,
                token_program=self.usdc.program_id,
                recent_blockhash=blockhash,
                create_recipient_account=False,
                reference=invoice["reference"],
            )
        header = encode_payment_header(sign_transaction(unsigned, self.wallet), self.network)
        answer = self.session.get(url, headers={"X-PAYMENT": header}, timeout=30)
        _expect_paid(answer, f"HumanRPC {currency}")


def _b64(transaction: VersionedTransaction) -> str:
    return base64.b64encode(bytes(transaction)).decode("ascii")


def _expect_paid(answer: requests.Response, what: str) -> None:
    if answer.status_code != 200:
        raise SystemExit(f"{what}: expected 200, got {answer.status_code}: {answer.text[:300]}")


def x402_offer(gateway: Gateway) -> dict[str, Any]:
    challenge = requests.get(f"{gateway.url}/x402/v2/premium", timeout=30)
    document = unb64json(challenge.headers["PAYMENT-REQUIRED"], "challenge")
    offer: dict[str, Any] = document["accepts"][0]
    return offer


def run_clients(payers: list[Payer], count: int, pay: Callable[[Payer, int], None]) -> float:
    """``count`` payments spread over ``payers``, each in its own thread; wall seconds."""
    failures: list[BaseException] = []

    def work(payer: Payer, share: int) -> None:
        try:
            for index in range(share):
                pay(payer, index)
        except BaseException as exc:  # noqa: BLE001 - reported after the threads end
            failures.append(exc)

    shares = [count // len(payers) + (i < count % len(payers)) for i in range(len(payers))]
    threads = [
        threading.Thread(target=work, args=(payer, share))
        for payer, share in zip(payers, shares, strict=True)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"a client failed: {failures[0]}")
    return time.perf_counter() - started


def cpu_per_payment(
    gateway: Gateway, payers: list[Payer], kind: str, count: int
) -> tuple[float, float]:
    """Gateway CPU milliseconds per settled payment of ``kind`` over ``count`` payments:
    (main process, all processes)."""
    return cpu_during(gateway, count, lambda: run_clients(payers, count, lambda p, _: p.pay(kind)))


def cpu_per_request(gateway: Gateway, payer: Payer, count: int) -> tuple[float, float]:
    """Gateway CPU milliseconds per request for a route that does not exist (waitress and
    Flask alone: the least any request costs; with workers, forwarded to the ledger process)."""

    def requests_404() -> None:
        for _ in range(count):
            payer.session.get(f"{gateway.url}/api/v1/no-such-route", timeout=30)

    return cpu_during(gateway, count, requests_404)


def cpu_during(gateway: Gateway, count: int, work: Callable[[], object]) -> tuple[float, float]:
    before = gateway.cpu()
    work()
    after = gateway.cpu()
    return (after[0] - before[0]) * 1000 / count, (after[1] - before[1]) * 1000 / count


def _at_least(minimum: int) -> Callable[[str], int]:
    def count(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected at least {minimum}, not {text}")
        return value

    return count


def verdict(value: float) -> str:
    return "met" if value <= TARGET_MS else "OVER"


def measure(args: argparse.Namespace, workers: int) -> None:
    """Every figure for one way of running the gateway (one process, or ``workers``)."""
    with gateway_process(args.threads, workers) as gateway:
        info = requests.get(f"{gateway.url}/api/v1/info", timeout=30).json()
        offer = x402_offer(gateway)
        payers = [Payer(gateway, info, offer) for _ in range(16)]
        columns: tuple[str, ...]
        if workers:
            title = f"--workers {workers}: the ledger process (pid {gateway.pid}) and {workers} "
            title += "HTTP worker processes"
            columns = ("ledger process", "all processes")
        else:
            title = f"one process (pid {gateway.pid})"
            columns = ("the process",)
        print(f"\n== {title}; gateway CPU ms per settled payment (target <= {TARGET_MS})")
        floor = cpu_per_request(gateway, payers[0], args.batch)
        where = " (forwarded to the ledger process)" if workers else ""
        print(
            f"HTTP floor, a request answered 404{where}: "
            + ", ".join(f"{c} {v:.3f} ms" for c, v in zip(columns, floor, strict=False))
        )
        start = {kind: cpu_per_payment(gateway, payers[:1], kind, args.batch) for kind in KINDS}
        warm_started = time.perf_counter()
        run_clients(payers[:4], args.warm, lambda payer, i: payer.pay(KINDS[i % len(KINDS)]))
        warm_seconds = time.perf_counter() - warm_started
        after = {kind: cpu_per_payment(gateway, payers[:1], kind, args.batch) for kind in KINDS}
        for index, column in enumerate(columns):
            print(f"one client, {column}:")
            print(f"    {'kind':<16}{'at start':>10}{f'after {args.warm}':>14}   target")
            for kind in KINDS:
                first, then = start[kind][index], after[kind][index]
                print(
                    f"    {kind:<16}{first:>10.3f}{then:>14.3f}   <= {TARGET_MS} "
                    f"({verdict(max(first, then))})"
                )
        print(f"(the {args.warm} warm-up payments, 4 clients, took {warm_seconds:.1f} s)")
        print(f"x402 v2 throughput, {args.rate} payments per run:")
        heads = "".join(f"{'CPU ms/payment, ' + c:>34}" for c in columns)
        print(f"    {'clients':<10}{'payments/s':>12}{heads}")
        for clients in (1, 4, 16):
            wall, cpu = throughput(gateway, payers[:clients], args.rate)
            figures = "".join(
                f"{f'{v:.3f} ({verdict(v)})':>34}" for v, _ in zip(cpu, columns, strict=False)
            )
            print(f"    {clients:<10}{args.rate / wall:>12.0f}{figures}")


def throughput(
    gateway: Gateway, payers: list[Payer], count: int
) -> tuple[float, tuple[float, float]]:
    """``count`` x402 payments from ``payers`` at once: wall seconds, CPU ms per payment."""
    wall: list[float] = []

    def paying() -> None:
        wall.append(run_clients(payers, count, lambda payer, _: payer.pay_x402()))

    cpu = cpu_during(gateway, count, paying)
    return wall[0], cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--batch", type=_at_least(1), default=600, help="payments per measured batch"
    )
    parser.add_argument(
        "--warm", type=_at_least(0), default=10_000, help="payments between the two"
    )
    parser.add_argument(
        "--rate", type=_at_least(1), default=600, help="payments per throughput run"
    )
    parser.add_argument("--threads", type=int, default=None, help="the gateway's threads")
    parser.add_argument(
        "--workers",
        type=_at_least(0),
        default=2,
        help="worker processes for the second run (0: one process only)",
    )
    args = parser.parse_args()
    measure(args, 0)
    if args.workers:
        measure(args, args.workers)


if __name__ == "__main__":
    main()
