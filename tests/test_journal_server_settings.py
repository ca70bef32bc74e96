"""The fleet's PostgreSQL journal on servers configured the ways operators configure them:
``default_transaction_isolation = 'serializable'`` set on the database (the journal's row locks
still keep reservations apart, and a reservation that waited for one goes through rather than
failing as "the database down"); a database made read-only (fails closed, saying so); a user
allowed only to read and write the tables their owner made. Real servers of the test's own."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent, PaymentError, SDKConfigurationError
from human_rpc_sdk._io.postgres import PostgresJournal
from human_rpc_sdk._io.store import open_journal
from human_rpc_sdk._records import OverBudget, Reserved
from stub_gateway import GatewayServer

from .postgres_server import OwnServer, ServerUnavailable, own_server
from .workers.forked import offer

PRICE = Decimal("0.001")
FEE = Decimal("0.000005")


@pytest.fixture
def serializable() -> Iterator[OwnServer]:
    """A server whose every transaction is SERIALIZABLE unless it says otherwise."""
    try:
        with own_server({"default_transaction_isolation": "serializable"}, tcp=False) as running:
            yield running
    except ServerUnavailable as exc:
        pytest.skip(str(exc))


def reserve(journal: PostgresJournal, budget: str) -> Reserved | OverBudget:
    made = journal.reserve(offer(), currency_key="USDC", invoice_key=None, budget=Decimal(budget))
    assert isinstance(made, Reserved | OverBudget)
    return made


def test_a_reservation_that_waited_for_the_totals_lock_goes_through(
    serializable: OwnServer,
) -> None:
    """Another transaction holds the USDC totals' lock and updates them; a reservation waits
    for it; the other commits. Under SERIALIZABLE the reservation failed ("could not serialize
    access due to concurrent update") as journal_unavailable, telling the operator to check
    that the server runs; the journal's transactions are READ COMMITTED, so it goes through,
    counted once."""
    url = serializable.url()
    journal = open_journal(url)
    assert isinstance(journal, PostgresJournal)
    try:
        assert isinstance(reserve(journal, "10"), Reserved)  # the totals row exists
        outcome: list[object] = []
        with psycopg.connect(url) as other:
            other.execute("SELECT spent FROM totals WHERE currency_key = 'USDC' FOR UPDATE")
            other.execute("UPDATE totals SET spent = spent WHERE currency_key = 'USDC'")
            waiting = threading.Thread(
                target=lambda: outcome.append(_outcome(journal, "10")), daemon=True
            )
            waiting.start()
            with psycopg.connect(url, autocommit=True) as watch:  # until it waits on the lock
                while not watch.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE '%%FROM totals%%'"
                ).fetchone():
                    assert waiting.is_alive(), outcome
            other.commit()
            waiting.join()
        assert [type(made).__name__ for made in outcome] == ["Reserved"], outcome
        with psycopg.connect(url) as db:
            (spent,) = db.execute(  # type: ignore[misc]
                "SELECT spent FROM totals WHERE currency_key = 'USDC'"
            ).fetchone()
        assert Decimal(spent) == 2
    finally:
        journal.close()


def _outcome(journal: PostgresJournal, budget: str) -> object:
    try:
        return reserve(journal, budget)
    except PaymentError as exc:
        return exc


def test_sixteen_threads_on_four_journals_spend_the_budget_exactly(
    serializable: OwnServer,
) -> None:
    """4 journals (as 4 machines) x 4 threads x 10 reservations, each released at once, then
    a budget of 25 filled: no reservation or release fails, the totals equal the rows."""
    url = serializable.url()
    journals = [open_journal(url) for _ in range(4)]
    results: Counter[str] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(16)

    def work(journal: PostgresJournal) -> None:
        start.wait()
        for _ in range(10):
            try:
                made = reserve(journal, "25")
                if isinstance(made, Reserved):
                    journal.mark(made.entry.id, "failed", {"error": "test"}, expect=("reserved",))
                seen = type(made).__name__
            except PaymentError as exc:
                seen = str(exc)[:200]
            with lock:
                results[seen] += 1
        for _ in range(3):
            try:
                seen = "kept " + type(reserve(journal, "25")).__name__
            except PaymentError as exc:
                seen = str(exc)[:200]
            with lock:
                results[seen] += 1

    threads = [
        threading.Thread(target=work, args=(journals[i % 4],), daemon=True) for i in range(16)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for journal in journals:
        journal.close()
    assert results == {"Reserved": 160, "kept Reserved": 25, "kept OverBudget": 48 - 25}
    with psycopg.connect(url) as db:
        (rows,) = db.execute(  # type: ignore[misc]
            "SELECT count(*) FROM payments WHERE state = 'reserved'"
        ).fetchone()
        (spent,) = db.execute(  # type: ignore[misc]
            "SELECT spent FROM totals WHERE currency_key = 'USDC'"
        ).fetchone()
    assert (rows, Decimal(spent)) == (25, Decimal(25))


def test_a_read_only_database_fails_closed_saying_so(serializable: OwnServer) -> None:
    """The database made read-only (as after a fail-over to a standby): a journal open, or
    opened then (reading works), refuses to reserve (journal_unavailable, nothing signed),
    saying the transaction is read-only."""
    url = serializable.url()
    journal = open_journal(url)
    try:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("ALTER DATABASE postgres SET default_transaction_read_only = on")
            admin.execute(  # its sessions end, as in a fail-over: the new ones are read-only
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = 'postgres' AND pid <> pg_backend_pid()"
            )
        with pytest.raises(PaymentError) as refused:
            reserve(journal, "10")  # type: ignore[arg-type]
        assert refused.value.reason == "journal_unavailable"
        assert "read-only transaction" in str(refused.value)
        assert "nothing was signed or paid" in str(refused.value)
        reopened = open_journal(url)  # reading needs no write (the schema is current)
        try:
            assert reopened.entries(["reserved"]) == []
            with pytest.raises(PaymentError, match="read-only transaction"):
                reserve(reopened, "10")  # type: ignore[arg-type]
        finally:
            reopened.close()
    finally:
        journal.close()


def test_a_user_who_may_only_read_and_write_the_tables_pays(server: GatewayServer) -> None:
    """The least privilege an operator gives a fleet: the tables made once by their owner, the
    workers' user allowed to read and write them and nothing else (no CREATE on the schema).
    The journal opened only for users who may create tables ("CREATE TABLE IF NOT EXISTS"
    needs that right even when the table exists); now such a worker pays, journaled, and a
    user without the tables or the right to make them gets a configuration error saying so."""
    try:
        with own_server(tcp=False) as running:
            with psycopg.connect(running.url(), autocommit=True) as admin:
                admin.execute("CREATE DATABASE pay")
                admin.execute("CREATE DATABASE empty")
                admin.execute("CREATE ROLE app LOGIN")
            open_journal(running.url("pay")).close()  # the owner makes the tables
            for name in ("pay", "empty"):
                with psycopg.connect(running.url(name), autocommit=True) as admin:
                    admin.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
                    admin.execute("GRANT USAGE ON SCHEMA public TO app")
                    admin.execute(
                        "GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO app"
                    )
            _pays(server, running.url("pay", user="app"))
            with pytest.raises(SDKConfigurationError) as caught:
                open_journal(running.url("empty", user="app"))
            assert "permission denied for schema public" in str(caught.value)
            assert "that the user may create tables in it" in str(caught.value)
    except ServerUnavailable as exc:
        pytest.skip(str(exc))


def _pays(server: GatewayServer, url: str) -> None:
    gateway = server.gateway
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    agent = AutoAgent(wallet, rpc_url=server.rpc_url, journal_url=url, budget={"SOL": "0.5"})
    try:
        assert agent.get(f"{server.url}/api/v1/premium/sol").status_code == 200
    finally:
        agent.close()
    with psycopg.connect(url) as db:
        assert db.execute("SELECT state FROM payments").fetchall() == [("accepted",)]
        (spent,) = db.execute(  # type: ignore[misc]
            "SELECT spent FROM totals WHERE currency_key = 'SOL'"
        ).fetchone()
    assert Decimal(spent) == Decimal(1) - gateway.balance(wallet.pubkey()) == PRICE + FEE
