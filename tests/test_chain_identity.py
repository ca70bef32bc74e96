"""A payment belongs to the chain of the blockhash it carries (issue 8, section 5, round two).

A load balancer may move the agent's RPC to a node of another chain between two payments. A
transaction can land only on the chain whose blockhash it carries, so each payment is
journaled with that chain: the genesis hash the node answered in the batch that fetched the
blockhash, or, for a blockhash the server chose (x402 ``extra.recentBlockhash``), the one it
answered with the accounts. Recovery then judges each payment on its own chain only.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from flask import Flask, Response, jsonify, request
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent, PaymentError
from human_rpc_sdk._headers import b64json, unb64json
from stub_gateway import Gateway, Price
from stub_gateway.x402_routes import require_x402

from .conftest import FakeClock
from .test_attack_round2 import SwitchingRpc, add_sticky_invoice, recount, rows
from .test_replacement_proof import gateway_app, serve

SOL_PRICE = Decimal("0.001")
FEE = Decimal("0.000005")
USDC = Decimal("0.01")


def advance(clock: FakeClock, gateway: Gateway) -> None:
    """Move a second stub chain on by 250 slots. Two stub ledgers issue the same blockhashes
    at the same ticks (LiteSVM is deterministic): afterwards the first chain's blockhashes are
    not the second's."""
    for _ in range(5):
        clock.now += 20
        gateway.ledger.slot()


def add_x402_with_its_blockhash(app: Flask, gateway: Gateway, price: Price) -> None:
    """``GET /x402-own-blockhash``: a real x402 paywall whose offer names the newest blockhash
    of its own chain in ``extra.recentBlockhash``."""

    @app.get("/x402-own-blockhash")
    @require_x402(gateway, price)
    def paid() -> Response:
        return jsonify({"content": "paid for"})

    @app.after_request
    def with_blockhash(response: Response) -> Response:
        header = response.headers.get("PAYMENT-REQUIRED")
        if request.path == "/x402-own-blockhash" and header:
            document = unb64json(header, "challenge")
            blockhash, _last_valid, _slot = gateway.ledger.latest_blockhash()
            document["accepts"][0]["extra"]["recentBlockhash"] = str(blockhash)
            response.headers["PAYMENT-REQUIRED"] = b64json(document)
        return response


def test_a_server_chosen_blockhash_is_journaled_with_the_chain_read_with_it(
    tmp_path: Path,
) -> None:
    """The agent fetched a blockhash on chain 1 (still fresh in its cache) when its RPC is
    switched to chain 2, where an x402 server names its own blockhash: the payment lands on
    chain 2, and its row names chain 2 (read in the batch of the accounts), not chain 1."""
    first, second = FakeClock(), FakeClock()
    with gateway_app(first) as (gateway, app), gateway_app(second) as (other, other_app):
        advance(second, other)
        add_x402_with_its_blockhash(other_app, other, Price(USDC, "USDC"))
        with (
            serve(app) as server,
            serve(other_app) as other_server,
            SwitchingRpc(server.rpc_url) as balancer,
        ):
            wallet = Keypair()
            gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
            other.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(1)})
            journal = tmp_path / "journal.sqlite3"
            agent = AutoAgent(wallet, rpc_url=balancer.url, journal_path=journal)
            assert agent.get(f"{server.url}/api/v1/premium/sol").status_code == 200
            balancer.upstream[0] = other_server.rpc_url  # the cached blockhash stays fresh
            assert agent.get(f"{other_server.url}/x402-own-blockhash").status_code == 200
            assert other.balance(wallet.pubkey(), "USDC") == 1 - USDC
            chains = [(r["currency"], r["genesis_hash"]) for r in rows(journal)]
            assert chains == [("SOL", gateway.genesis_hash), ("USDC", other.genesis_hash)]
            assert agent.budget["USDC"].spent == USDC
            recount(journal)
            agent.close()


def test_a_cached_blockhash_of_the_first_chain_keeps_its_payment_on_that_chain(
    tmp_path: Path,
) -> None:
    """Right after the switch, a HumanRPC payment is signed over the blockhash cached from
    chain 1: it can land only on chain 1, so it is journaled there. Chain 2's server cannot
    execute it (402 again): its landing is unknown (chain 2 proves nothing of a chain-1
    payment); back on chain 1, once the blockhash expired, recovery proves it never landed
    and releases it. Only the first payment moved money."""
    first, second = FakeClock(), FakeClock()
    with gateway_app(first) as (gateway, app), gateway_app(second) as (other, other_app):
        advance(second, other)
        add_sticky_invoice(other_app, other, Price(SOL_PRICE, "SOL"))
        with (
            serve(app) as server,
            serve(other_app) as other_server,
            SwitchingRpc(server.rpc_url) as balancer,
        ):
            wallet = Keypair()
            gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
            other.fund(wallet.pubkey(), {"SOL": Decimal(1)})
            journal = tmp_path / "journal.sqlite3"
            agent = AutoAgent(wallet, rpc_url=balancer.url, journal_path=journal, sleep=first.sleep)
            assert agent.get(f"{server.url}/api/v1/premium/sol").status_code == 200
            balancer.upstream[0] = other_server.rpc_url
            with pytest.raises(PaymentError) as caught:
                agent.get(f"{other_server.url}/sticky")
            assert caught.value.reason == "payment_refused"
            assert other.balance(wallet.pubkey()) == 1  # nothing moved on chain 2
            paid, unsent = rows(journal)
            assert unsent["genesis_hash"] == paid["genesis_hash"] == gateway.genesis_hash
            assert unsent["blockhash"] == paid["blockhash"]  # the cached one, of chain 1
            assert (unsent["state"], unsent["landed"]) == ("refused", None)
            assert agent.budget["SOL"].spent == 2 * (SOL_PRICE + FEE)

            balancer.upstream[0] = server.rpc_url
            first.now += 61  # chain 1: the blockhash has expired
            agent.recover_payments()
            paid, unsent = rows(journal)
            assert (paid["state"], paid["landed"]) == ("accepted", 1)
            assert (unsent["state"], unsent["landed"]) == ("failed", 0)
            assert "history begins at slot" in unsent["landed_proof"]
            assert agent.budget["SOL"].spent == SOL_PRICE + FEE
            assert gateway.balance(wallet.pubkey()) == 1 - SOL_PRICE - FEE
            recount(journal)
            agent.close()
