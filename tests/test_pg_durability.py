"""On PostgreSQL, the commit that moves a payment to ``signed`` is on disk before ``mark``
returns, and the reservation and outcomes around it are not waited for (``synchronous_commit``
on for the one, off for the others; see :mod:`human_rpc_sdk._io.postgres`).

The server is the test's own, configured so that an asynchronous commit stays unflushed: the
database's default is ``synchronous_commit = off`` (so only the journal's own ``SET LOCAL
synchronous_commit = on`` can make a commit wait), the WAL writer flushes only every 10 s (its
longest ``wal_writer_delay``) and not by volume, and nothing else runs (no autovacuum, no
checkpoint due).

How a commit is found on disk: ``pg_walinspect`` lists the commit records written after an LSN
read just before the call, in the WAL *up to the flush position*
(``pg_get_wal_records_info_till_end_of_wal`` reads no further than ``pg_current_wal_flush_lsn()``
on a primary). Found there: the server had fsynced the WAL past that commit. Nothing else on
this server commits meanwhile (no autovacuum; the test's own connection only reads until its
probe; ``wal_level = minimal``, so no background snapshot records either), so the commits
found are the call's. Why this and not the alternatives:

- comparing ``pg_current_wal_flush_lsn()`` with ``pg_current_wal_insert_lsn()`` tells whether
  *some* WAL is unflushed, not whether a commit is, and any background record inserted between
  the call and the read would fail a durable commit; the commit records themselves do not;
- the written row's ``xmin`` does not name the committed transaction when the write was in a
  savepoint (a reservation is), so the commit is not looked up by transaction id;
- ``pg_ctl stop -m immediate`` then a restart is not a power cut: the server's WAL writes are
  in the operating system's page cache, which survives the server's death, so an
  unflushed-but-written commit comes back and the test could not fail. Only fsync (the flush
  position) is what survives a power cut.

The one thing that can flush an asynchronous commit behind the test's back is the WAL writer's
periodic flush (every 10 s). A flush falling in the few milliseconds between a commit and its
check would make an asynchronous outcome look flushed; so the outcome's check is repeated on a
few payments and at least one must be unflushed (a durable outcome never is), while every
signed commit must be flushed, every time.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from human_rpc_sdk._io.postgres import PostgresJournal
from human_rpc_sdk._offer import PaymentOffer
from human_rpc_sdk._records import Reserved

from .postgres_server import OwnServer, ServerUnavailable, _missing, own_server

psycopg = pytest.importorskip("psycopg")

LAZY_WAL = {
    "synchronous_commit": "off",
    "wal_writer_delay": "10s",  # the longest PostgreSQL accepts
    "wal_writer_flush_after": "1GB",  # not by volume
    "autovacuum": "off",
    "checkpoint_timeout": "1d",
    "max_wal_size": "10GB",
    "wal_level": "minimal",  # no standby snapshots logged in the background
    "max_wal_senders": "0",  # (which minimal requires)
}
ROUNDS = 5


@pytest.fixture(scope="module")
def lazy_server() -> Iterator[OwnServer]:
    try:
        with own_server(LAZY_WAL, tcp=False) as server:
            yield server
    except ServerUnavailable as exc:
        _missing(str(exc))


@pytest.fixture
def database(lazy_server: OwnServer, request: pytest.FixtureRequest) -> str:
    name = "durability_" + request.node.name.lower().replace("[", "_").strip("]")[:40]
    with psycopg.connect(lazy_server.url(), autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    url = lazy_server.url(name)
    with psycopg.connect(url, autocommit=True) as db:
        try:
            db.execute("CREATE EXTENSION pg_walinspect")
        except psycopg.Error as exc:  # PostgreSQL before 15, or its contrib modules missing
            _missing(f"no pg_walinspect in this PostgreSQL ({exc})")
        db.execute("CREATE TABLE probe (n int)")
        assert db.execute("SHOW synchronous_commit").fetchone() == ("off",)
    return url


def offer(n: int) -> PaymentOffer:
    return PaymentOffer(
        url=f"https://shop.example/{n}",
        amount=Decimal("0.01"),
        currency="USDC",
        mint="mint",
        recipient="shop",
        destination="shop-ata",
        reference=None,
        network="devnet",
        payer="me",
        atomic_amount=10_000,
        format="x402-v2",
    )


class Wal:
    """Reads of the server's WAL, on a connection of the test's own."""

    def __init__(self, url: str) -> None:
        self.db = psycopg.connect(url, autocommit=True)

    def insert_lsn(self) -> str:
        row = self.db.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
        assert row is not None
        return str(row[0])

    def commits_flushed(self, since: str) -> int:
        """How many commit records are in the WAL flushed to disk after LSN ``since``."""
        row = self.db.execute(
            "SELECT pg_current_wal_flush_lsn() > %s::pg_lsn AS moved", (since,)
        ).fetchone()
        if row is None or not row[0]:
            return 0  # nothing flushed since (walinspect refuses a start past the flush)
        found = self.db.execute(
            "SELECT count(*) FROM pg_get_wal_records_info_till_end_of_wal(%s::pg_lsn) "
            "WHERE resource_manager = 'Transaction' AND record_type LIKE 'COMMIT%%'",
            (since,),
        ).fetchone()
        assert found is not None
        return int(found[0])

    def sync_commit(self) -> None:
        """A synchronous commit of the test's own: it flushes the whole WAL before it."""
        with self.db.transaction():
            self.db.execute("SET LOCAL synchronous_commit = on")
            self.db.execute("INSERT INTO probe VALUES (1)")  # WAL-logged (a temporary is not)

    def close(self) -> None:
        self.db.close()


