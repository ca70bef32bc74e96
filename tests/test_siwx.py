"""Sign-in-with-x on Solana: the core's decisions by hand, and the agents against the gateway's
``/x402/v2/members`` over loopback (LiteSVM ledger balances, real journals)."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

from human_rpc_sdk import AsyncAutoAgent, AutoAgent
from human_rpc_sdk._effects import (
    ChainCache,
    HttpReply,
    NoAnswer,
    PaidBefore,
    PaymentContext,
    Sign,
)
from human_rpc_sdk._headers import b64json, unb64json
from human_rpc_sdk._records import JournalEntry
from human_rpc_sdk._siwx import (
    SIGN_IN_HEADER,
    SignedIn,
    SignInChallenge,
    SignInResend,
    challenge_for,
    offered,
    proof_problem,
    read_proof,
    refusal,
    sign_in,
)
from human_rpc_sdk.exceptions import PaymentError, TransactionBuildError
from human_rpc_sdk.wallet import KeypairSigner, OwnSignature
from stub_gateway import Gateway, GatewayServer, create_app

from .drivers import Driven

DEVNET = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"
NOW = datetime(2026, 1, 15, 10, 30, tzinfo=UTC)


class WallClock:
    """A wall clock that moves only when a test moves it (the gateway's ``siwx_now``)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class HeaderLog(requests.adapters.HTTPAdapter):
    """Remembers the headers of every request sent through it."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[CaseInsensitiveDict[str]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append(CaseInsensitiveDict(request.headers))
        return super().send(request, **kwargs)

    def signed_in(self) -> int:
        return sum(SIGN_IN_HEADER in headers for headers in self.sent)


@pytest.fixture(scope="module")
def clock() -> WallClock:
    return WallClock()


@pytest.fixture(scope="module")
def members(clock: WallClock) -> Iterator[GatewayServer]:
    """A gateway of its own: members may sign in for 600 s, on a wall clock tests move."""
    app = create_app(seed="siwx-tests", siwx_ttl=600, siwx_now=clock)
    with GatewayServer(app).start() as running:
        yield running


def funded(gateway: Gateway) -> Keypair:
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(1)})
    return wallet


def url_of(server: GatewayServer) -> str:
    return f"{server.url}/x402/v2/members"


def challenge_from(response: requests.Response) -> SignInChallenge:
    extension = offered(response.headers)
    assert extension is not None
    challenge = challenge_for(extension, DEVNET)
    assert challenge is not None
    return challenge


def proof(challenge: SignInChallenge, signer: Keypair, address: Pubkey | None = None) -> str:
    """A SIGN-IN-WITH-X header for ``challenge`` signed by ``signer`` as ``address``."""
    shown = str(address or signer.pubkey())
    signature = signer.sign_message(challenge.message(shown).encode())
    return b64json(challenge.proof(shown, str(signature)))


def signed_get(server: GatewayServer, headers: dict[str, str]) -> requests.Response:
    return requests.get(url_of(server), headers=headers, timeout=10)


def error_of(response: requests.Response) -> str:
    error: str = unb64json(response.headers["PAYMENT-REQUIRED"], "PAYMENT-REQUIRED")["error"]
    return error


def paid_member(server: GatewayServer, tmp_path: Path) -> tuple[Keypair, AutoAgent]:
    wallet = funded(server.gateway)
    agent = AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=tmp_path / "journal.sqlite3")
    assert agent.get(url_of(server)).json()["signed_in"] is False
    return wallet, agent


# -- the agents against the gateway ---------------------------------------------------------


def test_second_request_is_served_by_sign_in_with_no_second_transfer(
    members: GatewayServer, tmp_path: Path
) -> None:
    """Paid once, then signed in: one transfer on the ledger, one journal row, no receipt."""
    gateway = members.gateway
    treasury = gateway.balance(gateway.treasury, "USDC")
    wallet, agent = paid_member(members, tmp_path)
    with agent:
        answer = agent.get(url_of(members))
        assert answer.status_code == 200
        assert answer.json() == {
            "resource": "members",
            "content": "members' x402 v2 content, unlocked",
            "member": str(wallet.pubkey()),
            "signed_in": True,
        }
        assert agent._last_payment() is None
        (receipt,) = agent.payments
        assert receipt.state == "accepted"
    assert gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.99")
    assert gateway.balance(gateway.treasury, "USDC") - treasury == Decimal("0.01")
    assert gateway.balance(wallet.pubkey()) == 1  # the facilitator paid the fees


def test_an_agent_that_never_paid_pays_without_signing_in(
    members: GatewayServer, tmp_path: Path
) -> None:
    """No served payment of the URL in the journal (one of another route only): it pays."""
    wallet = funded(members.gateway)
    log = HeaderLog()
    session = requests.Session()
    session.mount("http://", log)
    with AutoAgent(
        wallet, rpc_url=members.rpc_url, journal_path=tmp_path / "j.sqlite3", session=session
    ) as agent:
        agent.get(f"{members.url}/x402/v2/premium")
        answer = agent.get(url_of(members))
        assert answer.json()["signed_in"] is False
        assert len(agent.payments) == 2
    assert log.signed_in() == 0
    assert members.gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.98")


def test_after_the_ttl_the_agent_pays_again(
    members: GatewayServer, clock: WallClock, tmp_path: Path
) -> None:
    """Past --siwx-ttl the gateway refuses the sign-in; the agent pays once, as today."""
    wallet, agent = paid_member(members, tmp_path)
    with agent:
        clock.advance(601)
        answer = agent.get(url_of(members))
        assert answer.json()["signed_in"] is False
        assert [r.state for r in agent.payments] == ["accepted", "accepted"]
        assert agent.get(url_of(members)).json()["signed_in"] is True  # the new payment counts
    assert members.gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.98")


class KmsSigner:
    """An external signer (a KMS stand-in): only ``pubkey`` and ``sign_message``; counts."""

    def __init__(self, keypair: Keypair) -> None:
        self._keypair = keypair
        self.signed: list[bytes] = []

    def pubkey(self) -> Pubkey:
        return self._keypair.pubkey()

    def sign_message(self, message: bytes) -> bytes:
        self.signed.append(message)
        return bytes(self._keypair.sign_message(message))


class AsyncKmsSigner(KmsSigner):
    async def sign_message(self, message: bytes) -> bytes:  # type: ignore[override]
        return super().sign_message(message)


def test_an_external_signer_signs_in(members: GatewayServer, tmp_path: Path) -> None:
    """A KMS-like signer signs the SIWS text through the same Sign effect (verified)."""
    wallet = funded(members.gateway)
    signer = KmsSigner(wallet)
    with AutoAgent(signer=signer, rpc_url=members.rpc_url, journal_path=tmp_path / "j") as agent:
        agent.get(url_of(members))
        assert agent.get(url_of(members)).json()["signed_in"] is True
    text = signer.signed[-1].decode()
    assert text.startswith(f"{urlsplit(members.url).netloc} wants you to sign in")
    assert f"\n{wallet.pubkey()}\n" in text
    assert members.gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.99")


class LyingSigner(KmsSigner):
    def sign_message(self, message: bytes) -> bytes:
        if message.startswith(b"127.0.0.1"):  # the sign-in text: signed by another key
            return bytes(Keypair().sign_message(message))
        return super().sign_message(message)


def test_a_sign_in_signature_that_does_not_verify_is_never_sent(
    members: GatewayServer, tmp_path: Path
) -> None:
    """A signer's bad sign-in signature: bad_signature, nothing sent, nothing paid."""
    wallet = funded(members.gateway)
    log = HeaderLog()
    session = requests.Session()
    session.mount("http://", log)
    options: dict[str, Any] = {"journal_path": tmp_path / "j", "session": session}
    with AutoAgent(signer=LyingSigner(wallet), rpc_url=members.rpc_url, **options) as agent:
        agent.get(url_of(members))
        with pytest.raises(TransactionBuildError) as caught:
            agent.get(url_of(members))
        assert caught.value.reason == "bad_signature"
        assert len(agent.payments) == 1
    assert log.signed_in() == 0
    assert members.gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.99")


@pytest.mark.asyncio
async def test_async_agent_with_an_async_signer_signs_in(
    members: GatewayServer, tmp_path: Path
) -> None:
    """AsyncAutoAgent awaits an async signer for the sign-in; no second transfer."""
    wallet = funded(members.gateway)
    signer = AsyncKmsSigner(wallet)
    options: dict[str, Any] = {"signer": signer, "journal_path": tmp_path / "j"}
    async with AsyncAutoAgent(rpc_url=members.rpc_url, **options) as agent:
        assert (await agent.get(url_of(members))).json()["signed_in"] is False
        answer = await agent.get(url_of(members))
        assert answer.json()["signed_in"] is True
        assert agent.last_payment() is None
    assert len(signer.signed) == 2  # the payment, then the sign-in
    assert members.gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.99")


# -- the gateway's checks -------------------------------------------------------------------


def test_a_signature_by_another_wallet_is_refused(members: GatewayServer, tmp_path: Path) -> None:
    """A proof naming the member but signed by another key, or by a non-member, is refused."""
    wallet, agent = paid_member(members, tmp_path)
    agent.close()
    challenge = challenge_from(requests.get(url_of(members), timeout=10))
    stranger = Keypair()
    forged = signed_get(members, {SIGN_IN_HEADER: proof(challenge, stranger, wallet.pubkey())})
    assert forged.status_code == 402
    assert error_of(forged) == (
        "sign_in_refused: its signature is not the address's signature of the message"
    )
    challenge = challenge_from(forged)
    own = signed_get(members, {SIGN_IN_HEADER: proof(challenge, stranger)})
    assert own.status_code == 402
    assert error_of(own) == "sign_in_refused: this wallet has not paid for this route"


def test_an_expired_challenge_is_refused(
    members: GatewayServer, clock: WallClock, tmp_path: Path
) -> None:
    """A proof over a challenge past its expirationTime is refused, though rightly signed."""
    wallet, agent = paid_member(members, tmp_path)
    agent.close()
    challenge = challenge_from(requests.get(url_of(members), timeout=10))
    clock.advance(301)
    late = signed_get(members, {SIGN_IN_HEADER: proof(challenge, wallet)})
    assert late.status_code == 402
    assert error_of(late) == "sign_in_refused: its challenge expired"


def test_a_replayed_nonce_is_refused(members: GatewayServer, tmp_path: Path) -> None:
    """The same proof twice: served once, then refused (nonces are single use)."""
    wallet, agent = paid_member(members, tmp_path)
    agent.close()
    challenge = challenge_from(requests.get(url_of(members), timeout=10))
    header = {SIGN_IN_HEADER: proof(challenge, wallet)}
    assert signed_get(members, header).json()["signed_in"] is True
    again = signed_get(members, header)
    assert again.status_code == 402
    assert error_of(again) == "sign_in_refused: its nonce was used already"


def test_a_challenge_with_changed_fields_is_refused(members: GatewayServer, tmp_path: Path) -> None:
    """A proof whose fields are not those issued with its nonce (a longer expiry) is refused."""
    wallet, agent = paid_member(members, tmp_path)
    agent.close()
    issued = challenge_from(requests.get(url_of(members), timeout=10))
    stretched = SignInChallenge(
        **{**issued.__dict__, "expiration_time": "2099-01-01T00:00:00.000Z"}
    )
    answer = signed_get(members, {SIGN_IN_HEADER: proof(stretched, wallet)})
    assert error_of(answer) == (
        "sign_in_refused: its nonce and fields are not a challenge this gateway issued"
    )


def test_members_route_is_listed_in_info(members: GatewayServer) -> None:
    """/api/v1/info names the sign-in route and its TTL."""
    info = requests.get(f"{members.url}/api/v1/info", timeout=10).json()
    assert info["sign_in"] == {
        "url": url_of(members),
        "ttl_seconds": 600.0,
        "extension": "sign-in-with-x",
    }


def test_other_routes_offer_no_sign_in(members: GatewayServer) -> None:
    """/x402/v2/premium stays pay-per-request: its 402 declares no extension."""
    answer = requests.get(f"{members.url}/x402/v2/premium", timeout=10)
    assert offered(answer.headers) is None


# -- the core's decisions, by hand ----------------------------------------------------------

SPEC_MESSAGE = """api.example.com wants you to sign in with your Solana account:
BSmWDgE9ex6dZYbiTsJGcwMEgFp8q4aWh92hdErQPeVW

Sign in to access premium data

URI: https://api.example.com/premium-data
Version: 1
Chain ID: 5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp
Nonce: a1b2c3d4e5f67890a1b2c3d4e5f67890
Issued At: 2024-01-15T10:30:00.000Z
Expiration Time: 2024-01-15T10:35:00.000Z
Resources:
- https://api.example.com/premium-data"""


def spec_challenge(**changes: Any) -> SignInChallenge:
    fields: dict[str, Any] = {
        "domain": "api.example.com",
        "uri": "https://api.example.com/premium-data",
        "version": "1",
        "chain_id": "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",
        "nonce": "a1b2c3d4e5f67890a1b2c3d4e5f67890",
        "issued_at": "2024-01-15T10:30:00.000Z",
        "statement": "Sign in to access premium data",
        "expiration_time": "2024-01-15T10:35:00.000Z",
        "resources": ("https://api.example.com/premium-data",),
    }
    return SignInChallenge(**{**fields, **changes})


def test_the_siws_message_is_the_specs() -> None:
    """The message of the spec's example challenge is the spec's SIWS text, byte for byte."""
    assert spec_challenge().message("BSmWDgE9ex6dZYbiTsJGcwMEgFp8q4aWh92hdErQPeVW") == SPEC_MESSAGE


def test_a_proof_round_trips_and_verifies() -> None:
    """A proof the core builds reads back and verifies; another address does not."""
    wallet = Keypair()
    challenge = spec_challenge()
    read = read_proof(proof(challenge, wallet))
    assert read.challenge == challenge
    assert proof_problem(read) is None
    forged = read_proof(proof(challenge, wallet, Keypair().pubkey()))
    assert proof_problem(forged) == "its signature is not the address's signature of the message"


URL = "https://api.example.com/premium-data"
WHEN = datetime(2024, 1, 15, 10, 31, tzinfo=UTC)


@pytest.mark.parametrize(
    ("changes", "url", "now", "why"),
    [
        ({}, "https://evil.example/premium-data", WHEN, "its domain 'api.example.com' is not"),
        ({"uri": "https://evil.example/x"}, URL, WHEN, "its uri 'https://evil.example/x' is not"),
        ({"uri": "http://api.example.com/x"}, URL, WHEN, "its uri 'http://api.example.com/x'"),
        ({}, URL, WHEN + timedelta(minutes=5), "it expired at 2024-01-15T10:35:00+00:00"),
        ({"expiration_time": None}, URL, WHEN + timedelta(minutes=4), "it expired at"),
        ({"not_before": "2024-01-15T10:32:00Z"}, URL, WHEN, "it is not valid before"),
        ({"issued_at": "yesterday"}, URL, WHEN, "'yesterday' is not an ISO 8601 time"),
        ({"version": "2"}, URL, WHEN, "it is version '2'"),
    ],
)
def test_the_agent_refuses_to_sign(
    changes: dict[str, Any], url: str, now: datetime, why: str
) -> None:
    """Not the origin asked, expired (or past the 5-minute default), not yet valid: unsigned."""
    found = refusal(spec_challenge(**changes), url, now, str(Keypair().pubkey()))
    assert found is not None
    assert found.startswith(why)


def test_a_valid_challenge_may_be_signed() -> None:
    """The spec's challenge, from its own origin, in its window: may be signed."""
    assert refusal(spec_challenge(), URL, WHEN, str(Keypair().pubkey())) is None


@pytest.mark.parametrize("field", ["statement", "nonce", "domain"])
def test_a_line_break_in_a_field_is_malformed(field: str) -> None:
    """A field that could forge another line of the message makes the offer malformed."""
    info = {
        "domain": "api.example.com",
        "uri": URL,
        "version": "1",
        "nonce": "n",
        "issuedAt": "2024-01-15T10:30:00Z",
        "statement": "s",
    }
    info[field] += "\nURI: https://evil.example/"
    extension = {"info": info, "supportedChains": [{"chainId": DEVNET, "type": "ed25519"}]}
    with pytest.raises(ValueError, match="line break"):
        challenge_for(extension, DEVNET)


def test_another_chain_or_signature_type_offers_nothing() -> None:
    """Only the agent's chain with ed25519 is chosen (eip191 or mainnet: no challenge)."""
    info = {"domain": "a", "uri": "https://a/", "version": "1", "nonce": "n", "issuedAt": "x"}
    chains = [
        {"chainId": "eip155:8453", "type": "eip191"},
        {"chainId": "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp", "type": "ed25519"},
        {"chainId": DEVNET, "type": "eip191"},
    ]
    assert challenge_for({"info": info, "supportedChains": chains}, DEVNET) is None


def offer_of(challenge: SignInChallenge, url: str) -> HttpReply:
    """A v2 402 for ``url`` offering ``challenge`` (its accepts are never reached here)."""
    document = {
        "x402Version": 2,
        "resource": {"url": url},
        "accepts": [{"scheme": "exact"}],
        "extensions": {
            "sign-in-with-x": {
                "info": {
                    k: v
                    for k, v in challenge.proof("", "").items()
                    if k not in ("address", "chainId", "type", "signature")
                },
                "supportedChains": [{"chainId": challenge.chain_id, "type": "ed25519"}],
            }
        },
    }
    headers = CaseInsensitiveDict({"PAYMENT-REQUIRED": b64json(document)})
    return HttpReply(402, headers, b"{}", url)


def context(wallet: Keypair) -> PaymentContext:
    return PaymentContext(
        signer=KeypairSigner(wallet),
        network="devnet",
        cache=ChainCache(),
        clock=lambda: 0.0,
        now=lambda: datetime.now(UTC),
        nonce=lambda: "n",
    )


def fresh_challenge(domain: str, uri: str) -> SignInChallenge:
    now = datetime.now(UTC)
    return SignInChallenge(
        domain=domain,
        uri=uri,
        version="1",
        chain_id=DEVNET,
        nonce="0123456789abcdef0123456789abcdef",
        issued_at=now.isoformat(),
    )


def earlier_payment() -> JournalEntry:
    from human_rpc_sdk._receipts import PaymentReceipt

    receipt = PaymentReceipt(
        url="https://shop.example/item",
        amount=Decimal("0.01"),
        currency="USDC",
        mint=None,
        recipient="r",
        reference=None,
        network="devnet",
        signature="s",
        time=datetime.now(UTC),
        atomic_amount=10000,
        payer="p",
        destination="d",
        fee_lamports=0,
        id=7,
        state="accepted",
    )
    return JournalEntry(receipt)


def test_a_hostile_challenge_for_another_site_is_not_signed() -> None:
    """A 402 relaying another site's sign-in (its domain) ends with the 402 to pay, unsigned."""
    reply = offer_of(
        fresh_challenge("bank.example", "https://bank.example/login"), "https://shop.example/item"
    )
    flow = sign_in(reply, context(Keypair()))
    assert isinstance(next(flow), PaidBefore)
    with pytest.raises(StopIteration) as done:
        flow.send(earlier_payment())
    assert done.value.value is reply


def test_the_flow_signs_only_after_the_journal_shows_a_payment() -> None:
    """Never paid (PaidBefore answers None): no Sign effect, the 402 is paid as today."""
    url = "https://shop.example/item"
    reply = offer_of(fresh_challenge("shop.example", url), url)
    wallet = Keypair()
    flow = sign_in(reply, context(wallet))
    assert next(flow) == PaidBefore(url, str(wallet.pubkey()), "devnet")
    with pytest.raises(StopIteration) as done:
        flow.send(None)
    assert done.value.value is reply
    flow = sign_in(reply, context(Keypair()))
    next(flow)
    assert isinstance(flow.send(earlier_payment()), Sign)


def test_the_sign_in_header_is_what_the_spec_says() -> None:
    """The header is standard base64 of JSON with the spec's required fields, type ed25519."""
    wallet = Keypair()
    header = proof(spec_challenge(), wallet)
    document = json.loads(base64.b64decode(header))
    assert {"domain", "address", "uri", "version", "chainId", "type", "nonce", "issuedAt"} <= set(
        document
    )
    assert document["type"] == "ed25519"
    assert Signature.from_string(document["signature"]).verify(
        wallet.pubkey(),
        SPEC_MESSAGE.replace(
            "BSmWDgE9ex6dZYbiTsJGcwMEgFp8q4aWh92hdErQPeVW", str(wallet.pubkey())
        ).encode(),
    )


def test_every_driver_signs_in(
    server: GatewayServer, driven_for: Callable[..., Driven], tmp_path: Path
) -> None:
    """Each way of paying (AutoAgent, PaymentAuth on requests and httpx, the async agent)
    signs in on the second request: one payment header ever sent, one transfer."""
    wallet = funded(server.gateway)
    payer = driven_for(wallet, capture=True, journal_path=tmp_path / "j")
    url = f"{server.url}/x402/v2/members"
    assert payer.get(url).json()["signed_in"] is False
    answer = payer.get(url)
    assert answer.status_code == 200
    assert answer.json()["signed_in"] is True
    assert len(payer.sent_payments) == 1
    assert len(payer.payments) == 1
    assert server.gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.99")


def signed_in_flow(reply: HttpReply) -> Any:
    """``sign_in(reply)`` advanced to its sign-in re-send (a paid-before answer, a signature)."""
    flow = sign_in(reply, context(Keypair()))
    next(flow)
    sign = flow.send(earlier_payment())
    assert isinstance(sign, Sign)
    resend = flow.send(OwnSignature(Keypair().sign_message(sign.message)))
    assert isinstance(resend, SignInResend)
    assert SIGN_IN_HEADER in resend.headers
    return flow


def shop_offer() -> HttpReply:
    url = "https://shop.example/item"
    return offer_of(fresh_challenge("shop.example", url), url)


@pytest.mark.parametrize("answer", [NoAnswer("timeout"), "500"])
def test_a_sign_in_without_an_answer_pays_nothing(answer: Any) -> None:
    """No answer, or a 5xx, to a sign-in: sign_in_unanswered, and the flow ends unpaid."""
    reply = shop_offer()
    if answer == "500":
        answer = HttpReply(500, CaseInsensitiveDict(), b"", reply.url)
    flow = signed_in_flow(reply)
    with pytest.raises(PaymentError) as caught:
        flow.send(answer)
    assert caught.value.reason == "sign_in_unanswered"


def test_a_refused_sign_in_pays_the_fresh_402() -> None:
    """A 402 refusing the sign-in, with its own challenge, is the one the flow pays."""
    reply = shop_offer()
    refused = shop_offer()
    with pytest.raises(StopIteration) as done:
        signed_in_flow(reply).send(refused)
    assert done.value.value is refused


def test_a_served_sign_in_is_no_payment() -> None:
    """Served: SignedIn, with no receipt and no error, naming the earlier payment."""
    reply = shop_offer()
    served = HttpReply(200, CaseInsensitiveDict(), b"ok", reply.url)
    with pytest.raises(StopIteration) as done:
        signed_in_flow(reply).send(served)
    result = done.value.value
    assert isinstance(result, SignedIn)
    assert (result.reply, result.receipt, result.error, result.paid_by) == (served, None, None, 7)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)


