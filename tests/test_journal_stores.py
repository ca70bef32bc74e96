"""The journal's two stores, SQLite and PostgreSQL, behave alike: the same tests run on both
(``store_location``), with real files and a real PostgreSQL server; and a database URL is never
taken for a file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent, PaymentError, SDKConfigurationError
from human_rpc_sdk._io.journal import Journal
from human_rpc_sdk._io.store import JournalStore, open_journal
from human_rpc_sdk._offer import PaymentOffer
from human_rpc_sdk._records import Existing, OverBudget, Reserved
from human_rpc_sdk._settings import is_database_url

ROOT = Path(__file__).resolve().parent.parent


def offer(url: str = "https://shop.example/a", amount: str = "1", **extra: object) -> PaymentOffer:
    fields: dict[str, object] = {
        "url": url,
        "amount": Decimal(amount),
        "currency": "USDC",
        "mint": "mint",
        "recipient": "shop",
        "destination": "shop-ata",
        "reference": None,
        "network": "devnet",
        "payer": "me",
        "atomic_amount": int(Decimal(amount) * 10**6),
        "format": "x402",
    }
    fields.update(extra)
    return PaymentOffer(**fields)  # type: ignore[arg-type]


@pytest.fixture
def store(store_location: str) -> Iterator[JournalStore]:
    journal = open_journal(store_location)
    yield journal
    journal.close()


def reserve(
    store: JournalStore, invoice: str | None, amount: str = "1", budget: str | None = "3"
) -> Reserved | Existing | OverBudget:
    return store.reserve(
        offer(amount=amount),
        currency_key="USDC",
        invoice_key=invoice,
        budget=None if budget is None else Decimal(budget),
    )


def test_both_stores_implement_the_interface(store: JournalStore) -> None:
    assert isinstance(store, JournalStore)


def test_a_payment_moves_through_its_states(store: JournalStore) -> None:
    made = reserve(store, "inv-1")
    assert isinstance(made, Reserved)
    entry = made.entry
    assert (entry.state, entry.invoice_key, entry.receipt.amount) == (
        "reserved",
        "inv-1",
        Decimal(1),
    )
    signed = store.mark(
        entry.id,
        "signed",
        {"signature": "sig", "headers": {"X-PAYMENT": "p"}, "transaction_b64": "dHg="},
        expect=("reserved",),
    )
    assert signed is not None
    assert (signed.state, signed.headers, signed.transaction) == (
        "signed",
        {"X-PAYMENT": "p"},
        "dHg=",
    )
    done = store.mark(entry.id, "accepted", {"http_status": 200, "settled": True}, durable=False)
    assert done is not None
    assert (done.state, done.receipt.http_status, done.receipt.settled) == ("accepted", 200, True)
    assert [e.id for e in store.entries()] == [entry.id]
    assert [e.id for e in store.entries(["accepted"])] == [entry.id]
    assert store.entries(["signed"]) == []
    found = store.find("inv-1")
    assert found is not None
    assert found.id == entry.id
    assert store.paid_for("https://shop.example/a", "me", "devnet") is not None
    assert [e.id for e in store.payments("me", "devnet")] == [entry.id]
    assert store.payments("me", "devnet", after=entry.id) == []


def test_an_invoice_is_reserved_once(store: JournalStore) -> None:
    first = reserve(store, "inv-1")
    assert isinstance(first, Reserved)
    again = reserve(store, "inv-1")
    assert isinstance(again, Existing)
    assert again.entry.id == first.entry.id


def test_a_move_from_an_unexpected_state_is_refused(store: JournalStore) -> None:
    made = reserve(store, "inv-1")
    assert isinstance(made, Reserved)
    assert store.mark(made.entry.id, "failed", {"error": "x"}, expect=("reserved",)) is not None
    assert store.mark(made.entry.id, "signed", {"signature": "s"}, expect=("reserved",)) is None
    assert store.find("inv-1") is None  # a failed payment frees its invoice


def test_the_budget_counts_reservations_and_releases_failures(store: JournalStore) -> None:
    for invoice in ("a", "b", "c"):
        assert isinstance(reserve(store, invoice), Reserved)
    over = reserve(store, "d")
    assert isinstance(over, OverBudget)
    assert (over.spent, over.limit, over.currency_key, over.cost) == (
        Decimal(3),
        Decimal(3),
        "USDC",
        Decimal(1),
    )
    line = store.budget("devnet", {"USDC": Decimal(3)})["USDC"]
    assert (line.limit, line.spent, line.remaining) == (Decimal(3), Decimal(3), Decimal(0))
    first = store.find("a")
    assert first is not None
    store.mark(first.id, "failed", {"error": "could not be signed"}, expect=("reserved",))
    assert store.budget("devnet", {"USDC": Decimal(3)})["USDC"].spent == 2
    assert isinstance(reserve(store, "d"), Reserved)


def test_raises_add_up_and_lift_the_ceiling(store: JournalStore) -> None:
    assert isinstance(reserve(store, "a", amount="3"), Reserved)
    assert isinstance(reserve(store, "b"), OverBudget)
    store.raise_budget("devnet", {"USDC": Decimal("0.5")})
    store.raise_budget("devnet", {"USDC": Decimal("0.5")})
    assert store.budget("devnet", {"USDC": Decimal(3)})["USDC"].limit == 4
    assert isinstance(reserve(store, "b"), Reserved)


def test_fees_count_against_the_sol_budget(store: JournalStore) -> None:
    made = store.reserve(
        offer(fee_lamports=5000),
        currency_key="USDC",
        invoice_key="a",
        budget=None,
        sol_budget=Decimal("0.000005"),
    )
    assert isinstance(made, Reserved)
    assert store.budget("devnet", {})["SOL"].spent == Decimal("0.000005")
    over = store.reserve(
        offer(fee_lamports=5000),
        currency_key="USDC",
        invoice_key="b",
        budget=None,
        sol_budget=Decimal("0.000005"),
    )
    assert isinstance(over, OverBudget)
    assert over.currency_key == "SOL"


def test_unsettled_and_resumable_rows(store: JournalStore) -> None:
    made = reserve(store, "a", budget=None)
    assert isinstance(made, Reserved)
    store.mark(made.entry.id, "signed", {"signature": "s", "resume_key": "k"})
    assert [e.id for e in store.unsettled()] == [made.entry.id]
    assert store.resumable(["k"]) is None  # this process is sending it
    assert store.resumable(["k"], abandoned_after=-1) is not None
    store.mark(made.entry.id, "accepted", {"landed": True, "http_status": 200})
    assert store.unsettled() == []
    assert store.resumable(["k"], abandoned_after=-1) is None


@contextlib.contextmanager
def held(location: str) -> Iterator[None]:
    """Another connection holds the journal locked (SQLite's write lock; PostgreSQL's row
    locks on the running totals and the payments) until the block ends."""
    if is_database_url(location):
        import psycopg

        with psycopg.connect(location) as server:
            server.execute("SELECT * FROM totals FOR UPDATE")
            server.execute("SELECT * FROM payments FOR UPDATE")
            yield
            server.rollback()
    else:
        db = sqlite3.connect(location, isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            db.execute("ROLLBACK")
            db.close()


def test_an_outcome_kept_from_a_failed_write_is_written_next(
    store: JournalStore, store_location: str
) -> None:
    """The server answered but the journal is held: the outcome is kept in the process and
    written before the next write that succeeds; meanwhile no new payment is reserved."""
    made = reserve(store, "a", budget=None)
    assert isinstance(made, Reserved)
    store.mark(made.entry.id, "signed", {"signature": "s"})
    with held(store_location):
        with pytest.raises(PaymentError) as caught:
            store.mark(
                made.entry.id, "accepted", {"http_status": 200}, keep=True, busy_seconds=0.05
            )
        assert caught.value.reason == "journal_unavailable"
        assert [e.state for e in store.entries()] == ["signed"]
    store.flush()
    (entry,) = store.entries()
    assert (entry.state, entry.receipt.http_status) == ("accepted", 200)


# -- the store a location names ---------------------------------------------------------------


def test_a_sqlite_location_opens_the_sqlite_journal(tmp_path: Path) -> None:
    journal = open_journal(str(tmp_path / "j.sqlite3"))
    assert isinstance(journal, Journal)
    journal.close()


NO_PSYCOPG = """
import sys
sys.modules["psycopg"] = None  # as if the postgres extra were not installed
from solders.keypair import Keypair
from human_rpc_sdk import AutoAgent, PaymentError, SDKConfigurationError
try:
    AutoAgent(Keypair(), **{kwargs})
