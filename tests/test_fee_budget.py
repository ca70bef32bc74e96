"""Rent and fees are money: they count against the SOL limits, and rent needs permission.

A hostile server answers every request with a 0.000001 USDC invoice to a payee that has never
been seen, so that each payment would create a token account (0.00203928 SOL of rent, which the
attacker reclaims by closing it). The gateway's ledger and the journal's rows are checked.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from flask import Response, jsonify, request
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from human_rpc_sdk import AutoAgent, PaymentPolicyError
from human_rpc_sdk._headers import PAYMENT_HEADER
from human_rpc_sdk.solana_utils import associated_token_address, network_fee
from stub_gateway import Gateway, GatewayServer, Price, create_app
from stub_gateway.payments import Refusal

FEE = 5_000
RENT = 2_039_280  # a 165-byte USDC token account
DUST = Decimal("0.000001")


class Drain:
    """A server whose every invoice pays a new payee; it settles through the gateway's desk."""

    def __init__(self) -> None:
        self.gateway = gateway = Gateway()
        self.payees: list[Pubkey] = []
        app = create_app(gateway)

        @app.get("/drain")
        def drain() -> Any:
            payee = Keypair().pubkey()
            self.payees.append(payee)
            return self._paywall(Price(DUST, "USDC", payee))

        @app.get("/to/<recipient>")
        def to(recipient: str) -> Any:
            return self._paywall(Price(DUST, "USDC", Pubkey.from_string(recipient)))

        self.server = GatewayServer(app).start()
        self.url = self.server.url

    def _paywall(self, price: Price) -> Any:
        header = request.headers.get(PAYMENT_HEADER)
        if header is None:
            response: Response = jsonify(
                self.gateway.desk.issue(price, request.path).body(self.gateway.network)
            )
            response.status_code = 402
            return response
        outcome = self.gateway.desk.settle(header, request.path)
        if isinstance(outcome, Refusal):
            return jsonify({"reason": outcome.reason}), 402
        return jsonify({"paid": True, "signature": outcome.signature})

    def wallet(self) -> Keypair:
        wallet = Keypair()
        self.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(1)})
        return wallet

    def lamports(self, owner: Pubkey) -> int:
        return self.gateway.ledger.balance(owner)

    def accounts_created(self) -> int:
        usdc = self.gateway.genesis.token("USDC")
        return sum(
            self.gateway.ledger.account(associated_token_address(p, usdc.mint, usdc.program_id))
            is not None
            for p in self.payees
        )


@pytest.fixture(scope="module")
def drain() -> Iterator[Drain]:
    made = Drain()
    yield made
    made.server.stop()


def rows(journal: Path) -> list[sqlite3.Row]:
    db = sqlite3.connect(journal)
    db.row_factory = sqlite3.Row
    try:
        return db.execute("SELECT * FROM payments ORDER BY id").fetchall()
    finally:
        db.close()


def agent(drain: Drain, wallet: Keypair, journal: Path, **options: Any) -> AutoAgent:
    return AutoAgent(wallet, rpc_url=drain.server.rpc_url, journal_path=journal, **options)


def test_under_defaults_the_drain_creates_no_token_accounts(drain: Drain, tmp_path: Path) -> None:
    """40 invoices to new payees: all refused naming create_token_accounts; no SOL moves.
    A payment to a payee with an account then costs only its fee, counted in the budget."""
    wallet, journal = drain.wallet(), tmp_path / "journal.sqlite3"
    before = drain.lamports(wallet.pubkey())
    created_before = drain.accounts_created()
    with agent(drain, wallet, journal) as paying:
        for _ in range(40):
            with pytest.raises(PaymentPolicyError) as caught:
                paying.get(f"{drain.url}/drain")
            assert caught.value.rule == "create_token_accounts"
            assert "create_token_accounts=True" in str(caught.value)
            assert "Nothing was signed or paid" in str(caught.value)
        assert drain.lamports(wallet.pubkey()) == before
        assert drain.accounts_created() == created_before
        assert rows(journal) == []
        treasury = drain.gateway.treasury
        assert paying.get(f"{drain.url}/to/{treasury}").status_code == 200
        assert paying.budget["SOL"].spent == Decimal(FEE).scaleb(-9)
        (receipt,) = paying.payments
    assert (receipt.fee_lamports, receipt.rent_lamports) == (FEE, 0)
    assert drain.lamports(wallet.pubkey()) == before - FEE
    (row,) = rows(journal)
    assert (row["state"], row["fee_lamports"], row["rent_lamports"]) == ("accepted", FEE, 0)


