"""Attacks on the merged issue-8 code (round two): the seams between its parts.

Each test rebuilds a hostile set-up with real parts (the stub gateway on loopback, its
LiteSVM ledger, real processes) and asserts what a careful wallet owner expects: ledger
balances and journal rows.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from flask import Flask, Response, jsonify, request
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent, PaymentPolicyError
from human_rpc_sdk._headers import b64json, unb64json
from stub_gateway import Gateway, Price
from stub_gateway.x402_routes import require_x402

from .conftest import FakeClock
from .test_replacement_proof import gateway_app, rows, serve

USDC = Decimal("0.01")


def add_lying_settlement(app: Flask, gateway: Gateway, price: Price, fake: str) -> None:
    """``GET /x402-lies``: a real x402 paywall (the payment is settled and lands), whose
    answer's settlement header names ``fake`` as the transaction and leaves out ``success``."""

    @app.get("/x402-lies")
    @require_x402(gateway, price)
    def lies() -> Response:
        return jsonify({"content": "paid for"})

    @app.after_request
    def rewrite(response: Response) -> Response:
        header = response.headers.get("PAYMENT-RESPONSE")
        if request.path == "/x402-lies" and header:
            settlement = unb64json(header, "settlement")
            response.headers["PAYMENT-RESPONSE"] = b64json(
                {"transaction": fake, "network": settlement["network"]}
            )
        return response


@pytest.mark.parametrize(
    "fake",
    [str(Keypair().sign_message(b"not the payment")), "0OIl-not-base58"],
    ids=["made-up-signature", "not-a-signature"],
)
def test_a_lying_settlement_signature_never_releases_a_landed_payment(
    tmp_path: Path, fake: str
) -> None:
    """An x402 server takes the payment (it lands), serves the content, and names a made-up
    transaction (or text that is no signature) in its settlement header. Once the blockhash
    expired, recovery must still find the real transaction (landed), keep it counted, and the
    budget must stop a second payment (before: failed, landed=0, budget released; or a raw
    ValueError out of recover_payments())."""
    clock = FakeClock()
    price = Price(USDC, "USDC")
    with gateway_app(clock) as (gateway, app):
        add_lying_settlement(app, gateway, price, fake)
        with serve(app) as server:
            wallet = Keypair()
            gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(1)})
            journal = tmp_path / "journal.sqlite3"
            agent = AutoAgent(
                wallet, rpc_url=server.rpc_url, journal_path=journal, budget={"USDC": "0.01"}
            )
            assert agent.get(f"{server.url}/x402-lies").status_code == 200
            assert gateway.balance(wallet.pubkey(), "USDC") == 1 - USDC
            clock.now += 61  # the payment's blockhash is now provably expired
            agent.recover_payments()
            (row,) = rows(journal)
            assert row["state"] == "accepted"
            assert row["landed"] != 0  # it landed: never recorded as landed=False
            assert agent.budget["USDC"].spent == USDC
            with pytest.raises(PaymentPolicyError):
                agent.get(f"{server.url}/x402-lies")
            assert gateway.balance(wallet.pubkey(), "USDC") == 1 - USDC
            agent.close()
