"""Many hands on one budget: 16 threads and two processes share a journal whose budget allows
exactly K payments. Exactly K are paid, on the ledger and in the journal."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent, HumanRPCError, PaymentPolicyError
from stub_gateway import GatewayServer

ROOT = Path(__file__).resolve().parent.parent
PRICE = Decimal("0.001")
COST = PRICE + Decimal("0.000005")  # the SOL budget counts each payment's network fee too
K = 6
THREADS = 16
THREAD_ATTEMPTS = 2
PROCESSES = 2
PROCESS_ATTEMPTS = 8


def test_a_shared_budget_is_never_overspent(server: GatewayServer, tmp_path: Path) -> None:
    """48 attempts from 16 threads and 2 processes against a budget of 6 payments: exactly 6
    are paid (ledger and journal), every other attempt is refused by the budget rule."""
    gateway = server.gateway
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    journal = tmp_path / "shared.sqlite3"
    budget = {"SOL": str(K * COST)}
    url = f"{server.url}/api/v1/premium/sol"
    treasury_before = gateway.balance(gateway.treasury)
    job = {
        "url": url,
        "rpc_url": server.rpc_url,
        "journal": str(journal),
        "budget": budget,
        "attempts": PROCESS_ATTEMPTS,
        "wait": True,
    }
    env = {**os.environ, "SOLANA_PRIVATE_KEY": str(wallet)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.workers.payer", json.dumps(job)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    agent = AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=journal, budget=budget)
    start = threading.Barrier(THREADS + 1)
    lock = threading.Lock()
    counts: dict[str, Any] = {"paid": 0, "budget": 0, "other": []}

    def attempt() -> None:
        start.wait()
        for _ in range(THREAD_ATTEMPTS):
            try:
                status = agent.get(url).status_code
            except PaymentPolicyError as exc:
                outcome = "budget" if exc.rule == "budget" else f"rule {exc.rule}"
            except HumanRPCError as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            else:
                outcome = "paid" if status == 200 else f"HTTP {status}"
            with lock:
                if outcome in ("paid", "budget"):
                    counts[outcome] += 1
                else:
                    counts["other"].append(outcome)

    threads = [threading.Thread(target=attempt) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for worker in workers:  # each has built its agent and waits for the signal
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready"
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    start.wait()
    for thread in threads:
        thread.join(timeout=60)
    for worker in workers:
        out, errors = worker.communicate(timeout=60)  # closes stdin too
        assert worker.returncode == 0, errors
        result = json.loads(out.strip().splitlines()[-1])
        counts["paid"] += result["paid"]
        counts["budget"] += result["budget"]
        counts["other"] += result["other"]

    attempts = THREADS * THREAD_ATTEMPTS + PROCESSES * PROCESS_ATTEMPTS
    assert counts == {"paid": K, "budget": attempts - K, "other": []}
    assert gateway.balance(gateway.treasury) - treasury_before == K * PRICE
    with sqlite3.connect(journal) as db:
        states = [row[0] for row in db.execute("SELECT state FROM payments")]
    assert states == ["accepted"] * K
    assert agent.budget["SOL"].spent == K * COST
    agent.close()
