"""What :class:`~human_rpc_sdk.AutoAgent` and :class:`~human_rpc_sdk.AsyncAutoAgent` share.

As httpx's ``BaseClient`` serves ``Client`` and ``AsyncClient``, :class:`BaseAgent` holds
everything of an agent that is the same whether its I/O is blocking or awaited: the validated
settings, the identity, the journal's quick reads, the reiterator, the payment context and the
checks of arguments. Each agent adds only its transport and its way of waiting.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from .._checks import positive_seconds, show
from .._effects import ChainCache, Flow, PaymentContext
from .._receipts import PaymentReceipt
from .._records import PENDING, Budget, JournalEntry
from .._recovery import needs_recovery, recover
from .._settings import (
    AgentSettings,
    ReiteratorSettings,
    is_database_url,
    machine_journal_path,
    redacted_url,
)
from .._tasks import task_body
from ..exceptions import PendingPaymentsWarning, SDKConfigurationError
from ..reiterator import ReiteratorManager
from ..wallet import Signer
from .clock import async_sleep as real_async_sleep
from .journal import Journal, process_alive
from .store import JournalStore, open_journal

__all__ = ["RESERVATION_TIMEOUT", "BaseAgent"]

logger = logging.getLogger("human_rpc_sdk")

RESERVATION_TIMEOUT: Final = 600.0
"""Seconds after which an unsigned reservation is released by recovery, whoever made it."""


class BaseAgent:
    """The part of an agent that does not depend on how it waits (see the module)."""

    _reiterator: ReiteratorManager
    _rpc: Any  # the agent's JSON-RPC client, blocking or async: both keep ``stats``
    _refresher: Any  # the chain cache's background refresh: a thread or an asyncio task

    def _setup(self, settings: AgentSettings) -> None:
        """Take the validated ``settings``; open the journal."""
        self._settings = settings
        self.network = settings.network
        self.timeout = settings.timeout
        self.paid_timeout = settings.paid_timeout
        self.rpc_url = settings.rpc_url
        self.human_rpc_url = settings.human_rpc_url
        self.journal_path = redacted_url(settings.journal_path)
        """Where the journal is: a file, or a database URL shown without its password."""
        self._journal_location = settings.journal_path  # the URL with its password: never shown
        self._signer: Signer = settings.signer
        self._rules = settings.rules
        self._clock = settings.clock
        self._cache = ChainCache()
        self._journal: JournalStore = open_journal(
            self._journal_location, wait=settings.journal_wait
        )

    # -- identity and history ---------------------------------------------------------------

    @property
    def address(self) -> str:
        """The payer's base58 public key: fund this address."""
        return str(self._signer.pubkey())

    @property
    def payments(self) -> list[PaymentReceipt]:
        """A receipt for every payment this wallet signed on this network, oldest first.

        Read from the journal, which outlives the process: after a restart this still lists
        what the wallet paid. A journal shared by several wallets (or networks) lists only
        this agent's ``address`` and ``network`` here. ``receipt.state`` and
        ``receipt.accepted`` tell how each ended. Each access reads the journal again; for a
        long history, ``payments_since`` reads only the newer ones.
        """
        return self._payments_since(0, None)

    def _payments_since(self, after: Any, limit: Any) -> list[PaymentReceipt]:
        """The rows of ``payments_since`` (blocking: the async agent calls it in a thread).

        :raises SDKConfigurationError: for a negative ``after`` or a ``limit`` below 1.
        """
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise SDKConfigurationError(
                f"after must be a journal id (an int, 0 for all; got {show(after)})",
                parameter="after",
            )
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise SDKConfigurationError(
                f"limit must be a positive int or None (got {show(limit)})", parameter="limit"
            )
        entries = self._journal.payments(
            self.address, self.network, after=after, limit=limit, scope=self._rules.scope
        )
        return [entry.receipt for entry in entries]

    def _pending_payments(self) -> list[PaymentReceipt]:
        return [entry.receipt for entry in self._journal.entries(PENDING)]

    def _pending_tasks(self) -> list[PaymentReceipt]:
        return [entry.receipt for entry in self._journal.open_tasks()]

    def _open_payments(self) -> list[JournalEntry]:
        """The journal's payments the chain could still tell something about (blocking)."""
        self._journal.flush()  # outcomes a held lock kept from the journal go in first
        return [e for e in self._journal.unsettled() if needs_recovery(e)]

    @property
    def budget(self) -> dict[str, Budget]:
        """Each currency's :class:`Budget`: every line (iterate over it: ``limit``, ``spent``,
        ``remaining``, ``per`` and ``resets`` each) and, as its own ``limit``, ``spent`` and
        ``remaining``, those of the line that binds (the least remaining).

        A line's ``limit`` is the configured one plus every ``raise_budget`` journaled for it
        (for a period line, in the current period); ``spent`` counts every payment in the
        journal in this agent's ``budget_scope``, whichever agent sharing it made it.
        """
        return self._journal.budget(
            self.network, self._rules.budget, periods=self._rules.periods, scope=self._rules.scope
        )

    def _raise_budget(self, amounts: Mapping[str, Any], per: Any = None) -> dict[str, Budget]:
        period = self._rules.raised_period(per)
        self._journal.raise_budget(
            self.network,
            self._rules.increments(amounts, period),
            per=period,
            scope=self._rules.scope,
        )
        return self.budget

    def _warn_of_open_payments(self, stacklevel: int) -> None:
        """Tell the owner of payments with no known outcome: a warning and a log line."""
        open_ = self._pending_payments()
        if open_:
            text = (
                f"the payment journal {self._journal.path} holds {len(open_)} payment(s) with "
                f"no known outcome (journal ids {', '.join(str(r.id) for r in open_[:10])}); "
                "the money may or may not have moved: call agent.recover_payments() to settle "
                "them against the chain"
            )
            logger.warning("%s", text)
            warnings.warn(text, PendingPaymentsWarning, stacklevel=stacklevel + 1)
        left = self._left_behind()
        if left:
            logger.warning("%s", left)
            warnings.warn(left, PendingPaymentsWarning, stacklevel=stacklevel + 1)

    def _left_behind(self) -> str | None:
        """A journal in a database: whether this wallet's SQLite journal on this machine (its
        journal before the move) holds payments with no known outcome, which the database's
        recovery never sees; what to do about them."""
        if not is_database_url(self._journal_location):
            return None
        path = machine_journal_path(self.network, self.address)
        if not path.is_file():
            return None
        try:
            old = Journal(path)
        except SDKConfigurationError:
            return None
        try:
            open_ = [e.id for e in old.entries(PENDING) if e.receipt.payer == self.address]
        finally:
            old.close()
        if not open_:
            return None
        return (
            f"this wallet's SQLite journal {path}, from before its journal moved to the "
            f"database {self.journal_path}, holds {len(open_)} payment(s) with no known outcome "
            f"(journal ids {', '.join(map(str, open_[:10]))}) that the database's recovery "
            f"does not see: settle them with AutoAgent(journal_path={str(path)!r})"
            ".recover_payments()"
        )

    @property
    def rpc_stats(self) -> Any:
        """HTTP round trips and JSON-RPC calls made to the Solana node so far."""
        return self._rpc.stats

    def __repr__(self) -> str:
        # Safe on an agent whose constructor failed half-way (a traceback capturing locals).
        signer = getattr(self, "_signer", None)
        address = signer.pubkey() if signer is not None else "(no wallet yet)"
        network, rpc_url = getattr(self, "network", None), getattr(self, "rpc_url", None)
        name = type(self).__name__
        return f"{name}(address={address}, network={network!r}, rpc_url={rpc_url!r})"

    # -- the reiterator ---------------------------------------------------------------------

    @property
    def reiterator(self) -> ReiteratorManager:
        """The agent's :class:`~human_rpc_sdk.ReiteratorManager`; ``configure()`` it at run time."""
        return self._reiterator

    def enable_reiterator(self) -> None:
        """Resubmit rejected tasks from now on."""
        self._reiterator.enabled = True

    def disable_reiterator(self) -> None:
        """Stop resubmitting rejected tasks (a sequence in flight finishes as it started)."""
        self._reiterator.enabled = False

    def get_reiterator_status(self) -> dict[str, Any]:
        """The design document's "Reiterator Status Response" (see ReiteratorManager.get_status)."""
        return self._reiterator.get_status()

    # -- what the drivers run ---------------------------------------------------------------

    def _context(self) -> PaymentContext:
        """The payment flow's context; the chain cache's refresh runs from the first payment."""
        return payment_context(self._settings, self._cache, self._refresher)

    @staticmethod
    def _recovery(entries: list[JournalEntry]) -> Flow[list[PaymentReceipt]]:
        """The flow settling ``entries`` against the chain (see ``recover_payments``)."""
        return recover(entries, alive=process_alive, stale_after=RESERVATION_TIMEOUT)

    def _task(self, text: Any, timeout: Any, **fields: Any) -> tuple[dict[str, Any], float]:
        """``ask_human_rpc``'s arguments checked: the task body, and its deadline on the clock."""
        body = task_body(text, **fields)
        return body, self._clock() + positive_seconds(timeout, "timeout")


