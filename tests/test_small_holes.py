"""Issue 8, section 8: the smaller holes.

* an x402 offer naming the agent as fee payer, or any invoice paying the agent itself, is
  refused before anything is signed;
* ``timeout`` bounds the whole read of a 402 body and of a paid answer;
* a 402 with many offers is paid (account reads deduplicated and chunked), up to a cap;
* no signed payment in a ``repr``, no key in a traceback's captured locals.
"""

from __future__ import annotations

import base64
import inspect
import json
import math
import os
import select
import socket
import socketserver
import sqlite3
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

from human_rpc_sdk import (
    AutoAgent,
    HumanRPCError,
    Invoice,
    InvoiceValidationError,
    KeypairSigner,
    PaymentError,
    ReiteratorManager,
    SDKConfigurationError,
    guard,
)
from human_rpc_sdk._headers import b64json, unb64json
from human_rpc_sdk._x402 import MAX_OFFERS, read_payment_required
from stub_gateway import Gateway, GatewayServer

from .conftest import CountingSigner, FakeClock, PaymentCapture, Shop

DEVNET = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"


# -- a resource server that offers whatever a test registers ----------------------------------


@dataclass
class OfferShop:
    """A gateway whose ``/offers/<key>`` answers an x402 402 (v2, or v1 past 16 KiB of offers)
    with the offers registered under ``key``, and settles a payment of any of them through the
    gateway's facilitator."""

    server: GatewayServer
    offers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    payments: list[str] = field(default_factory=list)

    @property
    def gateway(self) -> Gateway:
        return self.server.gateway

    def url(self, key: str, accepts: list[dict[str, Any]]) -> str:
        self.offers[key] = accepts
        return f"{self.server.url}/offers/{key}"

    def offer(self, amount: int, *, version: int = 2, **changes: Any) -> dict[str, Any]:
        """A valid USDC offer to the treasury, with ``changes`` applied."""
        entry: dict[str, Any] = {
            "scheme": "exact",
            "network": DEVNET if version == 2 else "solana-devnet",
            "asset": str(self.gateway.genesis.token("USDC").mint),
            "payTo": str(self.gateway.treasury),
            "maxTimeoutSeconds": 300,
            "extra": {"feePayer": self.gateway.facilitator.fee_payer_address},
        }
        if version == 2:
            entry["amount"] = str(amount)
        else:
            entry.update(maxAmountRequired=str(amount), resource="", description="", mimeType="")
        entry.update(changes)
        return entry


def _offer_shop() -> OfferShop:
    from flask import Response, jsonify, request

    from stub_gateway import create_app

    app = create_app(Gateway())
    shop = OfferShop(GatewayServer(app).start())

    def challenge(accepts: list[dict[str, Any]]) -> Response:
        if accepts[0]["network"] != DEVNET:
            response = jsonify({"x402Version": 1, "error": "pay", "accepts": accepts})
        else:
            document = {"x402Version": 2, "resource": {"url": request.url}, "accepts": accepts}
            response = jsonify({})
            response.headers["PAYMENT-REQUIRED"] = b64json(document)
        response.status_code = 402
        return response

    @app.get("/offers/<key>")
    def offers(key: str) -> Response:
        accepts = shop.offers[key]
        header = request.headers.get("PAYMENT-SIGNATURE") or request.headers.get("X-PAYMENT")
        if header is None:
            return challenge(accepts)
        shop.payments.append(header)
        payment = unb64json(header, "payment")
        facilitator = shop.gateway.facilitator
        paid = [a for a in accepts if facilitator.verify(payment, a).is_valid]
        if not paid:
            return jsonify({"error": "not one of our offers"}), 400  # type: ignore[return-value]
        settlement = facilitator.settle(payment, paid[0])
        return jsonify(settlement), 200 if settlement["success"] else 402  # type: ignore[return-value]

    return shop


