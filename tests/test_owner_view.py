"""What the owner of an agent sees: payments of unknown outcome announced with no logging set
up, this wallet's own payment history, and a raised budget that outlives the process."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent, PaymentPolicyError, PendingPaymentsWarning
from human_rpc_sdk._io.journal import SCHEMA_VERSION, Journal
from human_rpc_sdk._offer import PaymentOffer
from human_rpc_sdk._records import Reserved

from .conftest import Shop, sqlite_of
from .test_journal_safety import v1_journal

ROOT = Path(__file__).resolve().parent.parent
PRICE = "0.01"  # USDC, per request


def offer(payer: str, network: str = "devnet", amount: str = "0.001") -> PaymentOffer:
    recipient = str(Keypair().pubkey())
    return PaymentOffer(
        url="http://shop/item",
        amount=Decimal(amount),
        currency="SOL",
        mint=None,
        recipient=recipient,
        destination=recipient,
        network=network,
        payer=payer,
        format="humanrpc",
        atomic_amount=int(Decimal(amount).scaleb(9)),
    )


def with_a_pending_payment(path: Path) -> int:
    """A journal left by a process that stopped after signing: one row in ``signed``."""
    journal = Journal(path)
    reserved = journal.reserve(
        offer(str(Keypair().pubkey())), currency_key="SOL", invoice_key=None, budget=None
    )
    assert isinstance(reserved, Reserved)
    journal.mark(reserved.entry.id, "signed", {"transaction_b64": "AA==", "signature": "sig"})
    journal.close()
    return reserved.entry.id


def python(
    code: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with default warning filters and no logging set up."""
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    environ.update(env or {}, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        check=False,
    )


# -- payments of unknown outcome ---------------------------------------------------------------


