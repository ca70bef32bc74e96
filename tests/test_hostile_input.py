"""Hostile 402 answers: malformed invoices and payment headers never lead to a signature.

Property (issue 5): for any 402 whose invoice or header is malformed (wrong types, unicode,
sizes, numbers at the edges, invalid keys) or asks for more than the agent's limits, the only
outcomes are InvoiceValidationError or PaymentPolicyError, and nothing is signed.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict
from solders.keypair import Keypair

from human_rpc_sdk import InvoiceValidationError, PaymentPolicyError
from human_rpc_sdk._effects import ChainCache, HttpReply, PaymentContext, Resend, RpcCall
from human_rpc_sdk._flow import pay
from human_rpc_sdk._io.rpc import RpcClient
from stub_gateway import Gateway, GatewayServer

from .conftest import CountingSigner, booked
from .drivers import Maker

_WALLETS: dict[int, Keypair] = {}


def funded(gateway: Gateway) -> Keypair:
    """One well-funded wallet per gateway: refusals must come from the input, not poverty."""
    if id(gateway) not in _WALLETS:
        wallet = Keypair()
        gateway.fund(wallet.pubkey(), {"SOL": Decimal(50), "USDC": Decimal(50)})
        _WALLETS[id(gateway)] = wallet
    return _WALLETS[id(gateway)]


def attempt(server: GatewayServer, reply: HttpReply) -> tuple[BaseException | None, int, bool]:
    """Run the flow on ``reply`` against the gateway's RPC: (error, signatures, resent)."""
    signer = CountingSigner(funded(server.gateway))
    ctx = PaymentContext(
        signer=signer,
        network="devnet",
        cache=ChainCache(),
        clock=lambda: 0.0,
        now=lambda: datetime.now(UTC),
        nonce=lambda: "n" * 32,
    )
    rpc = RpcClient(server.rpc_url)
    flow = booked(pay(reply, ctx))
    resent = False
    try:
        effect = next(flow)
        while isinstance(effect, RpcCall):
            effect = flow.send(rpc.call(effect.requests))
        resent = isinstance(effect, Resend)
    except Exception as exc:  # noqa: BLE001 - the property inspects whatever was raised
        return exc, signer.count, resent
    return None, signer.count, resent


# -- hostile values -----------------------------------------------------------------------------

edge_numbers: st.SearchStrategy[Any] = st.sampled_from(
    [
        0,
        -1,
        "0",
        "-0.001",
        "0.0000000001",  # finer than a lamport
        "NaN",
        "Infinity",
        "1e400",
        "1e-3",
        "0x10",
        "1_000",
        " 1",
        "1 ",
        "",
        "\uff11",  # fullwidth digit one
        "\u0660.\u0665",  # Arabic-Indic digits
        True,
        None,
        [],
        {},
        2**64,
        10**30,
        -(10**30),
        "99999999999999999999999",
    ]
)
OVER_THE_LIMIT = ("0.2", "1", "5", "1000000", 1, 7.5)
over_the_limit = st.sampled_from(OVER_THE_LIMIT)
bad_keys = st.one_of(
    st.sampled_from(
        [
            None,
            "",
            7,
            "abc",
            "11111111111111111111111111111111",  # the System Program
            "1nc1nerator11111111111111111111111111111111",
            "O0Il" * 11,  # not base58
            "thX6LZfHDZZKUs92febYZhYRcXddmzfzF2NvTkPNE",  # 31 bytes
            "JNArUumxYJcSQpbuxuroRZtcSMVLcy5WbYGt14SRm1Fv",  # 33 bytes
            "\uff19xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin",  # fullwidth 9
            ["9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"],
        ]
    ),
    st.text(min_size=1, max_size=60),
    st.integers(100, 5_000).map(lambda n: "9" * n),
)
junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def hostile_invoices(draw: st.DrawFn, treasury: str) -> dict[str, Any]:
    """A valid SOL invoice with one to three fields made hostile."""
    invoice: dict[str, Any] = {
        "amount": "0.001",
        "currency": "SOL",
        "recipient": treasury,
        "reference": str(Keypair().pubkey()),
        "network": "devnet",
    }
    corruptions = {
        "amount": edge_numbers | over_the_limit,
        "currency": st.sampled_from([None, "", 5, "DOGE", "S\u200bOL", "SOL" * 500, []]),
        "recipient": bad_keys,
        "network": st.sampled_from(
            [None, "", "mainnet-beta", "solana", "DEVNET", "devnet\n", 1, "solana:devnet"]
        ),
        "reference": st.sampled_from(["", 5, "z" * 300, {"a": 1}, ["r"]]),
        "mint": bad_keys.map(lambda v: "" if v is None else v),
    }
    count = draw(st.integers(1, 3))
    fields = draw(st.permutations(sorted(corruptions)))[:count]
    for name in fields:
        invoice[name] = draw(corruptions[name])
    return invoice