@pytest.fixture(scope="module")
def offer_shop() -> Iterator[OfferShop]:
    made = _offer_shop()
    yield made
    made.server.stop()


def journal_rows(path: Path) -> list[tuple[Any, ...]]:
    """The journal's payments, read with a connection of the test's own."""
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        return db.execute("SELECT state, amount, recipient FROM payments").fetchall()


def wallet_of(gateway: Gateway, sol: str = "1", usdc: str = "1") -> Keypair:
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(sol), "USDC": Decimal(usdc)})
    return wallet


def balances(gateway: Gateway, owner: Pubkey | str) -> tuple[Decimal, Decimal]:
    return gateway.balance(owner, "SOL"), gateway.balance(owner, "USDC")


# -- paying itself --------------------------------------------------------------------------------


def test_x402_offers_naming_the_agent_as_fee_payer_or_payee_are_refused(
    offer_shop: OfferShop, tmp_path: Path
) -> None:
    """extra.feePayer or payTo = the agent: each offer refused with a reason, nothing signed."""
    wallet = wallet_of(offer_shop.gateway)
    me = str(wallet.pubkey())
    url = offer_shop.url(
        "self",
        [offer_shop.offer(1000, extra={"feePayer": me}), offer_shop.offer(1000, payTo=me)],
    )
    capture = PaymentCapture()
    journal = tmp_path / "journal.db"
    agent = AutoAgent(wallet, rpc_url=offer_shop.server.rpc_url, journal_path=journal)
    agent.session.mount("http://", capture)
    before = balances(offer_shop.gateway, me)
    with pytest.raises(PaymentError) as caught:
        agent.get(url)
    agent.close()
    refusals = caught.value.details["refusals"]
    assert "extra.feePayer is this agent's own address" in refusals[0]
    assert "payTo is this agent's own address" in refusals[1]
    assert capture.headers == []
    assert balances(offer_shop.gateway, me) == before
    assert journal_rows(journal) == []


def test_a_humanrpc_invoice_paying_the_agent_itself_is_refused(shop: Shop, tmp_path: Path) -> None:
    """A HumanRPC invoice whose recipient is the agent: InvoiceValidationError, nothing signed."""
    wallet = wallet_of(shop.gateway)
    me = str(wallet.pubkey())
    capture = PaymentCapture()
    journal = tmp_path / "journal.db"
    agent = AutoAgent(wallet, rpc_url=shop.rpc_url, journal_path=journal)
    agent.session.mount("http://", capture)
    before = balances(shop.gateway, me)
    with pytest.raises(InvoiceValidationError) as caught:
        agent.get(shop.price_url("SOL", "0.001", me))
    agent.close()
    assert caught.value.reason == "pays_itself"
    assert capture.headers == []
    assert balances(shop.gateway, me) == before
    assert journal_rows(journal) == []


# -- many offers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [30, MAX_OFFERS])
def test_a_402_with_many_offers_pays_the_cheapest(
    offer_shop: OfferShop, tmp_path: Path, count: int
) -> None:
    """30 (and 64) valid offers to as many payees: read in chunks, the cheapest one paid."""
    gateway = offer_shop.gateway
    payees = [Keypair().pubkey() for _ in range(count)]
    for payee in payees:
        gateway.fund(payee, {"USDC": Decimal("0.000001")})
    cheapest = count // 2 + 1
    amounts = [5000 + 10 * ((i - cheapest) % count) for i in range(count)]
    version = 2 if count <= 30 else 1  # 64 offers do not fit the 16 KiB v2 header
    accepts = [
        offer_shop.offer(a, version=version, payTo=str(p))
        for a, p in zip(amounts, payees, strict=True)
    ]
    accepts.append(dict(accepts[3]))  # the same offer twice: its accounts are read once
    wallet = wallet_of(gateway)
    journal = tmp_path / "journal.db"
    agent = AutoAgent(wallet, rpc_url=offer_shop.server.rpc_url, journal_path=journal)
    payee_before = gateway.balance(payees[cheapest], "USDC")
    response = agent.get(offer_shop.url(f"many-{count}", accepts))
    agent.close()
    assert response.status_code == 200, response.text
    assert response.json()["success"] is True
    assert gateway.balance(payees[cheapest], "USDC") - payee_before == Decimal("0.005")
    assert gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.995")
    assert journal_rows(journal) == [("accepted", "0.005", str(payees[cheapest]))]


