"""The payment journal in PostgreSQL: one budget and one journal for a fleet of machines.

The same rows, states and guarantees as the SQLite journal (:mod:`.journal`, whose module text
explains them), kept in a database every worker reaches (psycopg 3, the ``postgres`` extra):

Reserving is one transaction (READ COMMITTED, whatever the database's default isolation) that
first locks, with ``SELECT ... FOR UPDATE``, the running totals the payment counts against (one
row per scope, network and currency: the payment's currency and SOL for its fees), always in
the same order; then it checks that the invoice was not paid already, checks the budget against
the locked totals, inserts the row and adds its cost to the totals, and commits. Two
reservations against the same totals therefore run one after the other whatever machines they
come from, and the second reads the totals (and the invoice's row) as the first committed them:
no interleaving can overspend. The work is constant per payment: two small rows locked and
read, one inserted, two updated, whatever the history.

Why a row lock rather than SERIALIZABLE transactions with retries: under contention (the case
a fleet's shared budget exists for) serializable transactions abort and retry in proportion to
the number of workers, so a payment's latency grows with the fleet and a retry loop must bound
itself somewhere (and then fail a payment the budget allowed); a serialization failure is also
easy to mistake for the store being down. The lock makes the workers queue for the few
milliseconds a reservation holds it, never aborts for contention, and keeps the code a single
straight transaction whose correctness does not depend on retry logic. Every transaction that
moves the totals (reserving, an outcome that releases a payment's budget, recovery) takes
those locks first and in one order (sorted by network and currency), then the payment's row,
so they cannot deadlock each other. A move that changes nothing counted (``signed``,
``submitted``, an outcome that is not a failure) locks only the payment's row, holding no other
lock while it waits, so a fleet's fsynced ``signed`` commits and outcomes do not queue behind
its reservations (``make bench``: 8 processes on one budget went from about 180 to about 430
payments/s).

Durability: the commit that moves a payment to ``signed`` runs with ``synchronous_commit = on``
(the commit returns once the write-ahead log is flushed on the server) before the payment
leaves the process. The reservation before it and the outcome after it may commit with
``synchronous_commit = off``: PostgreSQL's write-ahead log, like SQLite's, is replayed as a
prefix, so the next synchronous commit makes them durable too, and losing them to a server
crash loses nothing the chain cannot tell again (see :mod:`.journal`).

Leases: each reservation carries ``expires_at`` (the database's clock plus
:data:`LEASE_SECONDS`). A worker that dies holding one does not hold the budget forever: any
machine's recovery (``unsettled``, run by ``recover_payments``) releases expired, unsigned
reservations, one recoverer at a time (``pg_try_advisory_xact_lock``). A reservation being
signed while its lease is released is decided by the payment's row lock: either the release
comes first (the signer finds its reservation gone and sends nothing) or the signing does (the
release no longer matches the row).

Budgets per period and scopes: as in the SQLite journal, every reservation adds its cost to
the spending buckets of its reservation time (``spending``: per scope, network, currency,
level and bucket start), and the totals, buckets and raises are per scope. The buckets of a
(scope, network, currency) are read and written only by a transaction holding that totals
row's lock, which stays the one mutex (no new lock, so no new deadlock order). The period is
decided by the database server's clock, read inside the reservation with the locks (one clock
for the whole fleet, no extra round trip), unless the journal was given a ``clock``.

The schema is created and migrated by the SDK (``human_rpc_schema`` holds its version), in one
transaction under an advisory lock, so two processes starting at once do not collide.

The store unreachable fails closed: any error reserving or signing is ``journal_unavailable``
and nothing is signed or sent; an outcome that cannot be written is kept in the process and
written first thing at the next write that succeeds (``mark(keep=True)``), as with SQLite, in
a transaction of its own committed before that write's (so no transaction holds the totals of
a kept outcome while it takes its own: the lock order stays one).
A reservation whose commit went unanswered (the network lost the answer) may have committed:
nothing signs it, and the journal, which knows the row it inserted, releases it at its next
write that succeeds rather than letting it hold its budget until its lease expires.

Connections, and the database down, slow or restarted. A small psycopg_pool pool holds the
connections, and every read or write of the journal is bounded by ``wait_seconds`` (the
agents' ``journal_wait=``, default :data:`WAIT_SECONDS`): waiting for a connection, making
one, locks, the statements and the commit. Past it the operation fails as
``journal_unavailable``. How each case behaves:

* The server refuses connections (stopped, restarting, the database closed to connections):
  a request that gets no pooled connection within :data:`PROBE_SECONDS` connects directly,
  once; that fails at once, so the payment fails within a second or two, saying what is down
  and that nothing was signed or paid, rather than after ``wait_seconds``.
* The server answers but the pool cannot serve (every connection busy, or the pool still
  reconnecting after an outage): the direct connection serves that one request, so the first
  payment after the database is back does not wait for the pool's reconnection backoff.
* A connection broken while idle in the pool (the server restarted): each connection is
  checked (an empty query, bounded) when taken; a broken one is dropped and the next one, or
  a new one, is taken at once (not after psycopg_pool's check-retry backoff).
* The pool's own reconnection gives up after :data:`RECONNECT_SECONDS` (``reconnect_timeout``;
  ``reconnect_failed`` only logs): a pool that gave up grows again on the next request, so it
  never stays without connections, and never sleeps through a long backoff after an outage.
* A server or network that accepts the bytes but never answers (a hung server, a stalled
  proxy, a partition): libpq would wait forever on the socket. A watchdog thread shuts the
  socket down once the operation's deadline passes; psycopg reports the connection lost, the
  transaction is rolled back by the server (unless its COMMIT had arrived: see below), and
  the operation fails as ``journal_unavailable`` ("no answer within ... s").
* Making a connection is bounded by libpq's ``connect_timeout`` (a URL parameter,
  ``?connect_timeout=5``), and by ``wait_seconds`` (rounded up to whole seconds, at least 2:
  libpq's unit), whichever is shorter.

Why these and not a setting for each: an operator thinks in one number, how long a payment
may wait for the journal (``journal_wait``); a refused connection needs no wait at all; and the
pool must never be the reason a payment waits longer than the database was away.

A commit whose answer is lost (the connection cut after COMMIT was sent) leaves an unknown
outcome: the agent is told ``journal_unavailable`` and does not go on. A reservation that did
commit stays ``reserved`` until its lease expires and a recovery releases it; a ``signed``
row that did commit was never sent, and recovery settles it from the chain (``failed`` once
its blockhash has expired). Nothing is signed on a reservation whose commit is unknown, and
nothing is sent on a ``signed`` commit whose outcome is unknown.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, LiteralString

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from .._budgets import LineRule, Period, buckets_at, span
from .._money import exact
from .._offer import PaymentOffer
from .._receipts import STATES
from .._records import Budget, Existing, JournalEntry, OverBudget, Reserved
from .._settings import redacted_url, url_secrets
from ..exceptions import PaymentError, SDKConfigurationError
from .journal import (
    _UPDATABLE,
    REPLACED,
    SOL_KEY,
    PeriodReader,
    Totals,
    _cost,
    _counted,
    budget_report,
    process_alive,
    recount,
    refusal,
    reserved_at,
    reserved_columns,
)
from .journal import entry_from_row as _entry_from_row

__all__ = [
    "LEASE_SECONDS",
    "PROBE_SECONDS",
    "RECONNECT_SECONDS",
    "SCHEMA_VERSION",
    "WAIT_SECONDS",
    "PostgresJournal",
]

logger = logging.getLogger("human_rpc_sdk")

SCHEMA_VERSION: Final = 2
"""1: the payments (the SQLite journal's columns of its schema 5, plus ``expires_at``, the
lease of a reservation), the running totals and the budget raises, each per ``scope``; 2:
budgets per period: ``payments.reserved_unix`` (the reservation time, on the clock that decides
periods), the spending buckets ``spending`` and the raises of one period ``period_raises``."""
LEASE_SECONDS: Final = 600
"""How long a reservation holds its budget unsigned before any recovery may release it (as
long as the SQLite journal lets a reservation of another machine's process stand)."""
WAIT_SECONDS: Final = 10.0
"""The default ``journal_wait``: how long one read or write of the journal may wait for the
database (a connection, locks, the answer) before failing as ``journal_unavailable``."""
PROBE_SECONDS: Final = 1.0
"""How long a request waits for a pooled connection before connecting directly (see the
module: a server refusing connections fails the payment then)."""
RECONNECT_SECONDS: Final = 2.0
"""How long the pool's background reconnection keeps trying before giving up (the next
request starts it again): short, so it never backs off for longer than an outage lasted."""
_CHECK_SECONDS: Final = 2.0
"""The most the check of a pooled connection (an empty query) may take before the connection
is dropped as broken (a healthy server answers it in a millisecond)."""
_MIGRATION_LOCK: Final = 0x48525043_4A4D4947  # "HRPC" "JMIG": one key for every database
_RECOVERY_LOCK: Final = 0x48525043_4A524543  # "HRPC" "JREC": a whole recover_payments
_RELEASE_LOCK: Final = 0x48525043_4A524C53  # "HRPC" "JRLS": one release of expired leases
_ROW: Final = "*, extract(epoch FROM clock_timestamp())::float8 AS db_now"
"""A payment's columns and the database's clock: a row's age is measured on the clock that
stamped it (``updated_unix``), the same for every machine whatever its own clock says."""

_STATES_SQL: Final = ", ".join(f"'{state}'" for state in STATES)
_SCHEMA_1: Final = (
    """
CREATE TABLE payments (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope         TEXT NOT NULL DEFAULT '',
    invoice_key   TEXT,
    state         TEXT NOT NULL CHECK (state IN ("""
    + _STATES_SQL
    + """)),
    created       TEXT NOT NULL,
    updated       TEXT NOT NULL,
    updated_unix  DOUBLE PRECISION NOT NULL,
    expires_at    TIMESTAMPTZ,
    url           TEXT NOT NULL,
    network       TEXT NOT NULL,
    format        TEXT NOT NULL,
    currency      TEXT NOT NULL,
    currency_key  TEXT NOT NULL,
    amount        TEXT NOT NULL,
    atomic_amount TEXT NOT NULL,
    mint          TEXT,
    recipient     TEXT NOT NULL,
    destination   TEXT NOT NULL,
    reference     TEXT,
    payer         TEXT NOT NULL,
    fee_lamports  BIGINT NOT NULL DEFAULT 0,
    rent_lamports BIGINT NOT NULL DEFAULT 0,
    signature     TEXT,
    fee_payer     TEXT,
    blockhash     TEXT,
    transaction_b64 TEXT,
    headers       TEXT,
    http_status   INTEGER,
    settled       BOOLEAN,
    error         TEXT,
    landed        BOOLEAN,
    replaces      BIGINT REFERENCES payments(id),
    last_valid_block_height BIGINT,
    blockhash_slot BIGINT,
    landed_proof  TEXT,
    pid           INTEGER,
    host          TEXT,
    process       TEXT,
    genesis_hash  TEXT,
    task_id       TEXT,
    task_outcome  TEXT,
    payment_id    TEXT,
    resume_key    TEXT
);
CREATE TABLE totals (
    scope         TEXT NOT NULL,
    network       TEXT NOT NULL,
    currency_key  TEXT NOT NULL,
    spent         NUMERIC NOT NULL CHECK (spent >= 0),
    PRIMARY KEY (scope, network, currency_key)
);
CREATE TABLE budget_raises (
    scope         TEXT NOT NULL,
    network       TEXT NOT NULL,
    currency_key  TEXT NOT NULL,
    raised        NUMERIC NOT NULL CHECK (raised >= 0),
    updated       TEXT NOT NULL,
    PRIMARY KEY (scope, network, currency_key)
);
CREATE UNIQUE INDEX payments_one_per_invoice
    ON payments(invoice_key) WHERE invoice_key IS NOT NULL AND state != 'failed';
CREATE INDEX payments_state ON payments(state);
CREATE INDEX payments_unsettled ON payments(id) WHERE landed IS NOT TRUE;
CREATE INDEX payments_leases ON payments(expires_at) WHERE state = 'reserved';
CREATE INDEX payments_replaces ON payments(replaces);
CREATE INDEX payments_payer ON payments(payer, network, id);
CREATE INDEX payments_open_tasks ON payments(task_id)
    WHERE task_id IS NOT NULL AND task_outcome IS NULL;
CREATE INDEX payments_resumable ON payments(resume_key) WHERE resume_key IS NOT NULL;
CREATE INDEX payments_paid_for ON payments(payer, network, url, id) WHERE state = 'accepted';
"""
)
_SCHEMA_2: Final = """
ALTER TABLE payments ADD COLUMN reserved_unix BIGINT;
UPDATE payments SET reserved_unix = floor(extract(epoch FROM created::timestamptz));
-- A row an older release inserts (no reservation time, no buckets) is refused, not left
-- out of every line per period.
ALTER TABLE payments ALTER COLUMN reserved_unix SET NOT NULL;
CREATE TABLE spending (
    scope         TEXT NOT NULL,
    network       TEXT NOT NULL,
    currency_key  TEXT NOT NULL,
    level         TEXT NOT NULL,
    bucket_start  BIGINT NOT NULL,
    spent         NUMERIC NOT NULL,
    PRIMARY KEY (scope, network, currency_key, level, bucket_start)
);
CREATE TABLE period_raises (
    scope         TEXT NOT NULL,
    network       TEXT NOT NULL,
    currency_key  TEXT NOT NULL,
    per           TEXT NOT NULL,
    period_start  BIGINT NOT NULL,
    raised        NUMERIC NOT NULL CHECK (raised >= 0),
    updated       TEXT NOT NULL,
    PRIMARY KEY (scope, network, currency_key, per, period_start)
);
"""


def _backfill_buckets(db: psycopg.Connection[dict[str, Any]]) -> None:
    """Schema 2: the spending buckets of the history (so a period line sees what was spent
    before the upgrade, and a release of an older row takes back what its buckets hold)."""
    rows = db.execute(
        "SELECT * FROM payments WHERE state != 'failed' OR landed_proof LIKE 'failed on chain%'"
    ).fetchall()
    buckets = recount(rows)[1]
    with db.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO spending (scope, network, currency_key, level, bucket_start, spent) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            [(*key, amount) for key, amount in buckets.items()],
        )


