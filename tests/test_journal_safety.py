"""The journal under attack and under load: a second user on the host, a journal another
process holds locked, a huge history, an older schema, and an RPC node of another chain.

Every money-moving test checks the ledger and the journal rows (read by a separate
connection, as another process would).
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from solders.keypair import Keypair

from human_rpc_sdk import (
    AutoAgent,
    NetworkMismatchError,
    PaymentError,
    PendingPaymentsWarning,
    SDKConfigurationError,
)
from human_rpc_sdk._io.journal import SCHEMA_VERSION, Journal
from human_rpc_sdk._networks import GENESIS_HASHES
from human_rpc_sdk._offer import PaymentOffer
from human_rpc_sdk._receipts import STATES
from human_rpc_sdk._records import OverBudget, Reserved
from stub_gateway import GatewayServer, serve_in_thread

from .conftest import FakeClock, PaymentCapture, sqlite_of

PRICE = Decimal("0.001")  # premium/sol
FEE = Decimal("0.000005")


def rows(path: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM payments ORDER BY id")]


def offer(
    amount: str = "0.001", currency: str = "SOL", fee_lamports: int = 5000, replaces: Any = None
) -> PaymentOffer:
    mint = None if currency == "SOL" else "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU"
    return PaymentOffer(
        url="http://shop/item",
        amount=Decimal(amount),
        currency=currency,
        mint=mint,
        recipient=str(Keypair().pubkey()),
        destination=str(Keypair().pubkey()),
        network="devnet",
        payer=str(Keypair().pubkey()),
        format="humanrpc",
        atomic_amount=int(Decimal(amount).scaleb(9 if mint is None else 6)),
        fee_lamports=fee_lamports,
        replaces=replaces,
    )


# -- running totals -------------------------------------------------------------------------------


def recount(path: Path | str, db: sqlite3.Connection | None = None) -> dict[str, Decimal]:
    """What the budget must say, counted from every row the slow way."""
    own = db is None
    db = db or sqlite3.connect(path)
    spent: dict[str, Decimal] = {}
    for key, amount, state, fee, rent, proof in db.execute(
        "SELECT currency_key, amount, state, fee_lamports, rent_lamports, landed_proof "
        "FROM payments"
    ):
        if state == "failed":  # nothing moved, but a transaction that ran paid its fee
            if fee and (proof or "").startswith("failed on chain"):
                spent["SOL"] = spent.get("SOL", Decimal(0)) + Decimal(fee) / 10**9
            continue
        spent[key] = spent.get(key, Decimal(0)) + Decimal(amount)
        if fee + rent:
            spent["SOL"] = spent.get("SOL", Decimal(0)) + Decimal(fee + rent) / 10**9
    if own:
        db.close()
    return {k: v for k, v in spent.items() if v}


operation = st.one_of(
    st.tuples(
        st.just("reserve"),
        st.sampled_from(["SOL", "USDC"]),
        st.decimals(min_value=Decimal("0.000001"), max_value=Decimal(5), places=6),
        st.integers(min_value=0, max_value=2_100_000),
        st.booleans(),
    ),
    st.tuples(
        st.just("mark"),
        st.integers(0, 30),
        st.sampled_from(STATES),
        st.integers(0, 3_000_000),
        st.sampled_from([None, "failed on chain at slot 9: hook", "expired at height 900"]),
    ),
)


# Property (journal): the running totals the budget reads are always a recount of the rows.
@given(st.lists(operation, max_size=25))
def test_running_totals_always_equal_a_recount(ops: list[tuple[Any, ...]]) -> None:
    """Property: whatever reservations, state changes, fee changes, proofs and replacements
    happen, the running totals the budget reads equal a recount of every row (a payment that
    failed on chain still counts its network fee)."""
    journal = Journal(":memory:")
    ids: list[int] = []
    for op in ops:
        if op[0] == "reserve":
            _, currency, amount, lamports, replacing = op
            replaces = ids[-1] if replacing and ids else None
            made = journal.reserve(
                offer(str(amount), currency, lamports, replaces),
                currency_key=currency,
                invoice_key=None,
                budget=None,
            )
            assert isinstance(made, Reserved)
            ids.append(made.entry.id)
        elif ids:
            _, index, state, fee, proof = op
            journal.mark(ids[index % len(ids)], state, {"fee_lamports": fee, "landed_proof": proof})
    budget = {k: line.spent for k, line in journal.budget("devnet", {}).items() if line.spent}
    assert budget == recount(":memory:", journal._db)


def test_reserving_reads_no_history(tmp_path: Path) -> None:
    """Reserving and marking run only indexed look-ups: no statement scans the payments
    table, so the work per payment does not grow with the history."""
    journal = Journal(tmp_path / "j.sqlite3")
    for _ in range(20):
        journal.reserve(offer(), currency_key="SOL", invoice_key=None, budget=Decimal(100))
    statements: list[str] = []
    journal._db.set_trace_callback(statements.append)
    made = journal.reserve(
        offer(), currency_key="SOL", invoice_key="inv", budget=Decimal(100), sol_budget=None
    )
    assert isinstance(made, Reserved)
    journal.mark(made.entry.id, "failed", expect=("reserved",))
    journal._db.set_trace_callback(None)
    plans = []
    for sql in statements:
        if sql.split()[0].upper() in ("SELECT", "UPDATE", "INSERT"):
            # The traced text has the values in; SQLite sometimes renders a REAL as NaN there.
            text = re.sub(r"\bNaN\b", "0", sql)
            plan = journal._db.execute(f"EXPLAIN QUERY PLAN {text}").fetchall()
            plans += [row[-1] for row in plan]
    assert plans, statements
    assert not [p for p in plans if p.startswith("SCAN payments")], plans
    journal.close()


def test_the_budget_counts_fees_and_rent_in_sol(tmp_path: Path) -> None:
    """A token payment's network fee and rent count against the SOL budget: a payment whose
    fee and rent would cross it is refused before anything is signed."""
    journal = Journal(tmp_path / "j.sqlite3")
    first = journal.reserve(
        offer("1", "USDC", fee_lamports=2_044_280),  # fee + rent of a new token account
        currency_key="USDC",
        invoice_key=None,
        budget=Decimal(10),
        sol_budget=Decimal("0.003"),
    )
    assert isinstance(first, Reserved)
    over = journal.reserve(
        offer("1", "USDC", fee_lamports=2_044_280),
        currency_key="USDC",
        invoice_key=None,
        budget=Decimal(10),
        sol_budget=Decimal("0.003"),
    )
    assert over == OverBudget(Decimal("0.00204428"), Decimal("0.003"), "SOL", Decimal("0.00204428"))
    lines = journal.budget("devnet", {})
    assert (lines["USDC"].spent, lines["SOL"].spent) == (Decimal(1), Decimal("0.00204428"))
    journal.close()


# -- an older journal ---------------------------------------------------------------------------

V1_SCHEMA = """
CREATE TABLE payments (
    id INTEGER PRIMARY KEY AUTOINCREMENT, invoice_key TEXT, state TEXT NOT NULL,
    created TEXT NOT NULL, updated TEXT NOT NULL, updated_unix REAL NOT NULL, url TEXT NOT NULL,
    network TEXT NOT NULL, format TEXT NOT NULL, currency TEXT NOT NULL,
    currency_key TEXT NOT NULL, amount TEXT NOT NULL, atomic_amount TEXT NOT NULL, mint TEXT,
    recipient TEXT NOT NULL, destination TEXT NOT NULL, reference TEXT, payer TEXT NOT NULL,
    fee_lamports INTEGER NOT NULL DEFAULT 0, rent_lamports INTEGER NOT NULL DEFAULT 0,
    signature TEXT, fee_payer TEXT, blockhash TEXT, transaction_b64 TEXT, headers TEXT,
    http_status INTEGER, settled INTEGER, error TEXT, landed INTEGER,
    replaces INTEGER REFERENCES payments(id), pid INTEGER, host TEXT, process TEXT
);
CREATE UNIQUE INDEX payments_one_per_invoice
    ON payments(invoice_key) WHERE invoice_key IS NOT NULL AND state != 'failed';
