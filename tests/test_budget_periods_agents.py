"""Budgets per period and budget scopes through the agents: real gateway, real ledger, both
stores (SQLite and PostgreSQL), the journal's clock injected (the store's ``clock``)."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from solders.keypair import Keypair

from human_rpc_sdk import (
    AsyncAutoAgent,
    AutoAgent,
    Budget,
    BudgetLine,
    PaymentPolicyError,
    PendingPaymentsWarning,
    SDKConfigurationError,
)
from human_rpc_sdk._io import base
from human_rpc_sdk._io.store import open_journal
from stub_gateway import Gateway, GatewayServer

from .conftest import Funder

PRICE = Decimal("0.001")
FEE = Decimal("0.000005")
COST = PRICE + FEE
NOW = datetime(2026, 11, 26, 22, 0, tzinfo=UTC)
DAY_LINE = {"SOL": {"limit": str(COST + PRICE / 2), "per": "day"}}
"""Room for one SOL payment a day, not two."""


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The wall clock of every journal the agents of this test open."""
    moved = Clock()
    monkeypatch.setattr(base, "open_journal", functools.partial(open_journal, clock=moved))
    return moved


def test_a_payment_over_a_day_line_moves_no_money(
    server: GatewayServer,
    gateway: Gateway,
    funded_wallet: Funder,
    store_location: str,
    clock: Clock,
) -> None:
    """One payment a day: the second is refused by the day line (named, with its reset), and
    nothing moves on the ledger; a raise for today lets one more through, and it lapses at
    midnight, when the line allows one payment again."""
    wallet = funded_wallet(sol="1")
    url = f"{server.url}/api/v1/premium/sol"
    treasury = gateway.balance(gateway.treasury)
    agent = AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=store_location, budget=DAY_LINE)
    try:
        assert agent.get(url).status_code == 200
        with pytest.raises(PaymentPolicyError) as refused:
            agent.get(url)
        assert refused.value.rule == "budget"
        message = str(refused.value)
        assert "0.001505 SOL a day: 0.001005 spent today, resets 2026-11-27 00:00 UTC" in message
        assert "raise_budget({'SOL': '<amount to add>'}, per='day')" in message
        assert gateway.balance(wallet.pubkey()) == 1 - COST
        assert gateway.balance(gateway.treasury) - treasury == PRICE

        budget = agent.budget["SOL"]
        assert isinstance(budget, Budget)
        assert list(budget) == [
            BudgetLine(COST + PRICE / 2, COST, "day", datetime(2026, 11, 27, tzinfo=UTC))
        ]
        assert (budget.limit, budget.spent, budget.remaining) == (
            COST + PRICE / 2,
            COST,
            PRICE / 2,
        )

        agent.raise_budget({"SOL": "0.001"}, per="day")
        assert agent.get(url).status_code == 200
        assert agent.budget["SOL"].limit == COST + PRICE / 2 + PRICE
        clock.now = NOW + timedelta(hours=2)  # the next day: the raise lapsed
        assert agent.budget["SOL"].limit == COST + PRICE / 2
        assert agent.budget["SOL"].spent == 0
        assert agent.get(url).status_code == 200
        with pytest.raises(PaymentPolicyError, match="SOL a day"):
            agent.get(url)
        assert gateway.balance(wallet.pubkey()) == 1 - 3 * COST
        assert gateway.balance(gateway.treasury) - treasury == 3 * PRICE
    finally:
        agent.close()


