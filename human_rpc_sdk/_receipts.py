"""The record of a payment the agent made."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final, Literal, TypeAlias

from ._money import from_base_units
from ._networks import SOL_DECIMALS

__all__ = ["STATES", "PaymentReceipt", "State"]

State: TypeAlias = Literal["reserved", "signed", "submitted", "accepted", "refused", "failed"]
PaymentFormat: TypeAlias = Literal["humanrpc", "humanrpc-legacy", "x402-v1", "x402-v2"]
"""The kind of 402 a payment answered: a HumanRPC invoice (the design document's, or the
deployed service's ``payment`` body), or an x402 challenge of either version."""
"""A journaled payment's state (see :data:`STATES`)."""

STATES: Final[tuple[State, ...]] = (
    "reserved",
    "signed",
    "submitted",
    "accepted",
    "refused",
    "failed",
)
"""A journaled payment's states, in order:

* ``reserved`` - it passed every spending rule and its budget is reserved; nothing is signed.
* ``signed`` - signed and journaled; it is about to leave the process (or left before a crash).
* ``submitted`` - sent, but no definite answer came back (timeouts, resets, 5xx).
* ``accepted`` - the server served the paid request, or the chain shows the payment landed.
* ``refused`` - the server answered with an error (402 again, or another 4xx).
* ``failed`` - no money moved and none can: never sent, or expired without landing.
"""


@dataclass(frozen=True)
class PaymentReceipt:
    """One payment this agent made, as its payment journal records it.

    A receipt exists once the signed transaction was journaled, before it left the process.
    ``state`` is its last known state (see :data:`STATES`); ``accepted`` tells whether the
    payment went through (the server served the paid request, or the chain shows it landed).
    When it is False, ``landed`` says what the chain showed, if it was checked.
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
    format: PaymentFormat = "humanrpc"
    """``humanrpc``, ``humanrpc-legacy``, ``x402-v1`` or ``x402-v2``."""
    settled: bool | None = None
    """The server's settlement response said success (True) or failure (False); None: none sent."""
    error_reason: str | None = None
    """The settlement's error reason (or the SDK's), when it failed."""
    id: int | None = None
    """The payment's row in the journal."""
    state: State | None = None
    """``signed``, ``submitted``, ``accepted``, ``refused`` or ``failed`` (see ``STATES``)."""
    landed: bool | None = None
    """True: the transaction is on chain; False: it never landed and never can; None: unknown."""
    replaces: int | None = None
    """The journal id of the payment of the same invoice this one replaced."""
    task_id: str | None = None
    """The HumanRPC task this payment created (``ask_human_rpc``, ``@guard``), if any."""
    task_outcome: str | None = None
    """That task's verdict (``approved``, ``rejected``, ``no_consensus``, ``expired``) once the
    agent received it; None while the task is undecided (see ``AutoAgent.pending_tasks``)."""
    payment_id: str | None = None
    """The x402 payment id (``payment-identifier`` extension) the payment carried on every
    send, when the server declared the extension; the key a service finds it under."""

    @property
    def fee(self) -> Decimal:
        """What the payment cost in SOL beyond ``amount``: network fee plus any account rent."""
        return from_base_units(self.fee_lamports + self.rent_lamports, SOL_DECIMALS)

    @property
    def accepted(self) -> bool:
        """The payment went through: the server accepted it, or it landed on chain."""
        if self.state is not None:
            return self.state == "accepted"
        return self.http_status is not None and 200 <= self.http_status < 400
