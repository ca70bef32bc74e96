"""Standard x402 on Solana: reading offers, choosing one, the exact transaction, the gateway's
facilitator, and the properties of issue 4."""

from __future__ import annotations

import base64
import itertools
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from human_rpc_sdk import (
    HumanRPCError,
    InvoiceValidationError,
    PaymentError,
    PaymentPolicyError,
)
from human_rpc_sdk._effects import ChainCache, HttpReply, PaymentContext, Resend, RpcCall
from human_rpc_sdk._flow import pay
from human_rpc_sdk._headers import b64json, unb64json
from human_rpc_sdk._io.rpc import RpcClient
from human_rpc_sdk._limits import SpendingRules
from human_rpc_sdk._x402 import read_payment_required
from human_rpc_sdk.solana_utils import associated_token_address
from human_rpc_sdk.wallet import KeypairSigner
from stub_gateway import Gateway, GatewayServer
from stub_gateway.instructions import decompile

from .conftest import booked
from .drivers import Maker

DEVNET = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"
MAINNET = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"
NONCE = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def offer(
    gateway: Gateway,
    *,
    version: int = 2,
    symbol: str = "USDC",
    amount: str = "10000",
    **changes: Any,
) -> dict[str, Any]:
    token = gateway.genesis.token(symbol)
    entry: dict[str, Any] = {
        "scheme": "exact",
        "network": DEVNET if version == 2 else "solana-devnet",
        "asset": str(token.mint),
        "payTo": str(gateway.treasury),
        "maxTimeoutSeconds": 300,
        "extra": {"feePayer": str(gateway.genesis.fee_payer.pubkey())},
    }
    entry["amount" if version == 2 else "maxAmountRequired"] = amount
    if version == 1:
        entry.update(resource="http://x/paid", description="", mimeType="")
    entry.update(changes)
    return entry


def challenge(version: int, accepts: list[Any]) -> HttpReply:
    if version == 2:
        document = {"x402Version": 2, "resource": {"url": "http://x/paid"}, "accepts": accepts}
        return HttpReply(
            402,
            CaseInsensitiveDict({"PAYMENT-REQUIRED": b64json(document)}),
            b"{}",
            "http://x/paid",
        )
    body = json.dumps({"x402Version": 1, "error": "pay", "accepts": accepts}).encode()
    return HttpReply(402, CaseInsensitiveDict(), body, "http://x/paid")


_NONCES = itertools.count()


def context(
    wallet: Keypair, rules: SpendingRules | None = None, nonce: str | None = None
) -> PaymentContext:
    """A payment context; memos are unique per payment unless ``nonce`` pins one."""
    return PaymentContext(
        signer=KeypairSigner(wallet),
        network="devnet",
        cache=ChainCache(),
        clock=lambda: 0.0,
        now=lambda: datetime.now(UTC),
        nonce=(lambda: nonce) if nonce else (lambda: f"{next(_NONCES):032x}"),
        rules=rules or SpendingRules(),
    )


def drive(server: GatewayServer, reply: HttpReply, ctx: PaymentContext) -> Resend:
    """Run the pure flow with the gateway's RPC until it wants to send the payment."""
    rpc = RpcClient(server.rpc_url)
    flow = booked(pay(reply, ctx))
    effect = next(flow)
    while isinstance(effect, RpcCall):
        effect = flow.send(rpc.call(effect.requests))
    assert isinstance(effect, Resend)
    return effect


def transaction_of(resend: Resend) -> tuple[dict[str, Any], VersionedTransaction]:
    name = "PAYMENT-SIGNATURE" if "PAYMENT-SIGNATURE" in resend.headers else "X-PAYMENT"
    document = unb64json(resend.headers[name], name)
    return document, VersionedTransaction.from_bytes(
        base64.b64decode(document["payload"]["transaction"])
    )


def wallet_on(gateway: Gateway, usdc: str = "1", pyusd: str = "1") -> Keypair:
    wallet = Keypair()
    gateway.fund(
        wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(usdc), "PYUSD": Decimal(pyusd)}
    )
    return wallet


# -- reading challenges ----------------------------------------------------------------------------


