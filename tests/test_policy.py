"""Spending rules: ceilings per payment and in total, trusted recipients, approval, the network.

Every refusal is a PaymentPolicyError naming its rule, and nothing is signed: the ledger and
the journal are checked each time.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from solders.keypair import Keypair

from human_rpc_sdk import (
    AutoAgent,
    InvoiceValidationError,
    NetworkMismatchError,
    PaymentOffer,
    PaymentPolicyError,
    SDKConfigurationError,
)
from human_rpc_sdk._flow import pay
from human_rpc_sdk._io.rpc import RpcClient
from human_rpc_sdk._limits import DEFAULT_BUDGET, DEFAULT_MAX_PAYMENT, SpendingRules
from human_rpc_sdk.solana_utils import associated_token_address
from stub_gateway import GatewayServer

from .conftest import Books, Shop, booked
from .test_x402 import challenge, context, drive, offer, wallet_on

FEE = Decimal("0.000005")  # the network fee of one signature, counted in the SOL budget


class Wallet:
    """A funded wallet on the shop, its journal, and a way to build agents for it."""

    def __init__(self, shop: Shop, journal: Path, sol: str = "2", usdc: str = "10") -> None:
        self.shop = shop
        self.keypair = Keypair()
        shop.gateway.fund(self.keypair.pubkey(), {"SOL": Decimal(sol), "USDC": Decimal(usdc)})
        self.journal = journal
        self.agents: list[AutoAgent] = []

    def agent(self, **options: Any) -> AutoAgent:
        made = AutoAgent(
            self.keypair, rpc_url=self.shop.rpc_url, journal_path=self.journal, **options
        )
        self.agents.append(made)
        return made

    def balances(self) -> tuple[Decimal, Decimal]:
        gateway = self.shop.gateway
        return gateway.balance(self.keypair.pubkey()), gateway.balance(
            self.keypair.pubkey(), "USDC"
        )


@pytest.fixture
def wallet(shop: Shop, tmp_path: Path) -> Iterator[Wallet]:
    made = Wallet(shop, tmp_path / "journal.sqlite3")
    yield made
    for agent in made.agents:
        agent.close()


def refused(wallet: Wallet, agent: AutoAgent, url: str, rule: str) -> PaymentPolicyError:
    """Request ``url``: PaymentPolicyError for ``rule``, nothing signed, nothing moved."""
    before = wallet.balances()
    rows = len(agent.payments)
    with pytest.raises(PaymentPolicyError) as caught:
        agent.get(url)
    assert caught.value.rule == rule
    assert caught.value.signature is None
    assert "Nothing was signed or paid" in str(caught.value)
    assert wallet.balances() == before
    assert len(agent.payments) == rows
    return caught.value


# -- ceilings per payment ------------------------------------------------------------------------


def test_secure_defaults_cap_each_payment(wallet: Wallet, shop: Shop) -> None:
    """With no settings: at most 0.1 SOL and 1 USDC per payment, 1 SOL and 10 USDC in all."""
    agent = wallet.agent()
    assert DEFAULT_MAX_PAYMENT["SOL"] == Decimal("0.1")
    assert DEFAULT_MAX_PAYMENT["USDC"] == Decimal("1")
    assert {k: line.limit for k, line in agent.budget.items()} == dict(DEFAULT_BUDGET)
    error = refused(wallet, agent, shop.price_url("SOL", "0.2"), "max_payment")
    assert "0.200005 SOL is more than max_payment allows for SOL (0.1)" in str(error)
    refused(wallet, agent, shop.price_url("USDC", "1.5"), "max_payment")
    assert agent.get(shop.price_url("USDC", "1")).status_code == 200


def test_max_payment_is_merged_over_the_defaults(wallet: Wallet, shop: Shop) -> None:
    """Raising USDC's ceiling leaves SOL's default; a mint address names its known symbol."""
    usdc_mint = str(shop.gateway.genesis.token("USDC").mint)
    agent = wallet.agent(max_payment={usdc_mint: "5"})
    assert agent.get(shop.price_url("USDC", "4")).status_code == 200
    refused(wallet, agent, shop.price_url("SOL", "0.2"), "max_payment")


def test_none_removes_a_ceiling(wallet: Wallet, shop: Shop) -> None:
    """max_payment={"SOL": None}: no ceiling for SOL (the budget still applies)."""
    agent = wallet.agent(max_payment={"SOL": None}, budget={"SOL": None})
    assert agent.get(shop.price_url("SOL", "1.5")).status_code == 200


def test_a_token_without_a_ceiling_is_never_paid(server: GatewayServer) -> None:
    """A token with no max_payment entry (here: PYUSD left out) is refused by that rule."""
    gateway = server.gateway
    rules = SpendingRules(network="devnet", max_payment={"USDC": Decimal(1)})
    with pytest.raises(PaymentPolicyError) as caught:
        drive(
            server,
            challenge(2, [offer(gateway, symbol="PYUSD")]),
            context(wallet_on(gateway), rules),
        )
    assert caught.value.rule == "max_payment"
    assert "sets no ceiling for PYUSD" in str(caught.value)


# -- the budget ----------------------------------------------------------------------------------


def test_the_budget_counts_every_payment_and_can_be_raised(wallet: Wallet, shop: Shop) -> None:
    """Budget 0.025 USDC at 0.01 each: two payments, the third refused; raised, it goes."""
    url = shop.price_url("USDC", "0.01")
    agent = wallet.agent(budget={"USDC": "0.025"})
    assert agent.get(url).status_code == 200
    assert agent.get(url).status_code == 200
    line = agent.budget["USDC"]
    assert (line.limit, line.spent, line.remaining) == (
        Decimal("0.025"),
        Decimal("0.02"),
        Decimal("0.005"),
    )
    error = refused(wallet, agent, url, "budget")
    assert "raise_budget" in str(error)
    assert error.details == {
        "spent": Decimal("0.02"),
        "limit": Decimal("0.025"),
        "currency": "USDC",
    }
    assert agent.raise_budget({"USDC": "0.01"})["USDC"].limit == Decimal("0.035")
    assert agent.get(url).status_code == 200
    assert agent.budget["USDC"].spent == Decimal("0.03")


def test_the_budget_outlives_the_agent(wallet: Wallet, shop: Shop) -> None:
    """A new agent on the same journal counts what the last one spent."""
    url = shop.price_url("SOL", "0.004")
    first = wallet.agent(budget={"SOL": "0.01"})
    assert first.get(url).status_code == 200
    assert first.get(url).status_code == 200
    first.close()
    second = wallet.agent(budget={"SOL": "0.01"})
    assert second.budget["SOL"].spent == 2 * (Decimal("0.004") + FEE)  # fees count
    refused(wallet, second, url, "budget")


def test_raise_budget_refuses_nonsense(wallet: Wallet) -> None:
    """raise_budget needs a positive amount for a currency that has a budget."""
    agent = wallet.agent(budget={"SOL": None})
    for amounts in ({}, {"USDC": "-1"}, {"USDC": "lots"}, {"SOL": "1"}, {"BONK": "1"}, ["USDC"]):
        with pytest.raises(SDKConfigurationError):
            agent.raise_budget(amounts)  # type: ignore[arg-type]


# -- whom the agent pays --------------------------------------------------------------------------


def test_only_trusted_recipients_are_paid(wallet: Wallet, shop: Shop) -> None:
    """trusted_recipients: the treasury is paid; a stranger is refused by the rule."""
    treasury = shop.gateway.treasury
    agent = wallet.agent(trusted_recipients=[str(treasury)])
    assert agent.get(shop.price_url("SOL", "0.001")).status_code == 200
    stranger = Keypair().pubkey()
    shop.gateway.fund(stranger, {"SOL": Decimal(1)})
    error = refused(wallet, agent, shop.price_url("SOL", "0.001", stranger), "trusted_recipients")
    assert str(stranger) in str(error)


def test_a_trusted_token_account_admits_its_owner(wallet: Wallet, shop: Shop) -> None:
    """Trusting the payee's USDC account lets USDC reach it, and nothing else."""
    token = shop.gateway.genesis.token("USDC")
    account = associated_token_address(shop.gateway.treasury, token.mint, token.program_id)
    agent = wallet.agent(trusted_recipients=[account])
    assert agent.get(shop.price_url("USDC", "0.01")).status_code == 200
    refused(wallet, agent, shop.price_url("SOL", "0.001"), "trusted_recipients")


