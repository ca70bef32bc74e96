"""Property 8: every failure is a HumanRPCError subclass that says what went wrong and what to
do, and none moves money."""

from __future__ import annotations

import base64
import json
import re
from decimal import Decimal
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from solders.keypair import Keypair

from human_rpc_sdk import (
    AutoAgent,
    HumanRPCError,
    InvoiceValidationError,
    PaymentError,
    SDKConfigurationError,
    SolanaRPCError,
)
from stub_gateway import Gateway, GatewayServer

from .conftest import FakeClock

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=10,
)
bad_keys = st.one_of(
    st.text(max_size=120).filter(lambda t: not t.startswith("/")),
    st.binary(max_size=100).filter(lambda b: len(b) != 64),
    st.lists(st.integers(-5, 300), max_size=70),
    st.integers(),
)
bad_invoice_bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {
            "invoice": st.dictionaries(
                st.sampled_from(["amount", "currency", "recipient", "network", "mint"]), json_values
            )
        }
    ).map(lambda v: json.dumps(v).encode()),
)
rpc_answers = st.tuples(
    st.sampled_from([200, 200, 200, 400, 404, 429, 500, 503]),
    st.one_of(
        st.binary(max_size=100),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.builds(
            lambda code, msg: json.dumps(
                {"jsonrpc": "2.0", "id": 0, "error": {"code": code, "message": msg}}
            ).encode(),
            st.integers(-32700, -32000),
            st.text(max_size=40),
        ),
        st.builds(
            lambda r: json.dumps({"jsonrpc": "2.0", "id": 0, "result": r}).encode(), json_values
        ),
    ),
)
SNAKE = re.compile(r"[a-z][a-z0-9_]*")


def check_descriptive(error: HumanRPCError) -> None:
    assert isinstance(error, HumanRPCError)
    assert SNAKE.fullmatch(error.reason), error.reason
    text = str(error)
    assert len(text) >= 40, text
    assert "Traceback" not in text


# **Feature: human-rpc-python-sdk, Property 8: For any error condition (invalid keys, malformed
# invoices, RPC failures, payment failures), the system should raise SDK-specific exceptions with
# descriptive messages**
@given(value=bad_keys)
def test_property_8_invalid_keys(value: Any) -> None:
    """Any malformed key: SDKConfigurationError."""
    with pytest.raises(SDKConfigurationError) as caught:
        AutoAgent(solana_private_key=value)
    check_descriptive(caught.value)


# **Feature: human-rpc-python-sdk, Property 8: For any error condition (invalid keys, malformed
# invoices, RPC failures, payment failures), the system should raise SDK-specific exceptions with
# descriptive messages**
@given(body=bad_invoice_bodies)
def test_property_8_malformed_invoices(responder: str, body: bytes) -> None:
    """Any malformed 402 body: InvoiceValidationError (or a HumanRPCError), nothing paid."""
    agent = AutoAgent(Keypair(), rpc_url="http://127.0.0.1:9")
    spec = {"status": 402, "body": base64.b64encode(body).decode()}
    with pytest.raises(HumanRPCError) as caught:
        agent.post(f"{responder}/respond", json=spec)
    check_descriptive(caught.value)
    assert isinstance(caught.value, InvoiceValidationError | SolanaRPCError)
    assert agent.payments == []


# **Feature: human-rpc-python-sdk, Property 8: For any error condition (invalid keys, malformed
# invoices, RPC failures, payment failures), the system should raise SDK-specific exceptions with
# descriptive messages**
@given(answer=rpc_answers)
def test_property_8_rpc_failures(
    server: GatewayServer, gateway: Gateway, responder: str, answer: tuple[int, bytes]
) -> None:
    """A broken RPC node (any status, any body): SolanaRPCError; the wallet is untouched."""
    status, body = answer
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    encoded = base64.urlsafe_b64encode(body).decode()
    rpc_url = f"{responder}/fixed/{status}" + (f"/{encoded}" if encoded else "")
    clock = FakeClock()
    agent = AutoAgent(wallet, rpc_url=rpc_url, sleep=clock.sleep)
    with pytest.raises(HumanRPCError) as caught:
        agent.get(f"{server.url}/api/v1/premium/sol")
    check_descriptive(caught.value)
    assert isinstance(caught.value, SolanaRPCError)
    assert "Nothing was paid" in str(caught.value)
    assert gateway.balance(wallet.pubkey()) == 1
    # Transient statuses were retried by the transport with a bounded backoff; others were not.
    retried = status in (429, 500, 502, 503, 504)
    assert clock.sleeps == ([0.2, 0.4] if retried else [])


# **Feature: human-rpc-python-sdk, Property 8: For any error condition (invalid keys, malformed
# invoices, RPC failures, payment failures), the system should raise SDK-specific exceptions with
# descriptive messages**
@given(sol=st.integers(0, 10**7), usdc=st.integers(0, 49_999))
def test_property_8_payment_failures(
    server: GatewayServer, gateway: Gateway, sol: int, usdc: int
) -> None:
    """Too little to pay 0.05 USDC (or its fee): PaymentError naming address and shortfall."""
    wallet = Keypair()
    amounts = {"SOL": Decimal(sol).scaleb(-9), "USDC": Decimal(usdc).scaleb(-6)}
    if sol and sol < 890_880:
        amounts["SOL"] = Decimal(0)  # the ledger refuses to create accounts below rent
    gateway.fund(wallet.pubkey(), amounts)
    before = (gateway.balance(wallet.pubkey()), gateway.balance(wallet.pubkey(), "USDC"))
    agent = AutoAgent(wallet, rpc_url=server.rpc_url)
    with pytest.raises(PaymentError) as caught:
        agent.get(f"{server.url}/api/v1/premium/usdc")
    check_descriptive(caught.value)
    assert caught.value.reason == "insufficient_funds"
    assert caught.value.details["address"] == str(wallet.pubkey())
    assert caught.value.details["missing"] > 0
    assert (gateway.balance(wallet.pubkey()), gateway.balance(wallet.pubkey(), "USDC")) == before


def test_unreachable_rpc_is_reported() -> None:
    """No RPC node at all: SolanaRPCError saying to check rpc_url."""
    from human_rpc_sdk._io.rpc import RpcClient

    with pytest.raises(SolanaRPCError, match="could not reach"):
        RpcClient("http://127.0.0.1:9", timeout=2).latest_blockhash()


def test_requests_errors_on_the_first_request_are_not_wrapped() -> None:
    """Before any 402, a connection failure is still a requests.ConnectionError (the SDK's
    ConnectionFailedError is one), so code written for requests keeps catching it."""
    with pytest.raises(requests.ConnectionError):
        AutoAgent(Keypair(), rpc_url="http://127.0.0.1:9").get("http://127.0.0.1:9/anything")