def test_v2_header_is_read_in_either_base64_alphabet(gateway: Gateway) -> None:
    """PAYMENT-REQUIRED decodes from standard or URL-safe base64, with or without padding."""
    document = {"x402Version": 2, "resource": {"url": "u"}, "accepts": [offer(gateway)]}
    standard = b64json(document)
    urlsafe = standard.replace("+", "-").replace("/", "_").rstrip("=")
    for value in (standard, urlsafe):
        parsed = read_payment_required(CaseInsensitiveDict({"PAYMENT-REQUIRED": value}), b"")
        assert parsed is not None
        assert parsed.version == 2
        assert parsed.offers[0].amount == 10000
        assert parsed.offers[0].cluster == "devnet"


def test_v2_header_wins_over_a_v1_body(gateway: Gateway) -> None:
    """A 402 carrying both a v2 header and a v1 body is read as v2 (conformance C3)."""
    reply = challenge(2, [offer(gateway)])
    body = json.dumps({"x402Version": 1, "accepts": [offer(gateway, version=1)]}).encode()
    parsed = read_payment_required(reply.headers, body)
    assert parsed is not None
    assert parsed.version == 2


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"PAYMENT-REQUIRED": "%%%"}, b""),
        ({"PAYMENT-REQUIRED": b64json({"x402Version": 1, "accepts": []})}, b""),
        ({"PAYMENT-REQUIRED": b64json({"x402Version": 2, "accepts": [{}]})}, b""),
        ({}, json.dumps({"x402Version": 2, "accepts": [{}]}).encode()),
        ({}, json.dumps({"x402Version": 1, "accepts": []}).encode()),
        ({"PAYMENT-REQUIRED": "A" * 20_000}, b""),
    ],
    ids=["not-base64", "v1-in-header", "no-resource", "v2-in-body", "no-offers", "huge"],
)
def test_malformed_challenges_are_refused(headers: dict[str, str], body: bytes) -> None:
    """A broken x402 challenge is an InvoiceValidationError, before anything is signed."""
    with pytest.raises(InvoiceValidationError):
        read_payment_required(CaseInsensitiveDict(headers), body)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"amount": "1.5"}, "amount"),
        ({"amount": "-1"}, "amount"),
        ({"amount": " 1"}, "amount"),
        ({"amount": 10000}, "amount"),
        ({"amount": "0"}, "amount"),
        ({"amount": str(2**64)}, "amount"),
        ({"payTo": "nope"}, "payTo"),
        ({"extra": {}}, "feePayer"),
        ({"extra": []}, "extra"),
        ({"maxTimeoutSeconds": 0}, "maxTimeoutSeconds"),
        ({"asset": ""}, "asset"),
    ],
)
def test_offer_fields_are_checked_like_the_conformance_suite(
    gateway: Gateway, changes: dict[str, Any], problem: str
) -> None:
    """Each malformed field makes the offer unpayable, with the field named."""
    parsed = read_payment_required(challenge(2, [offer(gateway, **changes)]).headers, b"")
    assert parsed is not None
    assert parsed.offers[0].problem is not None
    assert problem in parsed.offers[0].problem


# -- choosing an offer -----------------------------------------------------------------------------


def test_refusals_name_every_offer(server: GatewayServer, gateway: Gateway) -> None:
    """When nothing fits, PaymentError says why for each offer; nothing is signed."""
    stranger = str(Keypair().pubkey())
    accepts = [
        offer(gateway, scheme="upto"),
        offer(gateway, network=MAINNET),
        offer(gateway, network="eip155:8453"),
        offer(gateway, asset=str(Keypair().pubkey())),
        offer(gateway, payTo=stranger),
        offer(gateway, amount="999999999"),
    ]
    uncapped = SpendingRules.build(max_payment={"USDC": None})
    with pytest.raises(PaymentError) as caught:
        drive(server, challenge(2, accepts), context(wallet_on(gateway), uncapped))
    refusals = caught.value.details["refusals"]
    assert set(refusals) == set(range(6))
    assert "only 'exact'" in refusals[0]
    assert "mainnet-beta" in refusals[1]
    assert "not a Solana network" in refusals[2]
    assert "accept_assets" in refusals[3]
    assert "no USDC token account" in refusals[4]
    assert "short of" in refusals[5]


def test_cheapest_payable_offer_wins(server: GatewayServer, gateway: Gateway) -> None:
    """Among payable offers the lowest price (display units) is paid."""
    accepts = [
        offer(gateway, amount="30000"),
        offer(gateway, symbol="PYUSD", amount="20000"),
        offer(gateway, amount="25000"),
    ]
    resend = drive(server, challenge(2, accepts), context(wallet_on(gateway)))
    document, _ = transaction_of(resend)
    assert document["accepted"] == accepts[1]
    assert resend.receipt.currency == "PYUSD"
    assert resend.receipt.amount == Decimal("0.02")


