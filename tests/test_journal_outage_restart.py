"""The fleet's PostgreSQL server stopped and started in the middle of a run: payments stop
with ``journal_unavailable`` (nothing signed), resume once it is back without recreating the
agents, and at the end the ledger, the journal's rows and its running totals agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent, PendingPaymentsWarning
from stub_gateway import GatewayServer

from .conftest import FakeClock
from .postgres_server import PostgresServer, private_postgres  # noqa: F401 - a fixture

ROOT = Path(__file__).resolve().parent.parent
PRICE = Decimal("0.001")
FEE = Decimal("0.000005")
PROCESSES = 3
THREADS = 3


class Worker:
    """A tests.workers.steady_payer process: one agent for the whole run."""

    def __init__(self, job: dict[str, Any], wallet: Keypair, journal: str, home: Path) -> None:
        home.mkdir()
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(ROOT),
            "HOME": str(home),
            "XDG_STATE_HOME": str(home / "state"),
            "PAYER_KEY": str(wallet),
            "HUMAN_RPC_JOURNAL": journal,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.workers.steady_payer", json.dumps(job)],
            cwd=home,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.read() == {"ready": True}, self.errors()

    def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, self.errors()
        found: dict[str, Any] = json.loads(line)
        return found

    def errors(self) -> str:
        if self.process.poll() is None:
            return "(running)"
        assert self.process.stderr is not None
        return self.process.stderr.read()

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def finish_round(self, outcomes: list[str]) -> dict[str, Any]:
        """Read the round's attempts into ``outcomes`` until its summary."""
        while True:
            line = self.read()
            if "done" in line:
                done: dict[str, Any] = line["done"]
                return done
            outcomes.append(line["attempt"])

    def quit(self) -> None:
        self.send("quit")
        assert self.read() == {"closed": True}
        _, errors = self.process.communicate(timeout=60)
        assert self.process.returncode == 0, errors


def rows(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as db:
        return db.execute("SELECT id, state, landed, amount, fee_lamports FROM payments").fetchall()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgresql_restarted_mid_run(
    mode: str,
    clocked: tuple[GatewayServer, FakeClock],
    private_postgres: PostgresServer,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    """3 processes x 3 threads pay; the server is stopped (``fast``: sessions ended cleanly;
    ``immediate``: as in a crash) while payments are in flight. Every attempt either paid or
    failed with ``journal_unavailable``; with the server down, every attempt fails so and
    nothing is signed. Started again, the same agents pay at once. At the end, after recovery
    (leases and blockhashes expired): the ledger's transfers equal the accepted rows and the
    payments the workers saw served, the running totals equal the accepted rows' costs, and no
    row is left ``reserved`` or ``signed``."""
    server, clock = clocked
    gateway = server.gateway
    url = private_postgres.url("journal")
    treasury_before = gateway.balance(gateway.treasury)
    wallets = [Keypair() for _ in range(PROCESSES)]
    job = {
        "url": f"{server.url}/api/v1/premium/sol",
        "rpc_url": server.rpc_url,
        "threads": THREADS,
        "journal_wait": 5,
    }
    workers = []
    for number, wallet in enumerate(wallets):
        gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
        workers.append(Worker(job, wallet, url, tmp_path / f"machine-{number}"))
    outcomes: list[str] = []
    paid = 0
    try:
        # 1. Paying; the server stops once two payments are served, others in flight.
        for worker in workers:
            worker.send("pay 4")
        seen = 0
        while seen < 2:
            outcome = workers[0].read()["attempt"]
            outcomes.append(outcome)
            seen += outcome == "paid"
        private_postgres.stop(mode)
        signed = []
        for worker in workers:
            done = worker.finish_round(outcomes)
            paid += done["paid"]
            signed.append(done["signed"])
        assert set(outcomes) <= {"paid", "journal_unavailable"}, outcomes
        assert outcomes.count("paid") == paid

        # 2. The server down: every payment stops, nothing is signed.
        down: list[str] = []
        for worker in workers:
            worker.send("pay 1")
        for number, worker in enumerate(workers):
            done = worker.finish_round(down)
            assert done == {"paid": 0, "signed": signed[number]}
        assert down == ["journal_unavailable"] * PROCESSES * THREADS

        # 3. Back: the same agents pay at once.
        private_postgres.start()
        back: list[str] = []
        for worker in workers:
            worker.send("pay 2")
        for worker in workers:
            paid += worker.finish_round(back)["paid"]
        assert back == ["paid"] * PROCESSES * THREADS * 2
        for worker in workers:
            worker.quit()  # writes the outcomes kept while the server was down
    finally:
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.communicate()

    # Whatever the stop cut short: reservations wait for their lease, signed payments that
    # never left for their blockhash to expire; then one recovery settles them all.
    with psycopg.connect(url) as db:
        db.execute(
            "UPDATE payments SET expires_at = now() - interval '1 second' WHERE state = 'reserved'"
        )
    clock.now += 61
    left = [row for row in rows(url) if row["state"] not in ("accepted", "failed")]
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always", PendingPaymentsWarning)
        recoverer = AutoAgent(Keypair(), rpc_url=server.rpc_url, journal_url=url)
    assert len(warned) == (1 if left else 0)  # the stop left those open
    try:
        recovered = recoverer.recover_payments()
    finally:
        recoverer.close()
    # Released reservations are not listed (the chain has nothing to tell of them); the rest is.
    unsent = sorted(row["id"] for row in left if row["state"] != "reserved")
    assert sorted(r.id or 0 for r in recovered) == unsent
    final = rows(url)
    released = {row["id"] for row in left if row["state"] == "reserved"}
    assert {row["id"] for row in final if row["id"] in released and row["state"] == "failed"} == (
        released
    )
    # A crash (``immediate``) may lose outcomes committed without a flush of the write-ahead
    # log (by design: the chain tells them again): recovery has just booked those as accepted.
    states = [row["state"] for row in final]
    assert set(states) <= {"accepted", "failed"}, states
    accepted = [row for row in final if row["state"] == "accepted"]
    assert len(accepted) == paid
    assert gateway.balance(gateway.treasury) - treasury_before == paid * PRICE
    spent = sum(Decimal(1) - gateway.balance(w.pubkey()) for w in wallets)
    assert spent == paid * (PRICE + FEE)
    with psycopg.connect(url) as db:
        (total,) = db.execute("SELECT spent FROM totals WHERE currency_key = 'SOL'").fetchone() or (
            0,
        )
    assert Decimal(total) == paid * (PRICE + FEE)
