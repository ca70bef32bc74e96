"""Strict money parsing: exact decimals, integral base units, u64 bounds."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from human_rpc_sdk._money import (
    U64_MAX,
    MoneyError,
    format_amount,
    from_base_units,
    parse_base_units,
    parse_decimal,
    to_base_units,
)


@given(units=st.integers(1, U64_MAX), decimals=st.integers(0, 12))
def test_base_units_round_trip(units: int, decimals: int) -> None:
    """Base units to display and back are exact."""
    assert to_base_units(from_base_units(units, decimals), decimals) == units


@given(units=st.integers(1, 10**12), decimals=st.integers(0, 9))
def test_display_text_parses_back(units: int, decimals: int) -> None:
    """The display text of an amount parses to the same amount."""
    amount = from_base_units(units, decimals)
    assert parse_decimal(format_amount(amount)) == amount


def test_float_input_is_taken_by_its_shortest_repr() -> None:
    """0.05 as a float is exactly five hundredths, not 0.05000000000000000277."""
    assert parse_decimal(0.05) == Decimal("0.05")
    assert to_base_units(parse_decimal(0.1), 6) == 100_000


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "boolean"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        (Decimal("NaN"), "finite"),
        (0, "greater than zero"),
        (-1, "greater than zero"),
        ("-0.5", "plain decimal"),
        ("1e3", "plain decimal"),
        (" 1", "plain decimal"),
        ("", "plain decimal"),
        (None, "must be a number"),
        ([1], "must be a number"),
    ],
)
def test_parse_decimal_refuses(value: object, message: str) -> None:
    """Each bad display amount is refused with a reason."""
    with pytest.raises(MoneyError, match=message):
        parse_decimal(value)


@pytest.mark.parametrize(
    ("amount", "decimals", "message"),
    [
        ("0.0000001", 6, "more decimal places"),
        ("1." + "0" * 80 + "1", 6, "more decimal places"),
        ("18446744073.709551616", 9, "u64"),
        ("1e30", 0, "u64"),
    ],
)
def test_to_base_units_refuses_rounding_and_overflow(
    amount: str, decimals: int, message: str
) -> None:
    """Nothing is ever rounded; nothing beyond u64 is accepted."""
    with pytest.raises(MoneyError, match=message):
        to_base_units(Decimal(amount), decimals)


def test_u64_edge_is_exact() -> None:
    """The largest u64 amount converts; one more unit does not."""
    assert to_base_units(Decimal("18446744073.709551615"), 9) == U64_MAX
    assert parse_base_units(str(U64_MAX)) == U64_MAX
    with pytest.raises(MoneyError):
        parse_base_units(U64_MAX + 1)


@pytest.mark.parametrize("value", [Decimal("1E+7"), 10_000_000, "10000000", Decimal("10000000.0")])
def test_base_units_accept_integral_forms(value: object) -> None:
    """Integral JSON numbers and digit strings are base units."""
    assert parse_base_units(value) == 10_000_000


@pytest.mark.parametrize(
    "value", [Decimal("70000000.00000001"), 1.5, "1.0", "-3", "0", False, "1" * 21]
)
def test_base_units_refuse_fractions_and_junk(value: object) -> None:
    """A fractional or signed base-unit amount is refused, never truncated."""
    with pytest.raises(MoneyError):
        parse_base_units(value)