def test_offers_beyond_the_cap_are_refused_unread() -> None:
    """Offers past the 64th are refused with a reason naming the cap; the rest are read."""
    entry = {
        "scheme": "exact",
        "network": "solana-devnet",
        "maxAmountRequired": "1",
        "asset": str(Keypair().pubkey()),
        "payTo": str(Keypair().pubkey()),
        "maxTimeoutSeconds": 60,
        "extra": {"feePayer": str(Keypair().pubkey())},
    }
    document = {"x402Version": 1, "error": "pay", "accepts": [entry] * 70}
    challenge = read_payment_required({}, json.dumps(document).encode())
    assert challenge is not None
    assert [o.problem for o in challenge.offers[:MAX_OFFERS]] == [None] * MAX_OFFERS
    for beyond in challenge.offers[MAX_OFFERS:]:
        assert beyond.problem is not None
        assert f"first {MAX_OFFERS} offers" in beyond.problem


# -- a whole-read deadline ---------------------------------------------------------------------


@dataclass
class Served:
    """One connection to the trickling proxy: what it sent, and whether the client hung up."""

    payment: str | None = None
    trickled: int = 0
    hung_up: threading.Event = field(default_factory=threading.Event)


class TrickleProxy(socketserver.ThreadingTCPServer):
    """A raw-socket proxy in front of a gateway: answers with ``status`` are sent one body byte
    per ``pace`` seconds (headers at once); other answers go through whole."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, upstream: str, status: int, pace: float) -> None:
        super().__init__(("127.0.0.1", 0), _TrickleHandler)
        self.upstream = upstream
        self.status = status
        self.pace = pace
        self.served: list[Served] = []
        self.thread = threading.Thread(target=self.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _TrickleHandler(socketserver.BaseRequestHandler):
    server: TrickleProxy

    def handle(self) -> None:
        conn: socket.socket = self.request
        method, path, headers, body = _read_request(conn)
        served = Served(payment=headers.get("x-payment") or headers.get("payment-signature"))
        self.server.served.append(served)
        upstream = requests.request(
            method,
            self.server.upstream + path,
            headers={k: v for k, v in headers.items() if k not in ("host", "connection")},
            data=body,
            timeout=10,
        )
        content = upstream.content
        head = [f"HTTP/1.1 {upstream.status_code} X"]
        for name, value in upstream.headers.items():
            if name.lower() not in ("content-length", "content-encoding", "connection"):
                head.append(f"{name}: {value}")
        head += [f"Content-Length: {len(content)}", "Connection: close", "", ""]
        conn.sendall("\r\n".join(head).encode())
        if upstream.status_code != self.server.status:
            conn.sendall(content)
            return
        for byte in content:
            conn.sendall(bytes([byte]))
            served.trickled += 1
            readable, _, _ = select.select([conn], [], [], self.server.pace)
            if readable and not _peek(conn):
                served.hung_up.set()
                return


def _peek(conn: socket.socket) -> bytes:
    try:
        return conn.recv(1, socket.MSG_PEEK)
    except OSError:
        return b""


def _read_request(conn: socket.socket) -> tuple[str, str, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        body += conn.recv(65536)
    return method, path, headers, body


@pytest.fixture
def trickle(shop: Shop) -> Iterator[Any]:
    """Start a trickling proxy in front of the shop: ``trickle(status, pace)``."""
    made: list[TrickleProxy] = []

    def start(status: int, pace: float) -> TrickleProxy:
        proxy = TrickleProxy(shop.url, status, pace)
        proxy.thread.start()
        made.append(proxy)
        return proxy

    yield start
    for proxy in made:
        proxy.shutdown()
        proxy.server_close()


def test_timeout_bounds_the_whole_read_of_a_402_body(
    shop: Shop, trickle: Any, tmp_path: Path
) -> None:
    """A 402 body sent one byte per 0.5 s: get(timeout=1) stops reading; nothing is paid."""
    proxy = trickle(402, 0.5)
    wallet = wallet_of(shop.gateway)
    journal = tmp_path / "journal.db"
    agent = AutoAgent(wallet, rpc_url=shop.rpc_url, journal_path=journal)
    before = balances(shop.gateway, wallet.pubkey())
    with pytest.raises(PaymentError) as caught:
        agent.get(f"{proxy.url}{shop.price_url('SOL', '0.001')[len(shop.url) :]}", timeout=1)
    agent.close()
    assert caught.value.reason == "invoice_too_slow"
    (served,) = proxy.served
    assert served.hung_up.wait(5)
    assert served.trickled < 10  # of a body of more than 300 bytes
    assert balances(shop.gateway, wallet.pubkey()) == before
    assert journal_rows(journal) == []


def test_timeout_bounds_the_whole_read_of_a_paid_answer(
    shop: Shop, trickle: Any, tmp_path: Path
) -> None:
    """A paid answer sent one byte per 0.25 s: no answer, so the same payment is re-sent on
    _delivery's schedule; it lands once, and each read stops at the deadline."""
    proxy = trickle(200, 0.25)
    wallet = wallet_of(shop.gateway)
    journal = tmp_path / "journal.db"
    options: dict[str, Any] = {"sleep": lambda seconds: None}
    if "paid_timeout" in inspect.signature(AutoAgent).parameters:
        options["paid_timeout"] = 0.6  # the paid request's own deadline, where it exists
    agent = AutoAgent(wallet, rpc_url=shop.rpc_url, journal_path=journal, **options)
    treasury = shop.gateway.balance(shop.gateway.treasury)
    with pytest.raises(PaymentError) as caught:
        agent.get(f"{proxy.url}{shop.price_url('SOL', '0.001')[len(shop.url) :]}", timeout=0.6)
    agent.close()
    assert caught.value.reason in ("no_answer_after_payment", "paid_not_delivered")
    unpaid, *paid = proxy.served
    assert unpaid.payment is None
    assert len(paid) == 4
    assert len({s.payment for s in paid}) == 1  # the same payment every time
    for served in paid:
        assert served.hung_up.wait(5)
        assert served.trickled < 10
    assert shop.gateway.balance(shop.gateway.treasury) - treasury == Decimal("0.001")
    assert [row[:2] for row in journal_rows(journal)] == [("submitted", "0.001")]


