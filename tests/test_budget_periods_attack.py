"""Attacks on budgets per period and budget scopes (issue 15): each test failed before its fix.

Real stores (SQLite files and PostgreSQL databases via the fixtures), the journal's clock
injected. Where a test plays a process of the previous release on a migrated journal, it runs
that release's own SQL statements (quoted from it) on a connection of its own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent, SDKConfigurationError
from human_rpc_sdk._budgets import LineRule, Period
from human_rpc_sdk._limits import SpendingRules
from human_rpc_sdk._networks import KNOWN_MINTS

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