@pytest.mark.asyncio
async def test_the_async_agent_keeps_lines_per_period_too(
    server: GatewayServer,
    gateway: Gateway,
    funded_wallet: Funder,
    store_location: str,
    clock: Clock,
) -> None:
    """The async agent: 1 a day and 2 in total; the day line refuses the second payment, no
    money moves; agent.budget reports both lines with their resets."""
    wallet = funded_wallet(sol="1")
    url = f"{server.url}/api/v1/premium/sol"
    agent = AsyncAutoAgent(
        wallet,
        rpc_url=server.rpc_url,
        journal_path=store_location,
        budget={"SOL": [DAY_LINE["SOL"], str(2 * COST)]},
    )
    try:
        assert (await agent.get(url)).status_code == 200
        with pytest.raises(PaymentPolicyError, match="SOL a day") as refused:
            await agent.get(url)
        assert refused.value.details["per"] == "day"
        assert gateway.balance(wallet.pubkey()) == 1 - COST
        lines = [(x.per, x.limit, x.spent, x.resets) for x in agent.budget["SOL"]]
        assert lines == [
            (None, 2 * COST, COST, None),
            ("day", COST + PRICE / 2, COST, datetime(2026, 11, 27, tzinfo=UTC)),
        ]
        await agent.raise_budget({"SOL": "1"}, per="day")
        assert (await agent.get(url)).status_code == 200
        with pytest.raises(PaymentPolicyError, match=r"over the budget of 0\.00201"):  # lifetime
            await agent.get(url)
        assert gateway.balance(wallet.pubkey()) == 1 - 2 * COST
    finally:
        await agent.aclose()