# -- hostile arguments ----------------------------------------------------------------------------

HOSTILE_VALUES: list[Any] = [
    10**400,
    -(10**400),
    10**5000,  # too long even to print (Python's int-to-str limit)
    2**64,
    math.inf,
    -math.inf,
    math.nan,
    1e308,
    -1.0,
    0,
    True,
    None,
    "",
    "\x00",
    "a\x00b",
    "http://[::1",
    "http://[::1/x",
    "~nouser/j",
    "~nouser_s8_holes/j",
    b"\x00",
    [],
    {},
    (),
    ("SOL",),
    object(),
    "[" * 5000,
]
hostile = st.one_of(
    st.sampled_from(HOSTILE_VALUES),
    st.integers(),
    st.floats(),
    st.text(max_size=30),
    st.binary(max_size=10),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers() | st.floats(), max_size=2),
)

AGENT_OPTIONS = (
    "solana_private_key",
    "rpc_url",
    "human_rpc_url",
    "network",
    "timeout",
    "reiterator",
    "max_retry_attempts",
    "backoff_strategy",
    "base_delay",
    "signer",
    "session",
    "max_payment",
    "budget",
    "trusted_recipients",
    "approve",
    "journal_path",
    "accept_assets",
    "clock",
    "sleep",
    "nonce",
)
REITERATOR_OPTIONS = (
    "max_attempts",
    "backoff_strategy",
    "base_delay",
    "max_delay",
    "jitter",
    "retry_on_no_consensus",
    "raise_on_max_attempts",
)
GUARD_OPTIONS = (
    "threshold",
    "agent_id",
    "reward",
    "timeout",
    "agent",
    "confidence",
    "question",
    "currency",
    "on_reject",
    "on_no_consensus",
    "on_timeout",
    "on_unavailable",
)
ASK_OPTIONS = (
    "answer",
    "confidence",
    "context",
    "reward",
    "currency",
    "agent_id",
    "task_type",
    "category",
    "reasoning",
    "timeout",
)
INVOICE = {
    "invoice": {
        "amount": "0.001",
        "currency": "SOL",
        "network": "devnet",
        "recipient": "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin",
    }
}