FIELDS = st.sampled_from(
    [
        "domain",
        "uri",
        "version",
        "nonce",
        "issuedAt",
        "expirationTime",
        "notBefore",
        "statement",
        "requestId",
        "resources",
        "address",
        "chainId",
        "type",
        "signature",
    ]
)
VALUES = st.sampled_from(["1", "ed25519", DEVNET, "2024-01-15T10:30:00Z", "a\nb"]) | JSON
DOCUMENTS = st.dictionaries(FIELDS, VALUES)


@given(
    DOCUMENTS,
    st.lists(st.dictionaries(st.sampled_from(["chainId", "type"]), VALUES), max_size=3),
)
def test_any_declaration_is_read_or_refused_with_value_error(
    info: dict[str, Any], chains: list[dict[str, Any]]
) -> None:
    """A hostile declaration gives a challenge, None, or ValueError: nothing else."""
    with contextlib.suppress(ValueError):
        challenge_for({"info": info, "supportedChains": chains}, DEVNET)


@given(st.text(max_size=200) | DOCUMENTS.map(b64json))
def test_any_proof_header_is_read_or_refused_with_value_error(header: str) -> None:
    """A hostile SIGN-IN-WITH-X header reads as a proof or raises ValueError."""
    try:
        read = read_proof(header)
    except ValueError:
        return
    proof_problem(read)


