"""Invoices: what a 402 answer asks to be paid, parsed and validated strictly.

Two formats are understood (see ``PROTOCOL.md`` section A):

* the HumanRPC invoice of the design document, amounts in display units::

    {"status": "payment_required",
     "invoice": {"amount": 0.05, "currency": "USDC", "mint": "...", "recipient": "...",
                 "reference": "...", "network": "devnet"},
     "message": "0.05 USDC required to unlock content"}

* the deployed HumanRPC service's ``payment`` body, amounts in base units::

    {"payment": {"recipientWallet": "...", "tokenAccount": "...", "mint": "...",
                 "amount": 100, "amountUSDC": 0.0001, "cluster": "devnet", "message": "..."}}

Validation refuses anything it cannot pay exactly: the error names the field, says what was
wrong, and nothing is signed. JSON bodies are parsed with ``Decimal`` for numbers, so an
amount of ``0.05`` is exactly five hundredths, never a binary float.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Literal, NoReturn

from solders.pubkey import Pubkey

from ._money import MoneyError, format_amount, from_base_units, parse_base_units, parse_decimal
from ._money import to_base_units as _to_base_units
from ._networks import KNOWN_MINTS, NETWORKS, SOL_DECIMALS, symbol_for_mint
from ._reasons import Reason
from .exceptions import InvoiceValidationError, NetworkMismatchError, SDKConfigurationError

__all__ = ["FORMAT_HUMANRPC", "FORMAT_LEGACY", "Invoice"]

FORMAT_HUMANRPC: Final = "humanrpc"
FORMAT_LEGACY: Final = "humanrpc-legacy"

MAX_REFERENCE_BYTES: Final = 128
_MAX_MESSAGE_CHARS: Final = 500

# Accounts that can never be a payee: paying them burns the money or fails on chain. The
# deployed service falls back to the System Program id when its treasury is not configured.
_NOT_A_PAYEE: Final = {
    "11111111111111111111111111111111": "the System Program",
    "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA": "the SPL Token program",
    "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb": "the Token-2022 program",
    "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL": "the Associated Token Account program",
    "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr": "the Memo program",
    "ComputeBudget111111111111111111111111111111": "the Compute Budget program",
    "1nc1nerator11111111111111111111111111111111": "the incinerator (a burn address)",
}

_ADVICE: Final = "Nothing was signed or paid; the service sent an invoice this agent cannot pay"


@dataclass(frozen=True)
class _Terms:
    format: Literal["humanrpc", "humanrpc-legacy"]
    currency: str
    mint: str | None
    recipient: str
    token_account: str | None
    reference: str | None
    network: str
    amount: Decimal | None
    atomic_amount: int | None
    display_field: str | None
    display_amount: Decimal | None
    message: str | None


class Invoice:
    """A payment request from a 402 answer.

    ``Invoice(data)`` accepts the whole 402 body in either format, or the bare ``invoice``
    object. Nothing is checked until :meth:`validate` (or any accessor) runs.

    >>> inv = Invoice({"amount": "0.05", "currency": "USDC", "network": "devnet",
    ...                "recipient": "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"})
    >>> inv.base_units(6)
    50000
    """

    def __init__(self, data: Mapping[str, Any], *, url: str | None = None) -> None:
        self._data = data
        self.url = url
        self._terms: _Terms | None = None

    @classmethod
    def from_body(cls, body: bytes | str, *, url: str | None = None) -> Invoice:
        """Parse a 402 answer's JSON body. Numbers become ``Decimal``; nothing is validated yet."""
        try:
            data = json.loads(body, parse_float=Decimal)
        except (ValueError, UnicodeDecodeError, TypeError, RecursionError):
            data = None
        if not isinstance(data, dict):
            raise InvoiceValidationError(
                "the 402 answer's body is not a JSON object, so it carries no invoice. "
                "Nothing was paid; check that the URL is a HumanRPC paid endpoint",
                reason="no_invoice",
            )
        return cls(data, url=url)

    # -- validation -------------------------------------------------------------------

    def validate(self, network: str | None = None) -> None:
        """Check every field; with ``network``, also that the invoice is for that network.

        :raises InvoiceValidationError: naming the first offending field.
        """
        if network is not None and not isinstance(network, str):
            raise SDKConfigurationError(
                f"network must be a network name such as 'devnet' (got a {type(network).__name__})",
                parameter="network",
            )
        terms = self._checked()
        if network is not None and terms.network != network:
            field = self._field("network")
            raise NetworkMismatchError(
                f"{field} is {terms.network!r} but this agent pays on {network!r}. Nothing was "
                f"signed or paid; create the AutoAgent with network={terms.network!r} "
                "to pay this invoice",
                field=field,
                invoice=self._data,
            )

    def _checked(self) -> _Terms:
        if self._terms is None:
            self._terms = _parse(self._data)
        return self._terms

    def _field(self, name: str) -> str:
        prefix = "payment" if self._checked().format == FORMAT_LEGACY else "invoice"
        return f"{prefix}.{name}"

    # -- accessors --------------------------------------------------------------------

    @property
    def format(self) -> Literal["humanrpc", "humanrpc-legacy"]:
        """``"humanrpc"`` (design-doc invoice) or ``"humanrpc-legacy"`` (``payment`` body)."""
        return self._checked().format

    @property
    def currency(self) -> str:
        """``"SOL"``, a well-known symbol such as ``"USDC"``, or the mint address."""
        return self._checked().currency

    @property
    def is_native(self) -> bool:
        """True for SOL, False for an SPL token."""
        return self._checked().mint is None

    @property
    def mint(self) -> str | None:
        """The SPL mint to pay in, or None for SOL."""
        return self._checked().mint

    @property
    def recipient(self) -> str:
        """The payee's wallet (the owner, never a token account)."""
        return self._checked().recipient

    @property
    def token_account(self) -> str | None:
        """The payee token account named by a ``payment`` body, if any."""
        return self._checked().token_account

    @property
    def reference(self) -> str | None:
        """The invoice reference that the payment must carry, if any."""
        return self._checked().reference

    @property
    def network(self) -> str:
        """The network the invoice is payable on (``"devnet"``, ``"mainnet-beta"``, ...)."""
        return self._checked().network

    @property
    def amount(self) -> Decimal | None:
        """The amount in display units, when the invoice states it that way."""
        return self._checked().amount

    @property
    def atomic_amount(self) -> int | None:
        """The amount in base units, when the invoice states it that way."""
        return self._checked().atomic_amount

    @property
    def message(self) -> str | None:
        """The server's note to the payer, if any."""
        return self._checked().message

    def base_units(self, decimals: int | None = None) -> int:
        """The amount to transfer in base units (lamports, or token units of ``decimals``).

        For SOL ``decimals`` defaults to 9. For a token it is the mint's ``decimals``.

        :raises InvoiceValidationError: when the amount has more precision than the token,
            exceeds u64, or disagrees with the invoice's own display amount.
        """
        terms = self._checked()
        if decimals is None:
            if terms.mint is not None:
                raise SDKConfigurationError(
                    "base_units() needs the mint's decimals for a token invoice",
                    parameter="decimals",
                )
            decimals = SOL_DECIMALS
        _check_decimals(decimals)
        if terms.atomic_amount is not None:
            self._check_display_amount(terms, decimals)
            return terms.atomic_amount
        try:
            return _to_base_units(terms.amount or Decimal(0), decimals)
        except MoneyError as exc:
            _reject(self._field("amount"), f"cannot be paid exactly: {exc}. {_ADVICE}", self._data)

    def display_amount(self, decimals: int | None = None) -> Decimal:
        """The amount in display units (``0.05`` USDC), exact."""
        terms = self._checked()
        if terms.amount is not None:
            return terms.amount
        units = self.base_units(decimals)
        return from_base_units(units, SOL_DECIMALS if decimals is None else decimals)

    def _check_display_amount(self, terms: _Terms, decimals: int) -> None:
        if terms.display_amount is None or terms.atomic_amount is None:
            return
        stated = from_base_units(terms.atomic_amount, decimals)
        if stated != terms.display_amount:
            _reject(
                f"payment.{terms.display_field}",
                f"says {format_amount(terms.display_amount)} but payment.amount is "
                f"{terms.atomic_amount} base units = {format_amount(stated)}; the two disagree. "
                f"{_ADVICE}",
                self._data,
                reason="inconsistent_amount",
            )

    # -- design-document accessors ------------------------------------------------------

    def get_amount_lamports(self) -> int:
        """The amount in lamports. Only for SOL invoices; tokens use :meth:`base_units`."""
        if not self.is_native:
            raise InvoiceValidationError(
                f"this invoice is for {self.currency}, not SOL: use base_units(decimals) with "
                "the mint's decimals",
                field=self._field("currency"),
                invoice=self._data,
            )
        return self.base_units(SOL_DECIMALS)

    def get_recipient(self) -> str:
        """The payee's wallet (the design document's name for :attr:`recipient`)."""
        return self.recipient

    def get_currency(self) -> str:
        """The currency (the design document's name for :attr:`currency`)."""
        return self.currency

    def to_dict(self) -> dict[str, Any]:
        """The invoice as received."""
        return dict(self._data)

    def __repr__(self) -> str:
        if self._terms is None:
            return "Invoice(<not validated>)"
        t = self._terms
        amount = format_amount(t.amount) if t.amount is not None else f"{t.atomic_amount} units"
        return (
            f"Invoice({amount} {t.currency} to {t.recipient} on {t.network}"
            f"{f', reference={t.reference!r}' if t.reference else ''})"
        )