def public_calls(agent: AutoAgent, url: str) -> dict[str, Callable[[Any], object]]:
    """Every public callable, with one argument left to the hostile value."""
    calls: dict[str, Callable[[Any], object]] = {}
    key = Keypair()

    def keyword(
        function: Callable[..., object], name: str, **fixed: Any
    ) -> Callable[[Any], object]:
        return lambda value: function(**fixed, **{name: value})

    def build(**options: Any) -> None:
        AutoAgent(**{"solana_private_key": key, "journal_path": ":memory:", **options}).close()

    for name in AGENT_OPTIONS:
        calls[f"AutoAgent({name}=)"] = keyword(build, name)
    for name in REITERATOR_OPTIONS:
        calls[f"ReiteratorManager({name}=)"] = keyword(ReiteratorManager, name)
        calls[f"configure({name}=)"] = keyword(ReiteratorManager().configure, name)
    for name in GUARD_OPTIONS:
        calls[f"guard({name}=)"] = keyword(lambda **o: guard(**{"agent": agent, **o})(len), name)
    for name in ASK_OPTIONS:
        calls[f"ask_human_rpc({name}=)"] = keyword(agent.ask_human_rpc, name, text="q?")
    calls.update(
        {
            "calculate_delay": lambda v: ReiteratorManager().calculate_delay(v),
            "should_retry(result)": lambda v: ReiteratorManager().should_retry(v, 1),
            "should_retry(attempt)": lambda v: ReiteratorManager().should_retry(
                {"outcome": "rejected"}, v
            ),
            "execute_with_retry": lambda v: ReiteratorManager().execute_with_retry(v),
            "guard(func)": lambda v: guard(v),
            "guarded call": lambda v: guard(agent=agent, threshold=0.5)(lambda: v)(),  # type: ignore[no-untyped-call]
            "ask_human_rpc(text)": lambda v: agent.ask_human_rpc(v),
            "wait_for_verdict(task_id)": lambda v: agent.wait_for_verdict(v, timeout=0.01),
            "wait_for_verdict(timeout)": lambda v: agent.wait_for_verdict("t", timeout=v),
            "balance(currency)": lambda v: agent.balance(v),
            "balance(mint)": lambda v: agent.balance("X", mint=v),
            "raise_budget": lambda v: agent.raise_budget(v),
            "raise_budget(amount)": lambda v: agent.raise_budget({"SOL": v}),
            "request(method)": lambda v: agent.request(v, url),
            "get(url)": lambda v: agent.get(v),
            "get(timeout)": lambda v: agent.get(url, timeout=v),
            "get(headers)": lambda v: agent.get(url, headers={"X-Test": v}),
            "post(json)": lambda v: agent.post(url, json=v),
            "Invoice()": lambda v: Invoice(v).validate(),
            "Invoice.from_body": lambda v: Invoice.from_body(v),
            "Invoice.validate(network)": lambda v: Invoice(INVOICE).validate(network=v),
            "Invoice.base_units": lambda v: Invoice(INVOICE).base_units(v),
            "Invoice.display_amount": lambda v: Invoice(INVOICE).display_amount(v),
        }
    )
    return calls


