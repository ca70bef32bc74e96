"""The payment journal: every payment, durably, before it leaves the process (SQLite, WAL).

One row per payment, moving through ``reserved``, ``signed``, ``submitted`` and then
``accepted``, ``refused`` or ``failed`` (see ``STATES`` in ``_receipts``). Reserving is one
``BEGIN IMMEDIATE`` transaction that checks the invoice was not paid already and that the
budget allows the payment, then inserts the row; SQLite's write lock makes that atomic across
threads and processes sharing the file.

One durable write per payment: only the commit that moves a payment to ``signed`` (its
transaction and headers, before they leave the process) is made with ``synchronous=FULL``, an
fsync of the write-ahead log. The reservation before it and the outcome after it are committed
with ``synchronous=NORMAL``: they reach the operating system at once (a killed process loses
nothing) but the disk only with the next full sync. That is safe because the write-ahead log
is replayed as a prefix: a power loss can only drop the last commits, never one in the middle,
and a full sync makes everything before it durable too. So the signed row is on disk with its
reservation before the payment is sent; a lost reservation sent nothing (its payment was never
signed); a lost outcome leaves a ``signed`` row that ``recover_payments()`` settles from the
chain, exactly as after a crash before the server answered. Everything else is fully synced:
budget raises, the schema, recovery's verdicts and the human tasks' ids and verdicts (none of
them is on a payment's way out). A journal SQLite cannot keep in WAL mode (a filesystem
without shared memory) syncs every write. ``full_syncs`` counts the fully synced commits.

Every payment does constant work, however long the history: the budget reads running totals
(one row per network and currency, kept in the same transactions as the payments), recovery
reads only open rows, one wallet's history reads only its rows (an index on the payer), and
opening a journal whose schema is current takes no write lock.

Budgets raised at run time are journaled too (``budget_raises``: the sum of the raises, per
network and currency), so a new process sees the ceiling the last one was given. They belong
to the journal, like the running totals they are compared with: every agent sharing the file
gets its own configured budget plus the raises recorded.

Budgets per period (see :mod:`.._budgets`): every reservation also adds its cost to one
spending bucket per level (minute, hour, day, week, month, in UTC) of its reservation time
(``reserved_unix``), in the same transaction; a release takes it back from those same buckets,
so a payment reserved yesterday and failed today gives back to yesterday. A line per period
reads one bucket (a calendar period) or at most a few hundred (a rolling window), whatever the
history; a raise per period (``period_raises``) is keyed by the period's start, so it lapses
with it. The journal's wall clock (``clock``, injectable) decides the period.

Budget scopes: the totals, the buckets and the raises are kept per scope (``budget_scope``), so
kinds of agent sharing a journal keep separate budgets; a row's releases go to its own scope.

The file is its owner's: a journal (or its folder) owned by another user, writable by group or
others, or reached through a symbolic link is refused, since whoever can write it can erase
what the budget counts.

The journal holds public payment data and signed transactions, never a key.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import secrets
import socket
import sqlite3
import stat
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any, Final

from .._budgets import LineRule, Period, buckets_at, resets, span
from .._money import EXACT
from .._offer import PaymentOffer
from .._receipts import STATES, PaymentReceipt
from .._records import (
    FAILED_ON_CHAIN,
    Budget,
    BudgetLine,
    Existing,
    JournalEntry,
    OverBudget,
    Reserved,
)
from .._settings import ENV_JOURNAL, MEMORY, default_journal_path
from ..exceptions import PaymentError, SDKConfigurationError

__all__ = ["ENV_JOURNAL", "MEMORY", "Journal", "default_journal_path"]

logger = logging.getLogger("human_rpc_sdk")

SCHEMA_VERSION: Final = 6
"""2: running totals (``totals``, ``counters``); 3: raised budgets (``budget_raises``), an
index on the payer for one wallet's history, and the paid human tasks (``task_id``,
``task_outcome``); 4: the write counter also watches ``totals``; 5: x402 payment ids
(``payment_id``) and what resumes a payment (``resume_key``, indexed), and the served payments
by wallet, network and URL (``payments_paid_for``: sign-in's "paid before"); 6: budgets per
period and per scope (``payments.scope`` and ``reserved_unix``, the spending buckets
``spending``, the raises of one period ``period_raises``; ``totals`` and ``budget_raises``
keyed by scope too)."""
REPLACED: Final = "replaced: its blockhash expired before it landed"
_PROCESS: Final = secrets.token_hex(8)
"""Tells this process's rows from those of an earlier process that had the same pid."""

# Every write to the payments or to their running totals, whoever makes it, counts: a write
# that did not keep the totals shows as writes != counted (see _recount_if_written_elsewhere).
_COUNTING_TRIGGERS: Final = "\n".join(
    f"CREATE TRIGGER IF NOT EXISTS {table}_{done} AFTER {event} ON {table}"  # noqa: S608
    "\n    BEGIN UPDATE counters SET value = value + 1 WHERE name = 'writes'; END;"
    for table in ("payments", "totals", "spending")
    for event, done in (("INSERT", "inserted"), ("UPDATE", "updated"), ("DELETE", "deleted"))
)

_SCHEMA: Final = f"""
CREATE TABLE IF NOT EXISTS payments (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    invoice_key   TEXT,
    state         TEXT NOT NULL CHECK (state IN ({", ".join(repr(s) for s in STATES)})),
    created       TEXT NOT NULL,
    updated       TEXT NOT NULL,
    updated_unix  REAL NOT NULL,
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
    fee_lamports  INTEGER NOT NULL DEFAULT 0,
    rent_lamports INTEGER NOT NULL DEFAULT 0,
    signature     TEXT,
    fee_payer     TEXT,
    blockhash     TEXT,
    transaction_b64 TEXT,
    headers       TEXT,
    http_status   INTEGER,
    settled       INTEGER,
    error         TEXT,
    landed        INTEGER,
    replaces      INTEGER REFERENCES payments(id),
    last_valid_block_height INTEGER,
    blockhash_slot INTEGER,
    landed_proof  TEXT,
    pid           INTEGER,
    host          TEXT,
    process       TEXT,
    genesis_hash  TEXT,
    task_id       TEXT,
    task_outcome  TEXT,
    payment_id    TEXT,
    resume_key    TEXT,
    scope         TEXT NOT NULL DEFAULT '',
    reserved_unix INTEGER
);
CREATE TABLE IF NOT EXISTS totals (
    -- No default scope: a recount by an older release (which names no scope) must fail, not
    -- put every scope's spending in the default one and leave the others at zero.
    scope         TEXT NOT NULL,
    network       TEXT NOT NULL,
    currency_key  TEXT NOT NULL,
    spent         TEXT NOT NULL,
    PRIMARY KEY (scope, network, currency_key)
);
CREATE TABLE IF NOT EXISTS budget_raises (
    scope         TEXT NOT NULL DEFAULT '',
    network       TEXT NOT NULL,
    currency_key  TEXT NOT NULL,
    raised        TEXT NOT NULL,
    updated       TEXT NOT NULL,
    PRIMARY KEY (scope, network, currency_key)
);
CREATE TABLE IF NOT EXISTS spending (
    scope         TEXT NOT NULL,
    network       TEXT NOT NULL,
    currency_key  TEXT NOT NULL,
    level         TEXT NOT NULL,
    bucket_start  INTEGER NOT NULL,
    spent         TEXT NOT NULL,
    PRIMARY KEY (scope, network, currency_key, level, bucket_start)
);
CREATE TABLE IF NOT EXISTS period_raises (
    scope         TEXT NOT NULL,
    network       TEXT NOT NULL,
    currency_key  TEXT NOT NULL,
    per           TEXT NOT NULL,
    period_start  INTEGER NOT NULL,
    raised        TEXT NOT NULL,
    updated       TEXT NOT NULL,
    PRIMARY KEY (scope, network, currency_key, per, period_start)
);
CREATE TABLE IF NOT EXISTS counters (
    name          TEXT PRIMARY KEY,
    value         INTEGER NOT NULL
);
INSERT OR IGNORE INTO counters (name, value) VALUES ('writes', 0), ('counted', 0);
{_COUNTING_TRIGGERS}
CREATE UNIQUE INDEX IF NOT EXISTS payments_one_per_invoice
    ON payments(invoice_key) WHERE invoice_key IS NOT NULL AND state != 'failed';
CREATE INDEX IF NOT EXISTS payments_spending ON payments(network, currency_key, state);
CREATE INDEX IF NOT EXISTS payments_state ON payments(state);
CREATE INDEX IF NOT EXISTS payments_unsettled ON payments(landed, state);
CREATE INDEX IF NOT EXISTS payments_replaces ON payments(replaces);
CREATE INDEX IF NOT EXISTS payments_payer ON payments(payer, network, id);
CREATE INDEX IF NOT EXISTS payments_open_tasks ON payments(task_id)
    WHERE task_id IS NOT NULL AND task_outcome IS NULL;
CREATE INDEX IF NOT EXISTS payments_resumable ON payments(resume_key)
    WHERE resume_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS payments_paid_for ON payments(payer, network, url, id)
    WHERE state = 'accepted';
"""  # noqa: S608 - a fixed text (the state names), no input

_ADDED_COLUMNS: Final = (
    ("last_valid_block_height", "INTEGER"),
    ("blockhash_slot", "INTEGER"),
    ("landed_proof", "TEXT"),
    ("genesis_hash", "TEXT"),
    ("task_id", "TEXT"),
    ("task_outcome", "TEXT"),
    ("payment_id", "TEXT"),
    ("resume_key", "TEXT"),
    ("scope", "TEXT NOT NULL DEFAULT ''"),
    ("reserved_unix", "INTEGER"),
)
"""Columns added since schema version 1: a journal of an older version gains them on opening."""
SOL_KEY: Final = "SOL"
_LAMPORTS: Final = Decimal(10) ** 9

# Columns a caller may set when moving a row to another state.
_UPDATABLE: Final = frozenset(
    {
        "signature",
        "fee_payer",
        "blockhash",
        "transaction_b64",
        "headers",
        "http_status",
        "settled",
        "error",
        "landed",
        "fee_lamports",
        "rent_lamports",
        "last_valid_block_height",
        "blockhash_slot",
        "landed_proof",
        "invoice_key",
        "task_id",
        "task_outcome",
        "payment_id",
        "resume_key",
    }
)


_OPEN: Final[weakref.WeakSet[Journal]] = weakref.WeakSet()
"""The journals open in this process (each is made the child's own after a fork)."""
_INHERITED: Final[list[sqlite3.Connection]] = []
"""In a child of a fork: the parent's connections, never used, closed or collected here."""


def _after_fork() -> None:
    for journal in list(_OPEN):
        journal._forked()


os.register_at_fork(after_in_child=_after_fork)


class Journal:
    """A payment journal in the SQLite file at ``path`` (``":memory:"``: this process only).

    Thread-safe; several processes may share one file.

    :raises SDKConfigurationError: when the file cannot be created or opened, or is not safely
        the current user's own.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, clock: Callable[[], datetime] | None = None
    ):
        self.path = str(path)
        self._now = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._deferred: dict[int, tuple[str, list[Any], tuple[str, ...] | None]] = {}
        """Outcomes that could not be written yet, by row: written before the next write."""
        self.full_syncs = 0
        """Commits made with a full sync (an fsync of the write-ahead log) since opening."""
        self._wal = False
        self._synchronous = "FULL"
        if self.path != MEMORY:
            _check_ownership(self.path)
        try:
            self._db = self._open()
        except (sqlite3.Error, OSError) as exc:
            raise SDKConfigurationError(
                f"cannot open the payment journal at {self.path} ({type(exc).__name__}: {exc}); "
                "pass journal_path= a writable file, or set HUMAN_RPC_JOURNAL",
                parameter="journal_path",
            ) from None
        _OPEN.add(self)

    def _forked(self) -> None:
        """In a child of ``os.fork()`` (an agent built before gunicorn --preload's or Celery's
        fork): SQLite forbids using a connection across a fork (its locks and shared memory
        are the parent's), and closing the parent's here could checkpoint and remove the
        write-ahead log the parent still uses. So the child keeps it, never used or closed
        (``_INHERITED``), and opens a connection of its own; a lock a parent's thread held at
        the fork did not come along, so it is made anew. An in-memory journal is a private copy:
        the child's own. The outcomes the parent kept are the parent's to write."""
        self._lock = threading.Lock()
        self._deferred = {}
        if self.path == MEMORY:
            return
        _INHERITED.append(self._db)
        try:
            self._db = self._open()
        except (sqlite3.Error, OSError) as exc:  # fail closed: every use is journal_unavailable
            logger.warning("cannot reopen the payment journal %s after a fork: %s", self.path, exc)
            self._db = sqlite3.connect(MEMORY, check_same_thread=False)
            self._db.close()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        if self.path != MEMORY:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            self._wal = str(mode).lower() == "wal"
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        if _version(db) != SCHEMA_VERSION:  # current: no write lock taken
            with _immediate(db):
                _migrate(db, self.path)
            self._count_sync()
        return db

    def close(self) -> None:
        """Close the file, writing first any outcome kept from a failed write."""
        try:
            self.flush()
        except PaymentError as exc:
            logger.warning(
                "closing the payment journal with %d payment outcome(s) unwritten (%s); "
                "agent.recover_payments() settles those payments from the chain",
                len(self._deferred),
                exc.reason,
            )
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"Journal({self.path!r})"

    # -- reading -----------------------------------------------------------------------

    def find(self, invoice_key: str) -> JournalEntry | None:
        """The live (not ``failed``) payment of this invoice, if any."""
        with self._reading() as db:
            row = db.execute(
                "SELECT * FROM payments WHERE invoice_key = ? AND state != 'failed'",
                (invoice_key,),
            ).fetchone()
        return None if row is None else self._entry(row)

    def entries(self, states: Iterable[str] | None = None) -> list[JournalEntry]:
        """Every row (oldest first), or those in ``states``."""
        with self._reading() as db:
            if states is None:
                rows = db.execute("SELECT * FROM payments ORDER BY id").fetchall()
            else:
                wanted = tuple(states)
                marks = ", ".join("?" * len(wanted))
                rows = db.execute(
                    f"SELECT * FROM payments WHERE state IN ({marks}) ORDER BY id",  # noqa: S608
                    wanted,
                ).fetchall()
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
        """The signed payments of wallet ``payer`` on ``network`` with a journal id above
        ``after``, oldest first, at most ``limit`` of them (an index: other wallets' rows and
        older rows are not read); only those of budget scope ``scope`` when given."""
        with self._reading() as db:
            rows = db.execute(
                "SELECT * FROM payments WHERE payer = ? AND network = ? AND id > ? "
                "AND transaction_b64 IS NOT NULL AND (? IS NULL OR scope = ?) ORDER BY id "
                "LIMIT ?",
                (payer, network, after, scope, scope, -1 if limit is None else limit),
            ).fetchall()
        return [self._entry(row) for row in rows]

    def paid_for(self, url: str, payer: str, network: str) -> JournalEntry | None:
        """The latest payment by wallet ``payer`` on ``network`` for ``url`` that was served
        (``accepted``), or None: what lets the agent sign in instead of paying (see
        ``_siwx``). One row read, through ``payments_paid_for`` (the served rows by wallet,
        network and URL, newest last)."""
        with self._reading() as db:
            row = db.execute(
                "SELECT * FROM payments WHERE payer = ? AND network = ? AND url = ? "
                "AND state = 'accepted' ORDER BY id DESC LIMIT 1",
                (payer, network, url),
            ).fetchone()
        return None if row is None else self._entry(row)

    def open_tasks(self) -> list[JournalEntry]:
        """Rows of payments that paid a human task whose verdict is not recorded (oldest
        first); an index holds only those rows."""
        with self._reading() as db:
            rows = db.execute(
                "SELECT * FROM payments WHERE task_id IS NOT NULL AND task_outcome IS NULL "
                "ORDER BY id"
            ).fetchall()
        return [self._entry(row) for row in rows]

    def resumable(
        self, resume_keys: Iterable[str], abandoned_after: float = float("inf")
    ) -> JournalEntry | None:
        """The oldest payment under one of ``resume_keys`` whose answer never came and that
        nobody is sending: ``submitted``, ``signed`` by a process that is gone or with no
        outcome for ``abandoned_after`` seconds, or found landed by a recovery (``accepted``,
        no HTTP status); never one the chain proved never landed (see :mod:`.._resume`)."""
        wanted = tuple(resume_keys)
        marks = ", ".join("?" * len(wanted))
        with self._reading() as db:
            rows = db.execute(
                f"SELECT * FROM payments WHERE resume_key IN ({marks}) "  # noqa: S608
                "AND (state IN ('signed', 'submitted') AND (landed IS NULL OR landed = 1) "
                "OR state = 'accepted' AND landed = 1 AND http_status IS NULL) "
                "ORDER BY id",
                wanted,
            ).fetchall()
        for entry in map(self._entry, rows):
            if entry.state != "signed" or entry.age > abandoned_after or not process_alive(entry):
                return entry
        return None

    def unsettled(self) -> list[JournalEntry]:
        """The rows the chain could still tell something about: every row not known to have
        landed, except released reservations and proven failures (oldest first).

        Reads only those rows (an index on ``landed``), never the settled history.
        """
        with self._reading() as db:
            rows = db.execute(
                "SELECT * FROM payments WHERE (landed IS NULL OR landed = 0) AND NOT "
                "(state = 'failed' AND (transaction_b64 IS NULL OR landed_proof IS NOT NULL)) "
                "ORDER BY id"
            ).fetchall()
        return [self._entry(row) for row in rows]

    def budget(
        self,
        network: str,
        limits: Mapping[str, Decimal | None],
        *,
        periods: Mapping[str, tuple[LineRule, ...]] | None = None,
        scope: str = "",
    ) -> dict[str, Budget]:
        """Each currency's budget in ``scope``: its lifetime line (the limit given plus the
        raises journaled; a limit of None stays None) and its lines per period (``periods``),
        for every currency with a line or spent in."""
        now = int(self._now().timestamp())
        with self._reading() as db:
            spent = {
                row[0]: _journaled_sum(row[1], "totals", row[0], network)
                for row in db.execute(
                    "SELECT currency_key, spent FROM totals WHERE scope = ? AND network = ?",
                    (scope, network),
                )
            }
            raised = _raises(db, scope, network)
            return budget_report(
                limits, raised, spent, periods or {}, _period_reader(db, scope, network), now
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
        ``scope``, in one transaction: raises from several processes add up. ``per``: raise
        that calendar period's line for the current period only (it lapses at the reset)."""
        moment = self._now()
        now = moment.isoformat()
        with self._writing() as db:
            if per is not None:
                start = span(per, int(moment.timestamp()))[1]
                for key, amount in amounts.items():
                    before = _period_raised(db, scope, network, key, per, start)
                    db.execute(
                        "INSERT INTO period_raises (scope, network, currency_key, per, "
                        "period_start, raised, updated) VALUES (?, ?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (scope, network, currency_key, per, period_start) "
                        "DO UPDATE SET raised = excluded.raised, updated = excluded.updated",
                        (scope, network, key, per.key, start, str(before + amount), now),
                    )
                return
            raised = _raises(db, scope, network)
            db.executemany(
                "INSERT INTO budget_raises (scope, network, currency_key, raised, updated) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (scope, network, currency_key) "
                "DO UPDATE SET raised = excluded.raised, updated = excluded.updated",
                [
                    (scope, network, key, str(raised.get(key, Decimal(0)) + amount), now)
                    for key, amount in amounts.items()
                ],
            )

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
        """Atomically: refuse a second payment of the invoice, check the budget, insert a row.

        ``periods``: each currency's lines per period, checked against the spending buckets
        of ``scope`` at this journal's clock; ``scope``: the budget the payment counts in.

        The payment counts against ``budget`` in its currency, and its network fee and rent
        against ``sol_budget`` (the SOL budget; for a SOL payment, ``budget`` is that one), each
        plus the raises journaled for it (see :meth:`raise_budget`). The check reads the
        running totals: the same work at the first payment and the millionth.

        With ``offer.replaces``, that earlier payment becomes ``failed`` in the same
        transaction (it could no longer land), so its budget goes to the replacement. Its
        ``landed`` is left as the chain check recorded it: a replacement follows only a proof.
        """
        now = self._now()
        at = int(now.timestamp())
        limits = {currency_key: budget}
        if currency_key != SOL_KEY:
            limits[SOL_KEY] = sol_budget
        # Not fully synced: the signed commit that must follow before anything is sent syncs
        # this reservation with it; a reservation lost to a power cut sent nothing.
        with self._writing(durable=False) as db:
            if invoice_key is not None:
                row = db.execute(
                    "SELECT * FROM payments WHERE invoice_key = ? AND state != 'failed'",
                    (invoice_key,),
                ).fetchone()
                if row is not None and row["id"] != offer.replaces:
                    return Existing(self._entry(row))
            if offer.replaces is not None:
                _update(
                    db,
                    offer.replaces,
                    "state = 'failed', "
                    "error = ? || COALESCE(' (refused: ' || error || ')', ''), updated = ?, "
                    "updated_unix = ?",
                    [REPLACED, *_stamp(now)],
                )
            cost = _cost(offer.network, currency_key, Decimal(offer.amount), offer.fee_lamports)
            over = refusal(
                cost,
                limits,
                _raises(db, scope, offer.network),
                lambda network, key: _total(db, scope, network, key),
                periods or {},
                _period_reader(db, scope, offer.network),
                at,
            )
            if over is not None:
                db.execute("ROLLBACK")
                return over
            cursor = db.execute(
                "INSERT INTO payments (scope, reserved_unix, invoice_key, state, created, "
                "updated, updated_unix, url, "
                "network, format, currency, currency_key, amount, atomic_amount, mint, recipient, "
                "destination, reference, payer, fee_lamports, replaces, pid, host, process, "
                "genesis_hash) "
                "VALUES (?, ?, ?, 'reserved', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                "?, ?, ?, ?)",
                (
                    scope,
                    at,
                    invoice_key,
                    now.isoformat(),
                    *_stamp(now),
                    *reserved_columns(offer, currency_key, genesis_hash),
                ),
            )
            row = db.execute("SELECT * FROM payments WHERE id = ?", (cursor.lastrowid,)).fetchone()
            _add(db, scope, at, _counted(row))
            return Reserved(self._entry(row))

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
        """Move a row to ``state`` with ``fields``; only from ``expect`` states when given.

        Returns the updated entry, or None when the row was not in an expected state (another
        process, or a recovery, got there first). ``busy_seconds``: how long to wait for a
        journal another connection holds locked (default: 30 s). ``keep``: if the write
        fails, keep it in this process and write it first thing at the next write that
        succeeds (an outcome the server told must not be lost to a held lock).
        ``durable=False``: commit without a full sync (a payment's outcome, which recovery can
        learn again from the chain); a move to ``signed`` is always fully synced.
        """
        if state not in STATES:
            raise ValueError(f"unknown journal state {state!r}")
        values = dict(fields or {})
        unknown = set(values) - _UPDATABLE
        if unknown:
            raise ValueError(f"journal fields cannot be set: {sorted(unknown)}")
        if "headers" in values and values["headers"] is not None:
            values["headers"] = json.dumps(dict(values["headers"]))
        assignments = ", ".join(
            ["state = ?", "updated = ?", "updated_unix = ?", *(f"{name} = ?" for name in values)]
        )
        params: list[Any] = [state, *_stamp(self._now()), *values.values()]
        allowed = None if expect is None else tuple(expect)
        try:
            with self._writing(busy_seconds, durable=durable or state == "signed") as db:
                row = _update(db, entry_id, assignments, params, allowed)
                return None if row is None else self._entry(row)
        except PaymentError:
            if keep:
                with self._lock:
                    self._deferred[entry_id] = (assignments, params, allowed)
            raise

    def flush(self) -> None:
        """Write the outcomes kept from failed writes (see ``mark(keep=True)``), if any.

        :raises PaymentError: ``journal_unavailable`` while the journal still cannot be written.
        """
        if self._deferred:
            with self._writing():
                pass  # _writing writes them first

    @contextlib.contextmanager
    def recovering(self) -> Iterator[bool]:
        """Always True: on one machine, recoverers sharing the file may run together (each of
        their writes expects the state it read, so none undoes another's)."""
        yield True

    # -- plumbing ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock, localcontext(EXACT):  # sums exact whatever the caller's context
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise self._failure("read", exc) from None

    @contextlib.contextmanager
    def _writing(
        self, busy_seconds: float | None = None, *, durable: bool = True
    ) -> Iterator[sqlite3.Connection]:
        """One write transaction; ``durable``: committed with a full sync (see the module)."""
        with self._lock, localcontext(EXACT):  # sums exact whatever the caller's context
            db = self._db
            try:
                if busy_seconds is not None:
                    db.execute(f"PRAGMA busy_timeout = {int(busy_seconds * 1000)}")
                self._sync_mode(db, "FULL" if durable or not self._wal else "NORMAL")
                try:
                    with _immediate(db):
                        _recount_if_written_elsewhere(db)
                        flushed = self._flush_deferred(db)
                        yield db
                        committed = db.in_transaction  # False: the body rolled back
                        if committed:
                            _all_counted(db)
                    if committed:
                        self._count_sync()
                        for entry_id in flushed:
                            self._deferred.pop(entry_id, None)
                finally:
                    if busy_seconds is not None:
                        db.execute("PRAGMA busy_timeout = 30000")
            except sqlite3.Error as exc:
                raise self._failure("write", exc) from None

    def _sync_mode(self, db: sqlite3.Connection, mode: str) -> None:
        """Set how the next commit syncs (outside a transaction; a no-op when unchanged)."""
        if mode != self._synchronous:
            db.execute(f"PRAGMA synchronous={mode}")
            self._synchronous = mode

    def _count_sync(self) -> None:
        if self.path != MEMORY and self._synchronous == "FULL":
            self.full_syncs += 1

    def _flush_deferred(self, db: sqlite3.Connection) -> list[int]:
        """Inside a write transaction: write the outcomes kept from earlier failed writes;
        which rows (forgotten only once the transaction commits)."""
        for entry_id, (assignments, params, expect) in self._deferred.items():
            _update(db, entry_id, assignments, params, expect)
            logger.info("journaled the outcome of payment #%s, kept since a failed write", entry_id)
        return list(self._deferred)

    def _failure(self, what: str, exc: sqlite3.Error) -> PaymentError:
        return PaymentError(
            f"could not {what} the payment journal at {self.path} ({type(exc).__name__}: "
            f"{exc}). Payments stop until the journal works again, so none goes unrecorded; "
            "check the disk and the file's permissions, and whether another process holds it",
            reason="journal_unavailable",
        )

    def _entry(self, row: sqlite3.Row) -> JournalEntry:
        return entry_from_row(row, self._now().timestamp())


