"""The journal's one interface, and which store keeps it.

The drivers, the agents and the human tasks keep the books through :class:`JournalStore`
only; two stores implement it with the same states and guarantees:

* :class:`~human_rpc_sdk._io.journal.Journal` - a SQLite file (the default): exact across the
  threads and processes of one machine.
* :class:`~human_rpc_sdk._io.postgres.PostgresJournal` - a PostgreSQL database (the
  ``postgres`` extra, psycopg 3): one budget and one journal for a fleet of machines.

:func:`open_journal` picks the store from the location settings resolved (see
:func:`human_rpc_sdk._settings.journal_location`): a ``postgresql://`` or ``postgres://`` URL
is a database, anything else a SQLite file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from .._budgets import LineRule, Period
from .._offer import PaymentOffer
from .._records import Budget, Existing, JournalEntry, OverBudget, Reserved
from .._settings import is_database_url, redacted_url
from ..exceptions import SDKConfigurationError

__all__ = ["JournalStore", "open_journal"]


@runtime_checkable
class JournalStore(Protocol):
    """What the drivers ask of a payment journal (see :mod:`.journal` for the semantics each
    store keeps: one row per payment, ``reserved`` -> ``signed`` -> an outcome; reserving is
    atomic with the budget check; ``signed`` is durable before the payment leaves)."""

    path: str
    """Where the journal lives, for messages (a database URL without its password)."""

    def close(self) -> None: ...

    def find(self, invoice_key: str) -> JournalEntry | None: ...

    def entries(self, states: Iterable[str] | None = None) -> list[JournalEntry]: ...

    def payments(
        self,
        payer: str,
        network: str,
        *,
        after: int = 0,
        limit: int | None = None,
        scope: str | None = None,
    ) -> list[JournalEntry]: ...

    def paid_for(self, url: str, payer: str, network: str) -> JournalEntry | None: ...

    def open_tasks(self) -> list[JournalEntry]: ...

    def resumable(
        self, resume_keys: Iterable[str], abandoned_after: float = float("inf")
    ) -> JournalEntry | None: ...

    def unsettled(self) -> list[JournalEntry]: ...

    def budget(
        self,
        network: str,
        limits: Mapping[str, Decimal | None],
        *,
        periods: Mapping[str, tuple[LineRule, ...]] | None = None,
        scope: str = "",
    ) -> dict[str, Budget]: ...

    def raise_budget(
        self,
        network: str,
        amounts: Mapping[str, Decimal],
        *,
        per: Period | None = None,
        scope: str = "",
    ) -> None: ...

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
    ) -> Reserved | Existing | OverBudget: ...

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
    ) -> JournalEntry | None: ...

    def flush(self) -> None: ...

    def recovering(self) -> contextlib.AbstractContextManager[bool]:
        """While recovery runs: True when this process may recover (it holds the journal's
        recovery lock, if the store has one), False when another process is recovering."""
        ...


POSTGRES_EXTRA = "pip install 'human-rpc-sdk[postgres]'"


def open_journal(
    location: str,
    *,
    clock: Callable[[], datetime] | None = None,
    wait: float | None = None,
) -> JournalStore:
    """The journal at ``location``: a PostgreSQL database for a ``postgresql://`` URL, else
    the SQLite file (or ``:memory:``). ``clock``: the wall clock that decides budget periods
    (default: this machine's for SQLite, the database server's for PostgreSQL). ``wait``: how
    long one read or write of a database journal may wait for it (None: its default; a SQLite
    file keeps its own lock waits).

    :raises SDKConfigurationError: a database URL without the ``postgres`` extra installed, or
        a journal that cannot be opened.
    """
    if not is_database_url(location):
        from .journal import Journal

        return Journal(location, clock=clock)
    try:
        import psycopg  # noqa: F401 - only whether the postgres extra is installed
        import psycopg_pool  # noqa: F401
    except ImportError:
        raise SDKConfigurationError(
            f"the payment journal {redacted_url(location)} is a PostgreSQL database, but "
            "psycopg 3 (with psycopg-pool) is not installed; install the postgres extra "
            f"({POSTGRES_EXTRA}), or pass journal_path= a file for a journal on this machine only",
            parameter="journal_path",
        ) from None
    from .postgres import PostgresJournal

    return PostgresJournal(location, clock=clock, wait_seconds=wait)
