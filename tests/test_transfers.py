"""Property 4: for any valid invoice the SDK builds a transfer of exactly that amount to exactly
that payee, and executing it on the ledger moves exactly that much."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict
from solders.keypair import Keypair
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.rpc.config import RpcSendTransactionConfig
from solders.rpc.requests import SendVersionedTransaction
from solders.rpc.responses import SendTransactionResp

from human_rpc_sdk._flow import ChainCache, HttpReply, PaymentContext, Resend, RpcCall, pay
from human_rpc_sdk._headers import decode_payment_header
from human_rpc_sdk._io.rpc import RpcClient
from human_rpc_sdk._jsonrpc import RpcRequest
from human_rpc_sdk._money import format_amount
from human_rpc_sdk.solana_utils import associated_token_address
from human_rpc_sdk.wallet import KeypairSigner
from stub_gateway import Gateway, GatewayServer
from stub_gateway.instructions import decompile

from .conftest import booked
from .test_flow import UNLIMITED

CACHE = ChainCache()
keys = st.binary(min_size=32, max_size=32).map(lambda b: Keypair.from_seed(b).pubkey())


@st.composite
def invoices(draw: st.DrawFn) -> dict[str, Any]:
    currency = draw(st.sampled_from(["SOL", "USDC", "PYUSD"]))
    fresh_payee = draw(st.booleans())
    if currency == "SOL":
        # A new account must receive at least the rent-exempt minimum.
        units = draw(st.integers(890_880 if fresh_payee else 1, 2 * 10**9))
        decimals = 9
    else:
        units = draw(st.integers(1, 20 * 10**6))
        decimals = 6
    return {
        "currency": currency,
        "units": units,
        "amount": format_amount(Decimal(units).scaleb(-decimals)),
        "fresh_payee": fresh_payee,
        "reference": draw(
            st.none() | keys.map(str) | st.text("abcdef0123456789-", min_size=1, max_size=40)
        ),
        "legacy": currency != "PYUSD" and not fresh_payee and draw(st.booleans()),
    }


def challenge(gateway: Gateway, spec: dict[str, Any], payee: Pubkey) -> HttpReply:
    if spec["legacy"]:
        body: dict[str, Any] = {
            "payment": {"recipientWallet": str(payee), "amount": spec["units"], "cluster": "devnet"}
        }
        if spec["currency"] != "SOL":
            body["payment"]["mint"] = str(gateway.genesis.token(spec["currency"]).mint)
    else:
        invoice = {
            "amount": spec["amount"],
            "currency": spec["currency"],
            "recipient": str(payee),
            "network": "devnet",
        }
        if spec["currency"] == "PYUSD":
            invoice["mint"] = str(gateway.genesis.token("PYUSD").mint)
        if spec["reference"] is not None:
            invoice["reference"] = spec["reference"]
        body = {"status": "payment_required", "invoice": invoice}
    return HttpReply(402, CaseInsensitiveDict(), json.dumps(body).encode(), "http://shop/item")


def holdings(gateway: Gateway, owner: Pubkey, currency: str) -> Decimal:
    return gateway.balance(owner, currency)


# **Feature: human-rpc-python-sdk, Property 4: For any valid invoice, the system should build a
# correctly formatted Solana transaction that transfers the specified amount to the correct
# recipient**
@given(spec=invoices())
def test_property_4_transfer_pays_exactly_the_invoice(
    server: GatewayServer, gateway: Gateway, spec: dict[str, Any]
) -> None:
    """Built through the flow with real chain facts, decoded, then executed on the ledger."""
    payer = Keypair()
    gateway.fund(payer.pubkey(), {"SOL": Decimal(5), "USDC": Decimal(25), "PYUSD": Decimal(25)})
    payee = Keypair().pubkey() if spec["fresh_payee"] else gateway.treasury
    rpc = RpcClient(server.rpc_url)
    context = PaymentContext(
        signer=KeypairSigner(payer),
        network="devnet",
        cache=CACHE,
        clock=lambda: 0.0,  # one blockhash for the whole run; the ledger keeps it valid 60 s
        now=lambda: datetime.now(UTC),
        nonce=lambda: "nonce",
        rules=UNLIMITED,
    )
    flow = booked(pay(challenge(gateway, spec, payee), context))
    effect = next(flow)
    while isinstance(effect, RpcCall):
        effect = flow.send(rpc.call(effect.requests))
    assert isinstance(effect, Resend)
    receipt = effect.receipt
    tx = decode_payment_header(effect.headers["X-PAYMENT"]).transaction

    # Structure: signed by the payer, legacy exactly for the legacy format, one transfer.
    assert tx.message.account_keys[0] == payer.pubkey()
    assert tx.verify_with_results() == [True]
    assert isinstance(tx.message, Message) is spec["legacy"]
    assert isinstance(tx.message, Message | MessageV0)
    instructions = decompile(tx.message)
    assert instructions is not None
    transfer = instructions[-1]
    data = bytes(transfer.data)
    if spec["currency"] == "SOL":
        assert data[:4] == (2).to_bytes(4, "little")
        assert int.from_bytes(data[4:12], "little") == spec["units"]
        assert transfer.accounts[1].pubkey == payee
    else:
        token = gateway.genesis.token(spec["currency"])
        assert transfer.program_id == token.program_id
        assert data[0] == (3 if spec["legacy"] else 12)
        assert int.from_bytes(data[1:9], "little") == spec["units"]
        destination = transfer.accounts[1 if spec["legacy"] else 2].pubkey
        assert destination == associated_token_address(payee, token.mint, token.program_id)
    reference = spec["reference"] if not spec["legacy"] else None
    if reference is not None:
        if len(reference) >= 32 and _is_key(reference):
            bound = transfer.accounts[-1]
            assert (str(bound.pubkey), bound.is_signer, bound.is_writable) == (
                reference,
                False,
                False,
            )
        else:
            assert bytes(instructions[-2].data).decode() == reference

    # Money: execute it and compare balances.
    currency = spec["currency"]
    before_payee, before_payer, before_sol = (
        holdings(gateway, payee, currency),
        holdings(gateway, payer.pubkey(), currency),
        holdings(gateway, payer.pubkey(), "SOL"),
    )
    (sent,) = rpc.call(
        [RpcRequest(SendVersionedTransaction(tx, RpcSendTransactionConfig()), SendTransactionResp)]
    )
    assert str(sent.value) == receipt.signature
    moved = receipt.amount
    assert moved == Decimal(spec["amount"])
    assert holdings(gateway, payee, currency) - before_payee == moved
    fee = Decimal(receipt.fee_lamports + receipt.rent_lamports).scaleb(-9)
    if currency == "SOL":
        assert before_sol - holdings(gateway, payer.pubkey(), "SOL") == moved + fee
    else:
        assert before_payer - holdings(gateway, payer.pubkey(), currency) == moved
        assert before_sol - holdings(gateway, payer.pubkey(), "SOL") == fee


def _is_key(text: str) -> bool:
    try:
        Pubkey.from_string(text)
    except ValueError:
        return False
    return True
