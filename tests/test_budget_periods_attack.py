"""Attacks on budgets per period and budget scopes (issue 15): each test failed before its fix.

Real stores (SQLite files and PostgreSQL databases via the fixtures), the journal's clock
injected. Where a test plays a process of the previous release on a migrated journal, it runs
that release's own SQL statements (quoted from it) on a connection of its own.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent, PaymentError, PaymentPolicyError, SDKConfigurationError
from human_rpc_sdk._budgets import LineRule, Period
from human_rpc_sdk._io.journal import Journal
from human_rpc_sdk._io.store import open_journal
from human_rpc_sdk._limits import SpendingRules
from human_rpc_sdk._networks import KNOWN_MINTS
from human_rpc_sdk._records import OverBudget, Reserved
from stub_gateway import Gateway, GatewayServer

from .conftest import Funder
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
        assert (spent["USDC"].spent, spent["USDT"].spent) == (Decimal(0), Decimal(2))
    finally:
        journal.close()


# -- a process of the previous release on a migrated journal ----------------------------------


def test_an_older_release_cannot_recount_every_scope_into_the_default_one(tmp_path: Path) -> None:
    """A process of the previous release (SQLite schema 5) still running when a new one
    migrates the file: after a hand edit (the SDK's own advice to recount: bump 'writes'), its
    next write recounts the totals its way, `DELETE FROM totals` and one INSERT per network
    and currency with no scope. That put the crawler's spending in the default scope and left
    the crawler's total at zero: the crawler could spend its lifetime budget again. Now the
    INSERT fails (a total has no default scope) and that process's transaction rolls back."""
    path = tmp_path / "journal.sqlite3"
    journal = Journal(path, clock=lambda: NOW)
    try:
        made = journal.reserve(
            offer("3"), currency_key="USDC", invoice_key=None, budget=Decimal(3), scope="crawler"
        )
        assert isinstance(made, Reserved)
        old = sqlite3.connect(path, isolation_level=None)
        try:
            old.execute("UPDATE counters SET value = value + 1 WHERE name = 'writes'")  # by hand
            # The previous release's _writing: BEGIN IMMEDIATE, then rebuild_totals (its SQL).
            old.execute("BEGIN IMMEDIATE")
            try:
                old.execute("DELETE FROM totals")
                old.execute(
                    "INSERT INTO totals (network, currency_key, spent) VALUES (?, ?, ?)",
                    ("devnet", "USDC", "3"),
                )
                old.execute(  # its _all_counted, then its commit
                    "UPDATE counters SET value = (SELECT value FROM counters WHERE name = "
                    "'writes') WHERE name = 'counted'"
                )
                old.execute("COMMIT")
                refused = None
            except sqlite3.IntegrityError as exc:
                old.execute("ROLLBACK")  # its _immediate() on the error
                refused = exc
        finally:
            old.close()
        over = journal.reserve(
            offer("1"), currency_key="USDC", invoice_key=None, budget=Decimal(3), scope="crawler"
        )
        assert isinstance(over, OverBudget)
        assert (over.spent, over.limit) == (Decimal(3), Decimal(3))
        assert journal.budget("devnet", {"USDC": Decimal(3)})["USDC"].spent == 0  # scope ""
        assert "NOT NULL" in str(refused)
    finally:
        journal.close()


def test_an_older_release_cannot_reserve_outside_the_period_lines(journal_url: str) -> None:
    """A process of the previous release (PostgreSQL schema 1) still running after another
    migrated the database to schema 2 (a rolling deployment) inserted its reservations with no
    reservation time and no spending buckets: its 4 today were invisible to the day line of 5,
    which let 5 more through (9 in the day). Now its INSERT is refused (the reservation time
    is required) and nothing it did counts or moves."""
    import psycopg

    journal = open_journal(journal_url, clock=lambda: NOW)
    try:
        refused: Exception | None = None
        try:
            with psycopg.connect(journal_url) as old:
                older_release_reserves(old, "4")
        except psycopg.errors.NotNullViolation as exc:
            refused = exc
        while isinstance(
            journal.reserve(
                offer("1"), currency_key="USDC", invoice_key=None, budget=None, periods=DAY
            ),
            Reserved,
        ):
            pass
        today = sum(e.receipt.amount for e in journal.entries() if e.state != "failed")
        assert today <= 5
        assert journal.budget("devnet", {"USDC": None}, periods=DAY)["USDC"].spent == today
        assert refused is not None
    finally:
        journal.close()


def older_release_reserves(old: Any, amount: str) -> None:
    """The previous release's reserve (PostgreSQL schema 1): its INSERT, which names no
    reservation time, then its totals (it knows no buckets)."""
    old.execute(
        "INSERT INTO payments (scope, invoice_key, state, created, updated, "
        "updated_unix, expires_at, url, network, format, currency, currency_key, amount, "
        "atomic_amount, mint, recipient, destination, reference, payer, fee_lamports, "
        "replaces, pid, host, process, genesis_hash) VALUES ('', NULL, 'reserved', %s, "
        "%s, extract(epoch FROM clock_timestamp()), now() + make_interval(secs => 600), "
        "'https://shop.example/a', 'devnet', 'x402-v2', 'USDC', 'USDC', %s, '1', "
        "'mint', 'shop', 'shop-ata', NULL, 'me', 0, NULL, 1, 'old', 'old', NULL)",
        (NOW.isoformat(), NOW.isoformat(), amount),
    )
    old.execute(
        "UPDATE totals SET spent = spent + %s WHERE scope = '' AND network = 'devnet' "
        "AND currency_key = 'USDC'",
        (Decimal(amount),),
    )


# -- the caller's decimal context -------------------------------------------------------------


def test_budget_sums_are_exact_whatever_the_callers_decimal_context(store_location: str) -> None:
    """A program that set `decimal.getcontext().prec = 6` for its own needs, then paid (the
    journal runs in its thread): 1000 + 0.004 rounded to 1000.00, so on SQLite every further
    0.004 counted nothing (10 payments over a lifetime and day limit of 1000.01), and on
    PostgreSQL the check itself rounded (one payment over). Now 1000.008 is the most spent."""
    import decimal

    limit = Decimal("1000.01")
    day = {"USDC": (LineRule(limit, Period("day")),)}
    journal = open_journal(store_location, clock=lambda: NOW)
    try:

        def pay(amount: str) -> bool:
            made = journal.reserve(
                offer(amount), currency_key="USDC", invoice_key=None, budget=limit, periods=day
            )
            return isinstance(made, Reserved)

        assert pay("1000")
        with decimal.localcontext() as context:
            context.prec = 6
            paid = sum(pay("0.004") for _ in range(10))
            assert paid == 2
            lifetime, today = journal.budget("devnet", {"USDC": limit}, periods=day)["USDC"]
        assert lifetime.spent == today.spent == Decimal("1000.008")
    finally:
        journal.close()


def test_base_units_convert_exactly_whatever_the_callers_decimal_context() -> None:
    """from_base_units (the amount journaled for a payment) rounded to the caller's precision:
    1.234567 USDC paid on chain was journaled, and counted, as 1.23."""
    import decimal

    from human_rpc_sdk._money import from_base_units

    with decimal.localcontext() as context:
        context.prec = 3
        assert from_base_units(1_234_567, 6) == Decimal("1.234567")
        assert from_base_units(2**64 - 1, 9) == Decimal("18446744073.709551615")


@pytest.mark.parametrize("value", [" crawler", "crawler\n", "x" * 65])
def test_a_bad_scope_from_the_environment_names_the_variable(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$HUMAN_RPC_BUDGET_SCOPE set to a bad label: the error said "budget_scope must be ...",
    a keyword the caller never passed; now it names the variable."""
    monkeypatch.setenv("HUMAN_RPC_BUDGET_SCOPE", value)
    with pytest.raises(SDKConfigurationError, match=r"^\$HUMAN_RPC_BUDGET_SCOPE must be a short"):
        AutoAgent(Keypair(), journal_path=":memory:")
    agent = AutoAgent(Keypair(), journal_path=":memory:", budget_scope="crawler")  # it wins
    try:
        assert agent._rules.scope == "crawler"
    finally:
        agent.close()


# -- refusals ---------------------------------------------------------------------------------


def test_a_refusal_names_the_line_that_lifts_last(store_location: str) -> None:
    """2 an hour and 2 a week, both spent: the refusal named the hour line (its reset at the
    hour's end) although the week line refuses until Monday; a caller waiting for the named
    reset was refused again. Now the week line, resetting Monday, is named."""
    from .test_budget_periods import START, lines

    both = lines(("2", Period("hour")), ("2", Period("week")))
    journal = open_journal(store_location, clock=lambda: START)  # Thursday 23:00
    try:
        made = journal.reserve(
            offer("2"), currency_key="USDC", invoice_key=None, budget=None, periods=both
        )
        assert isinstance(made, Reserved)
        over = journal.reserve(
            offer("1"), currency_key="USDC", invoice_key=None, budget=None, periods=both
        )
        assert isinstance(over, OverBudget)
        assert (over.per, over.resets) == (
            Period("week"),
            int(datetime(2026, 11, 30, tzinfo=UTC).timestamp()),
        )
    finally:
        journal.close()


def test_a_payment_above_a_day_line_is_not_told_to_wait(
    server: GatewayServer, gateway: Gateway, funded_wallet: Funder, tmp_path: Path
) -> None:
    """A payment costing more than its day line allows at all: the refusal said "resets
    <midnight>; wait", and waiting never helps. Now it says so; nothing moves."""
    wallet = funded_wallet(sol="1")
    agent = AutoAgent(
        wallet,
        rpc_url=server.rpc_url,
        journal_path=tmp_path / "journal.sqlite3",
        budget={"SOL": {"limit": "0.0005", "per": "day"}},
    )
    try:
        with pytest.raises(PaymentPolicyError, match="more than the line allows at all") as no:
            agent.get(f"{server.url}/api/v1/premium/sol")  # 0.001 SOL
        assert "resets" not in str(no.value)
        assert "; raise_budget({'SOL': '<amount to add>'}, per='day')" in str(no.value)
        assert gateway.balance(wallet.pubkey()) == 1
        assert agent.payments == []
    finally:
        agent.close()


def test_raising_a_currency_with_only_lines_per_period_says_which() -> None:
    """raise_budget({"SOL": "1"}) for SOL limited to 1 a day: the error said SOL "has no
    budget (payments in it are limited by max_payment only)", which is false."""
    agent = AutoAgent(
        Keypair(), journal_path=":memory:", budget={"SOL": {"limit": "1", "per": "day"}}
    )
    try:
        with pytest.raises(SDKConfigurationError, match="only lines per period") as caught:
            agent.raise_budget({"SOL": "1"})
        assert "max_payment only" not in str(caught.value)
        assert "'day'" in str(caught.value)
        assert agent.budget["SOL"].limit == 1
    finally:
        agent.close()


# -- a PostgreSQL journal edited by hand ------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "line"),
    [
        ("UPDATE budget_raises SET raised = 'Infinity'", "lifetime"),
        ("UPDATE period_raises SET raised = 'Infinity'", "day"),
        ("UPDATE totals SET spent = 'NaN' WHERE currency_key = 'USDC'", "lifetime"),
        ("UPDATE spending SET spent = 'NaN'", "day"),
    ],
)
def test_a_postgres_sum_edited_to_nan_or_infinity_stops_payments(
    journal_url: str, edit: str, line: str
) -> None:
    """PostgreSQL's NUMERIC takes 'NaN' and 'Infinity', and both pass `CHECK (raised >= 0)`: a
    raise edited to Infinity lifted the ceiling to nothing (every payment passed), a total or
    a bucket edited to NaN raised a bare decimal.InvalidOperation from reserve. The SQLite
    journal refuses such sums (journal_unavailable, nothing reserved); now PostgreSQL too."""
    import psycopg

    from human_rpc_sdk import PaymentError

    day = {"USDC": (LineRule(Decimal(2), Period("day")),)}
    journal = open_journal(journal_url, clock=lambda: NOW)
    try:
        made = journal.reserve(
            offer("2"), currency_key="USDC", invoice_key=None, budget=Decimal(2), periods=day
        )
        assert isinstance(made, Reserved)
        journal.raise_budget("devnet", {"USDC": Decimal(1)})
        journal.raise_budget("devnet", {"USDC": Decimal(1)}, per=Period("day"))
        with psycopg.connect(journal_url) as db:
            db.execute(edit)
        with pytest.raises(PaymentError) as caught:  # only the edited line decides
            journal.reserve(
                offer("100"),
                currency_key="USDC",
                invoice_key=None,
                budget=Decimal(2) if line == "lifetime" else None,
                periods=day if line == "day" else None,
            )
        assert caught.value.reason == "journal_unavailable"
        assert "edited by hand" in str(caught.value)
        with pytest.raises(PaymentError, match="edited by hand"):
            journal.budget("devnet", {"USDC": Decimal(2)}, periods=day)
        assert len(journal.entries()) == 1
    finally:
        journal.close()


# -- reports ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_mcp_budget_tool_names_a_rolling_window_as_the_cli_does() -> None:
    """The MCP budget tool gave a rolling window as str(timedelta), "1:30:00" (and a 2-day one
    as "2 days, 0:00:00"), where the CLI says "rolling 90m": now both say "rolling 90m"."""
    from human_rpc_sdk import AsyncAutoAgent
    from human_rpc_sdk._io.mcp_tools import agent_server

    agent = AsyncAutoAgent(
        Keypair(),
        journal_path=":memory:",
        budget={"USDC": [{"limit": "5", "per": "90m"}, {"limit": "9", "per": "2d"}, "20"]},
    )
    try:
        result = await agent_server(agent).call_tool("budget", {})
        content = getattr(result, "structured_content", None) or {}
        pers = [line["per"] for line in content["budget"]["USDC"]["lines"]]
        assert pers == [None, "rolling 90m", "rolling 2d"]
    finally:
        await agent.aclose()


@pytest.mark.filterwarnings("ignore::human_rpc_sdk.PendingPaymentsWarning")  # the crawler's
def test_an_agent_of_another_scope_replaces_a_resumed_payment_and_pays_once(
    store_location: str,
) -> None:
    """Through the agents, the real gateway and ledger: a crawler (scope "crawler") pays, the
    payment never reaches the server (a proxy swallows it); a writer (scope "writer", the same
    wallet and journal) makes the same request, resumes that payment, finds its blockhash
    expired and never landed, and replaces it. On PostgreSQL the replacement failed as
    journal_unavailable (the crawler's totals were not locked). Now it is paid once, the
    writer charged and the crawler given back what it reserved."""
    from human_rpc_sdk._io.store import open_journal as reopen
    from stub_gateway.app import create_app

    from .conftest import FakeClock
    from .paid_proxy import paid_proxy
    from .test_payment_identifier import PRICE, funded
    from .test_replacement_proof import serve

    clock = FakeClock()
    app = create_app(clock=clock, sleep=clock.sleep)
    clock.now += 10
    gateway = app.extensions["stub_gateway"]
    with serve(app) as server:
        wallet = funded(gateway)
        budget = {"USDC": "0.01", "SOL": "0.1"}
        with paid_proxy(server.url) as proxy:
            proxy.swallow = 4
            url = f"{proxy.url}/x402/v2/premium"
            crawler = AutoAgent(
                wallet,
                rpc_url=server.rpc_url,
                journal_path=store_location,
                budget=budget,
                budget_scope="crawler",
            )
            with crawler, pytest.raises(PaymentError):
                crawler.get(url)
            clock.now += 61  # > 150 slots: its blockhash can no longer land
            writer = AutoAgent(
                wallet,
                rpc_url=server.rpc_url,
                journal_path=store_location,
                budget=budget,
                budget_scope="writer",
            )
            with writer:
                assert writer.get(url).status_code == 200
        assert gateway.balance(wallet.pubkey(), "USDC") == 1 - PRICE
        journal = reopen(store_location)
        try:
            expired, replacement = journal.entries()
            assert (expired.state, expired.receipt.landed) == ("failed", False)
            assert (replacement.state, replacement.receipt.replaces) == ("accepted", expired.id)
            limits = {"USDC": Decimal("0.01")}
            assert journal.budget("devnet", limits, scope="crawler")["USDC"].spent == 0
            assert journal.budget("devnet", limits, scope="writer")["USDC"].spent == PRICE
        finally:
            journal.close()


def test_a_raise_given_twice_adds_up_exactly_whatever_the_callers_context() -> None:
    """raise_budget({"SOL": "1.4", "sol": "0.06"}) under a caller's prec = 2 added 1.5."""
    import decimal

    agent = AutoAgent(Keypair(), journal_path=":memory:")
    try:
        with decimal.localcontext() as context:
            context.prec = 2
            agent.raise_budget({"SOL": "1.4", "sol": "0.06"})
        assert agent.budget["SOL"].limit == Decimal("2.46")  # the default 1, plus 1.46
    finally:
        agent.close()


@pytest.mark.parametrize("per", ["fortnight", 5, "0m", True])
def test_a_bad_per_for_raise_budget_says_what_per_takes(per: object) -> None:
    """raise_budget(per="fortnight") said "per holds per='fortnight' is not a period; each
    currency takes an amount ("20", a lifetime limit), None (no limit), ...": the forms of
    budget=, not of per=. Now it names the periods a raise takes; nothing is raised."""
    agent = AutoAgent(
        Keypair(), journal_path=":memory:", budget={"SOL": {"limit": "1", "per": "day"}}
    )
    try:
        with pytest.raises(SDKConfigurationError) as caught:
            agent.raise_budget({"SOL": "1"}, per=per)
        assert caught.value.parameter == "per"
        assert str(caught.value).startswith("raise_budget(per=")
        assert "'hour', 'day', 'week' or 'month'" in str(caught.value)
        assert "each currency takes" not in str(caught.value)
        assert agent.budget["SOL"].limit == 1
    finally:
        agent.close()


def test_the_cli_budget_says_whose_scope_it_shows(tmp_path: Path) -> None:
    """`human-rpc budget` with $HUMAN_RPC_BUDGET_SCOPE set showed that scope's figures under
    the journal's name only, as if they were the whole journal's; now it names the scope."""
    from click.testing import CliRunner

    from human_rpc_sdk._io.cli.app import cli

    env = {
        "SOLANA_PRIVATE_KEY": str(Keypair()),
        "HUMAN_RPC_JOURNAL": str(tmp_path / "journal.sqlite3"),
        "HUMAN_RPC_BUDGET_SCOPE": "crawler",
    }
    shown = CliRunner().invoke(cli, ["budget"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "scope 'crawler'" in " ".join(shown.stdout.split())
    raised = CliRunner().invoke(cli, ["budget", "raise", "1", "SOL"], env=env)
    assert raised.exit_code == 0, raised.output
    assert "scope 'crawler'" in " ".join(raised.stdout.split())
    env.pop("HUMAN_RPC_BUDGET_SCOPE")
    default = CliRunner().invoke(cli, ["budget", "--json"], env=env)
    assert default.exit_code == 0, default.output
    assert '"limit": "1"' in default.stdout  # the crawler's raise is not the default scope's