def entry_from_row(row: Any, now: float) -> JournalEntry:
    """A row of either store (a ``sqlite3.Row`` or psycopg's dict) as a :class:`JournalEntry`;
    ``now``: the Unix time its age is measured at."""
    updated = float(row["updated_unix"])
    headers = json.loads(row["headers"]) if row["headers"] else {}
    landed = row["landed"]
    settled = row["settled"]
    receipt = PaymentReceipt(
        url=row["url"],
        amount=Decimal(row["amount"]),
        currency=row["currency"],
        mint=row["mint"],
        recipient=row["recipient"],
        reference=row["reference"],
        network=row["network"],
        signature=row["signature"] or "",
        time=datetime.fromisoformat(row["created"]),
        atomic_amount=int(row["atomic_amount"]),
        payer=row["payer"],
        destination=row["destination"],
        fee_lamports=row["fee_lamports"],
        rent_lamports=row["rent_lamports"],
        http_status=row["http_status"],
        format=row["format"],
        settled=None if settled is None else bool(settled),
        error_reason=row["error"],
        id=row["id"],
        state=row["state"],
        landed=None if landed is None else bool(landed),
        replaces=row["replaces"],
        task_id=_column(row, "task_id"),
        task_outcome=_column(row, "task_outcome"),
        payment_id=_column(row, "payment_id"),
    )
    return JournalEntry(
        receipt=receipt,
        invoice_key=row["invoice_key"],
        headers=headers,
        transaction=row["transaction_b64"],
        blockhash=row["blockhash"],
        last_valid_block_height=row["last_valid_block_height"],
        blockhash_slot=row["blockhash_slot"],
        landed_proof=row["landed_proof"],
        fee_payer=row["fee_payer"],
        pid=row["pid"],
        host=row["host"],
        process=row["process"],
        age=max(0.0, now - updated),
        genesis_hash=row["genesis_hash"],
    )


