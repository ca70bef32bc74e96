"""Paid, then slow or never delivered: the answer comes to the payer, the money moves once.

A paid view that settles and then takes longer than the client's ``timeout`` (3 s against
``timeout=1.5``), on both paywalls (HumanRPC invoices and x402). The paid request has its own
read deadline (``paid_timeout``); a re-send of the same paid request waits in the gateway for
the first answer; a server that settles and never answers is reported as ``paid_not_delivered``.
Every test checks the ledger and the journal rows.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3
from flask import Flask, Response, g, jsonify
from solders.keypair import Keypair
from solders.signature import Signature

from human_rpc_sdk import AutoAgent, PaymentError, SDKConfigurationError
from human_rpc_sdk._io.sync import PaidRequest
from stub_gateway import Gateway, GatewayServer, Price, create_app
from stub_gateway.replies import PaidReplies

from .conftest import FakeClock, PaymentCapture
from .drivers import NO_RESEND_KINDS, make, settle_unanswered

VIEW_SECONDS = 3.0
TIMEOUT = 1.5
SOL_PRICE = Decimal("0.001")
X402_PRICE = Decimal("0.01")
FEE = Decimal("0.000005")
ROUTES = ("humanrpc", "x402")


class SlowShop:
    """A gateway with paid views that settle, then linger (or crash) before answering.

    ``/slow/<route>`` answers after ``VIEW_SECONDS``, or as soon as ``release`` is set;
    ``/broken/<route>`` settles and then fails (HTTP 500), every time.
    """

    def __init__(self) -> None:
        app = create_app(Gateway())
        gateway: Gateway = app.extensions["stub_gateway"]
        self.gateway = gateway
        self.release = threading.Event()
        sol, usdc = Price(SOL_PRICE, "SOL"), Price(X402_PRICE, "USDC")

        @app.get("/slow/humanrpc")
        @gateway.require_payment(sol)
        def slow_humanrpc() -> Response:
            self.release.wait(VIEW_SECONDS)
            return jsonify({"content": "slow humanrpc", "signature": g.settlement.signature})

        @app.get("/slow/x402")
        @gateway.require_x402(usdc)
        def slow_x402() -> Response:
            self.release.wait(VIEW_SECONDS)
            return jsonify({"content": "slow x402", "signature": g.x402_settlement["transaction"]})

        @app.get("/broken/humanrpc")
        @gateway.require_payment(sol)
        def broken_humanrpc() -> Response:
            raise RuntimeError("the view failed after the payment settled")

        @app.get("/broken/x402")
        @gateway.require_x402(usdc)
        def broken_x402() -> Response:
            raise RuntimeError("the view failed after the payment settled")

        self.server = GatewayServer(app).start()
        self.url = self.server.url


@pytest.fixture(scope="module")
def shop() -> Iterator[SlowShop]:
    made = SlowShop()
    yield made
    made.release.set()
    made.server.stop()


@pytest.fixture(autouse=True)
def _fresh_release(shop: SlowShop) -> Iterator[None]:
    shop.release = threading.Event()
    yield
    shop.release.set()  # lets a lingering view finish


class Payer:
    """A funded wallet, its payer of the given driver kind (journal on disk, pauses not
    waited), and what it sent."""

    def __init__(self, kind: str, shop: SlowShop, journal: Path, **options: Any) -> None:
        self.shop = shop
        self.gateway = shop.gateway
        self.wallet = Keypair()
        self.gateway.fund(self.wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(1)})
        self.journal = journal
        self.pauses = FakeClock()
        self.agent = make(
            kind,
            self.wallet,
            rpc_url=shop.server.rpc_url,
            journal_path=journal,
            timeout=TIMEOUT,
            sleep=self.pauses.sleep,
            capture=True,
            **options,
        )
        self.sent = self.agent.sent_payments
        self.before = self.balances()

    def balances(self) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        gateway, me = self.gateway, self.wallet.pubkey()
        return (
            gateway.balance(me),
            gateway.balance(me, "USDC"),
            gateway.balance(gateway.treasury),
            gateway.balance(gateway.treasury, "USDC"),
        )

    def assert_paid_once(self, route: str) -> None:
        """Exactly one payment of the price moved, payer to treasury."""
        now = self.balances()
        spent = [b - a for b, a in zip(self.before, now, strict=True)]
        if route == "humanrpc":
            assert spent == [SOL_PRICE + FEE, 0, -SOL_PRICE, 0]
        else:  # the facilitator pays the fee
            assert spent == [0, X402_PRICE, 0, -X402_PRICE]

    def rows(self) -> list[tuple[Any, ...]]:
        """(state, amount, landed, error) per journal row, read as another process would."""
        with sqlite3.connect(self.journal) as db:
            return db.execute(
                "SELECT state, amount, landed, error FROM payments ORDER BY id"
            ).fetchall()

    def close(self) -> None:
        self.agent.close()


def payers(shop: SlowShop, tmp_path: Path, kind: str) -> Iterator[Any]:
    made: list[Payer] = []

    def build(**options: Any) -> Payer:
        payer = Payer(kind, shop, tmp_path / f"journal-{len(made)}.sqlite3", **options)
        made.append(payer)
        return payer

    yield build
    for payer in made:
        payer.close()


@pytest.fixture
def payer_for(shop: SlowShop, tmp_path: Path, driver_kind: str) -> Iterator[Any]:
    """Payers of the current driver kind."""
    yield from payers(shop, tmp_path, driver_kind)


@pytest.fixture
def requests_payer_for(shop: SlowShop, tmp_path: Path) -> Iterator[Any]:
    """Payers on AutoAgent only, for tests that reach into its requests session."""
    yield from payers(shop, tmp_path, "requests")


def amount(route: str) -> str:
    return str(SOL_PRICE if route == "humanrpc" else X402_PRICE)


@pytest.mark.parametrize("route", ROUTES)
def test_a_slow_paid_view_is_waited_for(shop: SlowShop, payer_for: Any, route: str) -> None:
    """timeout=1.5, a view that settles then takes 3 s: the paid request waits (paid_timeout's
    default), gets 200 with the content; one payment on the ledger, one accepted row."""
    payer = payer_for()
    response = payer.agent.get(f"{shop.url}/slow/{route}")
    assert response.status_code == 200
    assert response.json()["content"] == f"slow {route}"
    assert len(payer.sent) == 1
    payer.assert_paid_once(route)
    assert payer.rows() == [("accepted", amount(route), 1, None)]


def release_on_join(shop: SlowShop) -> threading.Thread:
    """Let the slow view answer once a re-send has joined it in the gateway (not before)."""
    replies, release = shop.gateway.replies, shop.release
    wanted = replies.joins + 1

    def watch() -> None:
        if replies.wait_for_joins(wanted, timeout=30):
            release.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


@pytest.mark.parametrize("route", ROUTES)
def test_a_resend_waits_in_the_gateway_for_the_first_answer(
    shop: SlowShop, payer_for: Any, route: str
) -> None:
    """paid_timeout=1.0, shorter than the view: the first send times out, the same payment is
    sent again, waits in the gateway for the first copy's answer and gets 200; paid once."""
    payer = payer_for(paid_timeout=1.0)
    if payer.agent.kind in NO_RESEND_KINDS:
        url = f"{shop.url}/slow/{route}"
        try:
            recovered = settle_unanswered(payer.agent, lambda: payer.agent.get(url))
        finally:
            shop.release.set()  # no second copy will join: let the view answer
        assert (recovered.state, recovered.landed) == ("accepted", True)
        assert len(payer.sent) == 1
        payer.assert_paid_once(route)
        return
    release_on_join(shop)
    response = payer.agent.get(f"{shop.url}/slow/{route}")
    assert response.status_code == 200
    assert response.json()["content"] == f"slow {route}"
    assert len(payer.sent) == 2
    assert len(set(payer.sent)) == 1
    assert payer.pauses.sleeps == [0.25]
    payer.assert_paid_once(route)
    assert payer.rows() == [("accepted", amount(route), 1, None)]