except SDKConfigurationError as exc:
    print(exc.parameter, "|", exc)
"""


@pytest.mark.parametrize(
    ("kwargs", "env"),
    [
        ({"journal_path": "postgresql://app:secret@db.example/payments"}, {}),
        ({"journal_path": "postgres://app:secret@db.example/payments"}, {}),
        ({"journal_url": "postgresql://app:secret@db.example/payments"}, {}),
        ({}, {"HUMAN_RPC_JOURNAL": "postgresql://app:secret@db.example/payments"}),
    ],
)
def test_a_database_url_without_the_postgres_extra_is_a_configuration_error(
    tmp_path: Path, kwargs: dict[str, str], env: dict[str, str]
) -> None:
    """Not a relative SQLite path (a folder ``postgresql:`` and a budget per process): an
    error saying what to install, without the password."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    done = subprocess.run(
        [sys.executable, "-c", NO_PSYCOPG.replace("{kwargs}", repr(kwargs))],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.startswith("journal_path |"), done.stdout + done.stderr
    assert "pip install 'human-rpc-sdk[postgres]'" in done.stdout
    assert "secret" not in done.stdout
    assert "app:***@db.example" in done.stdout
    assert list(tmp_path.iterdir()) == []  # no folder named postgresql: (or postgres:)