"""


def v1_journal(path: Path, amounts: list[tuple[str, str, str]]) -> None:
    with sqlite3.connect(path) as db:
        db.executescript(V1_SCHEMA)
        for state, currency, amount in amounts:
            db.execute(
                "INSERT INTO payments (state, created, updated, updated_unix, url, network, "
                "format, currency, currency_key, amount, atomic_amount, recipient, destination, "
                "payer, fee_lamports) VALUES (?, '2026-01-01T00:00:00+00:00', "
                "'2026-01-01T00:00:00+00:00', 0, 'http://x', 'devnet', 'humanrpc', ?, ?, ?, 1, "
                "'r', 'd', 'p', 5000)",
                (state, currency, currency, amount),
            )
        db.execute("PRAGMA user_version=1")
    path.chmod(0o600)


def test_a_version_1_journal_is_migrated_and_its_spending_kept(tmp_path: Path) -> None:
    """A journal written by the previous release: opened, given the new columns and the
    running totals recounted from its rows; what it spent still counts."""
    path = tmp_path / "old.sqlite3"
    v1_journal(
        path,
        [("accepted", "SOL", "0.5"), ("failed", "SOL", "0.25"), ("accepted", "USDC", "2")],
    )
    agent = AutoAgent(Keypair(), journal_path=path, budget={"SOL": "0.5"})
    assert agent.budget["SOL"].spent == Decimal("0.5") + 2 * FEE
    assert agent.budget["USDC"].spent == 2
    assert [r.state for r in agent.payments] == []  # none of them signed by this SDK
    agent.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        columns = {row[1] for row in db.execute("PRAGMA table_info(payments)")}
    assert "genesis_hash" in columns


def test_a_journal_from_a_newer_sdk_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    Journal(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(SDKConfigurationError, match="newer human-rpc-sdk"):
        Journal(path)


def test_opening_a_current_journal_takes_no_write_lock(tmp_path: Path) -> None:
    """Another process holds the journal's write lock: a new agent still opens it at once
    (opening a current schema only reads)."""
    path = tmp_path / "j.sqlite3"
    Journal(path).close()
    with Locker(path):
        journal = Journal(path)
        assert journal.budget("devnet", {}) == {}
        journal.close()


# -- the journal file is its owner's ---------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    made = tmp_path / "state"
    made.mkdir(mode=0o700)
    return made


def refusal(path: Path) -> str:
    with pytest.raises(SDKConfigurationError) as caught:
        AutoAgent(Keypair(), journal_path=path)
    assert caught.value.parameter == "journal_path"
    return str(caught.value)


def test_a_journal_others_can_write_is_refused(folder: Path) -> None:
    """Pre-created mode 0666 by someone else's umask or hand: refused, with the fix."""
    path = folder / "j.sqlite3"
    Journal(path).close()
    path.chmod(0o666)
    text = refusal(path)
    assert "other users can write" in text
    assert "chmod" in text


