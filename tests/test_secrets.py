"""Property 9: no secret key, seed or signed payload appears in logs, errors or reprs."""

from __future__ import annotations

import base64
import json
import logging
from decimal import Decimal

import base58
import pytest
from hypothesis import given
from hypothesis import strategies as st
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent, HumanRPCError, load_signer
from stub_gateway import Gateway, GatewayServer

from .conftest import PaymentCapture


def secret_forms(keypair: Keypair) -> list[str]:
    """The secret in every encoding someone might print it in."""
    raw = bytes(keypair)
    seed = raw[:32]
    return [
        str(keypair),
        json.dumps(list(raw)),
        json.dumps(list(raw), separators=(",", ":")),
        ",".join(str(b) for b in raw[:16]),
        raw.hex(),
        seed.hex(),
        base64.b64encode(raw).decode(),
        base64.b64encode(seed).decode(),
        base58.b58encode(seed).decode(),
    ]


def chain(error: BaseException) -> list[str]:
    texts = []
    seen: BaseException | None = error
    while seen is not None:
        texts += [str(seen), repr(seen), repr(getattr(seen, "__dict__", {}))]
        seen = seen.__cause__ or seen.__context__
    return texts


# **Feature: human-rpc-python-sdk, Property 9: For any logging or error output, the system should
# never expose private keys or sensitive cryptographic material**
@given(seed=st.binary(min_size=32, max_size=32))
def test_property_9_no_secret_in_any_output(
    server: GatewayServer, gateway: Gateway, seed: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Pay, fail, mistype the key: no secret in any log, error or repr; no signed payload logged."""
    keypair = Keypair.from_seed(seed)
    forms = secret_forms(keypair)
    gateway.fund(keypair.pubkey(), {"SOL": Decimal(1)})
    texts: list[str] = []
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        agent = AutoAgent(str(keypair), rpc_url=server.rpc_url)
        capture = PaymentCapture()
        agent.session.mount("http://", capture)
        texts += [repr(agent), str(agent), repr(agent._signer)]
        agent.get(f"{server.url}/api/v1/premium/sol")
        texts += [repr(p) for p in agent.payments]
        try:
            agent.get(f"{server.url}/api/v1/premium/usdc")  # no USDC: insufficient funds
        except HumanRPCError as exc:
            texts += chain(exc)
        near_misses = [
            str(keypair)[:-2],
            str(keypair) + "0",
            json.dumps([*list(bytes(keypair))[:63], 999]),
            "~/" + str(keypair),
        ]
        for value in near_misses:
            try:
                load_signer(value)
            except HumanRPCError as exc:
                texts += chain(exc)
    logged = [r.getMessage() for r in caplog.records] + [repr(r.args) for r in caplog.records]
    assert capture.headers, "a payment was made"
    for text in texts + logged:
        for form in forms:
            assert form not in text
        for header in capture.headers:
            assert header not in text
    agent.close()