def test_an_unreachable_database_is_a_configuration_error_and_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SDKConfigurationError, match="cannot open the payment journal") as caught:
        open_journal("postgresql://nobody:pw@127.0.0.1:1/none?connect_timeout=2")
    assert "pw" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_journal_url_must_be_a_database_url_and_not_with_journal_path(tmp_path: Path) -> None:
    with pytest.raises(SDKConfigurationError, match="journal_url must be a PostgreSQL URL"):
        AutoAgent(Keypair(), journal_url=str(tmp_path / "j.sqlite3"))
    with pytest.raises(SDKConfigurationError, match="not both"):
        AutoAgent(Keypair(), journal_url="postgresql://h/db", journal_path=tmp_path / "j")


def test_an_agent_keeps_its_journal_in_the_database(journal_url: str) -> None:
    agent = AutoAgent(Keypair(), journal_url=journal_url, budget={"SOL": "0.5"})
    try:
        assert agent.budget["SOL"].limit == Decimal("0.5")
        assert agent.payments == []
    finally:
        agent.close()


# -- PostgreSQL only: leases, migrations -------------------------------------------------------


def expire_leases(url: str) -> None:
    """The database's clock moved past every reservation's lease (as after a worker died)."""
    import psycopg

    with psycopg.connect(url) as db:
        db.execute(
            "UPDATE payments SET expires_at = now() - interval '1 second' WHERE state = 'reserved'"
        )


def test_an_expired_reservation_is_released_by_any_machine(journal_url: str) -> None:
    """A worker that died holding a reservation: another's recovery gives its budget back, and
    should the worker come back to sign, it finds its reservation gone and sends nothing."""
    worker, other = open_journal(journal_url), open_journal(journal_url)
    try:
        held_ = reserve(worker, "a", amount="3")
        assert isinstance(held_, Reserved)
        assert isinstance(reserve(other, "b"), OverBudget)
        assert [e.id for e in other.unsettled()] == [held_.entry.id]  # its lease holds
        expire_leases(journal_url)
        assert other.unsettled() == []  # released, nothing left for the chain to tell
        (released,) = other.entries()
        assert (released.state, released.receipt.landed) == ("failed", False)
        assert "lease expired" in (released.receipt.error_reason or "")
        assert other.budget("devnet", {"USDC": Decimal(3)})["USDC"].spent == 0
        assert (
            worker.mark(held_.entry.id, "signed", {"signature": "s"}, expect=("reserved",)) is None
        )
        assert isinstance(reserve(other, "b"), Reserved)
    finally:
        worker.close()
        other.close()


def test_moves_that_count_nothing_do_not_wait_for_the_totals(journal_url: str) -> None:
    """A fleet's reservations of one currency take turns on its running totals; a payment's
    ``signed`` (fsynced) and its outcome change nothing counted, so they do not queue behind
    them. A move that changes what is counted (failed) still waits for the totals."""
    import psycopg

    store = open_journal(journal_url)
    try:
        made = reserve(store, "a", budget=None)
        assert isinstance(made, Reserved)
        with psycopg.connect(journal_url) as reserving:  # a reservation in progress elsewhere
            reserving.execute("SELECT * FROM totals FOR UPDATE")
            signed = store.mark(
                made.entry.id, "signed", {"signature": "s"}, expect=("reserved",), busy_seconds=1
            )
            accepted = store.mark(made.entry.id, "accepted", {"http_status": 200}, busy_seconds=1)
            assert signed is not None
            assert accepted is not None
            assert accepted.state == "accepted"
            with pytest.raises(PaymentError) as caught:
                store.mark(made.entry.id, "failed", busy_seconds=0.2)
            assert caught.value.reason == "journal_unavailable"
            reserving.rollback()
        assert store.budget("devnet", {})["USDC"].spent == 1
    finally:
        store.close()


