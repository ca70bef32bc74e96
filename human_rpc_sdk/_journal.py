"""The payment journal: every payment, durably, before it leaves the process (SQLite, WAL).

One row per payment, moving through ``reserved``, ``signed``, ``submitted`` and then
``accepted``, ``refused`` or ``failed`` (see ``STATES`` in ``_receipts``). Reserving is one
``BEGIN IMMEDIATE`` transaction that checks the invoice was not paid already and that the
budget allows the payment, then inserts the row; SQLite's write lock makes that atomic across
threads and processes sharing the file. Writes are ``synchronous=FULL``: a row that was
committed survives a crash or power loss, so the signed payment is on disk before it is sent.

The journal holds public payment data and signed transactions, never a key.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from ._offer import PaymentOffer
from ._receipts import STATES, PaymentReceipt
from ._records import BudgetLine, Existing, JournalEntry, OverBudget, Reserved
from .exceptions import PaymentError, SDKConfigurationError

__all__ = ["ENV_JOURNAL", "MEMORY", "Journal", "default_journal_path"]

logger = logging.getLogger("human_rpc_sdk")

ENV_JOURNAL: Final = "HUMAN_RPC_JOURNAL"
MEMORY: Final = ":memory:"
SCHEMA_VERSION: Final = 1
REPLACED: Final = "replaced: its blockhash expired before it landed"
_PROCESS: Final = secrets.token_hex(8)
"""Tells this process's rows from those of an earlier process that had the same pid."""

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
    pid           INTEGER,
    host          TEXT,
    process       TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS payments_one_per_invoice
    ON payments(invoice_key) WHERE invoice_key IS NOT NULL AND state != 'failed';