def body_of(document: Any) -> bytes:
    return json.dumps(document, default=str).encode()


def reply_with(body: bytes, headers: dict[str, str] | None = None) -> HttpReply:
    return HttpReply(402, CaseInsensitiveDict(headers or {}), body, "http://hostile/paid")


def assert_refused_unsigned(outcome: tuple[BaseException | None, int, bool]) -> None:
    error, signatures, resent = outcome
    assert not resent, "a hostile 402 led to a payment being sent"
    assert signatures == 0, "a hostile 402 led to a signature"
    assert isinstance(error, InvoiceValidationError | PaymentPolicyError), repr(error)


# Issue 5: "Hypothesis over malformed invoices and headers (types, unicode, sizes, numbers at
# the edges, invalid keys): only InvoiceValidationError or PaymentPolicyError, never a signature."
@given(data=st.data())
def test_property_hostile_invoices_are_refused_unsigned(
    server: GatewayServer, data: st.DataObject
) -> None:
    """One to three hostile fields in a HumanRPC invoice: refused, never signed."""
    invoice = data.draw(hostile_invoices(str(server.gateway.treasury)))
    wrapped = data.draw(st.sampled_from(["invoice", "bare", "legacy"]))
    if wrapped == "invoice":
        document: Any = {"status": "payment_required", "invoice": invoice}
    elif wrapped == "legacy":
        amount = invoice["amount"]
        if any(amount == v and type(amount) is type(v) for v in OVER_THE_LIMIT):
            amount = int(Decimal(str(amount)).scaleb(9))  # the legacy format counts lamports
        document = {
            "payment": {
                "recipientWallet": invoice["recipient"],
                "amount": amount,
                "cluster": invoice["network"],
                **({"mint": invoice["mint"]} if "mint" in invoice else {}),
            }
        }
    else:
        document = invoice
    assert_refused_unsigned(attempt(server, reply_with(body_of(document))))


@given(
    body=st.one_of(
        st.binary(max_size=200),
        junk.map(body_of),
        junk.map(lambda v: body_of({"status": "payment_required", "invoice": v})),
        junk.map(lambda v: body_of({"payment": v})),
        junk.map(lambda v: body_of({"x402Version": 1, "accepts": v})),
        st.integers(64 * 1024 + 1, 200_000).map(lambda n: b'{"invoice": "' + b"x" * n + b'"}'),
    ),
    header=st.one_of(
        st.none(),
        st.text(max_size=80),
        junk.map(lambda v: base64.b64encode(body_of(v)).decode()),
        junk.map(lambda v: base64.b64encode(body_of({"x402Version": 2, "accepts": v})).decode()),
        st.integers(16_385, 40_000).map(lambda n: "A" * n),
    ),
)
def test_property_hostile_bodies_and_headers_are_refused_unsigned(
    server: GatewayServer, body: bytes, header: str | None
) -> None:
    """Junk 402 bodies (any bytes, any JSON, oversized) and PAYMENT-REQUIRED headers (any
    text, any base64 JSON, oversized): refused, never signed."""
    headers = {"PAYMENT-REQUIRED": header} if header is not None else {}
    assert_refused_unsigned(attempt(server, reply_with(body, headers)))


