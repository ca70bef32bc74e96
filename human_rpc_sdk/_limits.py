"""The agent's spending rules: a ceiling per payment, and which assets x402 offers may use."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ._checks import is_pubkey
from ._money import MoneyError, format_amount, parse_decimal
from .exceptions import SDKConfigurationError

__all__ = ["SpendingRules"]


@dataclass(frozen=True)
class SpendingRules:
    """Validated spending rules.

    ``max_payment`` maps a currency symbol (``"USDC"``, ``"SOL"``) or a mint address to the
    most one payment may cost, in display units. ``accept_assets`` lists mints an x402 offer
    may ask for besides the tokens this SDK knows on the agent's network.
    """

    max_payment: Mapping[str, Decimal] = field(default_factory=dict)
    accept_assets: frozenset[str] = frozenset()

    @classmethod
    def build(cls, max_payment: Any = None, accept_assets: Any = None) -> SpendingRules:
        """Check the caller's settings. Raises ``SDKConfigurationError`` naming the parameter."""
        caps: dict[str, Decimal] = {}
        if max_payment is not None:
            if not isinstance(max_payment, Mapping):
                raise SDKConfigurationError(
                    'max_payment must map currencies to amounts, e.g. {"USDC": "1", "SOL": "0.01"}',
                    parameter="max_payment",
                )
            for key, value in max_payment.items():
                if not isinstance(key, str) or not key.strip():
                    raise SDKConfigurationError(
                        "max_payment keys must be currency symbols or mint addresses "
                        f"(got {key!r})",
                        parameter="max_payment",
                    )
                try:
                    caps[_key(key)] = parse_decimal(value)
                except MoneyError as exc:
                    raise SDKConfigurationError(
                        f"max_payment[{key!r}] {exc}", parameter="max_payment"
                    ) from None
        mints: set[str] = set()
        if accept_assets is not None:
            if isinstance(accept_assets, str) or not isinstance(accept_assets, Iterable):
                raise SDKConfigurationError(
                    "accept_assets must be a list of mint addresses", parameter="accept_assets"
                )
            for mint in accept_assets:
                if not isinstance(mint, str) or not is_pubkey(mint):
                    raise SDKConfigurationError(
                        f"accept_assets holds {mint!r}, which is not a mint address",
                        parameter="accept_assets",
                    )
                mints.add(mint)
        return cls(caps, frozenset(mints))

    def cap(self, symbol: str, mint: str | None) -> Decimal | None:
        """The ceiling for a payment in ``symbol`` / ``mint`` (a mint rule wins), or None."""
        if mint is not None and mint in self.max_payment:
            return self.max_payment[mint]
        return self.max_payment.get(symbol.upper())

    def over_cap(self, symbol: str, mint: str | None, amount: Decimal) -> str | None:
        """Why ``amount`` breaks the ceiling, or None when it does not."""
        ceiling = self.cap(symbol, mint)
        if ceiling is None or amount <= ceiling:
            return None
        return (
            f"{format_amount(amount)} {symbol} is more than max_payment allows for {symbol} "
            f"({format_amount(ceiling)})"
        )


def _key(text: str) -> str:
    text = text.strip()
    return text if is_pubkey(text) else text.upper()