@pytest.mark.parametrize("route", ROUTES)
def test_a_server_that_settles_and_never_delivers_is_reported_as_such(
    shop: SlowShop, payer_for: Any, route: str
) -> None:
    """The view fails after settling; re-sends are refused as already paid: PaymentError
    paid_not_delivered (never payment_refused) with the signature and receipt; paid once;
    the journal row is refused, landed, error paid_not_delivered."""
    payer = payer_for()
    with pytest.raises(PaymentError) as caught:
        payer.agent.get(f"{shop.url}/broken/{route}")
    error = caught.value
    assert error.reason == "paid_not_delivered"
    assert "landed" in str(error)
    assert "contact the service" in str(error)
    assert len(payer.sent) == 4
    assert len(set(payer.sent)) == 1
    assert payer.pauses.sleeps == [0.25, 0.5, 1.0]
    payer.assert_paid_once(route)
    assert error.signature
    assert shop.gateway.ledger.status(Signature.from_string(error.signature)) is not None
    receipt = error.details["receipt"]
    assert (receipt.signature, receipt.state, receipt.landed) == (error.signature, "refused", True)
    ((state, paid, landed, why),) = payer.rows()
    assert (state, paid, landed) == ("refused", amount(route), 1)
    assert why.startswith("paid_not_delivered: ")
    assert payer.agent.pending_payments() == []
    assert payer.agent.recover_payments() == []