@pytest.mark.parametrize("amount", ["0.2", "1000000"])
def test_over_the_limit_is_a_policy_refusal(server: GatewayServer, amount: str) -> None:
    """Control: a well-formed invoice above max_payment is refused by policy, unsigned."""
    invoice = {
        "amount": amount,
        "currency": "SOL",
        "recipient": str(server.gateway.treasury),
        "network": "devnet",
    }
    error, signatures, _ = attempt(server, reply_with(body_of({"invoice": invoice})))
    assert isinstance(error, PaymentPolicyError)
    assert (error.rule, signatures) == ("max_payment", 0)


def test_a_well_formed_invoice_is_signed(server: GatewayServer) -> None:
    """Control: the same harness signs and sends a valid invoice, so the properties can fail."""
    invoice = {
        "amount": "0.001",
        "currency": "SOL",
        "recipient": str(server.gateway.treasury),
        "network": "devnet",
    }
    error, signatures, resent = attempt(server, reply_with(body_of({"invoice": invoice})))
    assert (error, signatures, resent) == (None, 1, True)


# -- the same refusals through every driver, over loopback -------------------------------------


def sol_invoice(treasury: str, amount: str) -> bytes:
    """A HumanRPC 402 body for ``amount`` SOL, otherwise well formed."""
    invoice = {
        "amount": amount,
        "currency": "SOL",
        "recipient": treasury,
        "reference": str(Keypair().pubkey()),
        "network": "devnet",
    }
    return body_of({"status": "payment_required", "invoice": invoice})


HOSTILE_ANSWERS: dict[str, Callable[[str], tuple[bytes, dict[str, str]]]] = {
    "not-json": lambda _: (b"\xff\xfe{not json", {}),
    "nan-amount": lambda treasury: (sol_invoice(treasury, "NaN"), {}),
    "unicode-digits": lambda treasury: (sol_invoice(treasury, "\uff11"), {}),
    "oversized-body": lambda _: (b'{"invoice": "' + b"x" * 200_000 + b'"}', {}),
    "junk-header": lambda _: (
        b"{}",
        {"PAYMENT-REQUIRED": base64.b64encode(b'{"accepts": 7}').decode()},
    ),
    "oversized-header": lambda _: (b"{}", {"PAYMENT-REQUIRED": "A" * 20_000}),
    "over-the-limit": lambda treasury: (sol_invoice(treasury, "5"), {}),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_ANSWERS))
def test_hostile_answers_are_refused_unpaid_by_every_driver(
    server: GatewayServer, responder: str, tmp_path: Path, driven: Maker, case: str
) -> None:
    """A hostile 402 reaching a driver over HTTP: InvoiceValidationError or PaymentPolicyError;
    no payment header sent, no journal row, the wallet untouched."""
    body, headers = HOSTILE_ANSWERS[case](str(server.gateway.treasury))
    wallet = funded(server.gateway)
    before = server.gateway.balance(wallet.pubkey())
    journal = tmp_path / "j.sqlite3"
    agent = driven(wallet, rpc_url=server.rpc_url, journal_path=journal, capture=True)
    spec = {"status": 402, "headers": headers, "body": base64.b64encode(body).decode()}
    with pytest.raises((InvoiceValidationError, PaymentPolicyError)):
        agent.post(f"{responder}/respond", json=spec)
    assert agent.sent_payments == []
    assert agent.payments == []
    with sqlite3.connect(journal) as db:
        assert db.execute("SELECT count(*) FROM payments").fetchone() == (0,)
    assert server.gateway.balance(wallet.pubkey()) == before