CREATE INDEX IF NOT EXISTS payments_spending ON payments(network, currency_key, state);
CREATE INDEX IF NOT EXISTS payments_state ON payments(state);
"""

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
    }
)


def default_journal_path(network: str, address: str) -> Path:
    """Where an agent keeps its journal unless told otherwise: one file per wallet and network.

    ``$HUMAN_RPC_JOURNAL`` names the file; otherwise it lives under ``$XDG_STATE_HOME``
    (default ``~/.local/state``) in ``human-rpc-sdk/``.
    """
    named = os.environ.get(ENV_JOURNAL)
    if named:
        return Path(named).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or str(Path("~/.local/state").expanduser())
    return Path(state) / "human-rpc-sdk" / f"journal-{network}-{address}.sqlite3"


class Journal:
    """A payment journal in the SQLite file at ``path`` (``":memory:"``: this process only).

    Thread-safe; several processes may share one file.

    :raises SDKConfigurationError: when the file cannot be created or opened.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, clock: Callable[[], datetime] | None = None
    ):
        self.path = str(path)
        self._now = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        try:
            self._db = self._open()
        except (sqlite3.Error, OSError) as exc:
            raise SDKConfigurationError(
                f"cannot open the payment journal at {self.path} ({type(exc).__name__}: {exc}); "
                "pass journal_path= a writable file, or set HUMAN_RPC_JOURNAL",
                parameter="journal_path",
            ) from None

    def _open(self) -> sqlite3.Connection:
        if self.path != MEMORY:
            file = Path(self.path)
            file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            file.touch(mode=0o600, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        if self.path != MEMORY:
            db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        with _immediate(db):
            for statement in _statements():
                db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        return db

    def close(self) -> None:
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

    def budget(self, network: str, limits: Mapping[str, Decimal | None]) -> dict[str, BudgetLine]:
        """Each currency's budget line: the limits given, and every currency spent in."""
        with self._reading() as db:
            keys = {
                row[0]
                for row in db.execute(
                    "SELECT DISTINCT currency_key FROM payments WHERE network = ?", (network,)
                )
            }
            return {
                key: BudgetLine(
                    limits.get(key),
                    _sol_spent(db, network) if key == "SOL" else _spent(db, network, key),
                )
                for key in sorted(set(limits) | keys)
            }

    # -- writing -----------------------------------------------------------------------

    def reserve(
        self,
        offer: PaymentOffer,
        *,
        currency_key: str,
        invoice_key: str | None,
        budget: Decimal | None,
        sol_cost: Decimal = Decimal(0),
        sol_budget: Decimal | None = None,
    ) -> Reserved | Existing | OverBudget:
        """Atomically: refuse a second payment of the invoice, check the budget, insert a row.

        With ``offer.replaces``, that earlier payment becomes ``failed`` in the same
        transaction (it could no longer land), so its budget goes to the replacement.
        """
        now = self._now()
        with self._writing() as db:
            if invoice_key is not None:
                row = db.execute(
                    "SELECT * FROM payments WHERE invoice_key = ? AND state != 'failed'",
                    (invoice_key,),
                ).fetchone()
                if row is not None and row["id"] != offer.replaces:
                    return Existing(self._entry(row))
            if offer.replaces is not None:
                db.execute(
                    "UPDATE payments SET state = 'failed', landed = 0, "
                    "error = ? || COALESCE(' (refused: ' || error || ')', ''), updated = ?, "
                    "updated_unix = ? WHERE id = ?",
                    (REPLACED, *_stamp(now), offer.replaces),
                )
            if budget is not None:
                spent = _spent(db, offer.network, currency_key)
                if spent + offer.amount > budget:
                    db.execute("ROLLBACK")
                    return OverBudget(spent, budget)
            if sol_budget is not None:  # fees and rent are SOL spent too
                sol_spent = _sol_spent(db, offer.network)
                if sol_spent + sol_cost > sol_budget:
                    db.execute("ROLLBACK")
                    return OverBudget(sol_spent, sol_budget, "SOL")
            cursor = db.execute(
                "INSERT INTO payments (invoice_key, state, created, updated, updated_unix, url, "
                "network, format, currency, currency_key, amount, atomic_amount, mint, recipient, "
                "destination, reference, payer, fee_lamports, replaces, pid, host, process) "
                "VALUES (?, 'reserved', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                "?)",
                (
                    invoice_key,
                    now.isoformat(),
                    *_stamp(now),
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
                ),
            )
            row = db.execute("SELECT * FROM payments WHERE id = ?", (cursor.lastrowid,)).fetchone()
            return Reserved(self._entry(row))

    def mark(
        self,
        entry_id: int,
        state: str,
        fields: Mapping[str, Any] | None = None,
        *,
        expect: Iterable[str] | None = None,
    ) -> JournalEntry | None:
        """Move a row to ``state`` with ``fields``; only from ``expect`` states when given.

        Returns the updated entry, or None when the row was not in an expected state (another
        process, or a recovery, got there first).
        """
        if state not in STATES:
            raise ValueError(f"unknown journal state {state!r}")
        values = dict(fields or {})
        unknown = set(values) - _UPDATABLE
        if unknown:
            raise ValueError(f"journal fields cannot be set: {sorted(unknown)}")
        if "headers" in values and values["headers"] is not None:
            values["headers"] = json.dumps(dict(values["headers"]))
        assignments = ", ".join(f"{name} = ?" for name in values)
        sql = "UPDATE payments SET state = ?, updated = ?, updated_unix = ?"
        sql += f", {assignments}" if assignments else ""
        params: list[Any] = [state, *_stamp(self._now()), *values.values()]
        sql += " WHERE id = ?"
        params.append(entry_id)
        if expect is not None:
            allowed = tuple(expect)
            sql += f" AND state IN ({', '.join('?' * len(allowed))})"
            params += allowed
        with self._writing() as db:
            if db.execute(sql, params).rowcount == 0:
                return None
            row = db.execute("SELECT * FROM payments WHERE id = ?", (entry_id,)).fetchone()
            return self._entry(row)

    # -- plumbing ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise self._failure("read", exc) from None

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                with _immediate(self._db):
                    yield self._db
            except sqlite3.Error as exc:
                raise self._failure("write", exc) from None

    def _failure(self, what: str, exc: sqlite3.Error) -> PaymentError:
        return PaymentError(
            f"could not {what} the payment journal at {self.path} ({type(exc).__name__}: "
            f"{exc}). Payments stop until the journal works again, so none goes unrecorded; "
            "check the disk and the file's permissions",
            reason="journal_unavailable",
        )

    def _entry(self, row: sqlite3.Row) -> JournalEntry:
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
        )
        return JournalEntry(
            receipt=receipt,
            invoice_key=row["invoice_key"],
            headers=headers,
            transaction=row["transaction_b64"],
            blockhash=row["blockhash"],
            fee_payer=row["fee_payer"],
            pid=row["pid"],
            host=row["host"],
            process=row["process"],
            age=max(0.0, self._now().timestamp() - updated),
        )


def owned_by_this_process(entry: JournalEntry) -> bool:
    return entry.process == _PROCESS and entry.pid == os.getpid()


def process_alive(entry: JournalEntry) -> bool:
    """Whether the process that wrote ``entry`` may still be running (same host only)."""
    if entry.host != socket.gethostname() or entry.pid is None:
        return True  # another machine's process: assume it lives
    if owned_by_this_process(entry):
        return True
    try:
        os.kill(entry.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _statements() -> list[str]:
    return [s.strip() for s in _SCHEMA.split(";") if s.strip()]


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


def _spent(db: sqlite3.Connection, network: str, currency_key: str) -> Decimal:
    rows = db.execute(
        "SELECT amount FROM payments WHERE network = ? AND currency_key = ? AND state != 'failed'",
        (network, currency_key),
    )
    return sum((Decimal(row[0]) for row in rows), Decimal(0))


def _sol_spent(db: sqlite3.Connection, network: str) -> Decimal:
    """SOL amounts plus the network fees and rent of every payment that may have moved money."""
    (lamports,) = db.execute(
        "SELECT COALESCE(SUM(fee_lamports + rent_lamports), 0) FROM payments "
        "WHERE network = ? AND state != 'failed'",
        (network,),
    ).fetchone()
    return _spent(db, network, "SOL") + Decimal(int(lamports)).scaleb(-9)


def _stamp(now: datetime) -> tuple[str, float]:
    return now.isoformat(), now.timestamp()