def payment_context(settings: AgentSettings, cache: ChainCache, refresher: Any) -> PaymentContext:
    """The payment flow's context (see ``BaseAgent._context``): also for the preparing of
    payments ahead, which must not hold the agent itself (it is collected unclosed)."""
    refresher.start()
    return PaymentContext(
        signer=settings.signer,
        network=settings.network,
        cache=cache,
        clock=settings.clock,
        now=lambda: datetime.now(UTC),
        nonce=settings.nonce,
        rules=settings.rules,
    )


def reiterator_of(
    settings: ReiteratorSettings,
    clock: Callable[[], float],
    sleep: Callable[[float], Any],
    *,
    async_sleep: Callable[[float], Awaitable[None]] = real_async_sleep,
) -> ReiteratorManager:
    """The agent's reiterator, from its validated settings; ``async_sleep`` paces its asyncio
    loop (an async agent passes its own)."""
    return ReiteratorManager(
        settings.max_attempts,
        settings.backoff_strategy,
        settings.base_delay,
        settings.ceiling,
        enabled=settings.enabled,
        clock=clock,
        sleep=sleep,
        async_sleep=async_sleep,
    )


def method_of(value: Any) -> str:
    """An HTTP method, upper-cased; ``SDKConfigurationError`` for anything else."""
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise SDKConfigurationError(
            f"method must be an HTTP method such as 'GET' or 'POST' (got {show(value, 40)})",
            parameter="method",
        )
    return value.upper()


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def text_of(value: Any, name: str) -> str:
    """Text without NUL characters; ``SDKConfigurationError`` naming ``name`` otherwise."""
    if not isinstance(value, str) or "\x00" in value:
        raise SDKConfigurationError(
            f"{name} must be text without NUL characters (got a {type(value).__name__})",
            parameter=name,
        )
    return value