# **Feature: human-rpc-python-sdk, Property 8: For any error condition (invalid keys, malformed
# invoices, RPC failures, payment failures), the system should raise SDK-specific exceptions with
# descriptive messages**
@given(data=st.data())
def test_property_hostile_arguments_raise_sdk_errors_and_sign_nothing(
    responder: str,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    data: st.DataObject,
) -> None:
    """Any public callable given a hostile argument (huge ints, inf, NaN, NUL, wrong types):
    only HumanRPCError subclasses escape, and nothing is signed."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))  # a journal_path that is valid lands here
    clock = FakeClock()
    signer = CountingSigner(Keypair())
    agent = AutoAgent(
        signer=signer,
        rpc_url="http://127.0.0.1:9",
        human_rpc_url=f"{responder}/nowhere/api/v1/tasks",  # 404 at once, not a retried outage
        journal_path=":memory:",
        clock=clock,
        sleep=clock.sleep,
    )
    calls = public_calls(agent, f"{responder}/fixed/200")
    name = data.draw(st.sampled_from(sorted(calls)), label="callable")
    value = data.draw(hostile, label="value")
    escaped: BaseException | None = None
    try:
        calls[name](value)
    except Exception as error:  # noqa: BLE001 - the property inspects whatever escaped
        escaped = error
    finally:
        agent.close()
    assert signer.count == 0
    if isinstance(escaped, requests.ConnectionError | requests.Timeout):
        # A valid request that was sent: its transport errors are requests' own, as ever.
        assert name.startswith(("get(", "post(", "request(")), escaped
    elif escaped is not None:
        assert isinstance(escaped, HumanRPCError), f"{name}: {type(escaped).__name__}: {escaped}"
        assert len(str(escaped)) >= 20


@pytest.mark.parametrize(
    ("call", "parameter"),
    [
        (lambda: AutoAgent(Keypair(), timeout=10**400), "timeout"),
        (lambda: AutoAgent(Keypair(), rpc_url="http://[::1"), "rpc_url"),
        (lambda: AutoAgent(Keypair(), human_rpc_url="http://[::1"), "human_rpc_url"),
        (lambda: AutoAgent(Keypair(), journal_path="journal\x00.db"), "journal_path"),
        (lambda: AutoAgent(Keypair(), journal_path="~nouser_s8_holes/j"), "journal_path"),
        (lambda: AutoAgent(Keypair(), session="str"), "session"),  # type: ignore[arg-type]
        (lambda: AutoAgent(Keypair(), journal_path=":memory:").balance(5), "currency"),  # type: ignore[arg-type]
        (lambda: ReiteratorManager(max_delay=1e308), "max_delay"),
        (lambda: ReiteratorManager().configure(max_delay=1e308), "max_delay"),
        (lambda: ReiteratorManager(base_delay=10**400), "base_delay"),
        (lambda: guard(threshold=10**400), "threshold"),
    ],
)
def test_the_reported_hostile_arguments_are_configuration_errors(
    call: Callable[[], object], parameter: str
) -> None:
    """Each value the issue names: SDKConfigurationError naming the parameter, when built."""
    with pytest.raises(SDKConfigurationError) as caught:
        call()
    assert caught.value.parameter == parameter


def test_a_deeply_nested_402_body_is_refused(responder: str) -> None:
    """A 402 body of 60,000 '[' (JSON nesting past Python's recursion limit): an SDK error."""
    agent = AutoAgent(Keypair(), rpc_url="http://127.0.0.1:9", journal_path=":memory:")
    spec = {"status": 402, "body": base64.b64encode(b"[" * 60_000).decode()}
    with pytest.raises(InvoiceValidationError):
        agent.post(f"{responder}/respond", json=spec)
    agent.close()


# -- secrets in reprs and tracebacks --------------------------------------------------------------


def secret_forms(wallet: Keypair) -> list[str]:
    """The secret key as a caller may have given it, or as code may hold it."""
    raw = bytes(wallet)
    return [
        str(wallet),  # base58 of the 64 bytes
        json.dumps(list(raw)),
        json.dumps(list(raw), separators=(",", ":")),
        raw.hex(),
        raw[:32].hex(),
        repr(raw),
        repr(raw[:32]),
    ]


def rendered(error: BaseException) -> str:
    """The SDK's frames of the error's traceback (and of its chained errors) as a crash
    reporter capturing locals would print them; the test's own frames hold the key, of course."""
    report = traceback.TracebackException.from_exception(error, capture_locals=True)
    lines: list[str] = []
    seen: set[int] = set()
    pending = [report]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        for frame in current.stack:
            if f"{os.sep}human_rpc_sdk{os.sep}" in frame.filename:
                lines += [f"{frame.name}: {k} = {v}" for k, v in (frame.locals or {}).items()]
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
    return "\n".join(lines)


def caught(call: Callable[[], object]) -> BaseException:
    try:
        call()
    except Exception as error:  # noqa: BLE001 - any error will do: its traceback is examined
        return error
    raise AssertionError("nothing was raised")


def test_the_resend_effect_shows_no_signed_payment(shop: Shop, tmp_path: Path) -> None:
    """The Resend effect and the Signed payment: repr shows the receipt, never the headers."""
    from human_rpc_sdk._effects import Resend
    from human_rpc_sdk._flow import Signed

    wallet = wallet_of(shop.gateway)
    capture = PaymentCapture()
    agent = AutoAgent(wallet, rpc_url=shop.rpc_url, journal_path=tmp_path / "j.db")
    agent.session.mount("http://", capture)
    seen: list[str] = []
    run = agent._driver.run

    def watching(flow: Any, resend: Any = None) -> Any:
        def spy(effect: Resend) -> Any:
            seen.append(repr(effect))
            return resend(effect)

        return run(flow, spy if resend else None)

    agent._driver.run = watching  # type: ignore[method-assign]
    assert agent.get(shop.price_url("SOL", "0.001")).status_code == 200
    agent.close()
    (header,) = capture.headers
    (shown,) = seen
    assert "receipt=" in shown
    assert header not in shown
    assert header[:40] not in shown
    assert not Signed.__dataclass_fields__["headers"].repr
    assert not Signed.__dataclass_fields__["transaction"].repr


@pytest.mark.parametrize("form", ["base58", "json", "keyfile"])
def test_no_key_in_captured_locals_of_an_error_after_parsing_it(tmp_path: Path, form: str) -> None:
    """The constructor fails after reading the key (a journal_path that is a directory): the
    traceback's captured locals hold no form of the secret."""
    wallet = Keypair()
    key: Any = {"base58": str(wallet), "json": json.dumps(list(bytes(wallet)))}.get(form)
    if form == "keyfile":
        keyfile = tmp_path / "id.json"
        keyfile.write_text(json.dumps(list(bytes(wallet))))
        keyfile.chmod(0o600)
        key = str(keyfile)
    (tmp_path / "journal").mkdir()
    error = caught(lambda: AutoAgent(key, journal_path=tmp_path / "journal"))
    assert isinstance(error, SDKConfigurationError)
    text = rendered(error)
    assert "__init__: " in text  # the constructor's frame was captured
    for secret in secret_forms(wallet):
        assert secret not in text


def test_no_key_in_captured_locals_of_a_payment_error(shop: Shop, tmp_path: Path) -> None:
    """Insufficient funds, raised deep in the payment flow: no form of the secret in any
    frame's captured locals."""
    wallet = Keypair()
    shop.gateway.fund(wallet.pubkey(), {"SOL": Decimal("0.01")})
    agent = AutoAgent(str(wallet), rpc_url=shop.rpc_url, journal_path=tmp_path / "j.db")
    url = shop.price_url("USDC", "0.5")
    error = caught(lambda: agent.get(url))
    agent.close()
    assert isinstance(error, PaymentError)
    assert error.reason == "insufficient_funds"
    text = rendered(error)
    assert "KeypairSigner(pubkey=" in text  # the signer was in scope, and shown safely
    for secret in secret_forms(wallet):
        assert secret not in text


def test_no_key_in_captured_locals_when_the_signer_fails(shop: Shop, tmp_path: Path) -> None:
    """A signer that fails while signing (a KMS outage): no form of the secret in the
    traceback's captured locals, and the reservation is released."""
    wallet = wallet_of(shop.gateway)

    class Outage(KeypairSigner):
        def sign_message(self, message: bytes) -> Signature:
            raise SDKConfigurationError("the signing service is down", parameter="signer")

    agent = AutoAgent(signer=Outage(wallet), rpc_url=shop.rpc_url, journal_path=tmp_path / "j.db")
    url = shop.price_url("SOL", "0.001")
    error = caught(lambda: agent.get(url))
    agent.close()
    assert isinstance(error, SDKConfigurationError)
    text = rendered(error)
    for secret in secret_forms(wallet):
        assert secret not in text
    assert [row[0] for row in journal_rows(tmp_path / "j.db")] == ["failed"]


@pytest.mark.parametrize("case", ["key_and_signer", "one_character_off", "environment"])
def test_no_key_text_in_captured_locals_of_a_key_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, case: str
) -> None:
    """A key refused while being read (given with a signer too, or one character off, or from
    $SOLANA_PRIVATE_KEY with an unusable journal): the SDK's frames hold none of its text."""
    wallet = Keypair()
    text = str(wallet)
    options: dict[str, Any] = {"journal_path": ":memory:"}
    if case == "key_and_signer":
        options.update(solana_private_key=text, signer=Keypair())
    elif case == "one_character_off":
        options.update(solana_private_key=text[:-1] + ("1" if text[-1] != "1" else "2"))
    else:
        monkeypatch.setenv("SOLANA_PRIVATE_KEY", text)
        (tmp_path / "journal").mkdir()
        options.update(journal_path=tmp_path / "journal")
    error = caught(lambda: AutoAgent(**options))
    assert isinstance(error, SDKConfigurationError)
    shown = rendered(error)
    for secret in [*secret_forms(wallet), text[:-1]]:
        assert secret not in shown


