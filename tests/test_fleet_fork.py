"""An agent's PostgreSQL journal opened before ``os.fork()`` and used in the children
(gunicorn --preload, Celery's prefork pool, multiprocessing's fork start method): each process
gets server sessions of its own, the parent's are never used or closed by a child, and the
budget stays exact across parent and children. Real processes, a real PostgreSQL server."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from solders.keypair import Keypair

from stub_gateway import GatewayServer

ROOT = Path(__file__).resolve().parent.parent
PRICE = Decimal("0.001")
FEE = Decimal("0.000005")


@pytest.fixture(params=["postgres", "sqlite"])
def fork_journal(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "journal.sqlite3")
    return str(request.getfixturevalue("journal_url"))


def spent_and_rows(location: str) -> tuple[Decimal, int]:
    """The USDC total and the reserved rows, read around the journal."""
    if location.startswith("postgresql://"):
        with psycopg.connect(location) as db:
            (rows,) = db.execute(
                "SELECT count(*) FROM payments WHERE state = 'reserved'"
            ).fetchone()  # type: ignore[misc]
            (spent,) = db.execute(  # type: ignore[misc]
                "SELECT spent FROM totals WHERE currency_key = 'USDC'"
            ).fetchone()
        return Decimal(spent), rows
    with contextlib.closing(sqlite3.connect(location)) as lite:
        (rows,) = lite.execute("SELECT count(*) FROM payments WHERE state = 'reserved'").fetchone()
        (spent,) = lite.execute("SELECT spent FROM totals WHERE currency_key = 'USDC'").fetchone()
    return Decimal(spent), rows


def test_a_journal_opened_before_fork_is_the_childrens_own(fork_journal: str) -> None:
    """The parent used its journal (a pooled connection, its watchdog running), then forked 3
    children; all four reserve at once against a budget of 10 USDC. Each child's journal runs
    on server sessions of its own (never the parent's: one session shared by two processes
    mixes their transactions, and the totals' row lock, held per session, would no longer
    keep their reservations apart); a child closing its journal leaves the parent's session
    open; exactly 10 reserved, and the totals equal the rows. A SQLite journal likewise: each
    child opens a connection of its own (SQLite forbids one used across a fork) and never
    closes the parent's (that could remove the write-ahead log the parent uses)."""
    job = {"journal": fork_journal, "children": 3, "attempts": 6, "budget": "10"}
    ran = subprocess.run(
        [sys.executable, "-m", "tests.workers.forked", json.dumps(job)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout.splitlines()[-1])
    children = report["children"]
    assert all("counts" in child for child in children), children
    sessions = [child["session"] for child in children]
    assert report["before"] not in sessions  # no child ran on the parent's session
    if fork_journal.startswith("postgresql://"):  # (SQLite's: ids, alike in each child)
        assert len(set(sessions)) == len(sessions)
    assert report["alive"] == 1  # the children's close left the parent's session open
    counts = [report["parent"], *(child["counts"] for child in children)]
    assert [c["other"] for c in counts] == [[]] * 4
    assert sum(c["reserved"] for c in counts) == 10
    assert sum(c["budget"] for c in counts) == 4 * 6 - 10
    assert spent_and_rows(fork_journal) == (Decimal(10), 10)


def test_an_agent_built_before_fork_pays_exactly_its_budget_from_the_children(
    server: GatewayServer, journal_url: str
) -> None:
    """gunicorn --preload's shape: an AutoAgent built, and paying once, in the parent; 3 forked
    children pay with it at once, then close it; the parent pays again. A budget of 6 payments
    (SOL, fees included) for 1 + 3 * 3 + 1 attempts: exactly 6 paid on the ledger, 6
    ``accepted`` rows, the totals equal to what the ledger took; nothing failed otherwise."""
    gateway = server.gateway
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    treasury = gateway.balance(gateway.treasury)
    job = {
        "url": f"{server.url}/api/v1/premium/sol",
        "rpc_url": server.rpc_url,
        "journal": journal_url,
        "budget": {"SOL": str(6 * (PRICE + FEE))},
        "children": 3,
        "attempts": 3,
    }
    ran = subprocess.run(
        [sys.executable, "-m", "tests.workers.forked_payer", json.dumps(job)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "SOLANA_PRIVATE_KEY": str(wallet)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout.splitlines()[-1])
    outcomes = [report["first"], report["last"]]
    counts = report["children"]
    assert [c.get("other") for c in counts] == [[]] * 3, counts
    assert report["first"] == "paid"
    paid = sum(c["paid"] for c in counts) + outcomes.count("paid")
    refused = sum(c["budget"] for c in counts) + outcomes.count("budget")
    assert (paid, refused) == (6, 11 - 6)
    assert gateway.balance(gateway.treasury) - treasury == 6 * PRICE
    assert Decimal(1) - gateway.balance(wallet.pubkey()) == 6 * (PRICE + FEE)
    with psycopg.connect(journal_url) as db:
        states = db.execute("SELECT state, count(*) FROM payments GROUP BY state").fetchall()
        (spent,) = db.execute(  # type: ignore[misc]
            "SELECT spent FROM totals WHERE currency_key = 'SOL'"
        ).fetchone()
    assert dict(states) == {"accepted": 6}
    assert Decimal(spent) == 6 * (PRICE + FEE)