def test_a_made_up_nonce_is_refused(members: GatewayServer, tmp_path: Path) -> None:
    """A well-formed challenge with a nonce the gateway never issued is refused."""
    wallet, agent = paid_member(members, tmp_path)
    agent.close()
    issued = challenge_from(requests.get(url_of(members), timeout=10))
    made_up = replace(issued, nonce="0123456789abcdef0123456789abcdef")
    answer = signed_get(members, {SIGN_IN_HEADER: proof(made_up, wallet)})
    assert error_of(answer) == (
        "sign_in_refused: its nonce and fields are not a challenge this gateway issued"
    )


def test_many_402s_do_not_push_out_a_members_challenge(
    members: GatewayServer, tmp_path: Path
) -> None:
    """Challenges keep no state per 402: one issued before a hundred others still signs in."""
    wallet, agent = paid_member(members, tmp_path)
    agent.close()
    first = challenge_from(requests.get(url_of(members), timeout=10))
    with requests.Session() as session:
        for _ in range(100):
            assert session.get(url_of(members), timeout=10).status_code == 402
    answer = signed_get(members, {SIGN_IN_HEADER: proof(first, wallet)})
    assert answer.json()["signed_in"] is True


@pytest.mark.parametrize("ttl", [0, -1, True, "1"])
def test_a_bad_ttl_is_refused_when_the_app_is_made(ttl: object) -> None:
    """siwx_ttl must be seconds above 0: refused by create_app, before serving."""
    with pytest.raises(ValueError, match="siwx_ttl"):
        create_app(seed="siwx-tests", siwx_ttl=ttl)