def test_signed_is_flushed_before_mark_returns_and_outcomes_are_not(database: str) -> None:
    journal = PostgresJournal(database)
    wal = Wal(database)
    unflushed: dict[str, int] = {"reserved": 0, "accepted": 0}
    try:
        for n in range(ROUNDS):
            before = wal.insert_lsn()
            reserved = journal.reserve(
                offer(n), currency_key="USDC", invoice_key=f"invoice-{n}", budget=None
            )
            assert isinstance(reserved, Reserved)
            entry_id = reserved.entry.id
            unflushed["reserved"] += wal.commits_flushed(before) == 0

            # durable=False asked, and ignored: a signed payment is always written durably.
            signed = journal.mark(
                entry_id, "signed", {"signature": f"sig-{n}"}, expect=("reserved",), durable=False
            )
            assert signed is not None
            assert signed.state == "signed"
            # Its commit and, the WAL being flushed as a prefix, the reservation's before it.
            assert wal.commits_flushed(before) == 2, f"round {n}: signed returned before fsync"

            since = wal.insert_lsn()
            accepted = journal.mark(
                entry_id, "accepted", {"http_status": 200, "landed": True}, durable=False
            )
            assert accepted is not None
            assert accepted.state == "accepted"
            unflushed["accepted"] += wal.commits_flushed(since) == 0

            wal.sync_commit()  # the next synchronous commit takes the outcome to disk with it
            assert wal.commits_flushed(since) == 2, f"round {n}: the outcome's commit not found"
    finally:
        wal.close()
        journal.close()
    # Not waited for: at least one of each was still unflushed when its call returned (the WAL
    # writer's periodic flush may catch one; see the module).
    assert unflushed["reserved"] >= 1, unflushed
    assert unflushed["accepted"] >= 1, unflushed


def test_a_durable_outcome_is_flushed(database: str) -> None:
    """The counterpart: ``mark(durable=True)`` (the default) waits for the flush, so the check
    above tells the two apart."""
    journal = PostgresJournal(database)
    wal = Wal(database)
    try:
        reserved = journal.reserve(offer(0), currency_key="USDC", invoice_key="i", budget=None)
        assert isinstance(reserved, Reserved)
        since = wal.insert_lsn()
        failed = journal.mark(reserved.entry.id, "failed", {"error": "refused"})
        assert failed is not None
        assert wal.commits_flushed(since) == 1
    finally:
        wal.close()
        journal.close()