class Duplicating(PaymentCapture):
    """Sends every paid request twice at once: a copy from another thread, then itself."""

    def __init__(self) -> None:
        super().__init__()
        self.copies: list[requests.Response] = []
        self.threads: list[threading.Thread] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if any(name in request.headers for name in ("X-PAYMENT", "PAYMENT-SIGNATURE")):
            copy = request.copy()
            thread = threading.Thread(
                target=lambda: self.copies.append(requests.Session().send(copy, timeout=30))
            )
            thread.start()
            self.threads.append(thread)
        return super().send(request, **kwargs)


@pytest.mark.parametrize("route", ROUTES)
def test_concurrent_copies_of_a_paid_request_settle_once(
    shop: SlowShop, requests_payer_for: Any, route: str
) -> None:
    """Two identical paid requests at once: one settlement; the copy that arrives second
    waits for the first and both get the very same answer."""
    # Single driver: the copy is made by a requests transport adapter; the behaviour under
    # test is the gateway's.
    payer = requests_payer_for()
    duplicating = Duplicating()
    payer.agent.session.mount("http://", duplicating)
    settlements = len(shop.gateway.desk.settlements)
    release_on_join(shop)
    response = payer.agent.get(f"{shop.url}/slow/{route}")
    for thread in duplicating.threads:
        thread.join(timeout=30)
    (copy,) = duplicating.copies
    assert (response.status_code, copy.status_code) == (200, 200)
    assert copy.content == response.content
    name = "PAYMENT-RESPONSE" if route == "x402" else "X-PAYMENT-RESPONSE"
    assert copy.headers[name] == response.headers[name]
    payer.assert_paid_once(route)
    if route == "humanrpc":
        assert len(shop.gateway.desk.settlements) == settlements + 1
    assert payer.rows() == [("accepted", amount(route), 1, None)]


# -- the gateway's registry of paid requests in flight, by hand ------------------------------


class Copy(threading.Thread):
    """A copy of paid request ``key`` arriving in the gateway: what it is told to answer, or
    None when it is the one to serve it."""

    def __init__(self, app: Flask, replies: PaidReplies, key: str) -> None:
        super().__init__(daemon=True)
        self.app, self.replies, self.key = app, replies, key
        self.answer: tuple[int, Any] | None = None
        self.served = False

    def run(self) -> None:
        with self.app.test_request_context("/paid"), self.replies.serving(self.key) as serving:
            if serving.reply is None:
                self.served = True
                serving.keep(jsonify({"content": "served by a later copy"}))
            else:
                self.answer = (serving.reply.status_code, serving.reply.get_json())