class _Drip:
    """A response body that yields one byte per read and moves the clock on each read."""

    def __init__(self, clock: FakeClock, step: float) -> None:
        self.clock, self.step, self.reads = clock, step, 0
        self.closed = False

    def read1(self, amount: int, decode_content: bool = True) -> bytes:
        self.reads += 1
        self.clock.now += self.step
        return b"{"

    def close(self) -> None:
        self.closed = True

    def release_conn(self) -> None:
        pass


@pytest.mark.parametrize("timeout", [2, (1.0, 1.0), (None, 2)])
def test_the_whole_read_deadline_follows_the_injected_clock(timeout: Any) -> None:
    """read_bounded stops a body that never ends once the injected clock passes the deadline
    the request's timeout sets (2 s here), after a bounded number of reads; nothing waits."""
    from human_rpc_sdk._io.sync import deadline_of, read_bounded

    clock = FakeClock(start=50.0)
    response = requests.Response()
    response.status_code, response.url = 402, "http://x/paid"
    response.raw = _Drip(clock, 0.25)
    deadline = deadline_of(timeout, clock)
    assert deadline == 52.0
    with pytest.raises(PaymentError) as caught:
        read_bounded(response, 65_536, deadline=deadline, clock=clock)
    assert caught.value.reason == "invoice_too_slow"
    assert response.raw.reads == 9  # 8 reads reach the deadline, the 9th passes it
    assert response.raw.closed
