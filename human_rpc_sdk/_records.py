"""What the payment journal holds and answers (pure data; the SQLite store is ``_journal``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from ._receipts import PaymentReceipt, State

__all__ = [
    "FAILED_ON_CHAIN",
    "PENDING",
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


@dataclass(frozen=True)
class BudgetLine:
    """One currency's lifetime budget: its ceiling, what the journal counts as spent, the rest.

    ``spent`` counts every payment that may have moved money (all states but ``failed``); the
    SOL line also counts the network fees, priority fees and rent every payment costs.
    """

    limit: Decimal | None
    spent: Decimal

    @property
    def remaining(self) -> Decimal | None:
        """What may still be spent (never below 0); None when there is no limit."""
        return None if self.limit is None else max(self.limit - self.spent, Decimal(0))
