"""A payment is replaced only on proof that it can never land (issue 8, section 1).

The set-ups of the issue, rebuilt: an RPC node that reports the ledger 3 slots late
(:mod:`tests.lagging_rpc`), alone or behind a load balancer that sends ``getLatestBlockhash``
to an up-to-date node; a hostile x402 server that chooses the newest blockhash and answers 402
after settling; a HumanRPC server that keeps the payment and answers 402 half a second later.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, jsonify, request
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent, PaymentError
from human_rpc_sdk._headers import b64json, decode_payment_header, unb64json
from stub_gateway import Gateway, GatewayServer, Price, create_app
from stub_gateway._http import jsonable
from stub_gateway.x402_routes import requirements_for

from .conftest import FakeClock
from .lagging_rpc import LaggingRpc

FEE = Decimal("0.000005")
LAG = 3


def rows(journal: Path) -> list[dict[str, Any]]:
    """The journal as another process reads it."""
    with sqlite3.connect(journal) as db:
        db.row_factory = sqlite3.Row
        found = db.execute(
            "SELECT id, state, amount, currency, landed, landed_proof, replaces, signature, "
            "transaction_b64, blockhash, last_valid_block_height, blockhash_slot, http_status "
            "FROM payments ORDER BY id"
        ).fetchall()
    return [dict(row) for row in found]


@contextmanager
def gateway_app(clock: FakeClock) -> Iterator[tuple[Gateway, Flask]]:
    """A stub gateway on a fake clock (its slow answers move the clock), not yet serving;
    10 s (25 slots) old, so a node that lags has blockhashes to offer."""
    app = create_app(clock=clock, sleep=clock.sleep)
    clock.now += 10
    yield app.extensions["stub_gateway"], app


def serve(app: Flask) -> GatewayServer:
    return GatewayServer(app).start()


# -- the hostile servers -------------------------------------------------------------------------


def add_hostile_x402(app: Flask, gateway: Gateway, price: Price) -> None:
    """``GET /x402-hostile``: x402 v2 whose offer carries the newest blockhash; a payment is
    settled (the money kept), then answered with the same 402 again."""

    def challenge() -> Response:
        wanted = requirements_for(gateway, price, 2, request.base_url, "hostile")
        blockhash, _last_valid, _slot = gateway.ledger.latest_blockhash()
        wanted["extra"]["recentBlockhash"] = str(blockhash)
        document = {
            "x402Version": 2,
            "error": "Payment required",
            "resource": {"url": request.base_url, "description": "hostile"},
            "accepts": [wanted],
        }
        response = jsonify({})
        response.headers["PAYMENT-REQUIRED"] = b64json(document)
        response.status_code = 402
        return response

    @app.get("/x402-hostile")
    def hostile_x402() -> Response:
        header = request.headers.get("PAYMENT-SIGNATURE")
        if header is not None:
            payload = unb64json(header, "payment")
            wanted = requirements_for(gateway, price, 2, request.base_url, "hostile")
            settlement = gateway.facilitator.settle(payload, wanted)
            assert settlement["success"], settlement
        return challenge()


def add_keeping_humanrpc(app: Flask, gateway: Gateway, price: Price) -> None:
    """``GET /keeps``: a HumanRPC invoice; a payment is executed on the ledger (kept), and
    0.5 s later the answer is 402 all the same, with no settlement header."""

    def challenge() -> Response:
        invoice = gateway.desk.issue(price, request.path)
        response = jsonify(jsonable(invoice.body(gateway.network)))
        response.status_code = 402
        return response

    @app.get("/keeps")
    def keeps() -> Response:
        header = request.headers.get("X-PAYMENT")
        if header is not None:
            execution = gateway.ledger.execute(decode_payment_header(header).transaction)
            assert execution.ok, execution.describe()
            gateway.sleep(0.5)
        return challenge()


# -- the two set-ups of the issue ---------------------------------------------------------------


def test_lagging_node_and_server_chosen_blockhash_pay_once(tmp_path: Path) -> None:
    """A node 3 slots late, an x402 server choosing the newest blockhash and answering 402
    after settling: one 0.01 USDC payment, left open (refused, landed unknown), no
    replacement; once the node catches up, recovery finds it landed."""
    clock = FakeClock()
    price = Price(Decimal("0.01"), "USDC")
    with gateway_app(clock) as (gateway, app):
        add_hostile_x402(app, gateway, price)
        server = serve(app)
        with server, LaggingRpc(server.rpc_url, gateway.ledger, lag=LAG) as node:
            wallet = Keypair()
            gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(1)})
            payee = gateway.balance(gateway.treasury, "USDC")
            journal = tmp_path / "journal.sqlite3"
            agent = AutoAgent(wallet, rpc_url=node.url, journal_path=journal)
            with pytest.raises(PaymentError) as caught:
                agent.get(f"{server.url}/x402-hostile")
            assert caught.value.reason == "payment_refused"
            assert gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.99")
            assert gateway.balance(gateway.treasury, "USDC") - payee == Decimal("0.01")
            assert "isBlockhashValid" not in node.calls
            (row,) = rows(journal)
            assert (row["state"], row["landed"], row["replaces"]) == ("refused", None, None)
            assert row["last_valid_block_height"] is None  # the server chose the blockhash
            assert agent.budget["USDC"].spent == Decimal("0.01")

            clock.now += (LAG + 2) * 0.4  # the node catches up
            (recovered,) = agent.recover_payments()
            assert (recovered.state, recovered.landed) == ("refused", True)
            (row,) = rows(journal)
            assert (row["state"], row["landed"]) == ("refused", 1)
            assert agent.budget["USDC"].spent == Decimal("0.01")
            assert gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.99")
            agent.close()


def test_fresh_blockhash_lagging_checks_pay_once(tmp_path: Path) -> None:
    """getLatestBlockhash from an up-to-date node, every check from one 3 slots late, and a
    HumanRPC server keeping the payment and answering 402 after 0.5 s: 0.001 SOL paid once,
    the row open (refused, landed unknown), no replacement."""
    clock = FakeClock()
    price = Price(Decimal("0.001"), "SOL")
    with gateway_app(clock) as (gateway, app):
        add_keeping_humanrpc(app, gateway, price)
        server = serve(app)
        with (
            server,
            LaggingRpc(server.rpc_url, gateway.ledger, lag=LAG, fresh_blockhash=True) as node,
        ):
            wallet = Keypair()
            gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
            treasury = gateway.balance(gateway.treasury)
            journal = tmp_path / "journal.sqlite3"
            agent = AutoAgent(wallet, rpc_url=node.url, journal_path=journal)
            with pytest.raises(PaymentError) as caught:
                agent.get(f"{server.url}/keeps")
            assert caught.value.reason == "payment_refused"
            assert gateway.balance(wallet.pubkey()) == 1 - Decimal("0.001") - FEE
            assert gateway.balance(gateway.treasury) - treasury == Decimal("0.001")
            (row,) = rows(journal)
            assert (row["state"], row["landed"], row["replaces"]) == ("refused", None, None)
            assert row["last_valid_block_height"] is not None
            assert row["blockhash_slot"] is not None
            assert agent.budget["SOL"].spent == Decimal("0.001")

            clock.now += (LAG + 2) * 0.4
            (recovered,) = agent.recover_payments()
            assert (recovered.state, recovered.landed) == ("refused", True)
            assert gateway.balance(wallet.pubkey()) == 1 - Decimal("0.001") - FEE
            agent.close()


# -- a proven expiry is still replaced, once ----------------------------------------------------


def test_proven_expiry_is_replaced_once_with_other_bytes(tmp_path: Path) -> None:
    """A blockhash 150 blocks past, proven by a node that has seen it: exactly one
    replacement, signed over a fresh blockhash; it lands once, the first never did."""
    clock = FakeClock()
    with gateway_app(clock) as (gateway, app), serve(app) as server:
        wallet = Keypair()
        gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
        treasury = gateway.balance(gateway.treasury)
        journal = tmp_path / "journal.sqlite3"
        agent = AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=journal)
        assert agent.get(f"{server.url}/api/v1/premium/sol").status_code == 200
        clock.now += 61  # > 150 slots: the agent's cached blockhash can no longer land
        assert agent.get(f"{server.url}/api/v1/premium/sol").status_code == 200
        assert gateway.balance(wallet.pubkey()) == 1 - 2 * (Decimal("0.001") + FEE)
        assert gateway.balance(gateway.treasury) - treasury == Decimal("0.002")
        first, expired, replacement = rows(journal)
        assert (first["state"], expired["state"], replacement["state"]) == (
            "accepted",
            "failed",
            "accepted",
        )
        assert expired["landed"] == 0
        assert "past the blockhash's last valid block height" in expired["landed_proof"]
        assert replacement["replaces"] == expired["id"]
        assert replacement["transaction_b64"] != expired["transaction_b64"]
        assert replacement["blockhash"] != expired["blockhash"]
        assert agent.budget["SOL"].spent == Decimal("0.002")
        agent.close()


def test_wrongly_failed_payment_that_landed_is_recovered(tmp_path: Path) -> None:
    """A row an older SDK marked failed (landed=0, no proof) although it landed:
    recover_payments() marks it landed and counts it against the budget again."""
    clock = FakeClock()
    price = Price(Decimal("0.001"), "SOL")
    with gateway_app(clock) as (gateway, app):
        add_keeping_humanrpc(app, gateway, price)
        with serve(app) as server:
            wallet = Keypair()
            gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
            journal = tmp_path / "journal.sqlite3"
            agent = AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=journal)
            with pytest.raises(PaymentError):
                agent.get(f"{server.url}/keeps")
            (row,) = rows(journal)
            with sqlite3.connect(journal) as db:  # what the old isBlockhashValid rule wrote
                db.execute(
                    "UPDATE payments SET state = 'failed', landed = 0, landed_proof = NULL, "
                    "error = 'replaced: its blockhash expired before it landed' WHERE id = ?",
                    (row["id"],),
                )
            assert agent.budget["SOL"].spent == 0
            (recovered,) = agent.recover_payments()
            assert (recovered.state, recovered.landed) == ("refused", True)
            (row,) = rows(journal)
            assert (row["state"], row["landed"]) == ("refused", 1)
            assert agent.budget["SOL"].spent == Decimal("0.001")
            assert gateway.balance(wallet.pubkey()) == 1 - Decimal("0.001") - FEE
            assert agent.recover_payments() == []
            agent.close()


def test_stub_rpc_block_height_and_min_context_slot(tmp_path: Path) -> None:
    """getEpochInfo and getBlockHeight count blocks, in lastValidBlockHeight's units; a
    minContextSlot beyond the ledger's slot is refused with -32016."""
    import requests

    clock = FakeClock()
    with gateway_app(clock) as (_gateway, app), serve(app) as server:

        def call(method: str, *params: Any) -> Any:
            body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
            return requests.post(server.rpc_url, json=body, timeout=10).json()

        latest = call("getLatestBlockhash")["result"]
        epoch = call("getEpochInfo")["result"]
        assert set(epoch) == {
            "absoluteSlot",
            "blockHeight",
            "epoch",
            "slotIndex",
            "slotsInEpoch",
            "transactionCount",
        }
        assert epoch["absoluteSlot"] == latest["context"]["slot"]
        assert epoch["blockHeight"] < epoch["absoluteSlot"]  # heights are not slots
        assert latest["value"]["lastValidBlockHeight"] == epoch["blockHeight"] + 150
        assert call("getBlockHeight")["result"] == epoch["blockHeight"]
        ahead = {"minContextSlot": epoch["absoluteSlot"] + 1}
        for method, params in (
            ("getEpochInfo", [ahead]),
            ("getBlockHeight", [ahead]),
            ("getLatestBlockhash", [ahead]),
            ("getSignaturesForAddress", [str(Keypair().pubkey()), ahead]),
        ):
            error = call(method, *params)["error"]
            assert error["code"] == -32016
            assert error["message"] == "Minimum context slot has not been reached"
        reached = {"minContextSlot": epoch["absoluteSlot"]}
        assert call("getEpochInfo", reached)["result"]["blockHeight"] == epoch["blockHeight"]
