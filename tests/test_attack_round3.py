"""Round-3 attacks on issue 10: raised budgets kept in the journal, the public low-level
payment helpers, errors that keep what the server said, paid tasks in the journal."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from solders.keypair import Keypair

from human_rpc_sdk import (
    AutoAgent,
    HumanRPCError,
    PaymentError,
    SDKConfigurationError,
)

from .conftest import Shop

ROOT = Path(__file__).resolve().parent.parent
PRICE = "0.01"  # USDC, per request


@pytest.fixture
def agents() -> Iterator[list[AutoAgent]]:
    made: list[AutoAgent] = []
    yield made
    for agent in made:
        agent.close()


def funded(shop: Shop) -> Keypair:
    wallet = Keypair()
    shop.gateway.fund(wallet.pubkey(), {"SOL": Decimal("1"), "USDC": Decimal("1")})
    return wallet


def usdc(shop: Shop, wallet: Keypair) -> Decimal:
    return shop.gateway.balance(wallet.pubkey(), "USDC")


def rows(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as db:
        return list(db.execute("SELECT state, amount FROM payments ORDER BY id"))


# -- raised budgets -------------------------------------------------------------------------------


@pytest.mark.parametrize("edited", ["Infinity", "NaN", "-0.05", "lots", "1e999999999"])
def test_a_hand_edited_raise_stops_payments_instead_of_moving_the_ceiling(
    shop: Shop, tmp_path: Path, agents: list[AutoAgent], edited: str
) -> None:
    """budget_raises has no write counter: an edit by hand to Infinity voided the ceiling
    (every payment let through), a negative one lowered it, NaN or text raised a bare
    decimal.InvalidOperation. Now such a row stops payments with journal_unavailable, nothing
    moves, and the owner is told which row to delete."""
    path = tmp_path / "journal.sqlite3"
    url = shop.price_url("USDC", PRICE)
    wallet = funded(shop)
    agent = AutoAgent(wallet, rpc_url=shop.rpc_url, journal_path=path, budget={"USDC": "0.015"})
    agents.append(agent)
    assert agent.get(url).status_code == 200
    agent.raise_budget({"USDC": "0.001"})
    with sqlite3.connect(path) as db:
        db.execute("UPDATE budget_raises SET raised = ?", (edited,))
    before = usdc(shop, wallet)
    with pytest.raises(PaymentError, match="budget_raises") as caught:
        agent.get(url)
    assert caught.value.reason == "journal_unavailable"
    with pytest.raises(HumanRPCError, match="delete that row"):
        agent.budget  # noqa: B018
    assert usdc(shop, wallet) == before
    assert rows(path) == [("accepted", PRICE)]


def test_raises_from_two_processes_at_once_all_add_up(tmp_path: Path) -> None:
    """Two processes raise the same budget 25 times each, at the same time: every raise is
    counted (the read-modify-write runs under the journal's write lock)."""
    path = tmp_path / "journal.sqlite3"
    AutoAgent(Keypair(), journal_path=path, budget={"USDC": "1"}).close()
    code = (
        "import sys\n"
        "from solders.keypair import Keypair\n"
        "from human_rpc_sdk import AutoAgent\n"
        "agent = AutoAgent(Keypair(), journal_path=sys.argv[1], budget={'USDC': '1'})\n"
        "for _ in range(25):\n"
        "    agent.raise_budget({'USDC': '0.001'})\n"
        "agent.close()\n"
    )
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(path)], env=env, cwd=ROOT)
        for _ in range(2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    agent = AutoAgent(Keypair(), journal_path=path, budget={"USDC": "1"})
    assert agent.budget["USDC"].limit == Decimal("1.05")
    agent.close()


@pytest.mark.parametrize("amount", ["-1", "0", "NaN", "Infinity", float("nan"), True, "1e3"])
def test_a_raise_that_is_not_a_positive_number_is_refused(tmp_path: Path, amount: object) -> None:
    path = tmp_path / "journal.sqlite3"
    agent = AutoAgent(Keypair(), journal_path=path, budget={"USDC": "1", "SOL": None})
    with pytest.raises(SDKConfigurationError):
        agent.raise_budget({"USDC": amount})
    with pytest.raises(SDKConfigurationError, match="nothing to raise"):
        agent.raise_budget({"SOL": "1"})
    assert agent.budget["USDC"].limit == Decimal("1")
    with sqlite3.connect(path) as db:
        assert list(db.execute("SELECT * FROM budget_raises")) == []
    agent.close()


def test_a_raise_too_large_to_add_up_is_refused(tmp_path: Path) -> None:
    """raise_budget({"USDC": Decimal("1e999999999")}) raised a bare decimal.Overflow; a raise
    of 1e999999 was journaled, and the next one overflowed the same way."""
    path = tmp_path / "journal.sqlite3"
    agent = AutoAgent(Keypair(), journal_path=path, budget={"USDC": "1"})
    for huge in (Decimal("1e999999999"), Decimal("1e999999"), 10**21):
        with pytest.raises(SDKConfigurationError, match="must be below"):
            agent.raise_budget({"USDC": huge})
    assert agent.raise_budget({"USDC": 10**20})["USDC"].limit == 10**20 + 1
    assert agent.raise_budget({"USDC": "0.5"})["USDC"].limit == Decimal(10**20) + Decimal("1.5")
    agent.close()