def test_a_journal_in_a_folder_others_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    assert "folder other users can write" in refusal(shared / "j.sqlite3")
    assert not (shared / "j.sqlite3").exists()


def test_a_symlinked_journal_is_refused(folder: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.sqlite3"
    Journal(target).close()
    (folder / "j.sqlite3").symlink_to(target)
    assert "symbolic link" in refusal(folder / "j.sqlite3")


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file away needs root")


@needs_root
def test_a_journal_owned_by_another_user_is_refused(folder: Path) -> None:
    path = folder / "j.sqlite3"
    Journal(path).close()
    os.chown(path, 65534, 65534)
    assert "owned by another user" in refusal(path)


@needs_root
def test_a_planted_write_ahead_log_is_refused(folder: Path) -> None:
    """Another user's ``-wal`` file beside the journal would feed it rows: refused."""
    path = folder / "j.sqlite3"
    Journal(path).close()
    wal = folder / "j.sqlite3-wal"
    wal.write_bytes(b"")
    os.chown(wal, 65534, 65534)
    assert "owned by another user" in refusal(path)


def test_a_wiped_shared_journal_cannot_reset_the_budget(
    server: GatewayServer, tmp_path: Path
) -> None:
    """The attack: another user pre-creates the journal world-writable, then wipes its rows
    to reset the budget. The agent refuses the journal, so nothing is paid through it."""
    gateway = server.gateway
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    shared = tmp_path / "j.sqlite3"
    shared.touch(mode=0o666)
    shared.chmod(0o666)
    with pytest.raises(SDKConfigurationError):
        AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=shared)
    assert gateway.balance(wallet.pubkey()) == 1