def test_x402_offers_to_untrusted_payees_are_refused(server: GatewayServer) -> None:
    """x402: an offer to an untrusted payTo is refused per offer, by rule."""
    gateway = server.gateway
    rules = SpendingRules.build(trusted_recipients=[str(Keypair().pubkey())])
    with pytest.raises(PaymentPolicyError) as caught:
        drive(server, challenge(2, [offer(gateway)]), context(wallet_on(gateway), rules))
    assert caught.value.rule == "trusted_recipients"
    assert caught.value.details["rules"] == {0: "trusted_recipients"}


# -- asking the owner ----------------------------------------------------------------------------


def test_approve_sees_the_offer_before_anything_is_signed(wallet: Wallet, shop: Shop) -> None:
    """The callback gets the parsed offer; True pays, False refuses with nothing signed."""
    seen: list[PaymentOffer] = []
    answers = iter([True, False])

    def approve(offer: PaymentOffer) -> bool:
        seen.append(offer)
        return next(answers)

    agent = wallet.agent(approve=approve)
    url = shop.price_url("USDC", "0.02")
    assert agent.get(url).status_code == 200
    refused(wallet, agent, url, "approve")
    first = seen[0]
    token = shop.gateway.genesis.token("USDC")
    assert (first.amount, first.currency, first.mint) == (Decimal("0.02"), "USDC", str(token.mint))
    assert first.recipient == str(shop.gateway.treasury)
    assert first.destination == str(
        associated_token_address(shop.gateway.treasury, token.mint, token.program_id)
    )
    assert (first.url, first.network, first.format) == (url, "devnet", "humanrpc")
    assert first.payer == str(wallet.keypair.pubkey())
    assert first.atomic_amount == 20_000
    assert first.fee == Decimal("0.000005")
    assert first.replaces is None