def test_max_payment_refuses_dear_offers(server: GatewayServer, gateway: Gateway) -> None:
    """An offer above max_payment is refused by policy (PaymentPolicyError naming the rule)."""
    rules = SpendingRules.build(max_payment={"USDC": "0.005"})
    with pytest.raises(PaymentPolicyError) as caught:
        drive(server, challenge(2, [offer(gateway)]), context(wallet_on(gateway), rules))
    assert caught.value.rule == "max_payment"


def test_accept_assets_admits_an_unknown_mint(server: GatewayServer, gateway: Gateway) -> None:
    """A mint outside the known tokens is refused until the agent lists it in accept_assets."""
    usdc = str(gateway.genesis.token("USDC").mint)
    devnet_with_other_label = offer(gateway)
    rules = SpendingRules.build(accept_assets=[usdc])
    assert drive(
        server, challenge(2, [devnet_with_other_label]), context(wallet_on(gateway), rules)
    )


# -- the exact transaction -------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2])
def test_exact_transaction_is_what_facilitators_expect(
    server: GatewayServer, gateway: Gateway, version: int
) -> None:
    """v0; fee payer's slot 0 empty; CU limit, CU price, TransferChecked, memo; agent in slot 1."""
    wallet = wallet_on(gateway)
    resend = drive(
        server,
        challenge(version, [offer(gateway, version=version, amount="12345")]),
        context(wallet, nonce=NONCE),
    )
    document, tx = transaction_of(resend)
    message = tx.message
    assert isinstance(message, MessageV0)
    fee_payer = gateway.genesis.fee_payer.pubkey()
    assert message.account_keys[0] == fee_payer
    assert message.header.num_required_signatures == 2
    assert tx.signatures[0] == Signature.default()
    assert tx.verify_with_results()[1] is True
    limit, price, transfer, memo = decompile(message) or []
    assert bytes(limit.data).hex() == "02204e0000"
    assert bytes(price.data).hex() == "030100000000000000"
    usdc = gateway.genesis.token("USDC")
    data = bytes(transfer.data)
    assert (data[0], int.from_bytes(data[1:9], "little"), data[9]) == (12, 12345, 6)
    assert [m.pubkey for m in transfer.accounts] == [
        associated_token_address(wallet.pubkey(), usdc.mint, usdc.program_id),
        usdc.mint,
        associated_token_address(gateway.treasury, usdc.mint, usdc.program_id),
        wallet.pubkey(),
    ]
    assert bytes(memo.data) == NONCE.encode()
    assert memo.accounts == []
    assert not any(
        m.pubkey == fee_payer for ix in (limit, price, transfer, memo) for m in ix.accounts
    )
    if version == 1:
        assert set(document) == {"x402Version", "scheme", "network", "payload"}
        assert document["network"] == "solana-devnet"
    else:
        assert set(document) == {"x402Version", "payload", "accepted", "resource"}


def test_extra_memo_and_recent_blockhash_are_used(server: GatewayServer, gateway: Gateway) -> None:
    """v2: extra.memo becomes the memo; a valid extra.recentBlockhash is used as given."""
    blockhash = RpcClient(server.rpc_url).latest_blockhash()
    extra = {
        "feePayer": str(gateway.genesis.fee_payer.pubkey()),
        "memo": "order-77",
        "recentBlockhash": str(blockhash),
    }
    resend = drive(server, challenge(2, [offer(gateway, extra=extra)]), context(wallet_on(gateway)))
    _, tx = transaction_of(resend)
    assert tx.message.recent_blockhash == blockhash
    assert bytes((decompile(tx.message) or [])[3].data) == b"order-77"  # type: ignore[arg-type]


