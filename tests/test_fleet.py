"""A fleet on one budget: processes that share nothing but a PostgreSQL journal (each with its
own wallet, home, state folder and environment, as if on its own machine) never spend more
than the budget together: a lifetime budget, a budget per hour across the hour's end (the
journal's clock injected and moved between two rounds), and two budget scopes in one
database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent
from stub_gateway import GatewayServer

ROOT = Path(__file__).resolve().parent.parent
PRICE = Decimal("0.001")
FEE = Decimal("0.000005")  # the network fee counts against the SOL budget too
COST = PRICE + FEE
K = 7
PROCESSES = 4
THREADS = 8
ATTEMPTS = 2  # per thread: 64 attempts in all
HOUR_END = datetime(2026, 11, 26, 11, 0, tzinfo=UTC).timestamp()
"""The hour boundary the period test crosses: the first round runs in the last seconds of
the hour before it, the second just after it."""


@dataclass
class Fleet:
    """Worker processes, each with its own wallet, home and environment, on one journal."""

    server: GatewayServer
    journal_url: str
    tmp_path: Path
    wallets: list[Keypair] = field(default_factory=list)
    workers: list[subprocess.Popen[str]] = field(default_factory=list)

    def start(self, job: Mapping[str, Any], scopes: Sequence[str] = ("",) * PROCESSES) -> None:
        """One worker per scope, all built and waiting for the start signal."""
        for number, scope in enumerate(scopes):
            wallet = Keypair()
            self.wallets.append(wallet)
            self.server.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
            machine = self.tmp_path / f"machine-{number}"  # its own home and state
            machine.mkdir()
            env = {
                "PATH": os.environ.get("PATH", ""),
                "PYTHONPATH": str(ROOT),
                "HOME": str(machine),
                "XDG_STATE_HOME": str(machine / "state"),
                "SOLANA_PRIVATE_KEY": str(wallet),
                "HUMAN_RPC_JOURNAL": self.journal_url,
            }
            if scope:
                env["HUMAN_RPC_BUDGET_SCOPE"] = scope
            self.workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "tests.workers.payer", json.dumps(dict(job))],
                    cwd=machine,
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        for worker in self.workers:  # each has built its agent (and met the schema)
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready", worker.stderr

    def round(self) -> list[dict[str, Any]]:
        """Signal every worker to run a round; each one's counts."""
        for worker in self.workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        results = []
        for worker in self.workers:
            assert worker.stdout is not None
            line = worker.stdout.readline()
            assert line, worker.communicate(timeout=60)[1]
            results.append(json.loads(line))
        return results

    def finish(self) -> None:
        for worker in self.workers:
            _, errors = worker.communicate(timeout=120)
            assert worker.returncode == 0, errors

    def spent_on_ledger(self) -> Decimal:
        gateway = self.server.gateway
        return sum((Decimal(1) - gateway.balance(w.pubkey()) for w in self.wallets), Decimal(0))