def test_with_create_token_accounts_the_drain_stops_at_the_sol_budget(
    drain: Drain, tmp_path: Path
) -> None:
    """create_token_accounts=True, budget SOL 0.01: rent and fees count; the drain stops."""
    wallet, journal = drain.wallet(), tmp_path / "journal.sqlite3"
    before = drain.lamports(wallet.pubkey())
    paid, refusals = 0, []
    with agent(
        drain, wallet, journal, create_token_accounts=True, budget={"SOL": "0.01"}
    ) as paying:
        for _ in range(40):
            try:
                assert paying.get(f"{drain.url}/drain").status_code == 200
                paid += 1
            except PaymentPolicyError as refused:
                refusals.append(refused)
        spent = paying.budget["SOL"].spent
    cost = FEE + RENT  # 0.00204428 SOL a payment: 4 fit in 0.01
    assert paid == 4
    assert len(refusals) == 36
    assert {r.rule for r in refusals} == {"budget"}
    assert "SOL in network fees and rent" in str(refusals[0])
    spent_on_ledger = before - drain.lamports(wallet.pubkey())
    assert spent_on_ledger == 4 * cost
    assert Decimal(spent_on_ledger).scaleb(-9) <= Decimal("0.01")
    journaled = rows(journal)
    assert [r["state"] for r in journaled] == ["accepted"] * 4
    assert sum(r["fee_lamports"] + r["rent_lamports"] for r in journaled) == 4 * cost
    assert spent == Decimal(4 * cost).scaleb(-9)


def test_a_trusted_payee_may_get_a_token_account(drain: Drain, tmp_path: Path) -> None:
    """A payee in trusted_recipients may have its token account created; the rent is reported."""
    wallet, journal = drain.wallet(), tmp_path / "journal.sqlite3"
    payee = Keypair().pubkey()
    before = drain.lamports(wallet.pubkey())
    with agent(drain, wallet, journal, trusted_recipients=[str(payee)]) as paying:
        assert paying.get(f"{drain.url}/to/{payee}").status_code == 200
        (receipt,) = paying.payments
        assert paying.budget["SOL"].spent == Decimal(FEE + RENT).scaleb(-9)
    assert (receipt.fee_lamports, receipt.rent_lamports) == (FEE, RENT)
    assert drain.lamports(wallet.pubkey()) == before - FEE - RENT
    assert drain.gateway.balance(payee, "USDC") == DUST


def test_fee_and_rent_count_against_the_sol_max_payment(drain: Drain, tmp_path: Path) -> None:
    """max_payment SOL 0.002 refuses a dust USDC payment whose rent and fee cost 0.00204428."""
    wallet, journal = drain.wallet(), tmp_path / "journal.sqlite3"
    before = drain.lamports(wallet.pubkey())
    options = {"create_token_accounts": True, "max_payment": {"SOL": "0.002"}}
    with (
        agent(drain, wallet, journal, **options) as paying,
        pytest.raises(PaymentPolicyError) as caught,
    ):
        paying.get(f"{drain.url}/drain")
    assert caught.value.rule == "max_payment"
    assert "0.00204428 SOL is more than max_payment allows for SOL (0.002)" in str(caught.value)
    assert drain.lamports(wallet.pubkey()) == before
    assert rows(journal) == []


def test_a_sol_payment_counts_its_fee_against_max_payment(drain: Drain, tmp_path: Path) -> None:
    """A 0.001 SOL invoice costs 0.001005 SOL: max_payment SOL 0.001 refuses it."""
    gateway = drain.gateway
    wallet, journal = drain.wallet(), tmp_path / "journal.sqlite3"
    before = drain.lamports(wallet.pubkey())
    with (
        agent(drain, wallet, journal, max_payment={"SOL": "0.001"}) as paying,
        pytest.raises(PaymentPolicyError) as caught,
    ):
        paying.get(f"{drain.server.url}/api/v1/premium/sol")
    assert caught.value.rule == "max_payment"
    assert "0.001005 SOL" in str(caught.value)
    assert gateway.ledger.balance(wallet.pubkey()) == before
    assert rows(journal) == []


def test_network_fee_counts_signatures_and_the_priority_fee() -> None:
    """5000 lamports a signature, plus compute-unit limit x price (micro-lamports), rounded up."""
    assert network_fee(1) == FEE
    assert network_fee(2) == 2 * FEE
    assert network_fee(1, 20_000, 1) == FEE + 1  # x402's 20,000 units at 1 micro-lamport
    assert network_fee(1, 200_000, 50_000) == FEE + 10_000