@pytest.fixture
def registry() -> tuple[Flask, PaidReplies]:
    return Flask("registry"), PaidReplies(time.monotonic, join_timeout=30)


def test_a_copy_that_waits_in_vain_is_told_to_send_again(
    registry: tuple[Flask, PaidReplies],
) -> None:
    """The first copy still runs after join_timeout: the re-send gets 503 with Retry-After,
    not a refusal; the first copy's answer is then kept for the next re-send."""
    app, replies = registry
    replies.join_timeout = 0.1
    with app.test_request_context("/paid"), replies.serving("k") as first:
        assert first.reply is None
        waiting = Copy(app, replies, "k")
        waiting.start()
        waiting.join(timeout=10)
        assert waiting.answer is not None
        assert waiting.answer[0] == 503
        assert waiting.answer[1]["reason"] == "paid_request_in_progress"
        first.keep(jsonify({"content": "paid"}))
    later = Copy(app, replies, "k")
    later.run()
    assert later.answer == (200, {"content": "paid"})


def test_a_copy_waiting_on_a_failed_first_copy_gets_a_500(
    registry: tuple[Flask, PaidReplies],
) -> None:
    """The first copy raises after settling: the copy that joined it is woken at once with
    HTTP 500 (not left waiting); nothing is kept, so a later copy is judged afresh."""
    app, replies = registry
    waiting = Copy(app, replies, "k")
    with (  # noqa: PT012 - the failure must happen while the copy waits
        pytest.raises(RuntimeError),
        app.test_request_context("/paid"),
        replies.serving("k") as first,
    ):
        assert first.reply is None
        waiting.start()
        assert replies.wait_for_joins(1, timeout=10)
        raise RuntimeError("the view failed")
    waiting.join(timeout=10)
    assert waiting.answer is not None
    assert waiting.answer[0] == 500
    assert waiting.answer[1]["reason"] == "paid_request_failed"
    assert replies.get("k") is None


def test_a_copy_waiting_on_a_refused_first_copy_is_judged_itself(
    registry: tuple[Flask, PaidReplies],
) -> None:
    """The first copy settled nothing (its payment was refused): the copy that joined it is
    then served (judged) itself, as if it had come first."""
    app, replies = registry
    waiting = Copy(app, replies, "k")
    with app.test_request_context("/paid"), replies.serving("k") as first:
        assert first.reply is None
        waiting.start()
        assert replies.wait_for_joins(1, timeout=10)
    waiting.join(timeout=10)
    assert waiting.served
    assert waiting.answer is None


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), "60", True, None])
def test_paid_timeout_is_validated(value: Any) -> None:
    """paid_timeout must be a positive number of seconds: anything else is refused when the
    agent is built, naming the parameter."""
    with pytest.raises(SDKConfigurationError) as caught:
        AutoAgent(Keypair(), journal_path=":memory:", paid_timeout=value)
    assert caught.value.parameter == "paid_timeout"


def test_paid_timeout_bounds_the_paid_read_only() -> None:
    """The paid sends read for paid_timeout; connecting keeps the caller's deadline."""
    session = requests.Session()
    prepared = requests.Request("GET", "http://127.0.0.1:9/").prepare()
    challenge = requests.Response()
    for given, connect in [(1.5, 1.5), ((0.5, 2.0), 0.5), (urllib3.Timeout(connect=0.7), 0.7)]:
        paid = PaidRequest(session, prepared, challenge, {"timeout": given}, paid_timeout=60)
        assert paid.send_kwargs["timeout"] == (connect, 60)
    assert AutoAgent(Keypair(), journal_path=":memory:").paid_timeout == 60