def _column(row: Any, name: str) -> Any:
    """A column added since schema version 2 (None in a file not migrated yet)."""
    return row[name] if name in row.keys() else None  # noqa: SIM118 - a Row, not a dict


def reserved_columns(
    offer: PaymentOffer, currency_key: str, genesis_hash: str | None
) -> tuple[Any, ...]:
    """A reservation's columns from ``url`` to ``genesis_hash`` (the order both stores' INSERT
    names them): what it pays, and which process on which host reserved it."""
    return (
        offer.url,
        offer.network,
        offer.format,
        offer.currency,
        currency_key,
        str(offer.amount),
        str(offer.atomic_amount),
        offer.mint,
        offer.recipient,
        offer.destination,
        offer.reference,
        offer.payer,
        offer.fee_lamports,
        offer.replaces,
        os.getpid(),
        socket.gethostname(),
        _PROCESS,
        genesis_hash,
    )


def owned_by_this_process(entry: JournalEntry) -> bool:
    return entry.process == _PROCESS and entry.pid == os.getpid()


def process_alive(entry: JournalEntry) -> bool:
    """Whether the process that wrote ``entry`` may still be running (same host only)."""
    if entry.host != socket.gethostname() or entry.pid is None:
        return True  # another machine's process: assume it lives
    if owned_by_this_process(entry):
        return True
    if entry.pid == os.getpid():  # this process holds its pid now: that process is gone
        return False
    try:
        os.kill(entry.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _statements() -> list[str]:
    """The schema's statements (a trigger's body keeps its own semicolons)."""
    statements: list[str] = []
    current = ""
    for line in _SCHEMA.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return statements


@contextlib.contextmanager
def _immediate(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction holding SQLite's write lock from its first statement."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    if db.in_transaction:
        db.execute("COMMIT")


# -- running totals -------------------------------------------------------------------------

Totals = dict[tuple[str, str], Decimal]


def _cost(network: str, currency_key: str, amount: Decimal, lamports: int) -> Totals:
    """What one payment counts against the budgets: its amount in its currency, and the SOL it
    costs on top (network fee, priority fee, rent) against SOL."""
    cost: Totals = {(network, currency_key): amount}
    if lamports:
        sol = (network, SOL_KEY)
        cost[sol] = cost.get(sol, Decimal(0)) + Decimal(lamports) / _LAMPORTS
    return cost


def _counted(row: Any) -> Totals:
    """What a row counts against the budgets now: everything but a payment that failed (it
    moved no money and never can), save the network fee of one that executed and failed on
    chain (the fee was charged all the same)."""
    if row is None:
        return {}
    if row["state"] == "failed":
        if not str(row["landed_proof"] or "").startswith(FAILED_ON_CHAIN):
            return {}
        return {(row["network"], SOL_KEY): Decimal(int(row["fee_lamports"] or 0)) / _LAMPORTS}
    lamports = int(row["fee_lamports"] or 0) + int(row["rent_lamports"] or 0)
    return _cost(row["network"], row["currency_key"], Decimal(row["amount"]), lamports)


def _add(db: sqlite3.Connection, scope: str, at: int, amounts: Totals) -> None:
    """Add ``amounts`` to the running totals of ``scope`` and to the spending buckets of the
    reservation time ``at`` (one per level), inside a write transaction."""
    for (network, key), amount in amounts.items():
        if not amount:
            continue
        total = _total(db, scope, network, key) + amount
        db.execute(
            "INSERT INTO totals (scope, network, currency_key, spent) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (scope, network, currency_key) DO UPDATE SET spent = excluded.spent",
            (scope, network, key, str(total)),
        )
        for level, start in buckets_at(at):
            row = db.execute(
                "SELECT spent FROM spending WHERE scope = ? AND network = ? AND currency_key = ? "
                "AND level = ? AND bucket_start = ?",
                (scope, network, key, level, start),
            ).fetchone()
            before = Decimal(0) if row is None else _journaled_sum(row[0], "spending", key, network)
            db.execute(
                "INSERT INTO spending (scope, network, currency_key, level, bucket_start, spent) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (scope, network, currency_key, level, "
                "bucket_start) DO UPDATE SET spent = excluded.spent",
                (scope, network, key, level, start, str(before + amount)),
            )


def _total(db: sqlite3.Connection, scope: str, network: str, currency_key: str) -> Decimal:
    row = db.execute(
        "SELECT spent FROM totals WHERE scope = ? AND network = ? AND currency_key = ?",
        (scope, network, currency_key),
    ).fetchone()
    return Decimal(0) if row is None else _journaled_sum(row[0], "totals", currency_key, network)


def _period_reader(db: sqlite3.Connection, scope: str, network: str) -> PeriodReader:
    """What the buckets of ``scope`` on ``network`` count for a line (see :data:`PeriodReader`)."""

    def read(key: str, period: Period, now: int) -> tuple[Decimal, int | None, Decimal]:
        level, first = span(period, now)
        spent, oldest = Decimal(0), None
        # From the first bucket on, with no upper bound: buckets after now exist only if the
        # clock went back, and counting them refuses early rather than late.
        for start, text in db.execute(
            "SELECT bucket_start, spent FROM spending WHERE scope = ? AND network = ? AND "
            "currency_key = ? AND level = ? AND bucket_start >= ? ORDER BY bucket_start",
            (scope, network, key, level, first),
        ):
            amount = _journaled_sum(text, "spending", key, network)
            if amount:
                spent += amount
                oldest = start if oldest is None else oldest
        raised = (
            Decimal(0)
            if period.name == "rolling"
            else _period_raised(db, scope, network, key, period, first)
        )
        return spent, oldest, raised

    return read


def _period_raised(
    db: sqlite3.Connection, scope: str, network: str, key: str, period: Period, start: int
) -> Decimal:
    row = db.execute(
        "SELECT raised FROM period_raises WHERE scope = ? AND network = ? AND currency_key = ? "
        "AND per = ? AND period_start = ?",
        (scope, network, key, period.key, start),
    ).fetchone()
    return Decimal(0) if row is None else _journaled_sum(row[0], "period_raises", key, network)


def _journaled_sum(text: Any, table: str, currency_key: str, network: str) -> Decimal:
    """A sum the journal keeps as text (``totals.spent``, ``budget_raises.raised``). Only this
    module writes them, and never anything but a finite sum of at least zero; a row edited by
    hand to something else (``NaN``, ``Infinity``, ``-5``, text) stops payments (``DataError``,
    reported as ``journal_unavailable``) rather than voiding or moving the ceiling."""
    try:
        amount = Decimal(text) if isinstance(text, str) else Decimal("NaN")
    except ArithmeticError:
        amount = Decimal("NaN")
    if not amount.is_finite() or amount < 0 or amount.adjusted() > _MAX_RAISED_DIGITS:
        fix = (
            "delete that row and raise the budget again with raise_budget"
            if table == "budget_raises"
            else "have the totals counted again from the payments: UPDATE counters SET value "
            "= value + 1 WHERE name = 'writes'"
        )
        raise sqlite3.DataError(
            f"{table} holds {str(text)[:40]!r} for {currency_key} on {network}, which is not a "
            f"sum (edited by hand?); {fix}"
        )
    return amount


_MAX_RAISED_DIGITS: Final = 30  # raise_budget adds amounts below 1e21 each


def _raises(db: sqlite3.Connection, scope: str, network: str) -> dict[str, Decimal]:
    """The raises journaled on ``network``. Only ``raise_budget`` writes them (positive sums);
    a row edited by hand to text that is not a finite sum of at least zero (``NaN``,
    ``Infinity``, ``-5``) stops payments (``DataError``, reported as ``journal_unavailable``)
    rather than lifting, lowering or voiding the ceiling."""
    return {
        key: _journaled_sum(text, "budget_raises", key, network)
        for key, text in db.execute(
            "SELECT currency_key, raised FROM budget_raises WHERE scope = ? AND network = ?",
            (scope, network),
        )
    }


def _plus(limit: Decimal | None, raised: Decimal | None) -> Decimal | None:
    """A configured ceiling plus the raises journaled; no ceiling stays none."""
    return None if limit is None else limit + (raised or Decimal(0))


# -- budget lines (both stores) -------------------------------------------------------------

PeriodReader = Callable[[str, Period, int], tuple[Decimal, int | None, Decimal]]
"""``(currency key, period, now)``: what a store's buckets count for a line of that period at
``now`` (the sum, the start of the oldest bucket counted with spending, or None) and the
raises journaled for the current period (0 for a rolling window)."""


def refusal(
    cost: Totals,
    limits: Mapping[str, Decimal | None],
    raised: Mapping[str, Decimal],
    lifetime_spent: Callable[[str, str], Decimal],
    periods: Mapping[str, tuple[LineRule, ...]],
    read: PeriodReader,
    now: int,
) -> OverBudget | None:
    """The line ``cost`` would take past its limit that lifts last, or None: a lifetime line
    (``limits`` plus ``raised``; it never resets) before any line per period, and of those the
    one that resets last (a refusal naming an hour line while a week line also refuses would
    send its caller back at the hour's end to be refused again)."""
    refused: list[OverBudget] = []
    for (network, key), amount in cost.items():
        limit = _plus(limits.get(key), raised.get(key))
        if limit is not None:
            spent = lifetime_spent(network, key)
            if spent + amount > limit:
                return OverBudget(spent, limit, key, amount)
        for line in periods.get(key, ()):
            assert line.per is not None  # noqa: S101 - period lines only
            spent, oldest, extra = read(key, line.per, now)
            if spent + amount > line.limit + extra:
                when = resets(line.per, now, oldest)
                refused.append(OverBudget(spent, line.limit + extra, key, amount, line.per, when))
    return max(refused, key=_lifts_at, default=None)


def _lifts_at(over: OverBudget) -> float:
    """When a refusing line lifts: never for a cost above the line itself, else its reset."""
    if over.resets is None or over.cost > over.limit:
        return math.inf
    return over.resets


def budget_report(
    limits: Mapping[str, Decimal | None],
    raised: Mapping[str, Decimal],
    spent: Mapping[str, Decimal],
    periods: Mapping[str, tuple[LineRule, ...]],
    read: PeriodReader,
    now: int,
) -> dict[str, Budget]:
    """Each currency's :class:`Budget`: its lifetime line (unless it has only lines per
    period), then its lines per period, each with when it resets."""
    report: dict[str, Budget] = {}
    for key in sorted(set(limits) | set(spent) | set(periods)):
        spans = periods.get(key, ())
        lines = []
        if limits.get(key) is not None or not spans:
            lines.append(BudgetLine(_plus(limits.get(key), raised.get(key)), spent.get(key, _0)))
        for line in spans:
            assert line.per is not None  # noqa: S101 - period lines only
            used, oldest, extra = read(key, line.per, now)
            when = resets(line.per, now, oldest)
            lines.append(
                BudgetLine(
                    line.limit + extra,
                    used,
                    line.per.public,
                    None if when is None else datetime.fromtimestamp(when, UTC),
                )
            )
        report[key] = Budget(tuple(lines))
    return report


_0: Final = Decimal(0)
Buckets = dict[tuple[str, str, str, str, int], Decimal]


def recount(rows: Iterable[Any]) -> tuple[dict[tuple[str, str, str], Decimal], Buckets]:
    """The running totals (by scope, network, currency) and the spending buckets (and level
    and start) that ``rows`` count: a migration's or a recount's sums."""
    totals: dict[tuple[str, str, str], Decimal] = {}
    buckets: Buckets = {}
    for row in rows:
        scope, at = row["scope"], reserved_at(row)
        for (network, key), amount in _counted(row).items():
            totals[(scope, network, key)] = totals.get((scope, network, key), _0) + amount
            for level, start in buckets_at(at):
                where = (scope, network, key, level, start)
                buckets[where] = buckets.get(where, _0) + amount
    return totals, buckets


def reserved_at(row: Any) -> int:
    """When a row was reserved (Unix seconds): the time its spending buckets are of."""
    at = _column(row, "reserved_unix")
    return int(at) if at is not None else _unix(row["created"])


def _unix(created: str) -> int:
    moment = datetime.fromisoformat(created)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _update(
    db: sqlite3.Connection,
    entry_id: int,
    assignments: str,
    params: list[Any],
    expect: Iterable[str] | None = None,
) -> sqlite3.Row | None:
    """Update one row (inside a write transaction) and move the running totals with it."""
    before = db.execute("SELECT * FROM payments WHERE id = ?", (entry_id,)).fetchone()
    sql = f"UPDATE payments SET {assignments} WHERE id = ?"  # noqa: S608 - fixed column names
    values = [*params, entry_id]
    if expect is not None:
        allowed = tuple(expect)
        sql += f" AND state IN ({', '.join('?' * len(allowed))})"
        values += allowed
    if db.execute(sql, values).rowcount == 0:
        return None
    after: sqlite3.Row = db.execute("SELECT * FROM payments WHERE id = ?", (entry_id,)).fetchone()
    old, new = _counted(before), _counted(after)
    # Only what changed moves the totals (a move to signed or accepted usually changes none),
    # in the row's own scope and in the buckets of its reservation time.
    change = {key: new.get(key, Decimal(0)) - old.get(key, Decimal(0)) for key in {*old, *new}}
    _add(db, before["scope"], reserved_at(before), change)
    return after


def _recount_if_written_elsewhere(db: sqlite3.Connection) -> None:
    """Recount the totals if rows changed without them (inside a write transaction).

    Triggers count every write to ``payments`` and ``totals``, whoever makes it; this SDK's
    writes also keep the totals and mark the count as counted. A difference means a write that
    did not: a process of an older release still running on the journal, or a hand edit (of a
    payment, or of the totals themselves, which are only a cache of the payments). The totals
    are then recounted from the payments before anything is decided on them.
    """
    values = dict(
        db.execute("SELECT name, value FROM counters WHERE name IN ('writes', 'counted')")
    )
    writes, counted = values["writes"], values["counted"]
    if writes != counted:
        logger.warning(
            "the payment journal was written without its running totals (%d write(s), by an "
            "older release or by hand); recounting them from the payments",
            writes - counted,
        )
        rebuild_totals(db)


def _all_counted(db: sqlite3.Connection) -> None:
    """Inside a write transaction whose writes kept the totals: count them as counted."""
    db.execute(
        "UPDATE counters SET value = (SELECT value FROM counters WHERE name = 'writes') "
        "WHERE name = 'counted'"
    )


def rebuild_totals(db: sqlite3.Connection) -> None:
    """Recount the running totals and the spending buckets from every row (when a journal is
    migrated, or was written without them): a row without its reservation time (an older
    release's) is given the time it was created."""
    for row_id, created in db.execute(
        "SELECT id, created FROM payments WHERE reserved_unix IS NULL"
    ).fetchall():
        db.execute("UPDATE payments SET reserved_unix = ? WHERE id = ?", (_unix(created), row_id))
    db.execute("DELETE FROM totals")
    db.execute("DELETE FROM spending")
    rows = db.cursor()
    rows.row_factory = sqlite3.Row
    totals, buckets = recount(
        rows.execute(
            "SELECT * FROM payments WHERE state != 'failed' OR landed_proof LIKE 'failed on chain%'"
        )
    )
    db.executemany(
        "INSERT INTO totals (scope, network, currency_key, spent) VALUES (?, ?, ?, ?)",
        [(*key, str(amount)) for key, amount in totals.items()],
    )
    db.executemany(
        "INSERT INTO spending (scope, network, currency_key, level, bucket_start, spent) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(*key, str(amount)) for key, amount in buckets.items()],
    )


# -- schema and file --------------------------------------------------------------------------


def _version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _migrate(db: sqlite3.Connection, path: str) -> None:
    """Create the schema, or bring an older one up to date (inside a write transaction)."""
    version = _version(db)  # again, under the lock: another process may have done it
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise SDKConfigurationError(
            f"the payment journal at {path} was written by a newer human-rpc-sdk (schema "
            f"{version}, this one knows {SCHEMA_VERSION}); upgrade the SDK, or pass "
            "journal_path= another file",
            parameter="journal_path",
        )
    statements = _statements()
    unscoped = _tables_without_scope(db)
    if "totals" in unscoped:  # recounted below, with the scope
        db.execute("DROP TABLE totals")
    if "budget_raises" in unscoped:
        db.execute("ALTER TABLE budget_raises RENAME TO budget_raises_unscoped")
    for statement in statements:
        if statement.startswith("CREATE TABLE"):
            db.execute(statement)
    if "budget_raises" in unscoped:
        db.execute(
            "INSERT INTO budget_raises (scope, network, currency_key, raised, updated) "
            "SELECT '', network, currency_key, raised, updated FROM budget_raises_unscoped"
        )
        db.execute("DROP TABLE budget_raises_unscoped")
    present = {row[1] for row in db.execute("PRAGMA table_info(payments)")}
    for name, kind in _ADDED_COLUMNS:
        if name not in present:
            db.execute(f"ALTER TABLE payments ADD COLUMN {name} {kind}")
    for statement in statements:
        if not statement.startswith("CREATE TABLE"):
            db.execute(statement)
    rebuild_totals(db)
    _all_counted(db)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def _tables_without_scope(db: sqlite3.Connection) -> set[str]:
    """The tables of schema 5 or older that schema 6 keys by scope too."""
    found = set()
    for table in ("totals", "budget_raises"):
        columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if columns and "scope" not in columns:
            found.add(table)
    return found


def _check_ownership(path: str) -> None:
    """Refuse a journal another user could write: the folder and the file must be the current
    user's, writable by nobody else, and neither may be reached through a symbolic link."""
    file = Path(path)
    folder = file.parent
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        _check_owned(folder, os.lstat(folder), "folder")
        descriptor = os.open(
            file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, stat.S_IRUSR | stat.S_IWUSR
        )
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _unsafe(path, "is a symbolic link") from None
        raise SDKConfigurationError(
            f"cannot open the payment journal at {path} ({type(exc).__name__}: {exc}); pass "
            "journal_path= a writable file, or set HUMAN_RPC_JOURNAL",
            parameter="journal_path",
        ) from None
    try:
        _check_owned(file, os.fstat(descriptor), "file")
    finally:
        os.close(descriptor)
    for suffix in ("-wal", "-shm"):
        companion = Path(f"{path}{suffix}")
        with contextlib.suppress(FileNotFoundError):
            _check_owned(companion, os.lstat(companion), "file")


def _check_owned(path: Path, info: os.stat_result, what: str) -> None:
    if stat.S_ISLNK(info.st_mode):
        raise _unsafe(str(path), "is a symbolic link")
    if info.st_uid != os.geteuid():
        raise _unsafe(str(path), f"is a {what} owned by another user (uid {info.st_uid})")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise _unsafe(
            str(path), f"is a {what} other users can write (mode {stat.S_IMODE(info.st_mode):o})"
        )


def _unsafe(path: str, problem: str) -> SDKConfigurationError:
    return SDKConfigurationError(
        f"refusing the payment journal: {path} {problem}. Whoever can write the journal can erase "
        "what the budget counts; keep it in a folder only you can write (chmod 700 on the "
        "folder, 600 on the file, owned by you, no symbolic link), or pass journal_path= another "
        "file",
        parameter="journal_path",
    )


def _stamp(now: datetime) -> tuple[str, float]:
    return now.isoformat(), now.timestamp()