# -- against the gateway ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2])
def test_sdk_pays_the_gateways_x402_routes(
    server: GatewayServer, gateway: Gateway, version: int, driven: Maker
) -> None:
    """AutoAgent pays /x402/v1|v2/premium: receipt settled with the transaction; ledger moved."""
    wallet = wallet_on(gateway)
    fee_payer = gateway.genesis.fee_payer.pubkey()
    fees_before = gateway.balance(fee_payer)
    agent = driven(wallet, rpc_url=server.rpc_url)
    response = agent.get(f"{server.url}/x402/v{version}/premium")
    assert response.status_code == 200
    (receipt,) = agent.payments
    assert (receipt.format, receipt.settled, receipt.fee_lamports) == (f"x402-v{version}", True, 0)
    assert receipt.signature == response.json()["paid"]["transaction"]
    assert gateway.ledger.status(Signature.from_string(receipt.signature)) is not None
    assert gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.99")
    assert gateway.balance(wallet.pubkey()) == 1
    assert fees_before - gateway.balance(fee_payer) == Decimal("0.000010001")


def present(
    server: GatewayServer, version: int, header_value: str, query: str = ""
) -> requests.Response:
    name = "PAYMENT-SIGNATURE" if version == 2 else "X-PAYMENT"
    return requests.get(
        f"{server.url}/x402/v{version}/premium{query}", headers={name: header_value}, timeout=10
    )


def error_of(response: requests.Response) -> str:
    if "PAYMENT-REQUIRED" in response.headers:
        return str(unb64json(response.headers["PAYMENT-REQUIRED"], "PAYMENT-REQUIRED")["error"])
    settlement = response.headers.get("PAYMENT-RESPONSE") or response.headers.get(
        "X-PAYMENT-RESPONSE"
    )
    if settlement:
        return str(unb64json(settlement, "settlement")["errorReason"])
    return str(response.json()["error"])


@pytest.mark.parametrize("version", [1, 2])
def test_a_replayed_payment_is_a_duplicate_settlement(
    server: GatewayServer, gateway: Gateway, version: int
) -> None:
    """The same payment on another request is refused (duplicate_settlement); the very same
    request again gets the very same answer (a client retrying a lost one). Money moves once."""
    wallet = wallet_on(gateway)
    resend = drive(server, challenge(version, [offer(gateway, version=version)]), context(wallet))
    (value,) = resend.headers.values()
    first = present(server, version, value)
    assert first.status_code == 200
    after = gateway.balance(wallet.pubkey(), "USDC")
    again = present(server, version, value, query="?page=2")
    assert again.status_code == 402
    assert error_of(again) == "duplicate_settlement"
    same = present(server, version, value)
    assert (same.status_code, same.content) == (200, first.content)
    name = "PAYMENT-RESPONSE" if version == 2 else "X-PAYMENT-RESPONSE"
    assert same.headers[name] == first.headers[name]
    assert gateway.balance(wallet.pubkey(), "USDC") == after


def tampered(
    server: GatewayServer, gateway: Gateway, entry: dict[str, Any], *, version: int = 2
) -> str:
    """The header the SDK builds for ``entry``, presented against the gateway's real offer."""
    resend = drive(server, challenge(version, [entry]), context(wallet_on(gateway)))
    document, _ = transaction_of(resend)
    if version == 2:
        document["accepted"] = offer(gateway)
    return b64json(document)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"amount": "9999"}, "invalid_exact_svm_payload_amount_insufficient"),
        ({"symbol": "PYUSD"}, "invalid_exact_svm_payload_mint_mismatch"),
    ],
)
def test_gateway_refuses_payments_that_do_not_pay_its_offer(
    server: GatewayServer, gateway: Gateway, changes: dict[str, Any], reason: str
) -> None:
    """Underpaid or in another token: a fresh challenge whose error is the facilitator's reason."""
    before = gateway.balance(gateway.treasury, "USDC")
    response = present(server, 2, tampered(server, gateway, offer(gateway, **changes)))
    assert response.status_code == 402
    assert error_of(response) == reason
    assert gateway.balance(gateway.treasury, "USDC") == before


def test_gateway_refuses_another_payee(server: GatewayServer, gateway: Gateway) -> None:
    """A transfer to someone else's token account: recipient mismatch."""
    other = wallet_on(gateway)
    response = present(
        server, 2, tampered(server, gateway, offer(gateway, payTo=str(other.pubkey())))
    )
    assert error_of(response) == "invalid_exact_svm_payload_recipient_mismatch"


def test_gateway_refuses_an_unknown_fee_payer_and_mismatched_offers(
    server: GatewayServer, gateway: Gateway
) -> None:
    """A payment naming another fee payer is refused; a v2 'accepted' that differs is refused."""
    stranger = Keypair()
    gateway.fund(stranger.pubkey(), {"SOL": Decimal(1)})
    entry = offer(gateway, extra={"feePayer": str(stranger.pubkey())})
    resend = drive(server, challenge(2, [entry]), context(wallet_on(gateway)))
    document, _ = transaction_of(resend)
    assert error_of(present(server, 2, b64json(document))) == "No matching payment requirements"
    document["accepted"] = offer(gateway)
    assert error_of(present(server, 2, b64json(document))) == "transaction_simulation_failed"