def test_a_failed_row_moved_back_is_counted_again(journal_url: str) -> None:
    """A move that counts nothing for a live row counts again for a failed one (released by
    its lease, then found landed): the row is not updated alone, the totals follow it."""
    store = open_journal(journal_url)
    try:
        made = reserve(store, "a", budget=None)
        assert isinstance(made, Reserved)
        expire_leases(journal_url)
        assert store.unsettled() == []  # released: failed, nothing counted
        assert store.budget("devnet", {})["USDC"].spent == 0
        moved = store.mark(made.entry.id, "accepted", {"http_status": 200})
        assert moved is not None
        assert moved.state == "accepted"
        assert store.budget("devnet", {})["USDC"].spent == 1
        assert store.mark(made.entry.id, "submitted", expect=("failed",)) is None
    finally:
        store.close()


def test_a_signed_payment_is_never_released_by_its_lease(journal_url: str) -> None:
    store = open_journal(journal_url)
    try:
        made = reserve(store, "a")
        assert isinstance(made, Reserved)
        store.mark(made.entry.id, "signed", {"signature": "s"}, expect=("reserved",))
        expire_leases(journal_url)
        (entry,) = store.unsettled()
        assert entry.state == "signed"
        assert store.budget("devnet", {})["USDC"].spent == 1
    finally:
        store.close()


