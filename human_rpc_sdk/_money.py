"""Strict money parsing: exact decimals in, integer base units out, never a float on the way."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from decimal import (
    MAX_EMAX,
    MIN_EMIN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    Rounded,
    localcontext,
)
from typing import Any, Final, ParamSpec, TypeVar

U64_MAX: Final = 2**64 - 1
EXACT: Final = Context(
    prec=400, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[InvalidOperation, DivisionByZero, Overflow]
)
"""The decimal context of the journals' sums (spent, buckets, raises, the budget checks) and of
:func:`from_base_units`: exact for any amount this SDK accepts (below 1e31, at most 255
decimals), whatever context the calling thread set. Under a
caller's ``getcontext().prec = 6``, 1000 + 0.004 was 1000.00: a payment the budget counted as
nothing."""
_P = ParamSpec("_P")
_R = TypeVar("_R")


def exact(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``function`` in the :data:`EXACT` decimal context."""

    @functools.wraps(function)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with localcontext(EXACT):
            return function(*args, **kwargs)

    return run


_DECIMAL_TEXT = re.compile(r"[0-9]+(\.[0-9]+)?")
_DIGITS = re.compile(r"[0-9]+")


class MoneyError(ValueError):
    """A value is not an acceptable amount; the message says why (no field name)."""


def parse_decimal(value: Any) -> Decimal:
    """Parse an amount in display units (``0.05`` USDC) into an exact, positive Decimal.

    Accepts JSON numbers (int, Decimal, or float, which is taken by its shortest repr, so
    ``0.05`` is exactly 0.05) and plain decimal strings (``"0.05"``; no sign, exponent or
    spaces). Booleans, NaN, infinities, zero and negatives are refused.
    """
    if isinstance(value, bool):
        raise MoneyError("must be a number, not a boolean")
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        amount = Decimal(repr(value))
    elif isinstance(value, Decimal):
        amount = value
    elif isinstance(value, str):
        if not _DECIMAL_TEXT.fullmatch(value):
            raise MoneyError(f"must be a plain decimal number such as '0.05' (got {_show(value)})")
        amount = Decimal(value)
    else:
        raise MoneyError(f"must be a number (got {type(value).__name__})")
    if not amount.is_finite():
        raise MoneyError(f"must be a finite number (got {_show_dec(amount)})")
    if amount <= 0:
        raise MoneyError(f"must be greater than zero (got {_show_dec(amount)})")
    return amount


def parse_base_units(value: Any) -> int:
    """Parse an amount already in base units (lamports, token units): a positive u64.

    Accepts JSON integers, integral JSON numbers (``1e7``, ``10000000.0``) and digit strings.
    """
    if isinstance(value, bool):
        raise MoneyError("must be a whole number of base units, not a boolean")
    if isinstance(value, int):
        units = value
    elif isinstance(value, str):
        if not _DIGITS.fullmatch(value) or len(value) > 20:
            raise MoneyError(f"must be a whole number of base units (got {_show(value)})")
        units = int(value)
    elif isinstance(value, float | Decimal):
        exact = Decimal(repr(value)) if isinstance(value, float) else value
        if not exact.is_finite() or exact.adjusted() > 20 or exact != exact.to_integral_value():
            raise MoneyError(f"must be a whole number of base units (got {_show(value)})")
        units = int(exact)
    else:
        raise MoneyError(f"must be a whole number of base units (got {type(value).__name__})")
    if units <= 0:
        raise MoneyError(f"must be greater than zero (got {units})")
    if units > U64_MAX:
        raise MoneyError(
            f"exceeds the largest amount a Solana transfer can carry (u64, got {units})"
        )
    return units


def to_base_units(amount: Decimal, decimals: int) -> int:
    """Convert a positive display amount to base units, refusing rounding and u64 overflow."""
    if amount.adjusted() + decimals > 20:
        raise MoneyError(
            f"{_show_dec(amount)} exceeds the largest amount a Solana transfer can carry (u64)"
        )
    too_precise = False
    with localcontext() as ctx:
        # Trap rounding: an amount with more digits than the context holds must be refused,
        # not silently rounded into an integral (and wrong) number of base units.
        ctx.prec = 64
        ctx.traps[Inexact] = ctx.traps[Rounded] = True
        try:
            scaled = amount.scaleb(decimals)
            integral = scaled.to_integral_value()
        except (Inexact, Rounded, InvalidOperation):
            too_precise = True
    if too_precise or scaled != integral:
        raise MoneyError(
            f"{_show_dec(amount)} has more decimal places than the token allows ({decimals})"
        )
    units = int(integral)
    if units > U64_MAX:
        raise MoneyError(
            f"{_show_dec(amount)} exceeds the largest amount a Solana transfer can carry (u64)"
        )
    if units <= 0:
        raise MoneyError(f"{_show_dec(amount)} is zero once converted to base units")
    return units


@exact
def from_base_units(units: int, decimals: int) -> Decimal:
    """Base units to an exact display Decimal (``10_000`` at 6 decimals is ``Decimal("0.01")``)."""
    return Decimal(format_amount(Decimal(units).scaleb(-decimals)))


def format_amount(amount: Decimal) -> str:
    """A display amount without exponent or trailing zeros: ``0.05``, ``1``, ``0.000001``."""
    text = format(amount, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _show_dec(amount: Decimal) -> str:
    text = str(amount)
    return text if len(text) <= 40 else text[:37] + "..."
