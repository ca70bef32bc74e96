"""What the payment journal holds and answers (pure data; the SQLite store is ``_journal``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final

from ._budgets import Period
from ._receipts import PaymentReceipt, State

__all__ = [
    "FAILED_ON_CHAIN",
    "PENDING",
    "Budget",
    "BudgetLine",
    "Existing",
    "JournalEntry",
    "OverBudget",
    "Reserved",
]

PENDING: Final[tuple[State, ...]] = ("reserved", "signed", "submitted")
"""States whose outcome the server has not told: the money may or may not have moved."""
FAILED_ON_CHAIN = "failed on chain"
"""How the proof of a transaction that executed and failed begins: its fee was paid."""


@dataclass(frozen=True)
class JournalEntry:
    """One journal row: the receipt, plus what it takes to re-send or look up the payment.

    ``headers`` hold the signed payment (public once sent, but never logged or shown).
    """

    receipt: PaymentReceipt
    invoice_key: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    transaction: str | None = field(default=None, repr=False)
    """The signed transaction, base64 (x402: without the facilitator's signature)."""
    blockhash: str | None = None
    last_valid_block_height: int | None = None
    """The block height the blockhash is usable until, as the agent's node said when the agent
    fetched it; None when the server chose the blockhash (or for older rows)."""
    blockhash_slot: int | None = None
    """The slot that node had reached then (None with ``last_valid_block_height``)."""
    landed_proof: str | None = None
    """What the chain showed when ``landed`` was set to False (None: never proven)."""
    fee_payer: str | None = None
    """Who signs the transaction's first slot: the payer, or an x402 facilitator."""
    pid: int | None = None
    host: str | None = None
    process: str | None = None
    age: float = 0.0
    """Seconds since the row was last written."""
    genesis_hash: str | None = None
    """The genesis hash of the chain the payment was made on (None: not recorded)."""

    @property
    def id(self) -> int:
        return self.receipt.id or 0

    @property
    def payment_id(self) -> str | None:
        """The x402 payment id the signed payment carries, if any."""
        return self.receipt.payment_id

    @property
    def state(self) -> State:
        return self.receipt.state or "reserved"


@dataclass(frozen=True)
class Reserved:
    """The payment passed the budget and has a journal row in state ``reserved``."""

    entry: JournalEntry


@dataclass(frozen=True)
class Existing:
    """The same invoice is already in the journal: re-send that payment, never sign another."""

    entry: JournalEntry


@dataclass(frozen=True)
class OverBudget:
    """The budget of ``currency_key`` would be exceeded: ``spent`` (pending included) plus
    ``cost`` (what this payment costs in that currency) > ``limit``."""

    spent: Decimal
    limit: Decimal
    currency_key: str = ""
    cost: Decimal = Decimal(0)
    per: Period | None = None
    """The line that refused: None for the lifetime budget, else its period."""
    resets: int | None = None
    """When that line's spending drops (Unix seconds), for a period line."""


@dataclass(frozen=True)
class BudgetLine:
    """One budget line of a currency: its ceiling over ``per``, what the journal counts as
    spent in it, and the rest.

    ``per`` is None for the lifetime line, else the calendar period (``"hour"``, ``"day"``,
    ``"week"``, ``"month"``, in UTC) or the rolling window (a ``timedelta``). ``resets`` is when
    the line's spending drops: the next period boundary, or for a rolling window the moment the
    oldest spending it counts leaves the window (None for a lifetime, or a window counting
    nothing). ``spent`` counts every payment that may have moved money (all states but
    ``failed``); the SOL lines also count the network fees, priority fees and rent every
    payment costs. A rolling window may count up to one bucket (a minute, an hour or a day,
    by the window's length) of spending from before the window: it refuses early, never late.
    """

    limit: Decimal | None
    spent: Decimal
    per: str | timedelta | None = None
    resets: datetime | None = None

    @property
    def remaining(self) -> Decimal | None:
        """What may still be spent (never below 0); None when there is no limit."""
        return None if self.limit is None else max(self.limit - self.spent, Decimal(0))


@dataclass(frozen=True)
class Budget:
    """A currency's budget: every line (``lines``; iterate over them), and as ``limit``,
    ``spent`` and ``remaining`` those of the line that binds (the least remaining; the
    lifetime line when it is the only one)."""

    lines: tuple[BudgetLine, ...]

    def __iter__(self) -> Iterator[BudgetLine]:
        return iter(self.lines)

    def __len__(self) -> int:
        return len(self.lines)

    @property
    def binding(self) -> BudgetLine:
        """The line with the least remaining (a line without limit binds only if all are)."""
        limited = [line for line in self.lines if line.limit is not None]
        if not limited:
            return self.lines[0]
        return min(limited, key=lambda line: line.remaining or Decimal(0))

    @property
    def limit(self) -> Decimal | None:
        """The binding line's ceiling (None: no limit at all)."""
        return self.binding.limit

    @property
    def spent(self) -> Decimal:
        """What the binding line counts as spent."""
        return self.binding.spent

    @property
    def remaining(self) -> Decimal | None:
        """What the binding line still allows (None: no limit at all)."""
        return self.binding.remaining