@pytest.mark.parametrize(
    "value", ["", "!!!", b64json({"x402Version": 2}), b64json({"x402Version": 1})]
)
def test_undecodable_payment_gets_a_fresh_challenge(server: GatewayServer, value: str) -> None:
    """Garbage in PAYMENT-SIGNATURE is no payment: 402 'Payment required'."""
    response = present(server, 2, value)
    assert response.status_code == 402
    assert error_of(response) in ("Payment required", "No matching payment requirements")


def test_unpaid_challenges_match_the_reference_shapes(
    server: GatewayServer, gateway: Gateway
) -> None:
    """v2: body {} and a PAYMENT-REQUIRED header; v1: a JSON body with x402Version 1."""
    v2 = requests.get(f"{server.url}/x402/v2/premium", timeout=10)
    assert (v2.status_code, v2.json(), v2.headers["Cache-Control"]) == (402, {}, "no-store")
    document = unb64json(v2.headers["PAYMENT-REQUIRED"], "PAYMENT-REQUIRED")
    assert document["x402Version"] == 2
    assert document["resource"]["url"] == f"{server.url}/x402/v2/premium"
    assert document["accepts"] == [offer(gateway)]
    v1 = requests.get(f"{server.url}/x402/v1/premium", timeout=10).json()
    assert v1["x402Version"] == 1
    assert v1["accepts"][0]["maxAmountRequired"] == "10000"
    assert v1["accepts"][0]["network"] == "solana-devnet"


# -- the facilitator API ---------------------------------------------------------------------------


def test_supported_lists_kinds_and_signer(server: GatewayServer, gateway: Gateway) -> None:
    """GET /facilitator/supported: v2 and v1 kinds with the fee payer, signers under solana:*."""
    supported = requests.get(f"{server.url}/facilitator/supported", timeout=10).json()
    fee_payer = str(gateway.genesis.fee_payer.pubkey())
    assert {(k["x402Version"], k["network"]) for k in supported["kinds"]} == {
        (2, DEVNET),
        (1, "solana-devnet"),
    }
    assert all(k["extra"] == {"feePayer": fee_payer} for k in supported["kinds"])
    assert supported["signers"] == {"solana:*": [fee_payer]}


def test_verify_then_settle_over_http(server: GatewayServer, gateway: Gateway) -> None:
    """POST /facilitator/verify answers isValid with the payer; /settle executes it once."""
    wallet = wallet_on(gateway)
    resend = drive(server, challenge(2, [offer(gateway)]), context(wallet))
    document, _ = transaction_of(resend)
    body = {"x402Version": 2, "paymentPayload": document, "paymentRequirements": offer(gateway)}
    verified = requests.post(f"{server.url}/facilitator/verify", json=body, timeout=10).json()
    assert verified == {"isValid": True, "payer": str(wallet.pubkey())}
    assert gateway.balance(wallet.pubkey(), "USDC") == 1
    settled = requests.post(f"{server.url}/facilitator/settle", json=body, timeout=10).json()
    assert settled["success"] is True
    assert settled["network"] == DEVNET
    assert gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.99")
    again = requests.post(f"{server.url}/facilitator/settle", json=body, timeout=10).json()
    assert (again["success"], again["errorReason"]) == (False, "duplicate_settlement")
    bad = requests.post(f"{server.url}/facilitator/verify", json={"paymentPayload": []}, timeout=10)
    assert bad.status_code == 400


# -- properties ------------------------------------------------------------------------------------


@st.composite
def offers(draw: st.DrawFn, gateway: Gateway) -> tuple[int, dict[str, Any]]:
    version = draw(st.sampled_from([1, 2]))
    network = draw(
        st.sampled_from(
            [DEVNET if version == 2 else "solana-devnet", MAINNET, "solana", "solana-testnet"]
        )
    )
    entry = offer(
        gateway,
        version=version,
        symbol=draw(st.sampled_from(["USDC", "PYUSD"])),
        amount=str(draw(st.integers(1, 3_000_000))),
        scheme=draw(st.sampled_from(["exact", "exact", "exact", "upto"])),
        network=network,
    )
    if draw(st.booleans()):
        entry["payTo"] = str(Keypair.from_seed(draw(st.binary(min_size=32, max_size=32))).pubkey())
    return version, entry


