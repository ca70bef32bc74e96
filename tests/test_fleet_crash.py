"""Workers of a fleet killed (SIGKILL) in the middle of a payment, and recovery from another
process: a reservation held by a dead worker is released once its lease expires (not before);
a payment signed and settled is booked once; one signed and never sent is released once its
blockhash expires; two recoverers at once never both recover. Real processes, the gateway on a
fake clock, the ledger, real journals."""

from __future__ import annotations

import json
import os
import signal
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
from human_rpc_sdk._settings import is_database_url
from stub_gateway import GatewayServer

from .conftest import FakeClock

ROOT = Path(__file__).resolve().parent.parent
PRICE = Decimal("0.001")
FEE = Decimal("0.000005")
ROUTE = "/api/v1/premium/sol"


def start(module: str, job: dict[str, Any], wallet: Keypair | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SOLANA_PRIVATE_KEY", None)
    if wallet is not None:
        env["PAYER_KEY"] = str(wallet)
    return subprocess.Popen(
        [sys.executable, "-m", module, json.dumps(job)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stopped_at(
    at: str, server: GatewayServer, journal: str, wallet: Keypair
) -> subprocess.Popen[str]:
    """A payer stopped at ``at`` (see tests.workers.stopped_at), once it says it is there."""
    job = {"url": f"{server.url}{ROUTE}", "rpc_url": server.rpc_url, "journal": journal, "at": at}
    child = start("tests.workers.stopped_at", job, wallet)
    assert child.stdout is not None
    line = child.stdout.readline().strip()
    if line != {"sign": "reserved"}.get(at, at):
        child.kill()
        raise AssertionError(f"{line!r}: {child.communicate()[1]}")
    return child


def kill(child: subprocess.Popen[str]) -> None:
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL


def rows(journal: str) -> list[dict[str, Any]]:
    sql = "SELECT id, state, landed, error, transaction_b64 FROM payments ORDER BY id"
    if is_database_url(journal):
        with psycopg.connect(journal, row_factory=psycopg.rows.dict_row) as db:
            return db.execute(sql).fetchall()
    import sqlite3

    with sqlite3.connect(journal) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute(sql)]


def expire_leases(url: str) -> None:
    """The database's clock past every reservation's lease (instead of waiting 10 minutes)."""
    with psycopg.connect(url) as db:
        db.execute(
            "UPDATE payments SET expires_at = now() - interval '1 second' WHERE state = 'reserved'"
        )


def recoverer(server: GatewayServer, journal: str) -> AutoAgent:
    """An agent of another process's (this test's) over the same journal."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingPaymentsWarning)
        return AutoAgent(Keypair(), rpc_url=server.rpc_url, journal_path=journal)


def funded(gateway: Any) -> Keypair:
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    return wallet


# -- a worker killed holding a reservation ------------------------------------------------------


@pytest.mark.parametrize("how", ["killed-elsewhere", "late-signer"])
def test_a_reservation_of_a_dead_worker_is_released_after_its_lease(
    how: str, clocked: tuple[GatewayServer, FakeClock], journal_url: str
) -> None:
    """A worker reserved a payment and stopped in its signer: killed on another machine (its
    row's host is another's: nobody here can tell whether it lives), or only stalled, going
    on late. Another process's recovery leaves the reservation alone while its lease runs
    (its budget still counted), then releases it: ``failed``, the budget back, nothing on the
    ledger. The late signer finds its reservation gone: ``reservation_lost``, nothing sent."""
    server, _clock = clocked
    gateway = server.gateway
    wallet = funded(gateway)
    child = stopped_at("sign", server, journal_url, wallet)
    try:
        if how == "killed-elsewhere":
            kill(child)
            with psycopg.connect(journal_url) as db:
                db.execute("UPDATE payments SET host = 'worker-7.fleet.internal'")
        (row,) = rows(journal_url)
        assert row["state"] == "reserved"
        other = recoverer(server, journal_url)
        try:
            (held,) = other.recover_payments()
            assert held.state == "reserved"  # its lease runs: left as it is
            assert [r["state"] for r in rows(journal_url)] == ["reserved"]
            assert other.budget["SOL"].spent == PRICE + FEE
            expire_leases(journal_url)
            assert other.recover_payments() == []  # released: nothing left to settle
            (row,) = rows(journal_url)
            assert (row["state"], row["landed"]) == ("failed", False)
            assert "lease expired" in row["error"]
            assert other.budget["SOL"].spent == 0
        finally:
            other.close()
        if how == "late-signer":
            assert child.stdin is not None
            out, errors = child.communicate("go\n", timeout=60)
            assert out.split() == ["reservation_lost"], errors
            assert [r["state"] for r in rows(journal_url)] == ["failed"]
        assert gateway.balance(wallet.pubkey()) == 1
        assert gateway.desk.settlements == []
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()


def test_a_reservation_of_a_worker_killed_on_this_machine_is_released_at_once(
    clocked: tuple[GatewayServer, FakeClock], journal_url: str
) -> None:
    """The killed worker ran on this machine: recovery here sees its process gone and releases
    its reservation without waiting for the lease (as the SQLite journal does)."""
    server, _clock = clocked
    gateway = server.gateway
    wallet = funded(gateway)
    kill(stopped_at("sign", server, journal_url, wallet))
    other = recoverer(server, journal_url)
    try:
        (released,) = other.recover_payments()
        assert (released.state, released.landed) == ("failed", False)
        assert other.budget["SOL"].spent == 0
    finally:
        other.close()
    assert gateway.balance(wallet.pubkey()) == 1
    assert gateway.desk.settlements == []


# -- a worker killed after signing -----------------------------------------------------------


def test_a_payment_settled_before_its_worker_died_is_booked_once(
    clocked: tuple[GatewayServer, FakeClock], journal_url: str
) -> None:
    """Killed after the server settled the payment, before the outcome was journaled: the row
    says ``signed``; recovery from another process finds it on the chain and books it accepted,
    counted once (the totals and the ledger agree)."""
    server, _clock = clocked
    gateway = server.gateway
    wallet = funded(gateway)
    kill(stopped_at("answered", server, journal_url, wallet))
    (row,) = rows(journal_url)
    assert row["state"] == "signed"
    assert len(gateway.desk.settlements) == 1
    other = recoverer(server, journal_url)
    try:
        ((recovered),) = other.recover_payments()
        assert (recovered.state, recovered.landed) == ("accepted", True)
        assert other.recover_payments() == []
        assert other.budget["SOL"].spent == PRICE + FEE
    finally:
        other.close()
    assert Decimal(1) - gateway.balance(wallet.pubkey()) == PRICE + FEE
    assert [r["state"] for r in rows(journal_url)] == ["accepted"]


def test_a_payment_signed_and_never_sent_is_released_after_its_blockhash(
    clocked: tuple[GatewayServer, FakeClock], store_location: str
) -> None:
    """Killed right after the ``signed`` commit, before sending (both stores): recovery from
    another process leaves it while it could land, then, its blockhash expired, proves it
    never landed: ``failed``, the budget back, nothing on the ledger."""
    server, clock = clocked
    gateway = server.gateway
    wallet = funded(gateway)
    kill(stopped_at("signed", server, store_location, wallet))
    (row,) = rows(store_location)
    assert row["state"] == "signed"
    assert row["transaction_b64"]
    other = recoverer(server, store_location)
    try:
        (waiting,) = other.recover_payments()
        assert waiting.state == "signed"  # it could still land
        assert other.budget["SOL"].spent == PRICE + FEE
        clock.now += 61  # past its blockhash's last valid height
        (released,) = other.recover_payments()
        assert (released.state, released.landed) == ("failed", False)
        assert other.budget["SOL"].spent == 0
    finally:
        other.close()
    assert gateway.balance(wallet.pubkey()) == 1
    assert gateway.desk.settlements == []


# -- two recoverers at once ----------------------------------------------------------------------


def test_two_recoverers_at_once_recover_once(
    clocked: tuple[GatewayServer, FakeClock], journal_url: str
) -> None:
    """Two processes recover at once: while the first holds the recovery lock, the second
    returns [] and changes nothing; the first books the settled payment, counted once."""
    server, _clock = clocked
    gateway = server.gateway
    wallet = funded(gateway)
    kill(stopped_at("answered", server, journal_url, wallet))
    job = {"rpc_url": server.rpc_url, "journal": journal_url}
    first = start("tests.workers.recoverer", {**job, "hold": True})
    try:
        assert first.stdout is not None
        assert first.stdout.readline().strip() == "recovering", first.communicate()[1]
        second = start("tests.workers.recoverer", job)
        out, errors = second.communicate(timeout=60)
        assert (second.returncode, json.loads(out)) == (0, []), errors
        assert [r["state"] for r in rows(journal_url)] == ["signed"]
        out, errors = first.communicate("go\n", timeout=60)
        assert first.returncode == 0, errors
        ((_entry_id, state, landed),) = json.loads(out.splitlines()[-1])
        assert (state, landed) == ("accepted", True)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert [r["state"] for r in rows(journal_url)] == ["accepted"]
    with psycopg.connect(journal_url) as db:
        (spent,) = db.execute("SELECT spent FROM totals WHERE currency_key = 'SOL'").fetchone() or (
            0,
        )
    assert Decimal(spent) == PRICE + FEE == Decimal(1) - gateway.balance(wallet.pubkey())