# -- parsing ------------------------------------------------------------------------------


def _parse(data: Mapping[str, Any]) -> _Terms:
    if not isinstance(data, Mapping):
        raise InvoiceValidationError(
            f"an invoice must be a JSON object, not {type(data).__name__}", reason="no_invoice"
        )
    if isinstance(data.get("invoice"), Mapping):
        return _parse_humanrpc(data["invoice"], data)
    if isinstance(data.get("payment"), Mapping):
        return _parse_legacy(data["payment"], data)
    if "x402Version" in data or "accepts" in data:
        raise InvoiceValidationError(
            "this 402 answer is an x402 payment challenge (x402Version/accepts), not a HumanRPC "
            "invoice: Invoice reads only HumanRPC invoices. AutoAgent pays x402 challenges "
            "itself: request the URL with agent.get(...) (or post, ...) and the offer it can "
            "pay on its network is paid. Nothing was paid",
            reason="x402_challenge",
            invoice=data,
        )
    if "recipient" in data and "amount" in data:
        return _parse_humanrpc(data, data)
    raise InvoiceValidationError(
        "the 402 answer carries no invoice: expected a JSON object with an 'invoice' member "
        "(HumanRPC) or a 'payment' member (HumanRPC service). Nothing was paid; check that the "
        "URL is a HumanRPC paid endpoint",
        reason="no_invoice",
        invoice=data,
    )