def test_processes_opening_a_new_database_at_once_migrate_it_once(journal_url: str) -> None:
    """The schema is made in one transaction under an advisory lock: 8 processes opening an
    empty database together all succeed, and find one schema."""
    import psycopg

    from human_rpc_sdk._io.postgres import SCHEMA_VERSION

    script = (
        "import sys\nfrom human_rpc_sdk._io.store import open_journal\n"
        "sys.stdin.readline()\nopen_journal(sys.argv[1]).close()\nprint('opened')\n"
    )
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    openers = [
        subprocess.Popen(
            [sys.executable, "-c", script, journal_url],
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    for opener in openers:  # the imports done, all start together
        assert opener.stdin is not None
        opener.stdin.write("go\n")
        opener.stdin.flush()
    for opener in openers:
        out, errors = opener.communicate(timeout=60)
        assert (opener.returncode, out.strip()) == (0, "opened"), errors
    with psycopg.connect(journal_url) as db:
        assert db.execute("SELECT version FROM human_rpc_schema").fetchall() == [(SCHEMA_VERSION,)]


def test_a_database_from_a_newer_sdk_is_refused(journal_url: str) -> None:
    import psycopg

    open_journal(journal_url).close()
    with psycopg.connect(journal_url) as db:
        db.execute("UPDATE human_rpc_schema SET version = 99")
    with pytest.raises(SDKConfigurationError, match="newer human-rpc-sdk"):
        open_journal(journal_url)


def test_ages_are_measured_on_the_database_clock(journal_url: str) -> None:
    """Machines' clocks differ: a row's age (what recovery and resuming judge by) is read on
    the database's clock, which stamped it, whatever the local clock says."""
    from datetime import UTC, datetime

    from human_rpc_sdk._io.postgres import PostgresJournal

    ahead = PostgresJournal(journal_url, clock=lambda: datetime(2100, 1, 1, tzinfo=UTC))
    try:
        made = reserve(ahead, "a")
        assert isinstance(made, Reserved)
        assert made.entry.age < 60
        (entry,) = ahead.entries()
        assert entry.age < 60
    finally:
        ahead.close()


def test_a_refused_reservation_loses_no_outcome_kept_before_it(
    store: JournalStore, store_location: str
) -> None:
    """An outcome kept from a failed write goes in with the next write; a reservation the
    budget refuses rolls back its own work, never that outcome."""
    made = reserve(store, "a", amount="3")
    assert isinstance(made, Reserved)
    store.mark(made.entry.id, "signed", {"signature": "s"})
    with held(store_location), pytest.raises(PaymentError):
        store.mark(made.entry.id, "accepted", {"http_status": 200}, keep=True, busy_seconds=0.05)
    assert isinstance(reserve(store, "b"), OverBudget)
    store.flush()
    (entry,) = store.entries()
    assert (entry.state, entry.receipt.http_status) == ("accepted", 200)


def test_one_recoverer_at_a_time(journal_url: str) -> None:
    """While one process recovers, another's recover_payments() leaves the journal to it; once
    it is done, the other recovers (here: releases a reservation whose lease expired)."""
    from human_rpc_sdk import AsyncAutoAgent

    worker = open_journal(journal_url)
    agent = AutoAgent(Keypair(), journal_url=journal_url)
    try:
        assert isinstance(reserve(worker, "a"), Reserved)
        expire_leases(journal_url)
        with worker.recovering() as mine:
            assert mine
            with agent._journal.recovering() as theirs:
                assert not theirs
            assert agent.recover_payments() == []
            (entry,) = worker.entries()
            assert entry.state == "reserved"  # left to the recoverer
        agent.recover_payments()
        (entry,) = worker.entries()
        assert entry.state == "failed"
    finally:
        agent.close()
        worker.close()

    async def recover_while_held() -> list[object]:
        async_agent = AsyncAutoAgent(Keypair(), journal_url=journal_url)
        other = open_journal(journal_url)
        try:
            with other.recovering() as held_:
                assert held_
                return list(await async_agent.recover_payments())
        finally:
            await async_agent.aclose()
            other.close()

    assert asyncio.run(recover_while_held()) == []


def test_sqlite_recoverers_may_run_together(tmp_path: Path) -> None:
    journal = open_journal(str(tmp_path / "j.sqlite3"))
    try:
        with journal.recovering() as first, journal.recovering() as second:
            assert (first, second) == (True, True)
    finally:
        journal.close()


@contextlib.contextmanager
def database_down(url: str) -> Iterator[None]:
    """The journal's database unreachable: new connections refused, open ones cut."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True)
    try:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (name,),
        )
        yield
    finally:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin.close()


def test_a_database_down_fails_closed_and_loses_no_outcome(journal_url: str) -> None:
    """Down: no reservation (so nothing is signed), an outcome the server told is kept; back:
    the outcome is written first and payments go on. (Down, each call waits one second for a
    connection; back, as long as the pool's reconnection takes, up to the usual bound.)"""
    from human_rpc_sdk._io.postgres import WAIT_SECONDS, PostgresJournal

    store = PostgresJournal(journal_url, wait_seconds=1)
    try:
        made = reserve(store, "a", budget=None)
        assert isinstance(made, Reserved)
        store.mark(made.entry.id, "signed", {"signature": "s"})
        with database_down(journal_url):
            with pytest.raises(PaymentError) as refused:
                reserve(store, "b", budget=None)
            assert refused.value.reason == "journal_unavailable"
            with pytest.raises(PaymentError) as kept:
                store.mark(made.entry.id, "accepted", {"http_status": 200}, keep=True)
            assert kept.value.reason == "journal_unavailable"
        store.wait_seconds = WAIT_SECONDS
        assert isinstance(reserve(store, "b", budget=None), Reserved)
        first, second = store.entries()
        assert (first.state, first.receipt.http_status) == ("accepted", 200)
        assert second.state == "reserved"
    finally:
        store.close()


def test_journal_wait_from_the_environment(
    journal_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fleet configured by its environment alone sets the wait there too; a bad value is a
    configuration error naming the variable, and the keyword wins over it."""
    monkeypatch.setenv("HUMAN_RPC_JOURNAL_WAIT", "2.5")
    agent = AutoAgent(Keypair(), journal_url=journal_url)
    keyword = AutoAgent(Keypair(), journal_url=journal_url, journal_wait=4)
    try:
        assert agent._journal.wait_seconds == 2.5  # type: ignore[attr-defined]
        assert keyword._journal.wait_seconds == 4  # type: ignore[attr-defined]
    finally:
        agent.close()
        keyword.close()
    for bad in ("soon", "0", "-3", "nan", "inf"):
        monkeypatch.setenv("HUMAN_RPC_JOURNAL_WAIT", bad)
        with pytest.raises(SDKConfigurationError) as caught:
            AutoAgent(Keypair(), journal_url=journal_url)
        assert caught.value.parameter == "journal_wait"
        assert "$HUMAN_RPC_JOURNAL_WAIT must be a positive number of seconds" in str(caught.value)