def test_a_restarted_agent_warns_its_owner_with_no_logging_set_up(tmp_path: Path) -> None:
    """A new process builds an agent on a journal with a signed, unanswered payment: stderr
    shows a PendingPaymentsWarning naming the payment and what to do, once."""
    path = tmp_path / "journal.sqlite3"
    entry_id = with_a_pending_payment(path)
    ran = python(
        "import sys\n"
        "from solders.keypair import Keypair\n"
        "from human_rpc_sdk import AutoAgent\n"
        "AutoAgent(Keypair(), journal_path=sys.argv[1]).close()\n",
        str(path),
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == ""
    assert ":4: PendingPaymentsWarning: " in ran.stderr  # at the line that built the agent
    assert f"holds 1 payment(s) with no known outcome (journal ids {entry_id})" in ran.stderr
    assert "agent.recover_payments()" in ran.stderr
    assert ran.stderr.count("no known outcome") == 1  # the warning, not a log line too


def test_the_pending_payments_warning_is_a_user_warning_at_the_callers_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """In process: pytest.warns sees the exported category, pointing at the caller; the logger
    still says it too; a journal with nothing pending warns of nothing."""
    assert issubclass(PendingPaymentsWarning, UserWarning)
    path = tmp_path / "journal.sqlite3"
    entry_id = with_a_pending_payment(path)
    with pytest.warns(PendingPaymentsWarning, match=f"journal ids {entry_id}") as caught:
        agent = AutoAgent(Keypair(), journal_path=path)
    assert caught[0].filename == __file__
    assert "recover_payments" in caplog.text
    assert [r.id for r in agent.pending_payments()] == [entry_id]
    agent.close()
    AutoAgent(Keypair(), journal_path=tmp_path / "clean.sqlite3").close()  # warnings are errors


# -- whose payments ------------------------------------------------------------------------------


@pytest.fixture
def agents() -> Iterator[list[AutoAgent]]:
    made: list[AutoAgent] = []
    yield made
    for agent in made:
        agent.close()


def funded(shop: Shop, usdc: str = "1") -> Keypair:
    wallet = Keypair()
    shop.gateway.fund(wallet.pubkey(), {"SOL": Decimal("1"), "USDC": Decimal(usdc)})
    return wallet


def usdc(shop: Shop, wallet: Keypair) -> Decimal:
    return shop.gateway.balance(wallet.pubkey(), "USDC")


def test_payments_lists_this_wallets_payments_on_a_shared_journal(
    shop: Shop, tmp_path: Path, agents: list[AutoAgent]
) -> None:
    """Two wallets pay through one journal (and one row is on another network): each agent's
    payments are its own on its network; payments_since pages through them."""
    path = tmp_path / "shared.sqlite3"
    url = shop.price_url("USDC", PRICE)
    alice, bob = funded(shop), funded(shop)
    for wallet in (alice, bob, alice, alice, bob):
        agent = AutoAgent(wallet, rpc_url=shop.rpc_url, journal_path=path)
        agents.append(agent)
        assert agent.get(url).status_code == 200
    first, last = agents[0], agents[-1]
    elsewhere = Journal(path)
    row = elsewhere.reserve(
        offer(first.address, "mainnet-beta"), currency_key="SOL", invoice_key=None, budget=None
    )
    assert isinstance(row, Reserved)
    elsewhere.mark(row.entry.id, "accepted", {"transaction_b64": "AA==", "signature": "s"})
    elsewhere.close()

    assert usdc(shop, alice) == Decimal(1) - 3 * Decimal(PRICE)
    assert usdc(shop, bob) == Decimal(1) - 2 * Decimal(PRICE)
    with sqlite3.connect(path) as db:
        everyone = db.execute("SELECT payer, network FROM payments ORDER BY id").fetchall()
    assert len(everyone) == 6
    mine = first.payments
    assert [(r.payer, r.network, r.state) for r in mine] == [
        (str(alice.pubkey()), "devnet", "accepted")
    ] * 3
    assert [r.payer for r in last.payments] == [str(bob.pubkey())] * 2
    assert [r.id for r in mine] == sorted(r.id or 0 for r in mine)
    newer = first.payments_since(mine[0].id or 0)
    assert newer == mine[1:]
    assert first.payments_since(mine[0].id or 0, limit=1) == mine[1:2]
    assert first.payments_since(mine[-1].id or 0) == []


def test_payments_reads_only_this_wallets_rows(tmp_path: Path) -> None:
    """The history query SQLite runs is answered from the payer index, not a table scan."""
    path = tmp_path / "journal.sqlite3"
    agent = AutoAgent(Keypair(), journal_path=path)
    statements: list[str] = []
    sqlite_of(agent)._db.set_trace_callback(statements.append)
    assert agent.payments_since(5, limit=10) == []
    sqlite_of(agent)._db.set_trace_callback(None)
    (query,) = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    with sqlite3.connect(path) as db:
        plan = " ".join(str(row[-1]) for row in db.execute(f"EXPLAIN QUERY PLAN {query}"))
    assert "USING INDEX payments_payer" in plan, plan
    assert "SCAN payments" not in plan, plan
    agent.close()


# -- the budget -----------------------------------------------------------------------------------


def test_a_raised_budget_outlives_the_process(
    shop: Shop, tmp_path: Path, agents: list[AutoAgent]
) -> None:
    """Budget 0.025 USDC at 0.01 a request: two paid, raised by 0.01 (adds: 0.035). A new agent
    and a new process on the journal, with the same settings, see 0.035; the third request is
    paid, the fourth (0.04) refused with nothing moved."""
    path = tmp_path / "journal.sqlite3"
    url = shop.price_url("USDC", PRICE)
    wallet = funded(shop)

    def agent() -> AutoAgent:
        made = AutoAgent(wallet, rpc_url=shop.rpc_url, journal_path=path, budget={"USDC": "0.025"})
        agents.append(made)
        return made

    first = agent()
    assert first.get(url).status_code == 200
    assert first.get(url).status_code == 200
    with pytest.raises(PaymentPolicyError, match="adds to the budget") as caught:
        first.get(url)
    assert caught.value.rule == "budget"
    assert first.raise_budget({"USDC": "0.01"})["USDC"].limit == Decimal("0.035")
    first.close()

    ran = python(
        "import os, sys\n"
        "from human_rpc_sdk import AutoAgent\n"
        "agent = AutoAgent(journal_path=sys.argv[1], budget={'USDC': '0.025'})\n"
        "print(agent.budget['USDC'].limit, agent.budget['USDC'].spent)\n",
        str(path),
        env={"SOLANA_PRIVATE_KEY": str(wallet)},
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["0.035", "0.02"]

    second = agent()
    assert second.budget["USDC"].limit == Decimal("0.035")
    before = usdc(shop, wallet)
    assert second.get(url).status_code == 200
    assert usdc(shop, wallet) == before - Decimal(PRICE)
    with pytest.raises(PaymentPolicyError) as refused:
        second.get(url)
    assert refused.value.rule == "budget"
    assert refused.value.details["limit"] == Decimal("0.035")
    assert usdc(shop, wallet) == before - Decimal(PRICE)
    assert [r.state for r in second.payments] == ["accepted"] * 3
    assert second.budget["USDC"].spent == Decimal("0.03")


def test_agents_sharing_a_journal_share_its_raises(tmp_path: Path) -> None:
    """The rule: each agent's ceiling is its own configured budget plus the raises recorded in
    the journal on its network; raises add up, from any agent; an unlimited currency stays so."""
    path = tmp_path / "journal.sqlite3"
    small = AutoAgent(Keypair(), journal_path=path, budget={"USDC": "1"})
    large = AutoAgent(Keypair(), journal_path=path, budget={"USDC": "5", "SOL": None})
    small.raise_budget({"USDC": "2"})
    assert large.raise_budget({"USDC": "0.5"})["USDC"].limit == Decimal("7.5")
    assert small.budget["USDC"].limit == Decimal("3.5")
    assert large.budget["SOL"].limit is None
    assert small.budget["SOL"].limit == Decimal("1")
    mainnet = AutoAgent(Keypair(), journal_path=path, network="mainnet-beta")
    assert mainnet.budget["USDC"].limit == Decimal("10")  # raises are per network
    for agent in (small, large, mainnet):
        agent.close()


# -- the schema ---------------------------------------------------------------------------------


def tables_and_indexes(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master")}


def test_a_version_2_journal_is_migrated_keeping_its_spending(tmp_path: Path) -> None:
    """A journal of schema 2 (no budget_raises, no payer index) gains both on opening; what
    it counts as spent stays; a raise then works and lasts."""
    path = tmp_path / "v2.sqlite3"
    journal = Journal(path)
    journal.reserve(offer("payer"), currency_key="SOL", invoice_key=None, budget=None)
    journal.close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE budget_raises")
        db.execute("DROP INDEX payments_payer")
        db.execute("PRAGMA user_version=2")
    assert {"budget_raises", "payments_payer"}.isdisjoint(tables_and_indexes(path))
    with pytest.warns(PendingPaymentsWarning):
        agent = AutoAgent(Keypair(), journal_path=path, budget={"SOL": "0.5"})
    assert agent.budget["SOL"].spent == Decimal("0.001")
    assert agent.raise_budget({"SOL": "0.25"})["SOL"].limit == Decimal("0.75")
    agent.close()
    assert {"budget_raises", "payments_payer"} <= tables_and_indexes(path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
    with pytest.warns(PendingPaymentsWarning):
        again = AutoAgent(Keypair(), journal_path=path, budget={"SOL": "0.5"})
    assert again.budget["SOL"].limit == Decimal("0.75")
    again.close()


def test_a_version_1_journal_gains_the_raised_budgets(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite3"
    v1_journal(path, [("accepted", "USDC", "2")])
    agent = AutoAgent(Keypair(), journal_path=path)
    assert agent.raise_budget({"USDC": "1"})["USDC"].limit == Decimal("11")
    assert agent.budget["USDC"].spent == 2
    agent.close()
    assert {"budget_raises", "payments_payer"} <= tables_and_indexes(path)