def _parse_humanrpc(inv: Mapping[str, Any], whole: Mapping[str, Any]) -> _Terms:
    network = _network(inv.get("network"), "invoice.network", whole)
    currency_raw = inv.get("currency")
    if not isinstance(currency_raw, str) or not currency_raw.strip():
        _reject(
            "invoice.currency",
            f"must be a currency symbol such as 'SOL' or 'USDC' (got {_show(currency_raw)}). "
            f"{_ADVICE}",
            whole,
        )
    currency = currency_raw.strip().upper()
    mint = _optional_pubkey(inv.get("mint"), "invoice.mint", whole)
    if currency == "SOL":
        if mint is not None:
            _reject(
                "invoice.mint", f"must be absent for a SOL invoice (got {mint}). {_ADVICE}", whole
            )
    else:
        known = KNOWN_MINTS[network].get(currency)
        if mint is None and known is None:
            _reject(
                "invoice.mint",
                f"is required: {currency!r} is not a token this SDK knows on {network}, so the "
                f"invoice must name its mint. {_ADVICE}",
                whole,
                reason="unknown_currency",
            )
        if mint is not None and known is not None and mint != known:
            _reject(
                "invoice.mint",
                f"is {mint}, which is not {currency} on {network} ({known}); refusing to pay "
                f"another token under the {currency} label. {_ADVICE}",
                whole,
                reason="mint_mismatch",
            )
        mint = mint or known
    try:
        amount = parse_decimal(inv.get("amount"))
    except MoneyError as exc:
        _reject("invoice.amount", f"{exc}. {_ADVICE}", whole)
    return _Terms(
        format=FORMAT_HUMANRPC,
        currency=currency,
        mint=mint,
        recipient=_recipient(inv.get("recipient"), "invoice.recipient", whole),
        token_account=None,
        reference=_reference(inv.get("reference"), whole),
        network=network,
        amount=amount,
        atomic_amount=None,
        display_field=None,
        display_amount=None,
        message=_message(whole.get("message")),
    )


