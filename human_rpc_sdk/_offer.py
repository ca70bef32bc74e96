"""What the agent is about to pay, as its spending rules and ``approve`` callback see it."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ._money import from_base_units
from ._networks import SOL_DECIMALS
from ._receipts import PaymentFormat

__all__ = ["PaymentOffer"]


@dataclass(frozen=True)
class PaymentOffer:
    """A payment the agent has parsed, priced and checked, but not yet signed.

    ``AutoAgent(approve=...)`` receives one and returns True to let the payment go ahead.
    """

    url: str
    """The URL that answered 402."""
    amount: Decimal
    """The price in display units (``Decimal("0.05")``)."""
    currency: str
    """``SOL``, a known token's symbol, or the mint address of any other token."""
    mint: str | None
    """The SPL mint, or None for SOL."""
    recipient: str
    """The payee wallet."""
    destination: str
    """The account credited: the payee wallet for SOL, its token account for a token."""
    network: str
    payer: str
    """The agent's wallet."""
    format: PaymentFormat
    """``humanrpc``, ``humanrpc-legacy``, ``x402-v1`` or ``x402-v2``."""
    atomic_amount: int
    """The price in base units."""
    fee_lamports: int = 0
    """SOL the agent pays on top: the network fee and any account rent (x402: 0)."""
    reference: str | None = None
    description: str = ""
    """What the server says the payment is for (invoice message or offer description)."""
    replaces: int | None = None
    """The journal id of an earlier payment of the same invoice that can no longer land."""

    @property
    def fee(self) -> Decimal:
        """``fee_lamports`` in SOL."""
        return from_base_units(self.fee_lamports, SOL_DECIMALS)