Migration = LiteralString | Callable[[psycopg.Connection[dict[str, Any]]], None]
_MIGRATIONS: Final[tuple[tuple[Migration, ...], ...]] = (
    (_SCHEMA_1,),
    (_SCHEMA_2, _backfill_buckets),
)
"""The statements bringing schema version ``i`` to ``i + 1``, in order."""


class PostgresJournal:
    """A payment journal in the PostgreSQL database at ``url`` (``postgresql://...``).

    Thread-safe (a small pool of connections); any number of processes on any number of
    machines may share one database.

    :raises SDKConfigurationError: when the database cannot be reached or its schema is newer
        than this SDK's.
    """

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], datetime] | None = None,
        max_connections: int = 4,
        wait_seconds: float | None = None,
    ):
        self.path = redacted_url(url)
        self._given = url
        self._secrets = url_secrets(url)
        url = _libpq_url(url)
        self.wait_seconds = WAIT_SECONDS if wait_seconds is None else wait_seconds
        """How long one read or write may wait for the database (see ``WAIT_SECONDS``)."""
        self._url = url
        self._now = clock or (lambda: datetime.now(UTC))
        self._clock = clock
        """The injected wall clock that decides budget periods; None: the database's."""
        self._lock = threading.Lock()
        self._deferred: dict[int, tuple[str, list[Any], tuple[str, ...] | None]] = {}
        """Outcomes that could not be written yet, by row: written before the next write."""
        self._watchdog = _Watchdog()
        self._stops = weakref.finalize(self, self._watchdog.close)
        """A journal never closed (its agent dropped unclosed): its watchdog's thread ends
        with it (the pool's threads and connections end with the pool, collected with it)."""
        try:
            named = conninfo_to_dict(url).get("connect_timeout")
            self._connect_timeout = _connect_timeout(named, self.wait_seconds)
            # One connection first, which fails fast on a wrong URL or a server down (a pool
            # would retry until its timeout), and brings the schema up to date.
            with psycopg.connect(
                url, row_factory=dict_row, connect_timeout=self._connect_timeout
            ) as db:
                _configure(db)
                _migrate(db, self.path)
            self._max_connections = max_connections
            self._pool = self._new_pool()
            self._pool.open(wait=False)
        except (psycopg.Error, OSError) as exc:
            why = f"{type(exc).__name__}: {self._scrubbed(str(exc))}"
            raise SDKConfigurationError(
                f"cannot open the payment journal in the database {self.path} ({why}); check "
                "the URL, that the server runs and that the user may create tables in it",
                parameter="journal_path",
            ) from None
        self._closed = False
        self._started = True
        """Whether the pool was opened in this process (see :meth:`_forked`)."""
        _OPEN.add(self)

    def _new_pool(self) -> ConnectionPool[psycopg.Connection[dict[str, Any]]]:
        return ConnectionPool(
            self._url,
            min_size=1,
            max_size=self._max_connections,
            kwargs={
                "row_factory": dict_row,
                "autocommit": False,
                "connect_timeout": self._connect_timeout,
            },
            connection_class=psycopg.Connection[dict[str, Any]],
            configure=_configure,
            open=False,
            name="human-rpc-journal",
            reconnect_timeout=RECONNECT_SECONDS,
            reconnect_failed=_reconnect_failed,
        )

    def _forked(self) -> None:
        """In a child of ``os.fork()`` (gunicorn --preload, Celery's prefork pool,
        multiprocessing's fork): the parent's connections are its server sessions, on sockets
        the child shares. Using one from both processes would mix their transactions (and the
        totals' row lock, held per session, would no longer keep their reservations apart) and
        their answers; closing one would end the parent's session. So the child leaves them
        alone (kept, never closed, in ``_INHERITED``) and opens a pool of its own at its first
        use; the pool's and the watchdog's threads, and any lock a parent's thread held at the
        fork, did not come along, so they are made anew. The outcomes the parent kept are the
        parent's to write."""
        _INHERITED.append(self._pool)
        self._lock = threading.Lock()
        self._stops.detach()  # the parent's watchdog (its lock may be held by a thread gone)
        self._watchdog = _Watchdog()
        self._stops = weakref.finalize(self, self._watchdog.close)
        self._deferred = {}
        self._pool = self._new_pool()
        self._started = False

    def _start(self) -> None:
        """Open this process's pool (after a fork: at the first use)."""
        with self._lock:
            if not self._started and not self._closed:
                self._pool.open(wait=False)
                self._started = True

    def close(self) -> None:
        """Close the connections, writing first any outcome kept from a failed write."""
        try:
            self.flush()
        except PaymentError as exc:
            logger.warning(
                "closing the payment journal with %d payment outcome(s) unwritten (%s); "
                "agent.recover_payments() settles those payments from the chain",
                len(self._deferred),
                exc.reason,
            )
        self._closed = True
        self._pool.close()
        self._watchdog.close()
        _OPEN.discard(self)

    def __repr__(self) -> str:
        return f"PostgresJournal({self.path!r})"

    # -- reading -----------------------------------------------------------------------

    def find(self, invoice_key: str) -> JournalEntry | None:
        """The live (not ``failed``) payment of this invoice, if any."""
        rows = self._read(
            f"SELECT {_ROW} FROM payments WHERE invoice_key = %s AND state != 'failed'",  # noqa: S608 - a fixed text
            (invoice_key,),
        )
        return self._entry(rows[0]) if rows else None

    def entries(self, states: Iterable[str] | None = None) -> list[JournalEntry]:
        """Every row (oldest first), or those in ``states``."""
        if states is None:
            rows = self._read(f"SELECT {_ROW} FROM payments ORDER BY id", ())  # noqa: S608 - a fixed text
        else:
            rows = self._read(
                f"SELECT {_ROW} FROM payments WHERE state = ANY(%s) ORDER BY id",  # noqa: S608
                (list(states),),
            )
        return [self._entry(row) for row in rows]

    def payments(
        self,
        payer: str,
        network: str,
        *,
        after: int = 0,
        limit: int | None = None,
        scope: str | None = None,
    ) -> list[JournalEntry]:
        """The signed payments of wallet ``payer`` on ``network`` after journal id ``after``
        (see the SQLite journal's), of budget scope ``scope`` when given."""
        rows = self._read(
            f"SELECT {_ROW} FROM payments WHERE payer = %s AND network = %s AND id > %s "  # noqa: S608 - a fixed text
            "AND transaction_b64 IS NOT NULL AND (%s::text IS NULL OR scope = %s) "
            "ORDER BY id LIMIT %s",
            (payer, network, after, scope, scope, limit),
        )
        return [self._entry(row) for row in rows]

    def paid_for(self, url: str, payer: str, network: str) -> JournalEntry | None:
        """The latest served payment by ``payer`` on ``network`` for ``url``, or None."""
        rows = self._read(
            f"SELECT {_ROW} FROM payments WHERE payer = %s AND network = %s AND url = %s "  # noqa: S608 - a fixed text
            "AND state = 'accepted' ORDER BY id DESC LIMIT 1",
            (payer, network, url),
        )
        return self._entry(rows[0]) if rows else None

    def open_tasks(self) -> list[JournalEntry]:
        """Rows of paid human tasks whose verdict is not recorded (oldest first)."""
        rows = self._read(
            f"SELECT {_ROW} FROM payments WHERE task_id IS NOT NULL "  # noqa: S608 - a fixed text
            "AND task_outcome IS NULL ORDER BY id",
            (),
        )
        return [self._entry(row) for row in rows]

    def resumable(
        self, resume_keys: Iterable[str], abandoned_after: float = float("inf")
    ) -> JournalEntry | None:
        """The oldest payment under one of ``resume_keys`` that nobody is sending (see the
        SQLite journal's)."""
        rows = self._read(
            f"SELECT {_ROW} FROM payments WHERE resume_key = ANY(%s) "  # noqa: S608 - a fixed text
            "AND (state IN ('signed', 'submitted') AND landed IS NOT FALSE "
            "OR state = 'accepted' AND landed AND http_status IS NULL) ORDER BY id",
            (list(resume_keys),),
        )
        for entry in map(self._entry, rows):
            if entry.state != "signed" or entry.age > abandoned_after or not process_alive(entry):
                return entry
        return None

    def unsettled(self) -> list[JournalEntry]:
        """The rows the chain could still tell something about (see the SQLite journal's),
        after releasing the reservations whose lease expired (one recoverer at a time: when
        another holds the recovery lock, its releases are left to it)."""
        self.release_expired()
        rows = self._read(
            f"SELECT {_ROW} FROM payments WHERE landed IS NOT TRUE AND NOT "  # noqa: S608 - a fixed text
            "(state = 'failed' AND (transaction_b64 IS NULL OR landed_proof IS NOT NULL)) "
            "ORDER BY id",
            (),
        )
        return [self._entry(row) for row in rows]

    @exact  # sums exact whatever the caller's decimal context
    def budget(
        self,
        network: str,
        limits: Mapping[str, Decimal | None],
        *,
        periods: Mapping[str, tuple[LineRule, ...]] | None = None,
        scope: str = "",
    ) -> dict[str, Budget]:
        """Each currency's budget in ``scope`` (see the SQLite journal's), its periods on the
        database's clock unless a clock was injected."""
        with self._reading() as db:
            spent = {
                row["currency_key"]: _sum(row["spent"], "totals", row["currency_key"], network)
                for row in db.execute(
                    "SELECT currency_key, spent FROM totals WHERE scope = %s AND network = %s",
                    (scope, network),
                )
            }
            now = self._period_now(_db_clock(db))
            return budget_report(
                limits,
                _raises(db, scope, network),
                spent,
                periods or {},
                _period_reader(db, scope, network),
                now,
            )

    # -- writing -----------------------------------------------------------------------

    def raise_budget(
        self,
        network: str,
        amounts: Mapping[str, Decimal],
        *,
        per: Period | None = None,
        scope: str = "",
    ) -> None:
        """Add ``amounts`` (per currency key) to the budgets raised on ``network`` in
        ``scope``, in one transaction: raises from several machines add up. ``per``: that
        calendar period's line, for the current period only (see the SQLite journal's)."""
        now = self._now().isoformat()
        with self._writing() as db:
            if per is not None:
                start = span(per, self._period_now(_db_clock(db)))[1]
            for key, amount in sorted(amounts.items()):
                if per is not None:
                    db.execute(
                        "INSERT INTO period_raises (scope, network, currency_key, per, "
                        "period_start, raised, updated) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                        "ON CONFLICT (scope, network, currency_key, per, period_start) DO UPDATE "
                        "SET raised = period_raises.raised + excluded.raised, "
                        "updated = excluded.updated",
                        (scope, network, key, per.key, start, amount, now),
                    )
                    continue
                db.execute(
                    "INSERT INTO budget_raises (scope, network, currency_key, raised, updated) "
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (scope, network, currency_key) "
                    "DO UPDATE SET raised = budget_raises.raised + excluded.raised, "
                    "updated = excluded.updated",
                    (scope, network, key, amount, now),
                )

    @exact  # sums exact whatever the caller's decimal context
    def reserve(
        self,
        offer: PaymentOffer,
        *,
        currency_key: str,
        invoice_key: str | None,
        budget: Decimal | None,
        sol_budget: Decimal | None = None,
        genesis_hash: str | None = None,
        periods: Mapping[str, tuple[LineRule, ...]] | None = None,
        scope: str = "",
    ) -> Reserved | Existing | OverBudget:
        """Atomically: refuse a second payment of the invoice, check the budget, insert a row
        (see the module: the totals are locked first, so no interleaving overspends). The
        lines per period (``periods``) read the spending buckets of ``scope`` while holding
        those locks, at the database's clock read with them (or the injected clock)."""
        limits = {currency_key: budget}
        if currency_key != SOL_KEY:
            limits[SOL_KEY] = sol_budget
        inserted: list[int] = []
        try:
            return self._reserve(
                offer, currency_key, invoice_key, limits, genesis_hash, periods, scope, inserted
            )
        except PaymentError:
            # The row was inserted and the commit's answer never came: it may have committed
            # behind our back. Nothing will sign it (the caller is told journal_unavailable),
            # so it is released at the next write that succeeds, not held until its lease.
            if inserted:
                with self._lock:
                    self._deferred[inserted[0]] = (
                        _UNKNOWN_RESERVATION,
                        [_NEVER_CONFIRMED, self._now().isoformat()],
                        ("reserved",),
                    )
            raise

    def _reserve(
        self,
        offer: PaymentOffer,
        currency_key: str,
        invoice_key: str | None,
        limits: dict[str, Decimal | None],
        genesis_hash: str | None,
        periods: Mapping[str, tuple[LineRule, ...]] | None,
        scope: str,
        inserted: list[int],
    ) -> Reserved | Existing | OverBudget:
        now = self._now()
        refused: OverBudget | None = None
        # The reservation is a savepoint inside the write transaction: refused by the budget,
        # it rolls back to it (the replaced payment stays as it was).
        with (
            self._writing(durable=False, doing=_RESERVING) as db,
            db.transaction() as reservation,
        ):
            keys = _keys(scope, offer.network, currency_key)
            if offer.replaces is not None:
                # The replaced payment gives back to its own totals, which may be another
                # scope's or currency's (a payment resumed by an agent of another scope, a
                # cheaper offer chosen this time): all of them locked at once, in order.
                keys |= _row_keys(db, offer.replaces)
            spent, db_now = _lock_totals(db, keys)
            at = self._period_now(db_now)
            if invoice_key is not None:
                row = db.execute(
                    f"SELECT {_ROW} FROM payments WHERE invoice_key = %s AND state != 'failed'",  # noqa: S608 - a fixed text
                    (invoice_key,),
                ).fetchone()
                if row is not None and row["id"] != offer.replaces:
                    return Existing(self._entry(row))
            if offer.replaces is not None:
                _update(
                    db,
                    offer.replaces,
                    "state = 'failed', "
                    "error = %s || COALESCE(' (refused: ' || error || ')', ''), updated = %s, "
                    "updated_unix = extract(epoch FROM clock_timestamp()), expires_at = NULL",
                    [REPLACED, now.isoformat()],
                    spent=spent,
                )
            cost = _cost(offer.network, currency_key, Decimal(offer.amount), offer.fee_lamports)
            refused = refusal(
                cost,
                limits,
                _raises(db, scope, offer.network),
                lambda network, key: spent.get((scope, network, key), Decimal(0)),
                periods or {},
                _period_reader(db, scope, offer.network),
                at,
            )
            if refused is not None:
                raise psycopg.Rollback(reservation)
            row = db.execute(
                "INSERT INTO payments (scope, reserved_unix, invoice_key, state, created, "  # noqa: S608 - a fixed text
                "updated, updated_unix, expires_at, url, network, format, currency, "
                "currency_key, amount, "
                "atomic_amount, mint, recipient, destination, reference, payer, fee_lamports, "
                "replaces, pid, host, process, genesis_hash) VALUES (%s, %s, %s, 'reserved', %s, "
                "%s, extract(epoch FROM clock_timestamp()), now() + make_interval(secs => %s), "
                "%s, %s, %s, %s, %s, %s, %s, %s, %s, "
                f"%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_ROW}",
                (
                    scope,
                    at,
                    invoice_key,
                    now.isoformat(),
                    now.isoformat(),
                    LEASE_SECONDS,
                    *reserved_columns(offer, currency_key, genesis_hash),
                ),
            ).fetchone()
            assert row is not None  # noqa: S101 - INSERT ... RETURNING returns the row
            inserted.append(row["id"])
            _add(db, scope, at, _counted(row), spent)
            return Reserved(self._entry(row))
        assert refused is not None  # noqa: S101 - the one way out of the block without a return
        return refused

    def mark(
        self,
        entry_id: int,
        state: str,
        fields: Mapping[str, Any] | None = None,
        *,
        expect: Iterable[str] | None = None,
        busy_seconds: float | None = None,
        keep: bool = False,
        durable: bool = True,
    ) -> JournalEntry | None:
        """Move a row to ``state`` with ``fields``; only from ``expect`` states when given (see
        the SQLite journal's). A row leaving ``reserved`` gives up its lease."""
        if state not in STATES:
            raise ValueError(f"unknown journal state {state!r}")
        values = dict(fields or {})
        unknown = set(values) - _UPDATABLE
        if unknown:
            raise ValueError(f"journal fields cannot be set: {sorted(unknown)}")
        if "headers" in values and values["headers"] is not None:
            values["headers"] = json.dumps(dict(values["headers"]))
        assignments = ", ".join(
            [
                "state = %s",
                "updated = %s",
                "updated_unix = extract(epoch FROM clock_timestamp())",
                *(f"{name} = %s" for name in values),
            ]
        )
        if state != "reserved":
            assignments += ", expires_at = NULL"
        params: list[Any] = [state, self._now().isoformat(), *values.values()]
        allowed = None if expect is None else tuple(expect)
        try:
            doing = (
                _SIGNING
                if state == "signed"
                else _keeping(entry_id, state)
                if keep
                else f"journal payment #{entry_id} as {state}"
            )
            with self._writing(
                busy_seconds, durable=durable or state == "signed", doing=doing
            ) as db:
                row = _update(
                    db,
                    entry_id,
                    assignments,
                    params,
                    allowed,
                    uncounted=state != "failed" and not _COUNTED_FIELDS & values.keys(),
                )
                return None if row is None else self._entry(row)
        except PaymentError:
            if keep:
                with self._lock:
                    self._deferred[entry_id] = (assignments, params, allowed)
            raise

    def release_expired(self) -> int:
        """Release (``failed``, budget given back) the reservations whose lease expired, if no
        other process is recovering; how many were released."""
        released = 0
        with self._writing() as db:
            mine = db.execute("SELECT pg_try_advisory_xact_lock(%s) AS mine", (_RELEASE_LOCK,))
            got = mine.fetchone()
            if got is None or not got["mine"]:
                return 0
            expired = db.execute(
                "SELECT id, scope, network, currency_key FROM payments WHERE state = 'reserved' "
                "AND expires_at < now() ORDER BY id"
            ).fetchall()
            # Every total these rows count against, locked at once and in order (see _update).
            locked = _lock_totals(
                db,
                {
                    k
                    for row in expired
                    for k in _keys(row["scope"], row["network"], row["currency_key"])
                },
            )[0]
            now = self._now().isoformat()
            for row in expired:
                updated = _update(
                    db,
                    row["id"],
                    "state = 'failed', error = %s, landed = FALSE, updated = %s, "
                    "updated_unix = extract(epoch FROM clock_timestamp()), expires_at = NULL",
                    ["abandoned before it was signed (its lease expired)", now],
                    ("reserved",),
                    spent=locked,
                )
                if updated is not None:
                    released += 1
                    logger.warning(
                        "released payment #%s: reserved by %s (pid %s) and never signed before "
                        "its lease expired",
                        row["id"],
                        updated["host"],
                        updated["pid"],
                    )
        return released

    @contextlib.contextmanager
    def recovering(self) -> Iterator[bool]:
        """One recoverer at a time across the fleet: True while this process holds the
        journal's recovery lock (``pg_try_advisory_lock``, on a connection of its own, released
        at the end or when that connection drops), False when another process holds it."""
        deadline = time.monotonic() + self.wait_seconds
        try:
            db, pool = self._acquire(deadline)
        except (psycopg.Error, OSError) as exc:
            raise self._failure(_LOCKING, exc) from None
        try:
            timer = _Timer(self.wait_seconds)
            try:
                with self._watchdog.bound(db, timer, deadline):
                    got = db.execute("SELECT pg_try_advisory_lock(%s) AS mine", (_RECOVERY_LOCK,))
                    row = got.fetchone()
                    db.commit()  # a session's lock: it outlives the transaction
            except (psycopg.Error, OSError) as exc:
                raise self._failure(_LOCKING, exc, timer) from None
            mine = row is not None and bool(row["mine"])
            try:
                yield mine
            finally:
                if mine:
                    with contextlib.suppress(psycopg.Error, OSError):  # a dropped one is freed
                        end = time.monotonic() + self.wait_seconds
                        with self._watchdog.bound(db, _Timer(self.wait_seconds), end):
                            db.execute("SELECT pg_advisory_unlock(%s)", (_RECOVERY_LOCK,))
                            db.commit()
        finally:
            _give_back(db, pool)

    def flush(self) -> None:
        """Write the outcomes kept from failed writes (see ``mark(keep=True)``), if any."""
        if self._deferred:
            with self._writing():
                pass  # _writing writes them first

    # -- plumbing ----------------------------------------------------------------------

    def _read(self, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        with self._reading() as db:
            return db.execute(sql, params).fetchall()

    @contextlib.contextmanager
    def _reading(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        with self._connection(self.wait_seconds, _READING) as db:
            yield db

    @contextlib.contextmanager
    def _writing(
        self, busy_seconds: float | None = None, *, durable: bool = True, doing: str = ""
    ) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """One write transaction; ``durable``: committed with ``synchronous_commit = on``.
        ``busy_seconds``: a shorter wait (locks held by others time out after it); ``doing``:
        what fails, and what that means for the payment, should the database not answer."""
        seconds = self.wait_seconds
        if busy_seconds is not None:  # the lock wait times out first; the watchdog is a backstop
            seconds = min(seconds, 2 * busy_seconds)
        with self._lock:
            deferred = dict(self._deferred)
        # The writes kept from failed ones first (outcomes: not synced), each in a transaction
        # of its own: each locks its own totals, in order, and holds nothing of this
        # transaction's, so two workers' kept writes and reservations never wait for each other
        # in a circle.
        for entry_id, kept in deferred.items():
            with self._connection(seconds, doing or _WRITING) as db:
                if busy_seconds is not None:
                    db.execute(f"SET LOCAL lock_timeout = '{int(busy_seconds * 1000)}ms'")
                _update(db, entry_id, *kept)
            with self._lock:  # forget it, unless a newer outcome was kept meanwhile
                if self._deferred.get(entry_id) is kept:
                    del self._deferred[entry_id]
            logger.info("journaled the outcome of payment #%s, kept since a failed write", entry_id)
        with self._connection(seconds, doing or _WRITING) as db:
            if durable:  # else the session's: off (see _configure)
                db.execute("SET LOCAL synchronous_commit = on")
            if busy_seconds is not None:
                db.execute(f"SET LOCAL lock_timeout = '{int(busy_seconds * 1000)}ms'")
            yield db

    @contextlib.contextmanager
    def _connection(
        self, seconds: float, doing: str
    ) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """One transaction on a working connection, all of it (the wait for a connection
        included) within ``seconds``; committed at the end, rolled back on an error. Any failure
        to reach the database, or its silence past the deadline, is ``journal_unavailable``."""
        deadline = time.monotonic() + seconds
        timer = _Timer(seconds)
        try:
            db, pool = self._acquire(deadline)
            try:
                with self._watchdog.bound(db, timer, deadline), db:
                    yield db
            finally:
                _give_back(db, pool)
        except (psycopg.Error, OSError) as exc:
            raise self._failure(doing, exc, timer) from None

    def _acquire(
        self, deadline: float
    ) -> tuple[psycopg.Connection[dict[str, Any]], ConnectionPool[Any] | None]:
        """A working connection before ``deadline``, and the pool to give it back to (None: a
        connection of its own, closed after). See the module for the cases."""
        if not self._started:
            self._start()
        while True:
            left = deadline - time.monotonic()
            try:
                db = self._pool.getconn(timeout=max(0.001, min(left, PROBE_SECONDS)))
            except psycopg.errors.OperationalError:  # PoolTimeout: busy, or it cannot connect
                break
            timer = _Timer(min(_CHECK_SECONDS, left))
            try:
                with self._watchdog.bound(db, timer, time.monotonic() + timer.seconds):
                    db.autocommit = True
                    db.execute("")
                    db.autocommit = False
            except (psycopg.Error, OSError) as exc:
                logger.info("dropped a broken journal connection (%s)", exc)
                self._pool.putconn(db)  # broken: the pool closes it and makes another
                if deadline - time.monotonic() <= 0:
                    raise PoolTimeout("no working connection in time") from None
                continue
            return db, self._pool
        left = deadline - time.monotonic()
        if left <= 0:
            raise PoolTimeout(f"no connection within {self.wait_seconds:g} s")
        direct = psycopg.connect(
            self._url,
            row_factory=dict_row,
            autocommit=False,
            connect_timeout=_connect_timeout(self._connect_timeout, left),
        )
        _configure(direct)
        logger.info("the journal's pool had no connection ready: connected directly")
        return direct, None

    def _failure(self, doing: str, exc: BaseException, timer: _Timer | None = None) -> PaymentError:
        if timer is not None and timer.fired:
            why = f"no answer within {timer.seconds:g} s"
        else:
            why = f"{type(exc).__name__}: {' '.join(self._scrubbed(str(exc)).split())[:300]}"
            if isinstance(exc, _POOLER_ERRORS):
                why += (
                    "; a connection pooler in transaction mode (PgBouncer's pool_mode = "
                    "transaction) stands between this machine and the database: the journal "
                    "needs whole sessions (pool_mode = session, or connect to PostgreSQL itself)"
                )
        return PaymentError(
            f"could not {doing} in the database {self.path} ({why}). Payments stop until the "
            "database answers again, so that none goes unrecorded; check that the database "
            "server runs and that this machine reaches it (journal_wait= sets how long each "
            "payment waits for it)",
            reason="journal_unavailable",
        )

    def _scrubbed(self, text: str) -> str:
        """``text`` (a psycopg error's, which may quote the URL) without the URL's password."""
        text = text.replace(self._given, self.path)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _period_now(self, db_now: float) -> int:
        """The time that decides budget periods: the injected clock's, else the database's
        (one clock for the whole fleet)."""
        return int(
            (self._clock() if self._clock else datetime.fromtimestamp(db_now, UTC)).timestamp()
        )

    def _entry(self, row: Mapping[str, Any]) -> JournalEntry:
        return _entry_from_row(row, float(row["db_now"]))


# -- connections ------------------------------------------------------------------------------

_OPEN: Final[weakref.WeakSet[PostgresJournal]] = weakref.WeakSet()
"""The journals open in this process (each is made the child's own after a fork)."""
_INHERITED: Final[list[ConnectionPool[Any]]] = []
"""In a child of a fork: the parent's pools, with the parent's connections, kept as they
are: never used, closed or collected here (closing one would end the parent's session)."""


def _after_fork() -> None:
    for journal in list(_OPEN):
        journal._forked()


os.register_at_fork(after_in_child=_after_fork)

_READING: Final = "read the payment journal: nothing was signed or paid"
_WRITING: Final = "write the payment journal"
_LOCKING: Final = "take the payment journal's recovery lock"
_RESERVING: Final = "reserve the payment in the payment journal: nothing was signed or paid"
_SIGNING: Final = (
    "journal the signed payment before sending it: it was not sent, so nothing was paid"
)


def _keeping(entry_id: int, state: str) -> str:
    return (
        f"journal payment #{entry_id}'s outcome ({state}): what the server answered is kept in "
        "this process and written first once the database answers"
    )


_POOLER_ERRORS: Final = (
    psycopg.errors.InvalidSqlStatementName,
    psycopg.errors.DuplicatePreparedStatement,
)
"""What a session's prepared statements (psycopg prepares a statement run often) meet behind a
pooler that hands each transaction to another server session."""


def _configure(db: psycopg.Connection[Any]) -> None:
    """Every journal transaction READ COMMITTED (``BEGIN ISOLATION LEVEL READ COMMITTED``),
    whatever the database's ``default_transaction_isolation``: the row locks keep reservations
    apart (see the module), and under REPEATABLE READ or SERIALIZABLE a transaction that waited
    for a lock would instead fail with a serialization error, read as the database down.

    And ``synchronous_commit = off`` for the session: most commits (a reservation, an outcome)
    need not wait for the disk, so only a durable one says otherwise (``SET LOCAL``, see
    ``_writing``), one statement fewer for the others."""
    db.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
    db.execute("SET synchronous_commit = off")
    db.commit()


def _libpq_url(url: str) -> str:
    """``url`` with its scheme in lower case: the SDK takes ``POSTGRESQL://`` for a database
    URL, and libpq reads only ``postgresql://`` and ``postgres://`` as one."""
    scheme, sep, rest = url.strip().partition("://")
    return f"{scheme.lower()}{sep}{rest}"


def _connect_timeout(named: object, limit: float) -> int:
    """libpq's ``connect_timeout`` (whole seconds, at least 2): the URL's, if any, but never
    more than ``limit`` (the operation's wait)."""
    bound = max(2, math.ceil(limit))
    try:
        asked = int(float(str(named))) if named is not None else 0
    except ValueError:
        asked = 0
    return min(bound, max(2, asked)) if asked > 0 else bound


def _reconnect_failed(pool: ConnectionPool[Any]) -> None:
    logger.info(
        "the journal's pool stopped reconnecting to the database for now; the next journal "
        "request tries again"
    )


def _give_back(db: psycopg.Connection[Any], pool: ConnectionPool[Any] | None) -> None:
    """Return a pooled connection (a broken one is replaced by the pool), close a direct one."""
    if pool is None:
        db.close()
    else:
        pool.putconn(db)


class _Timer:
    """One bounded wait on a connection: ``fired`` once the watchdog cut it for silence."""

    __slots__ = ("fired", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.fired = False


class _Watchdog:
    """Cuts the connection of a journal operation still waiting for the database past its
    deadline: libpq waits on its socket without a bound, so a hung server or a stalled network
    would hold a payment forever. Shutting the socket down (the connection stays open for
    psycopg, which then reads the end of the stream) makes psycopg report the connection lost
    in the waiting thread; the server rolls back what was not committed. One thread per
    journal, started on first use, sleeping until the nearest deadline."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._armed: dict[int, tuple[float, int, _Timer]] = {}
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False

    @contextlib.contextmanager
    def bound(self, db: psycopg.Connection[Any], timer: _Timer, deadline: float) -> Iterator[None]:
        token = next(self._tokens)
        with self._changed:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="human-rpc-journal-watchdog", daemon=True
                )
                self._thread.start()
            self._armed[token] = (deadline, db.pgconn.socket, timer)
            self._changed.notify()
        try:
            yield
        finally:
            with self._changed:  # disarmed before the connection can be closed or reused
                self._armed.pop(token, None)

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify()

    def _watch(self) -> None:
        with self._changed:
            while not self._closed:
                now = time.monotonic()
                for token, (deadline, fd, timer) in list(self._armed.items()):
                    if deadline <= now:
                        del self._armed[token]
                        timer.fired = True
                        _cut(fd)
                nearest = min((armed[0] for armed in self._armed.values()), default=None)
                self._changed.wait(None if nearest is None else max(0.0, nearest - now))


def _cut(fd: int) -> None:
    """Shut down the socket ``fd`` (a duplicate of it is closed; the connection's own stays
    open for libpq, which reads the end of the stream and reports the connection lost)."""
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError as exc:  # already closed: nothing is waiting on it
        logger.debug("could not cut a journal connection: %s", exc)
    else:
        logger.warning("cut a payment journal connection: the database did not answer in time")


# -- running totals -------------------------------------------------------------------------


Locked = dict[tuple[str, str, str], Decimal]
"""Running totals locked by this transaction, by scope, network and currency."""


def _keys(scope: str, network: str, currency_key: str) -> set[tuple[str, str, str]]:
    """The totals a payment in ``currency_key`` on ``network`` in ``scope`` may move."""
    return {(scope, network, currency_key), (scope, network, SOL_KEY)}


def _row_keys(db: psycopg.Connection[dict[str, Any]], entry_id: int) -> set[tuple[str, str, str]]:
    """The totals payment ``entry_id`` may move (none if there is no such row): its scope,
    network and currency never change once inserted, so they are read before any lock."""
    row = db.execute(
        "SELECT scope, network, currency_key FROM payments WHERE id = %s", (entry_id,)
    ).fetchone()
    return set() if row is None else _keys(row["scope"], row["network"], row["currency_key"])


def _lock_totals(
    db: psycopg.Connection[dict[str, Any]], keys: Iterable[tuple[str, str, str]]
) -> tuple[Locked, float]:
    """Lock (``FOR UPDATE``) the running totals ``keys`` (scope, network, currency), creating
    them at zero when missing, in the one order every writer keeps (sorted); what they hold, the
    database's clock once they are held (inside a write transaction). A transaction takes all
    the totals it needs at once, before any payment row; the spending buckets of a (scope,
    network, currency) are read and written only while holding its totals row."""
    locked: Locked = {}
    db_now = 0.0
    for scope, network, key in sorted(set(keys)):  # one at a time: the locks' order is this
        row = None
        while row is None:
            row = db.execute(
                "SELECT spent, extract(epoch FROM clock_timestamp())::float8 AS db_now "
                "FROM totals WHERE scope = %s AND network = %s AND currency_key = %s FOR UPDATE",
                (scope, network, key),
            ).fetchone()
            if row is None:  # a first payment in it: the row is made once (never deleted)
                db.execute(
                    "INSERT INTO totals (scope, network, currency_key, spent) "
                    "VALUES (%s, %s, %s, 0) ON CONFLICT DO NOTHING",
                    (scope, network, key),
                )
        locked[(scope, network, key)] = _sum(row["spent"], "totals", key, network)
        db_now = float(row["db_now"])
    return locked, db_now


def _add(
    db: psycopg.Connection[dict[str, Any]], scope: str, at: int, amounts: Totals, locked: Locked
) -> None:
    """Add ``amounts`` to the running totals of ``scope``, all of them locked already (in
    ``locked``), and to the spending buckets of the reservation time ``at``."""
    buckets = []
    for (network, key), amount in sorted(amounts.items()):
        if not amount:
            continue
        if (scope, network, key) not in locked:  # never: a payment's currency or SOL
            raise psycopg.DataError(f"the totals of {key} on {network} were not locked")
        db.execute(
            "UPDATE totals SET spent = spent + %s WHERE scope = %s AND network = %s "
            "AND currency_key = %s",
            (amount, scope, network, key),
        )
        locked[(scope, network, key)] += amount
        buckets += [(scope, network, key, lvl, start, amount) for lvl, start in buckets_at(at)]
    if buckets:
        with db.cursor() as cursor:  # one round trip (a pipeline)
            cursor.executemany(
                "INSERT INTO spending (scope, network, currency_key, level, bucket_start, spent) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (scope, network, currency_key, "
                "level, bucket_start) DO UPDATE SET spent = spending.spent + excluded.spent",
                buckets,
            )


def _db_clock(db: psycopg.Connection[dict[str, Any]]) -> float:
    """The database server's clock (Unix seconds)."""
    row = db.execute("SELECT extract(epoch FROM clock_timestamp())::float8 AS db_now").fetchone()
    assert row is not None  # noqa: S101 - a SELECT without FROM: one row
    return float(row["db_now"])


def _sum(value: Any, table: str, key: str, network: str) -> Decimal:
    """A sum this module keeps (a NUMERIC): only ever finite and at least zero. PostgreSQL's
    NUMERIC also takes 'NaN' and 'Infinity' (which pass ``CHECK (... >= 0)``): a row edited by
    hand to one of them stops payments (``DataError``, reported as ``journal_unavailable``)
    rather than voiding or lifting the ceiling, as in the SQLite journal."""
    amount = Decimal(value)
    if not amount.is_finite() or amount < 0:
        raise psycopg.DataError(
            f"{table} holds {str(value)[:40]!r} for {key} on {network}, which is not a sum "
            "(edited by hand?); set it back to what the payments count, or delete that raise "
            "and raise the budget again"
        )
    return amount


def _raises(db: psycopg.Connection[dict[str, Any]], scope: str, network: str) -> dict[str, Decimal]:
    return {
        row["currency_key"]: _sum(row["raised"], "budget_raises", row["currency_key"], network)
        for row in db.execute(
            "SELECT currency_key, raised FROM budget_raises WHERE scope = %s AND network = %s",
            (scope, network),
        )
    }


def _period_reader(
    db: psycopg.Connection[dict[str, Any]], scope: str, network: str
) -> PeriodReader:
    """What the buckets of ``scope`` on ``network`` count for a line (one query per line)."""

    def read(key: str, period: Period, now: int) -> tuple[Decimal, int | None, Decimal]:
        level, first = span(period, now)
        row = db.execute(
            "SELECT coalesce(sum(spent), 0) AS spent, min(bucket_start) FILTER (WHERE spent > 0) "
            "AS oldest, (SELECT raised FROM period_raises WHERE scope = %s AND network = %s AND "
            "currency_key = %s AND per = %s AND period_start = %s) AS raised FROM spending "
            "WHERE scope = %s AND network = %s AND currency_key = %s AND level = %s "
            "AND bucket_start >= %s",  # after now too: see the SQLite journal's
            (scope, network, key, period.key, first, scope, network, key, level, first),
        ).fetchone()
        assert row is not None  # noqa: S101 - an aggregate: one row
        oldest = None if row["oldest"] is None else int(row["oldest"])
        raised = Decimal(0) if row["raised"] is None or period.name == "rolling" else row["raised"]
        return (
            _sum(row["spent"], "spending", key, network),
            oldest,
            _sum(raised, "period_raises", key, network),
        )

    return read


_UNKNOWN_RESERVATION: Final = (
    "state = 'failed', error = %s, landed = FALSE, updated = %s, "
    "updated_unix = extract(epoch FROM clock_timestamp()), expires_at = NULL"
)
_NEVER_CONFIRMED: Final = (
    "released: the journal never confirmed the reservation, so nothing was signed for it"
)
"""A reservation whose commit was never confirmed, released by the next write (see reserve)."""

_COUNTED_FIELDS: Final = frozenset({"fee_lamports", "rent_lamports"})
"""The fields a move may set that change what a row counts (with ``failed``; see _counted)."""


def _update(
    db: psycopg.Connection[dict[str, Any]],
    entry_id: int,
    assignments: str,
    params: list[Any],
    expect: Iterable[str] | None = None,
    *,
    spent: Locked | None = None,
    uncounted: bool = False,
) -> dict[str, Any] | None:
    """Update one row (inside a write transaction) and move the running totals with it: the
    totals are locked before the row (the one order every writer keeps), unless ``spent``
    says this transaction holds them already.

    ``uncounted``: the update sets neither ``failed`` nor a fee or rent, so it changes nothing
    counted for a row that has not failed (``signed``, ``submitted``, ``accepted`` with the
    server's answer). Then the row is updated alone, without waiting for the totals every
    reservation of its currency holds: a fleet's ``signed`` commit (fsynced) and outcomes
    do not queue behind the reservations. Should the row have failed meanwhile (or be in
    no expected state), nothing is updated, and the whole path below decides, totals first.
    A failed-or-not test in the same UPDATE is exact: it waits for a concurrent writer's
    row lock and re-reads the row it committed (READ COMMITTED).
    """
    sql = f"UPDATE payments SET {assignments} WHERE id = %s"  # noqa: S608 - fixed column names
    values = [*params, entry_id]
    if expect is not None:
        sql += " AND state = ANY(%s)"
        values.append(list(expect))
    if uncounted and spent is None:
        fast = db.execute(sql + f" AND state <> 'failed' RETURNING {_ROW}", values).fetchone()
        if fast is not None:
            return fast
    key = db.execute(
        "SELECT scope, network, currency_key FROM payments WHERE id = %s", (entry_id,)
    ).fetchone()
    if key is None:
        return None
    locked = (
        spent
        if spent is not None
        else _lock_totals(db, _keys(key["scope"], key["network"], key["currency_key"]))[0]
    )
    before = db.execute(
        f"SELECT {_ROW} FROM payments WHERE id = %s FOR UPDATE",  # noqa: S608 - a fixed text
        (entry_id,),
    ).fetchone()
    after = db.execute(sql + f" RETURNING {_ROW}", values).fetchone()
    if after is None:
        return None
    assert before is not None  # noqa: S101 - the row exists: it was updated just now
    old, new = _counted(before), _counted(after)
    # Released or changed in the row's own scope, from the buckets of its reservation time.
    _add(
        db,
        before["scope"],
        reserved_at(before),
        {k: new.get(k, Decimal(0)) - old.get(k, Decimal(0)) for k in {*old, *new}},
        locked,
    )
    return after


# -- schema -----------------------------------------------------------------------------------


def _migrate(db: psycopg.Connection[dict[str, Any]], where: str) -> None:
    """Create the schema, or bring an older one up to date: one transaction, under an advisory
    lock (a second process starting at once waits, then finds the schema current)."""
    with db.transaction():
        db.execute("SET LOCAL synchronous_commit = on")
        db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        # No DDL when the schema is there: a user allowed only to read and write the tables
        # (made by their owner) opens a current journal ("CREATE TABLE IF NOT EXISTS" needs
        # the right to create, even when the table exists).
        made = db.execute("SELECT to_regclass('human_rpc_schema') IS NOT NULL AS made").fetchone()
        if made is None or not made["made"]:
            db.execute("CREATE TABLE human_rpc_schema (version INTEGER NOT NULL)")
        row = db.execute("SELECT max(version) AS version FROM human_rpc_schema").fetchone()
        version = int(row["version"]) if row is not None and row["version"] is not None else 0
        if version > SCHEMA_VERSION:
            raise SDKConfigurationError(
                f"the payment journal in the database {where} was written by a newer "
                f"human-rpc-sdk (schema {version}, this one knows {SCHEMA_VERSION}); upgrade "
                "the SDK, or pass journal_path= another database",
                parameter="journal_path",
            )
        for step in range(version, SCHEMA_VERSION):
            for part in _MIGRATIONS[step]:
                if isinstance(part, str):
                    db.execute(part)
                else:
                    part(db)
        if version != SCHEMA_VERSION:
            db.execute("DELETE FROM human_rpc_schema")
            db.execute("INSERT INTO human_rpc_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
            logger.info("payment journal schema %d -> %d in %s", version, SCHEMA_VERSION, where)