def _parse_legacy(pay: Mapping[str, Any], whole: Mapping[str, Any]) -> _Terms:
    network = _network(pay.get("cluster"), "payment.cluster", whole)
    mint = _optional_pubkey(pay.get("mint"), "payment.mint", whole)
    try:
        atomic = parse_base_units(pay.get("amount"))
    except MoneyError as exc:
        _reject("payment.amount", f"{exc}. {_ADVICE}", whole)
    display_field = "amountSOL" if mint is None else "amountUSDC"
    display = None
    if pay.get(display_field) is not None:
        try:
            display = parse_decimal(pay[display_field])
        except MoneyError as exc:
            _reject(f"payment.{display_field}", f"{exc}. {_ADVICE}", whole)
    return _Terms(
        format=FORMAT_LEGACY,
        currency="SOL" if mint is None else (symbol_for_mint(network, mint) or mint),
        mint=mint,
        recipient=_recipient(pay.get("recipientWallet"), "payment.recipientWallet", whole),
        token_account=_optional_pubkey(pay.get("tokenAccount"), "payment.tokenAccount", whole),
        reference=None,
        network=network,
        amount=None,
        atomic_amount=atomic,
        display_field=display_field,
        display_amount=display,
        message=_message(pay.get("message")),
    )


def _network(value: Any, field: str, whole: Mapping[str, Any]) -> str:
    if value is None:
        _reject(
            field, f"is missing; refusing to guess which Solana network to pay on. {_ADVICE}", whole
        )
    if not isinstance(value, str) or value not in NETWORKS:
        _reject(
            field,
            f"must be one of {', '.join(NETWORKS)} (got {_show(value)}). {_ADVICE}",
            whole,
            reason="unknown_network",
        )
    return value


def _pubkey(value: Any, field: str, whole: Mapping[str, Any]) -> str:
    if not isinstance(value, str):
        _reject(field, f"must be a base58 Solana address (got {_show(value)}). {_ADVICE}", whole)
    try:
        return str(Pubkey.from_string(value))
    except ValueError:
        pass
    _reject(field, f"is not a valid Solana address (got {_show(value)}). {_ADVICE}", whole)


def _optional_pubkey(value: Any, field: str, whole: Mapping[str, Any]) -> str | None:
    return None if value is None else _pubkey(value, field, whole)


def _recipient(value: Any, field: str, whole: Mapping[str, Any]) -> str:
    if value is None:
        _reject(field, f"is missing: the invoice does not say whom to pay. {_ADVICE}", whole)
    address = _pubkey(value, field, whole)
    if address in _NOT_A_PAYEE:
        _reject(
            field,
            f"is {_NOT_A_PAYEE[address]} ({address}), which cannot receive a payment; the "
            f"service is misconfigured. {_ADVICE}",
            whole,
            reason="bad_recipient",
        )
    return address


def _reference(value: Any, whole: Mapping[str, Any]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        _reject(
            "invoice.reference",
            f"must be a non-empty string (got {_show(value)}). {_ADVICE}",
            whole,
        )
    if len(value.encode("utf-8")) > MAX_REFERENCE_BYTES:
        _reject(
            "invoice.reference",
            f"is longer than {MAX_REFERENCE_BYTES} bytes and cannot be carried in a memo. "
            f"{_ADVICE}",
            whole,
        )
    if not value.isprintable():
        _reject("invoice.reference", f"contains control characters. {_ADVICE}", whole)
    return value


def _message(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return value[:_MAX_MESSAGE_CHARS]


def _check_decimals(decimals: Any) -> None:
    if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 255:
        raise SDKConfigurationError(
            "decimals must be a whole number from 0 to 255, the mint's decimals "
            f"(got a {type(decimals).__name__})",
            parameter="decimals",
        )


def _reject(
    field: str,
    problem: str,
    invoice: Mapping[str, Any],
    *,
    reason: Reason | None = None,
) -> NoReturn:
    raise InvoiceValidationError(f"{field} {problem}", field=field, invoice=invoice, reason=reason)


def _show(value: object) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        return f"<{type(value).__name__} too long to print>"
    return text if len(text) <= 60 else text[:57] + "..."