def test_agents_of_two_scopes_share_a_journal_with_separate_budgets(
    server: GatewayServer,
    gateway: Gateway,
    funded_wallet: Funder,
    store_location: str,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A crawler (budget_scope=) and a writer ($HUMAN_RPC_BUDGET_SCOPE) with one wallet and
    one journal, one payment each: each pays once, and sees only its own payments and
    spending; raises of one scope stay there."""
    wallet = funded_wallet(sol="1")
    url = f"{server.url}/api/v1/premium/sol"
    budget = {"SOL": str(COST)}
    crawler = AutoAgent(
        wallet,
        rpc_url=server.rpc_url,
        journal_path=store_location,
        budget=budget,
        budget_scope="crawler",
    )
    monkeypatch.setenv("HUMAN_RPC_BUDGET_SCOPE", "writer")
    writer = AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=store_location, budget=budget)
    try:
        assert crawler.get(url).status_code == 200
        with pytest.raises(PaymentPolicyError, match="budget"):
            crawler.get(url)
        assert writer.budget["SOL"].spent == 0
        assert writer.payments == []
        assert writer.get(url).status_code == 200
        with pytest.raises(PaymentPolicyError, match="budget"):
            writer.get(url)
        assert [r.state for r in crawler.payments] == ["accepted"]
        assert [r.state for r in writer.payments] == ["accepted"]
        crawler.raise_budget({"SOL": str(COST)})
        assert crawler.get(url).status_code == 200
        with pytest.raises(PaymentPolicyError, match="budget"):
            writer.get(url)
        assert gateway.balance(wallet.pubkey()) == 1 - 3 * COST
    finally:
        crawler.close()
        writer.close()


def test_recovery_settles_rows_of_every_scope(
    server: GatewayServer, funded_wallet: Funder, tmp_path: Path, clock: Clock
) -> None:
    """recover_payments releases an abandoned reservation of another scope, giving its budget
    back to that scope (not to the recoverer's)."""
    journal = tmp_path / "journal.sqlite3"
    store = open_journal(str(journal), clock=clock)
    from human_rpc_sdk._offer import PaymentOffer

    wallet = funded_wallet(sol="1")
    offer = PaymentOffer(
        url="https://shop.example/a",
        amount=PRICE,
        currency="SOL",
        mint=None,
        recipient=str(Keypair().pubkey()),
        destination=str(Keypair().pubkey()),
        reference=None,
        network="devnet",
        payer=str(wallet.pubkey()),
        atomic_amount=1_000_000,
        format="x402-v2",
    )
    reserved = store.reserve(
        offer, currency_key="SOL", invoice_key="i", budget=None, scope="crawler"
    )
    store.close()
    assert not isinstance(reserved, Exception)
    with pytest.warns(PendingPaymentsWarning):
        agent = AutoAgent(
            wallet, rpc_url=server.rpc_url, journal_path=journal, budget_scope="recoverer"
        )
    try:
        assert agent.budget["SOL"].spent == 0
        crawler = open_journal(str(journal), clock=clock)
        assert crawler.budget("devnet", {}, scope="crawler")["SOL"].spent == PRICE
        # The reservation's process is this one, alive: recovery would leave it. Make it
        # another machine's, untouched for longer than a reservation may stand.
        db = crawler._db  # type: ignore[attr-defined]
        db.execute("UPDATE payments SET pid = 999999999, host = 'gone', updated_unix = 0")
        agent.recover_payments()
        assert crawler.budget("devnet", {}, scope="crawler")["SOL"].spent == 0
        assert [e.state for e in crawler.entries()] == ["failed"]
        assert agent.budget["SOL"].spent == 0  # nothing given to the recoverer's scope
        crawler.close()
    finally:
        agent.close()


@pytest.mark.parametrize("label", ["", "crawler"])
def test_a_scope_label_is_checked_by_both_agents(label: str) -> None:
    assert AutoAgent(Keypair(), journal_path=":memory:", budget_scope=label)._rules.scope == label
    with pytest.raises(SDKConfigurationError, match="budget_scope"):
        AutoAgent(Keypair(), journal_path=":memory:", budget_scope=label + "\n")
    with pytest.raises(SDKConfigurationError, match="budget_scope"):
        AsyncAutoAgent(Keypair(), journal_path=":memory:", budget_scope=label + "\x00")


def test_raise_budget_per_needs_a_line_of_that_period() -> None:
    agent = AutoAgent(Keypair(), journal_path=":memory:", budget=DAY_LINE)
    try:
        with pytest.raises(SDKConfigurationError, match="no budget line per week"):
            agent.raise_budget({"SOL": "1"}, per="week")
        with pytest.raises(SDKConfigurationError, match="rolling window"):
            agent.raise_budget({"SOL": "1"}, per="90m")
        with pytest.raises(SDKConfigurationError, match="no budget"):
            agent.raise_budget({"SOL": "1"})  # its only line is the day's
    finally:
        agent.close()


def test_the_cli_shows_every_line_with_its_reset(tmp_path: Path, clock: Clock) -> None:
    """`human-rpc budget` (text and --json) lists each currency's lines with their resets."""
    from human_rpc_sdk._io.cli.app import cli

    journal = tmp_path / "journal.sqlite3"
    wallet = Keypair()
    env = {"SOLANA_PRIVATE_KEY": str(wallet), "HUMAN_RPC_JOURNAL": str(journal)}
    shown = CliRunner().invoke(cli, ["budget", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert data["SOL"]["lines"] == [
        {"per": None, "limit": "1", "spent": "0", "remaining": "1", "resets": None}
    ]
    text = CliRunner().invoke(cli, ["budget"], env=env)
    assert text.exit_code == 0, text.output
    assert "resets" in text.stdout
    assert "total" in text.stdout


def test_agent_budget_reports_rolling_windows() -> None:
    """A rolling window reports its timedelta; nothing spent, no reset."""
    agent = AutoAgent(
        Keypair(), journal_path=":memory:", budget={"USDC": {"limit": "5", "per": "90m"}}
    )
    try:
        (line,) = agent.budget["USDC"]
        assert (line.per, line.limit, line.spent, line.resets) == (
            timedelta(minutes=90),
            Decimal(5),
            Decimal(0),
            None,
        )
    finally:
        agent.close()


def test_the_budgets_example_runs() -> None:
    """examples/budgets.py: a day line refuses the third purchase, lists its lines, a raise
    for today lets one more through, and a second scope spends its own budget."""
    from .test_examples_and_cli import run_example

    done = run_example("budgets.py")
    assert done.stdout.count("-> HTTP 200") == 4
    assert "refused by rule 'budget' per day; nothing paid" in done.stdout
    assert "0.1 USDC a day: 0.1 spent today, resets " in done.stdout
    assert "total: 0.10 spent of 1, resets never" in done.stdout
    assert "crawler USDC spent: 0.15" in done.stdout
    assert "writer USDC spent before: 0" in done.stdout
    assert "writer payments: 1, crawler payments: 3" in done.stdout
