"""The record of a payment the agent made."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from ._money import from_base_units
from ._networks import SOL_DECIMALS

__all__ = ["PaymentReceipt"]


@dataclass(frozen=True)
class PaymentReceipt:
    """One payment that left this agent.

    A receipt exists once the signed transaction was handed to the server. ``accepted`` tells
    whether the server then served the paid request (HTTP status below 400); when it is False,
    look ``signature`` up on chain before paying again.
    """

    url: str
    amount: Decimal
    """The amount in display units (``Decimal("0.05")`` USDC)."""
    currency: str
    mint: str | None
    """The SPL mint paid in, or None for SOL."""
    recipient: str
    """The payee wallet."""
    reference: str | None
    network: str
    signature: str
    """The base58 transaction signature: the payment's id on chain. For x402, the facilitator
    signs last, so it is known only from the settlement response ("" until then)."""
    time: datetime
    """When the payment was sent (UTC)."""
    atomic_amount: int
    """The amount in base units (lamports or token units)."""
    payer: str
    destination: str
    """The account credited: the payee wallet for SOL, its token account for a token."""
    fee_lamports: int
    """The network fee paid by the agent."""
    rent_lamports: int = 0
    """Rent the agent paid to create the payee's token account (0 when it existed)."""
    http_status: int | None = None
    """The status of the paid request's answer; None when no answer arrived."""
    format: str = "humanrpc"
    """``humanrpc``, ``humanrpc-legacy``, ``x402-v1`` or ``x402-v2``."""
    settled: bool | None = None
    """The server's settlement response said success (True) or failure (False); None: none sent."""
    error_reason: str | None = None
    """The settlement's error reason, when it failed."""

    @property
    def fee(self) -> Decimal:
        """What the payment cost in SOL beyond ``amount``: network fee plus any account rent."""
        return from_base_units(self.fee_lamports + self.rent_lamports, SOL_DECIMALS)

    @property
    def accepted(self) -> bool:
        return self.http_status is not None and 200 <= self.http_status < 400
