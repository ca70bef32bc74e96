"""A fleet on one budget: processes that share nothing but a PostgreSQL journal (each with its
own wallet, home, state folder and environment, as if on its own machine) never spend more
than the budget together."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import psycopg
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent
from stub_gateway import GatewayServer

ROOT = Path(__file__).resolve().parent.parent
PRICE = Decimal("0.001")
FEE = Decimal("0.000005")  # the network fee counts against the SOL budget too
K = 7
PROCESSES = 4
THREADS = 8
ATTEMPTS = 2  # per thread: 64 attempts in all


def test_a_fleet_never_overspends_one_budget(
    server: GatewayServer, tmp_path: Path, journal_url: str
) -> None:
    """4 processes x 8 threads x 2 attempts against a budget of exactly K payments: exactly K
    are paid (the ledger's treasury and the payers' balances) and K rows are accepted; every
    other attempt is refused by the budget rule before anything is signed."""
    gateway = server.gateway
    url = f"{server.url}/api/v1/premium/sol"
    budget = {"SOL": str(K * (PRICE + FEE))}
    treasury_before = gateway.balance(gateway.treasury)
    wallets = [Keypair() for _ in range(PROCESSES)]
    workers = []
    for number, wallet in enumerate(wallets):
        gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
        machine = tmp_path / f"machine-{number}"  # its own home and state: nothing shared
        machine.mkdir()
        job = {
            "url": url,
            "rpc_url": server.rpc_url,
            "budget": budget,
            "attempts": ATTEMPTS,
            "threads": THREADS,
            "wait": True,
        }
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(ROOT),
            "HOME": str(machine),
            "XDG_STATE_HOME": str(machine / "state"),
            "SOLANA_PRIVATE_KEY": str(wallet),
            "HUMAN_RPC_JOURNAL": journal_url,
        }
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.workers.payer", json.dumps(job)],
                cwd=machine,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for worker in workers:  # each has built its agent (and met the schema) and waits
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready"
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    counts = {"paid": 0, "budget": 0, "other": []}
    for worker in workers:
        out, errors = worker.communicate(timeout=120)
        assert worker.returncode == 0, errors
        result = json.loads(out.strip().splitlines()[-1])
        counts["paid"] += result["paid"]
        counts["budget"] += result["budget"]
        counts["other"] += result["other"]

    attempts = PROCESSES * THREADS * ATTEMPTS
    assert counts == {"paid": K, "budget": attempts - K, "other": []}
    assert gateway.balance(gateway.treasury) - treasury_before == K * PRICE
    spent = sum(Decimal(1) - gateway.balance(w.pubkey()) for w in wallets)
    assert spent == K * (PRICE + FEE)
    with psycopg.connect(journal_url) as db:
        states = [row[0] for row in db.execute("SELECT state FROM payments")]
        (totals,) = db.execute("SELECT spent FROM totals WHERE currency_key = 'SOL'").fetchall()
    assert states == ["accepted"] * K
    assert totals[0] == K * (PRICE + FEE)
    for path in tmp_path.rglob("*.sqlite3"):  # no process fell back to a file of its own
        raise AssertionError(f"a SQLite journal appeared: {path}")
    agent = AutoAgent(Keypair(), journal_url=journal_url, budget=budget)
    try:
        assert agent.budget["SOL"].spent == K * (PRICE + FEE)
        assert agent.budget["SOL"].remaining == 0
    finally:
        agent.close()