class TransactionsOnlySigner(KmsSigner):
    """A wallet whose policy signs transactions only (a KMS rule, a device): text is refused."""

    def sign_message(self, message: bytes) -> bytes:
        if message.startswith(b"127.0.0.1"):
            raise PermissionError("this key signs transactions only")
        return super().sign_message(message)


def test_a_signer_that_will_not_sign_the_text_pays_as_today(
    members: GatewayServer, tmp_path: Path
) -> None:
    """A signer raising on the sign-in text: the 402 is paid as without the extension."""
    wallet = funded(members.gateway)
    signer = TransactionsOnlySigner(wallet)
    with AutoAgent(signer=signer, rpc_url=members.rpc_url, journal_path=tmp_path / "j") as agent:
        agent.get(url_of(members))
        assert agent.get(url_of(members)).json()["signed_in"] is False
        assert [r.state for r in agent.payments] == ["accepted", "accepted"]
    assert members.gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.98")


def test_no_payment_is_prepared_ahead_for_a_route_offering_sign_in(
    members: GatewayServer, tmp_path: Path
) -> None:
    """With prepay on, a route offering sign-in gets no payment prepared: the next request
    signs in, and the journal holds the one payment."""
    wallet = funded(members.gateway)
    options: dict[str, Any] = {"journal_path": tmp_path / "j", "prepay": True}
    with AutoAgent(wallet, rpc_url=members.rpc_url, **options) as agent:
        agent.get(url_of(members))
        assert agent.get(url_of(members)).json()["signed_in"] is True
        assert len(agent.payments) == 1
    assert members.gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.99")