_WALLETS: dict[int, Keypair] = {}


# Issue 4: "any well-formed offer is either paid exactly (amount, asset, payTo, network) or
# refused with a reason".
@given(data=st.data())
def test_property_well_formed_offers_are_paid_exactly_or_refused(
    server: GatewayServer, gateway: Gateway, data: st.DataObject
) -> None:
    """Paid: the transaction moves exactly amount of asset to payTo's account on the network,
    and settling it on the gateway moves exactly that. Refused: every offer has a reason."""
    version, entry = data.draw(offers(gateway))
    wallet = _WALLETS.setdefault(id(gateway), wallet_on(gateway, usdc="2", pyusd="2"))
    try:
        resend = drive(server, challenge(version, [entry]), context(wallet))
    except PaymentError as error:
        refused: PaymentError | None = error
    else:
        refused = None
    if refused is not None:
        assert set(refused.details["refusals"]) == {0}
        assert refused.details["refusals"][0]
        return
    assert entry["scheme"] == "exact"
    assert entry["network"] in (DEVNET, "solana-devnet")
    document, tx = transaction_of(resend)
    transfer = (decompile(tx.message) or [])[2]  # type: ignore[arg-type]
    data_bytes = bytes(transfer.data)
    amount = int(entry["amount" if version == 2 else "maxAmountRequired"])
    mint = Pubkey.from_string(entry["asset"])
    token = next(t for t in gateway.genesis.tokens.values() if t.mint == mint)
    destination = associated_token_address(
        Pubkey.from_string(entry["payTo"]), mint, token.program_id
    )
    assert int.from_bytes(data_bytes[1:9], "little") == amount
    assert transfer.accounts[1].pubkey == mint
    assert transfer.accounts[2].pubkey == destination
    assert document.get("network", entry["network"]) == entry["network"]
    before = gateway.balance(entry["payTo"], token.symbol)
    settled = gateway.facilitator.settle(document, entry)
    assert settled["success"] is True
    assert gateway.balance(entry["payTo"], token.symbol) - before == Decimal(amount).scaleb(-6)


json_junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=10,
)


# Issue 4: "no malformed header or body leads to a payment".
@given(
    header=st.one_of(
        st.none(),
        st.text(max_size=60),
        json_junk.map(lambda v: b64json({"x402Version": 2, "accepts": v})),
    ),
    body=st.one_of(
        st.binary(max_size=80),
        json_junk.map(lambda v: json.dumps({"x402Version": 1, "accepts": v}).encode()),
    ),
)
def test_property_malformed_challenges_never_pay(
    server: GatewayServer, gateway: Gateway, header: str | None, body: bytes
) -> None:
    """Junk in PAYMENT-REQUIRED or a v1 body: an SDK error, never a signed payment."""
    headers = CaseInsensitiveDict({"PAYMENT-REQUIRED": header} if header is not None else {})
    reply = HttpReply(402, headers, body, "http://x/paid")
    wallet = _WALLETS.setdefault(id(gateway), wallet_on(gateway, usdc="2", pyusd="2"))
    with pytest.raises(HumanRPCError):
        drive(server, reply, context(wallet))


def test_an_expired_x402_payment_is_replaced_once(driven: Maker) -> None:
    """Refused for a stale blockhash, and not among the payer's transactions: re-signed once."""
    from stub_gateway import serve_in_thread

    from .conftest import FakeClock

    clock = FakeClock()
    with serve_in_thread(clock=clock) as running:
        gateway = running.gateway
        wallet = wallet_on(gateway)
        agent = driven(wallet, rpc_url=running.rpc_url)
        assert agent.get(f"{running.url}/x402/v2/premium").status_code == 200
        clock.now += 61  # the agent's cached blockhash is now past its 150 slots
        assert agent.get(f"{running.url}/x402/v2/premium").status_code == 200
        first, expired, replacement = agent.payments
        assert (first.settled, replacement.settled) == (True, True)
        assert expired.error_reason is not None
        assert "replaced" in expired.error_reason
        assert "transaction_simulation_failed" in expired.error_reason
        assert (expired.state, expired.landed) == ("failed", False)
        assert replacement.replaces == expired.id
        assert gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.98")