def total(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    counts: dict[str, Any] = {"paid": 0, "budget": 0, "other": []}
    for result in results:
        counts["paid"] += result["paid"]
        counts["budget"] += result["budget"]
        counts["other"] += result["other"]
    return counts


def job(server: GatewayServer, budget: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "url": f"{server.url}/api/v1/premium/sol",
        "rpc_url": server.rpc_url,
        "budget": budget,
        "attempts": ATTEMPTS,
        "threads": THREADS,
        "wait": True,
        **extra,
    }


ATTEMPTED = PROCESSES * THREADS * ATTEMPTS


def test_a_fleet_never_overspends_one_budget(
    server: GatewayServer, tmp_path: Path, journal_url: str
) -> None:
    """4 processes x 8 threads x 2 attempts against a budget of exactly K payments: exactly K
    are paid (the ledger's treasury and the payers' balances) and K rows are accepted; every
    other attempt is refused by the budget rule before anything is signed."""
    gateway = server.gateway
    budget = {"SOL": str(K * COST)}
    treasury_before = gateway.balance(gateway.treasury)
    fleet = Fleet(server, journal_url, tmp_path)
    fleet.start(job(server, budget))
    counts = total(fleet.round())
    fleet.finish()

    assert counts == {"paid": K, "budget": ATTEMPTED - K, "other": []}
    assert gateway.balance(gateway.treasury) - treasury_before == K * PRICE
    assert fleet.spent_on_ledger() == K * COST
    with psycopg.connect(journal_url) as db:
        states = [row[0] for row in db.execute("SELECT state FROM payments")]
        (totals,) = db.execute("SELECT spent FROM totals WHERE currency_key = 'SOL'").fetchall()
    assert states == ["accepted"] * K
    assert totals[0] == K * COST
    for path in tmp_path.rglob("*.sqlite3"):  # no process fell back to a file of its own
        raise AssertionError(f"a SQLite journal appeared: {path}")
    agent = AutoAgent(Keypair(), journal_url=journal_url, budget=budget)
    try:
        assert agent.budget["SOL"].spent == K * COST
        assert agent.budget["SOL"].remaining == 0
    finally:
        agent.close()


def test_a_fleet_spends_a_budget_per_hour_once_in_each_hour(
    server: GatewayServer, tmp_path: Path, journal_url: str
) -> None:
    """A budget of K payments per hour: 64 attempts in the last seconds of one hour pay K,
    64 more just after the hour's end pay K again (the journal's clock, which decides the
    period, moved by the test between the rounds): 2K paid on the ledger, 2K accepted rows,
    and the two hours' buckets at K payments each."""
    gateway = server.gateway
    clock = tmp_path / "clock"
    clock.write_text(str(HOUR_END - 3))
    treasury_before = gateway.balance(gateway.treasury)
    fleet = Fleet(server, journal_url, tmp_path)
    budget = {"SOL": {"limit": str(K * COST), "per": "hour"}}
    fleet.start(job(server, budget, clock_file=str(clock), phases=2))
    before = total(fleet.round())
    clock.write_text(str(HOUR_END + 5))  # every worker is waiting: the hour ends
    after = total(fleet.round())
    fleet.finish()

    assert before == {"paid": K, "budget": ATTEMPTED - K, "other": []}
    assert after == {"paid": K, "budget": ATTEMPTED - K, "other": []}
    assert gateway.balance(gateway.treasury) - treasury_before == 2 * K * PRICE
    assert fleet.spent_on_ledger() == 2 * K * COST
    with psycopg.connect(journal_url) as db:
        states = [row[0] for row in db.execute("SELECT state FROM payments")]
        hours = db.execute(
            "SELECT bucket_start, spent FROM spending WHERE currency_key = 'SOL' "
            "AND level = 'hour' ORDER BY bucket_start"
        ).fetchall()
    assert states == ["accepted"] * (2 * K)
    assert hours == [(int(HOUR_END) - 3600, K * COST), (int(HOUR_END), K * COST)]


def test_two_budget_scopes_in_one_database_spend_their_own_budgets(
    server: GatewayServer, tmp_path: Path, journal_url: str
) -> None:
    """Two processes in scope "crawler" and two in "writer" ($HUMAN_RPC_BUDGET_SCOPE), one
    database, a budget of K payments: each scope pays exactly K of its 32 attempts."""
    fleet = Fleet(server, journal_url, tmp_path)
    fleet.start(job(server, {"SOL": str(K * COST)}), ("crawler", "crawler", "writer", "writer"))
    results = fleet.round()
    fleet.finish()

    half = ATTEMPTED // 2
    assert total(results[:2]) == {"paid": K, "budget": half - K, "other": []}
    assert total(results[2:]) == {"paid": K, "budget": half - K, "other": []}
    assert fleet.spent_on_ledger() == 2 * K * COST
    with psycopg.connect(journal_url) as db:
        scopes = db.execute(
            "SELECT scope, count(*) FROM payments WHERE state = 'accepted' GROUP BY scope "
            "ORDER BY scope"
        ).fetchall()
        totals = db.execute(
            "SELECT scope, spent FROM totals WHERE currency_key = 'SOL' ORDER BY scope"
        ).fetchall()
    assert scopes == [("crawler", K), ("writer", K)]
    assert totals == [("crawler", K * COST), ("writer", K * COST)]


def test_the_fleet_example_runs(journal_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/fleet.py: four worker processes, one PostgreSQL budget of three payments:
    exactly three paid, on the ledger and in the journal."""
    from .test_examples_and_cli import run_example

    monkeypatch.setenv("HUMAN_RPC_JOURNAL", journal_url)
    done = run_example("fleet.py")
    assert "paid in all: 3" in done.stdout
    assert "0.003015 SOL left the workers' wallets" in done.stdout
    assert "the journal: 0.003015 SOL spent" in done.stdout
    assert done.stdout.count("refused by the budget") == 4