# -- a journal another process holds locked, after the server answered ---------------------------


class Locker:
    """Another process holding the journal's write lock until released."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.process: subprocess.Popen[str] | None = None

    def take(self) -> None:
        script = (
            "import sqlite3, sys\n"
            f"db = sqlite3.connect({str(self.path)!r}, isolation_level=None)\n"
            "db.execute('BEGIN IMMEDIATE')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.readline()\n"
            "db.execute('ROLLBACK')\n"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", script],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "locked"

    def release(self) -> None:
        if self.process is None:
            return
        self.process.communicate("go\n", timeout=30)
        self.process = None

    def __enter__(self) -> Locker:
        self.take()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class LockAfterSettlement:
    """The gateway's sleep for slow answers: the payment has settled; take the journal lock
    (from another process), then let the answer go."""

    def __init__(self) -> None:
        self.locker: Locker | None = None

    def __call__(self, seconds: float) -> None:
        assert self.locker is not None
        self.locker.take()


@pytest.fixture
def locking() -> Iterator[tuple[GatewayServer, LockAfterSettlement]]:
    hook = LockAfterSettlement()
    with serve_in_thread(sleep=hook) as running:
        yield running, hook
        if hook.locker is not None:
            hook.locker.release()


def paying_agent(
    server: GatewayServer, path: Path, sleep: Callable[[float], None]
) -> tuple[Keypair, AutoAgent]:
    wallet = Keypair()
    server.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    agent = AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=path, sleep=sleep)
    return wallet, agent


def test_a_locked_journal_after_settlement_still_returns_the_answer(
    locking: tuple[GatewayServer, LockAfterSettlement],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The journal is locked by another process between the payment and its answer, and
    stays locked: the caller still gets the paid answer (never journal_unavailable, never a
    second payment), with a warning; the outcome is kept in the process and written by the
    next journal write (here recovery's), not lost."""
    server, hook = locking
    path = tmp_path / "j.sqlite3"
    hook.locker = Locker(path)
    pauses = FakeClock()
    wallet, agent = paying_agent(server, path, pauses.sleep)
    capture = PaymentCapture()
    agent.session.mount("http://", capture)
    server.gateway.faults.slow_after_payment(1)
    with caplog.at_level(logging.WARNING, logger="human_rpc_sdk"):
        response = agent.get(f"{server.url}/api/v1/premium/sol")
    assert response.status_code == 200
    assert "could not be journaled" in caplog.text
    assert len(capture.headers) == 1  # sent once: nothing paid again
    assert server.gateway.balance(wallet.pubkey()) == 1 - PRICE - FEE
    hook.locker.release()
    (row,) = rows(path)
    assert row["state"] == "signed"  # the outcome waits in this process for the next write
    assert agent.recover_payments() == []  # which writes it: nothing left to ask the chain
    assert [(r["state"], r["landed"], r["http_status"]) for r in rows(path)] == [
        ("accepted", 1, 200)
    ]
    assert agent.budget["SOL"].spent == PRICE + FEE
    assert server.gateway.balance(wallet.pubkey()) == 1 - PRICE - FEE
    agent.close()


