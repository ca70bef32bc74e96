"""Attacks on budgets per period and budget scopes (issue 15): each test failed before its fix.

Real stores (SQLite files and PostgreSQL databases via the fixtures), the journal's clock
injected. Where a test plays a process of the previous release on a migrated journal, it runs
that release's own SQL statements (quoted from it) on a connection of its own.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent, SDKConfigurationError
from human_rpc_sdk._budgets import LineRule, Period
from human_rpc_sdk._io.store import open_journal
from human_rpc_sdk._limits import SpendingRules
from human_rpc_sdk._networks import KNOWN_MINTS
from human_rpc_sdk._records import Reserved

from .test_budget_periods import offer

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DAY = {"USDC": (LineRule(Decimal(5), Period("day")),)}


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "second",
    ["usdc", " USDC", KNOWN_MINTS["devnet"]["USDC"]],
)
def test_a_currency_named_twice_in_budget_is_refused(second: str) -> None:
    """`budget={"USDC": <1 a day>, "usdc": "100"}` (or USDC's mint address as the second key)
    named one currency twice: the second entry silently replaced the first, so the day line
    of 1 was gone and 100 could be spent in a day. Now a configuration error naming both."""
    budget = {"USDC": {"limit": "1", "per": "day"}, second: "100"}
    with pytest.raises(SDKConfigurationError, match="names USDC twice") as caught:
        SpendingRules.build("devnet", budget=budget)
    assert caught.value.parameter == "budget"
    with pytest.raises(SDKConfigurationError, match="names USDC twice"):
        AutoAgent(Keypair(), journal_path=":memory:", budget=budget)


def test_sol_named_twice_in_budget_is_refused() -> None:
    with pytest.raises(SDKConfigurationError, match="names SOL twice"):
        SpendingRules.build("devnet", budget={"sol": {"limit": "0.01", "per": "hour"}, "SOL": "1"})


# -- replacements -----------------------------------------------------------------------------


def test_a_replacement_gives_back_to_another_scope(store_location: str) -> None:
    """An agent of scope B replaces a payment journaled under scope A (the same invoice, or a
    payment resumed with the same wallet): A gets its budget back, B is charged. PostgreSQL
    failed the reservation as "journal_unavailable" (the database looked down) because A's
    totals were not locked."""
    journal = open_journal(store_location, clock=lambda: NOW)
    try:
        first = journal.reserve(
            offer("1", fee=5000),
            currency_key="USDC",
            invoice_key="inv",
            budget=Decimal(3),
            sol_budget=Decimal(1),
            periods=DAY,
            scope="A",
        )
        assert isinstance(first, Reserved)
        assert journal.mark(first.entry.id, "signed", {"transaction_b64": "t"}) is not None
        again = journal.reserve(
            replace(offer("1", fee=5000), replaces=first.entry.id),
            currency_key="USDC",
            invoice_key="inv",
            budget=Decimal(3),
            sol_budget=Decimal(1),
            periods=DAY,
            scope="B",
        )
        assert isinstance(again, Reserved)
        assert [(e.id, e.state) for e in journal.entries()] == [
            (first.entry.id, "failed"),
            (again.entry.id, "reserved"),
        ]
        limits = {"USDC": Decimal(3), "SOL": Decimal(1)}
        a = journal.budget("devnet", limits, periods=DAY, scope="A")
        b = journal.budget("devnet", limits, periods=DAY, scope="B")
        assert [line.spent for line in a["USDC"]] == [0, 0]
        assert a["SOL"].spent == 0
        assert [line.spent for line in b["USDC"]] == [1, 1]
        assert b["SOL"].spent == Decimal("0.000005")
    finally:
        journal.close()


def test_a_replacement_in_another_currency_gives_back_to_the_first(store_location: str) -> None:
    """A replacement that pays another of the challenge's offers (USDT this time, USDC the
    first time): the USDC total is given back, the USDT one charged, in both stores."""
    journal = open_journal(store_location, clock=lambda: NOW)
    try:
        first = journal.reserve(
            offer("1"), currency_key="USDC", invoice_key="inv", budget=Decimal(3)
        )
        assert isinstance(first, Reserved)
        assert journal.mark(first.entry.id, "signed", {"transaction_b64": "t"}) is not None
        usdt = replace(offer("2"), currency="USDT", mint="usdt-mint", replaces=first.entry.id)
        again = journal.reserve(usdt, currency_key="USDT", invoice_key="inv", budget=Decimal(3))
        assert isinstance(again, Reserved)
        spent = journal.budget("devnet", {"USDC": Decimal(3), "USDT": Decimal(3)})
        assert (spent["USDC"].spent, spent["USDT"].spent) == (0, 2)
    finally:
        journal.close()