@pytest.mark.parametrize("answer", [1, "yes", None, object()])
def test_only_true_approves(wallet: Wallet, shop: Shop, answer: object) -> None:
    """Anything but True (truthy or not) is a refusal."""
    agent = wallet.agent(approve=lambda offer: answer)
    refused(wallet, agent, shop.price_url("SOL", "0.001"), "approve")


def test_a_failing_approve_is_a_refusal(wallet: Wallet, shop: Shop) -> None:
    """A callback that raises refuses the payment; its error is the cause."""

    def approve(offer: PaymentOffer) -> bool:
        raise RuntimeError("judge model unavailable")

    agent = wallet.agent(approve=approve)
    error = refused(wallet, agent, shop.price_url("SOL", "0.001"), "approve")
    assert error.reason == "approve_failed"
    assert isinstance(error.__cause__, RuntimeError)


# -- the network --------------------------------------------------------------------------------


def test_an_invoice_for_another_network_is_never_paid(
    wallet: Wallet, responder: str, shop: Shop
) -> None:
    """A mainnet invoice to a devnet agent: NetworkMismatchError, both an invoice error and a
    policy refusal (rule "network"); nothing signed."""
    body = {
        "status": "payment_required",
        "invoice": {
            "amount": "0.001",
            "currency": "SOL",
            "recipient": str(shop.gateway.treasury),
            "network": "mainnet-beta",
        },
    }
    agent = wallet.agent()
    before = wallet.balances()
    spec = {"status": 402, "body": _b64(json.dumps(body).encode())}
    with pytest.raises(NetworkMismatchError) as caught:
        agent.post(f"{responder}/respond", json=spec)
    assert isinstance(caught.value, InvoiceValidationError)
    assert isinstance(caught.value, PaymentPolicyError)
    assert caught.value.rule == "network"
    assert caught.value.field == "invoice.network"
    assert wallet.balances() == before
    assert agent.payments == []


def test_x402_offers_on_another_network_are_refused_by_rule(server: GatewayServer) -> None:
    """x402: offers only on mainnet: PaymentPolicyError naming the network rule."""
    gateway = server.gateway
    mainnet = offer(gateway, network="solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp")
    with pytest.raises(PaymentPolicyError) as caught:
        drive(server, challenge(2, [mainnet]), context(wallet_on(gateway)))
    assert caught.value.rule == "network"


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "parameter"),
    [
        ({"max_payment": {"BONK": "1"}}, "max_payment"),
        ({"max_payment": {"SOL": "-1"}}, "max_payment"),
        ({"max_payment": {"SOL": "lots"}}, "max_payment"),
        ({"max_payment": ["SOL"]}, "max_payment"),
        ({"budget": {"USDC": 0}}, "budget"),
        ({"budget": {"": "1"}}, "budget"),
        ({"trusted_recipients": []}, "trusted_recipients"),
        ({"trusted_recipients": ["not a key"]}, "trusted_recipients"),
        (
            {"trusted_recipients": "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"},
            "trusted_recipients",
        ),
        ({"approve": "yes"}, "approve"),
        ({"journal_path": ""}, "journal_path"),
        ({"journal_path": 5}, "journal_path"),
    ],
)
def test_bad_rules_fail_at_construction(options: dict[str, Any], parameter: str) -> None:
    """Every invalid rule is an SDKConfigurationError naming its parameter, at construction."""
    with pytest.raises(SDKConfigurationError) as caught:
        AutoAgent(Keypair(), **options)
    assert caught.value.parameter == parameter


def test_an_unusable_journal_stops_the_agent_at_construction(tmp_path: Path) -> None:
    """A journal path that cannot be created: SDKConfigurationError naming journal_path."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SDKConfigurationError) as caught:
        AutoAgent(Keypair(), journal_path=blocker / "journal.sqlite3")
    assert caught.value.parameter == "journal_path"
    assert "HUMAN_RPC_JOURNAL" in str(caught.value)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_the_pure_flow_asks_approve_before_signing(server: GatewayServer) -> None:
    """Driven by hand: the Approve effect carries the chosen offer; declined, nothing is
    reserved or signed."""
    gateway = server.gateway
    books = Books(approve=lambda offer: False)
    flow = booked(pay(challenge(2, [offer(gateway)]), context(wallet_on(gateway))), books)
    rpc = RpcClient(server.rpc_url)

    def run() -> None:
        effect = next(flow)
        while True:
            effect = flow.send(rpc.call(effect.requests))

    with pytest.raises(PaymentPolicyError) as caught:
        run()
    assert caught.value.rule == "approve"
    (seen,) = books.offers
    assert (seen.format, seen.amount, seen.currency) == ("x402-v2", Decimal("0.01"), "USDC")
    assert books.journal.entries() == []