def test_a_journal_lock_released_during_the_retries_records_the_outcome(
    locking: tuple[GatewayServer, LockAfterSettlement], tmp_path: Path
) -> None:
    """Locked when the answer arrives, free again at the first retry: the outcome is
    journaled (accepted), the answer returned, one payment on the ledger."""
    server, hook = locking
    path = tmp_path / "j.sqlite3"
    hook.locker = Locker(path)
    released: list[float] = []

    def pause(seconds: float) -> None:
        released.append(seconds)
        assert hook.locker is not None
        hook.locker.release()

    wallet, agent = paying_agent(server, path, pause)
    server.gateway.faults.slow_after_payment(1)
    assert agent.get(f"{server.url}/api/v1/premium/sol").status_code == 200
    assert len(released) == 1
    assert [(r["state"], r["landed"]) for r in rows(path)] == [("accepted", 1)]
    assert server.gateway.balance(wallet.pubkey()) == 1 - PRICE - FEE
    agent.close()


def test_a_locked_journal_before_sending_stops_the_payment(
    server: GatewayServer, tmp_path: Path
) -> None:
    """Before anything is sent, a journal that cannot be written still stops the payment:
    nothing signed, nothing paid."""
    path = tmp_path / "j.sqlite3"
    wallet, agent = paying_agent(server, path, FakeClock().sleep)
    capture = PaymentCapture()
    agent.session.mount("http://", capture)
    with sqlite3.connect(path) as db:  # a write lock that never ends: the timeout is short
        db.execute("PRAGMA busy_timeout=0")
    sqlite_of(agent)._db.execute("PRAGMA busy_timeout = 50")
    with Locker(path), pytest.raises(PaymentError) as caught:
        agent.get(f"{server.url}/api/v1/premium/sol")
    assert caught.value.reason == "journal_unavailable"
    assert capture.headers == []
    assert server.gateway.balance(wallet.pubkey()) == 1
    agent.close()


# -- the chain is checked, not just the label ----------------------------------------------------


def test_a_devnet_agent_refuses_an_rpc_node_serving_mainnet(tmp_path: Path) -> None:
    """The RPC answers mainnet's genesis hash: NetworkMismatchError before anything is
    signed; nothing moves and nothing is journaled."""
    with serve_in_thread(genesis_hash=GENESIS_HASHES["mainnet-beta"]) as running:
        wallet = Keypair()
        running.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
        path = tmp_path / "j.sqlite3"
        agent = AutoAgent(wallet, rpc_url=running.rpc_url, journal_path=path)
        capture = PaymentCapture()
        agent.session.mount("http://", capture)
        with pytest.raises(NetworkMismatchError) as caught:
            agent.get(f"{running.url}/api/v1/premium/sol")
        assert caught.value.reason == "wrong_chain"
        assert "serves mainnet-beta, not devnet" in str(caught.value)
        assert capture.headers == []
        assert rows(path) == []
        assert running.gateway.balance(wallet.pubkey()) == 1
        agent.close()


def test_a_mainnet_agent_refuses_a_local_chain(tmp_path: Path) -> None:
    """mainnet-beta needs mainnet itself: a local chain (the stub's own genesis) is refused
    even when its invoices say mainnet-beta."""
    with serve_in_thread(network="mainnet-beta") as running:
        wallet = Keypair()
        running.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
        agent = AutoAgent(
            wallet, rpc_url=running.rpc_url, network="mainnet-beta", journal_path=":memory:"
        )
        with pytest.raises(NetworkMismatchError) as caught:
            agent.get(f"{running.url}/api/v1/premium/sol")
        assert "a local chain" in str(caught.value)
        assert running.gateway.genesis_hash in str(caught.value)
        assert running.gateway.balance(wallet.pubkey()) == 1
        agent.close()


def test_recovery_against_another_chain_refuses_to_judge(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A payment made on one chain (row open: its answer never came) is looked up through an
    RPC node of another chain: left open, with a warning naming its chain; budget kept. On
    its own chain, recovery finds it landed."""
    clock = FakeClock()
    with serve_in_thread(clock=clock) as first, serve_in_thread() as other:
        wallet = Keypair()
        first.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
        path = tmp_path / "j.sqlite3"
        agent = AutoAgent(wallet, rpc_url=first.rpc_url, journal_path=path, sleep=FakeClock().sleep)
        first.gateway.faults.arm("drop_after_payment", count=4)
        with pytest.raises(PaymentError) as caught:
            agent.get(f"{first.url}/api/v1/premium/sol")
        assert caught.value.reason == "no_answer_after_payment"
        agent.close()
        (row,) = rows(path)
        assert (row["state"], row["genesis_hash"]) == ("submitted", first.gateway.genesis_hash)

        clock.now += 61  # the blockhash has expired on the first chain, too
        with pytest.warns(PendingPaymentsWarning):
            elsewhere = AutoAgent(wallet, rpc_url=other.rpc_url, journal_path=path)
        with caplog.at_level(logging.WARNING, logger="human_rpc_sdk"):
            (judged,) = elsewhere.recover_payments()
        assert (judged.state, judged.landed) == ("submitted", None)
        assert first.gateway.genesis_hash in caplog.text
        assert elsewhere.budget["SOL"].spent == PRICE + FEE
        elsewhere.close()

        with pytest.warns(PendingPaymentsWarning):  # still open
            home = AutoAgent(wallet, rpc_url=first.rpc_url, journal_path=path)
        (found,) = home.recover_payments()
        assert (found.state, found.landed) == ("accepted", True)
        assert first.gateway.balance(wallet.pubkey()) == 1 - PRICE - FEE
        home.close()


def test_the_genesis_hash_rides_each_blockhash_fetch(server: GatewayServer) -> None:
    """The chain check costs no extra round trip: it rides the batch that fetches a blockhash
    (the chain a payment over that blockhash can land on), and only that batch."""
    wallet = Keypair()
    server.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    agent = AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=":memory:")
    agent._cache.account_ttl = 0  # accounts never cached: every payment reads the chain
    bodies: list[bytes] = []

    class Recording(requests.adapters.HTTPAdapter):
        def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
            body = request.body
            bodies.append(body if isinstance(body, bytes) else str(body).encode())
            return super().send(request, **kwargs)

    agent._rpc.session.mount("http://", Recording())
    for _ in range(3):
        assert agent.get(f"{server.url}/api/v1/premium/sol").status_code == 200
    assert len(bodies) == 3  # one round trip per payment
    assert sum(b"getGenesisHash" in body for body in bodies) == 1  # the blockhash is reused
    assert b"getGenesisHash" in bodies[0]
    assert [b"getGenesisHash" in body for body in bodies] == [
        b"getLatestBlockhash" in body for body in bodies
    ]
    agent.close()


def test_a_version_3_journal_gains_the_totals_triggers(tmp_path: Path) -> None:
    """Schema 4: a journal of schema 3 (no trigger on the totals) gains them on opening, so a
    later hand edit of a total is recounted from the payments before the budget is read."""
    path = tmp_path / "v3.sqlite3"
    journal = Journal(path)
    journal.reserve(offer("0.25"), currency_key="SOL", invoice_key=None, budget=None)
    journal.close()
    with sqlite3.connect(path) as db:
        for event in ("inserted", "updated", "deleted"):
            db.execute(f"DROP TRIGGER totals_{event}")
        db.execute("PRAGMA user_version=3")
    Journal(path).close()  # the upgrade
    with sqlite3.connect(path) as db:
        triggers = {
            row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        }
        db.execute("UPDATE totals SET spent = '0'")
    assert {"totals_inserted", "totals_updated", "totals_deleted"} <= triggers
    journal = Journal(path)
    over = journal.reserve(offer("0.8"), currency_key="SOL", invoice_key=None, budget=Decimal(1))
    assert isinstance(over, OverBudget)  # 0.25 + its fee recounted, plus 0.8: over 1
    assert over.spent == Decimal("0.250005")
    journal.close()
