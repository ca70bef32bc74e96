"""Errors keep what the server said: a 402 that is no invoice, an offer for another chain,
connection failures that are still requests' own, keys that say what is wrong with them.

The servers are real: a stub gateway on loopback (its ledger, its JSON-RPC) with small Flask
views answering as servers in the wild do. Every refusal is checked on the ledger: nothing
signed, nothing paid, no journal row.
"""

from __future__ import annotations

import base64
import json
import logging
import pickle
import socket
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import base58
import pytest
import requests
from flask import Response, jsonify, request
from solders.keypair import Keypair

from human_rpc_sdk import (
    AutoAgent,
    HumanRPCError,
    Invoice,
    InvoiceValidationError,
    NetworkMismatchError,
    PaymentPolicyError,
    SDKConfigurationError,
    load_signer,
)
from human_rpc_sdk.exceptions import (
    ConnectionFailedError,
    ConnectTimeoutError,
    ProxyConnectionError,
    ServerResponse,
    SSLConnectionError,
)
from stub_gateway import Gateway, GatewayServer, Price, create_app, require_x402

from .conftest import CountingSigner

EVM_USDC = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"  # USDC on Base Sepolia
EVM_PAYEE = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
HTML_PAGE = (
    "<!doctype html><html><head><title>Payment Required</title>"
    "<style>body { color: red }</style><script>track('402')</script></head>"
    "<body><h1>Subscribe to read this article</h1><p>Plans from $5 &amp; up.</p></body></html>"
)
QUOTA = {"error": "quota_exceeded", "message": "Monthly API quota exceeded; upgrade your plan"}


def _evm_offer_v1(url: str) -> dict[str, Any]:
    """An offer as x402's reference servers send it on Base Sepolia (x402 v1)."""
    return {
        "scheme": "exact",
        "network": "base-sepolia",
        "maxAmountRequired": "10000",
        "resource": url,
        "description": "Access to weather data",
        "mimeType": "application/json",
        "payTo": EVM_PAYEE,
        "maxTimeoutSeconds": 60,
        "asset": EVM_USDC,
        "extra": {"name": "USDC", "version": "2"},
    }


def _site() -> GatewayServer:
    app = create_app(Gateway())
    gateway: Gateway = app.extensions["stub_gateway"]

    @app.get("/html-402")
    def html_402() -> Response:
        return Response(HTML_PAGE, status=402, content_type="text/html; charset=utf-8")

    @app.get("/quota-402")
    def quota_402() -> Response:
        response = jsonify(QUOTA)
        response.status_code = 402
        response.headers["Retry-After"] = "3600"
        return response

    @app.get("/long-402")
    def long_402() -> Response:
        # 2047 ASCII bytes, then a two-byte character across the 2 KiB mark, then more.
        body = "a" * 2047 + "é" + "b" * 5000
        return Response(body.encode(), status=402, content_type="text/plain; charset=utf-8")

    @app.get("/x402-v1-base")
    def x402_v1_base() -> Response:
        body = {"x402Version": 1, "error": "X-PAYMENT header is required"}
        response = jsonify({**body, "accepts": [_evm_offer_v1(request.url)]})
        response.status_code = 402
        return response

    @app.get("/x402-v2-base")
    def x402_v2_base() -> Response:
        offer = {
            "scheme": "exact",
            "network": "eip155:84532",
            "amount": "10000",
            "asset": EVM_USDC,
            "payTo": EVM_PAYEE,
            "maxTimeoutSeconds": 60,
            "extra": {"name": "USDC", "version": "2"},
        }
        document = {
            "x402Version": 2,
            "error": "Payment required",
            "resource": {"url": request.url, "description": "weather", "mimeType": "text/plain"},
            "accepts": [offer],
        }
        header = base64.b64encode(json.dumps(document).encode()).decode()
        return Response(b"{}", status=402, headers={"PAYMENT-REQUIRED": header})

    @require_x402(gateway, Price(Decimal("0.01"), "USDC"), version=1)
    def solana_content() -> Response:
        return jsonify({"weather": "sun"})

    @app.get("/x402-both")
    def x402_both() -> Any:
        """Base Sepolia first, then Solana (the gateway's own paywall): Solana gets paid."""
        if "X-PAYMENT" in request.headers:
            return solana_content()
        solana = solana_content()
        document = json.loads(solana.get_data())
        document["accepts"].insert(0, _evm_offer_v1(request.url))
        solana.set_data(json.dumps(document))
        return solana

    @app.get("/paid-then-gone")
    @gateway.require_payment(Price(Decimal("0.001"), "SOL"))
    def paid_then_gone() -> Response:
        response = jsonify({"error": "article_deleted", "message": "this article was removed"})
        response.status_code = 404
        return response

    return GatewayServer(app).start()


@pytest.fixture(scope="module")
def site() -> Iterator[GatewayServer]:
    """A gateway with views answering 402s the way other servers do."""
    running = _site()
    yield running
    running.stop()


class Payer:
    """A funded wallet whose signatures are counted, its agent, and the ledger before."""

    def __init__(self, site: GatewayServer, journal: Path) -> None:
        self.gateway = site.gateway
        self.wallet = Keypair()
        self.gateway.fund(self.wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(1)})
        self.signer = CountingSigner(self.wallet)
        self.agent = AutoAgent(signer=self.signer, rpc_url=site.rpc_url, journal_path=journal)
        self.before = self.balances()

    def balances(self) -> tuple[Decimal, Decimal, Decimal]:
        owner, treasury = self.wallet.pubkey(), self.gateway.treasury
        return (
            self.gateway.balance(owner),
            self.gateway.balance(owner, "USDC"),
            self.gateway.balance(treasury, "USDC"),
        )

    def assert_nothing_paid(self) -> None:
        assert self.signer.count == 0
        assert self.balances() == self.before
        assert self.agent.payments == []
        assert self.agent.pending_payments() == []


@pytest.fixture
def payer(site: GatewayServer, tmp_path: Path) -> Iterator[Payer]:
    made = Payer(site, tmp_path / "journal.sqlite")
    yield made
    made.agent.close()


# -- a 402 that is no invoice ---------------------------------------------------------------------


def test_an_html_402_keeps_the_page(site: GatewayServer, payer: Payer) -> None:
    """An HTML 402: InvoiceValidationError with the page on .response, its text in the message."""
    with pytest.raises(InvoiceValidationError) as caught:
        payer.agent.get(f"{site.url}/html-402")
    error = caught.value
    assert error.reason == "no_invoice"
    response = error.response
    assert isinstance(response, ServerResponse)
    assert (response.status, response.url) == (402, f"{site.url}/html-402")
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.text == HTML_PAGE
    assert not response.truncated
    message = str(error)
    assert "HTTP 402" in message
    assert "text/html" in message
    assert "Subscribe to read this article Plans from $5 & up." in message
    assert "track(" not in message  # scripts and styles are not what the server said
    assert "color: red" not in message
    payer.assert_nothing_paid()


def test_a_quota_json_402_keeps_what_the_server_said(site: GatewayServer, payer: Payer) -> None:
    """A JSON "quota exceeded" 402: the error carries the JSON and its headers, and says it."""
    with pytest.raises(InvoiceValidationError) as caught:
        payer.agent.get(f"{site.url}/quota-402")
    error = caught.value
    assert error.response is not None
    assert json.loads(error.response.text) == QUOTA
    assert error.response.headers["Retry-After"] == "3600"
    assert error.invoice == QUOTA
    assert "HTTP 402" in str(error)
    assert "Monthly API quota exceeded" in str(error)
    payer.assert_nothing_paid()


def test_a_long_402_body_is_kept_in_part(site: GatewayServer, payer: Payer) -> None:
    """Only the first 2 KiB are kept; a character cut at the mark is dropped, not mangled."""
    with pytest.raises(InvoiceValidationError) as caught:
        payer.agent.get(f"{site.url}/long-402")
    response = caught.value.response
    assert response is not None
    assert response.truncated
    assert response.text == "a" * 2047
    assert str(caught.value).count("a") < 200  # the message holds an excerpt only
    payer.assert_nothing_paid()


def test_the_response_survives_pickle(site: GatewayServer, payer: Payer) -> None:
    """An error with the server's answer crosses a process boundary whole."""
    with pytest.raises(InvoiceValidationError) as caught:
        payer.agent.get(f"{site.url}/quota-402")
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is InvoiceValidationError
    assert vars(copy) == vars(caught.value)
    assert copy.response is not None
    assert copy.response.headers["retry-after"] == "3600"


def test_server_response_reads_a_charset_and_replaces_bad_bytes() -> None:
    """The body is decoded with the answer's charset; undecodable bytes become U+FFFD."""
    latin = ServerResponse.of(
        402, {"Content-Type": "text/plain; charset=latin-1"}, b"\xe9t\xe9", None
    )
    assert latin.text == "été"
    broken = ServerResponse.of(402, {}, b"ok \xff\xfe done", None)
    assert broken.text == "ok \ufffd\ufffd done"
    unknown = ServerResponse.of(402, {"Content-Type": "text/plain; charset=nope"}, b"hi", None)
    assert unknown.text == "hi"


# -- an x402 offer for another chain ------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "network"), [("/x402-v1-base", "base-sepolia"), ("/x402-v2-base", "eip155:84532")]
)
def test_an_offer_for_another_chain_is_refused_as_such(
    site: GatewayServer, payer: Payer, path: str, network: str
) -> None:
    """Base Sepolia offers (v1 and v2) are another network, not malformed; nothing is paid."""
    with pytest.raises(NetworkMismatchError) as caught:
        payer.agent.get(f"{site.url}{path}")
    error = caught.value
    assert isinstance(error, InvoiceValidationError)
    assert isinstance(error, PaymentPolicyError)
    assert error.rule == "network"
    assert error.reason == "wrong_network"
    refusal = error.details["refusals"][0]
    assert f"for network {network}, this agent pays on solana devnet" in refusal
    assert "malformed" not in str(error)
    assert error.response is not None
    assert error.response.status == 402
    assert payer.agent.rpc_stats.calls == 0  # refused before asking the chain anything
    payer.assert_nothing_paid()


def test_among_offers_for_two_chains_the_solana_one_is_paid(
    site: GatewayServer, payer: Payer
) -> None:
    """A server offering Base Sepolia first and Solana second is paid on Solana, once."""
    response = payer.agent.get(f"{site.url}/x402-both")
    assert response.json() == {"weather": "sun"}
    owner_sol, owner_usdc, treasury_usdc = payer.balances()
    assert owner_usdc == payer.before[1] - Decimal("0.01")
    assert treasury_usdc == payer.before[2] + Decimal("0.01")
    assert owner_sol == payer.before[0]  # the facilitator paid the fee
    (receipt,) = payer.agent.payments
    assert receipt.accepted


def test_a_paid_request_answered_404_returns_that_404(site: GatewayServer, payer: Payer) -> None:
    """After paying, a 4xx answer is what the caller gets, not the 402 it paid."""
    answer = payer.agent.get(f"{site.url}/paid-then-gone")
    assert answer.status_code == 404
    assert answer.json()["error"] == "article_deleted"
    (receipt,) = payer.agent.payments
    assert receipt.http_status == 404
    assert payer.balances()[0] == payer.before[0] - Decimal("0.001") - Decimal("0.000005")


def test_invoice_calls_an_x402_body_what_it_is() -> None:
    """Invoice(x402 body).validate() says it is an x402 challenge that AutoAgent pays."""
    body = {"x402Version": 1, "accepts": [_evm_offer_v1("http://x")]}
    with pytest.raises(InvoiceValidationError) as caught:
        Invoice(body).validate()
    message = str(caught.value)
    assert "does not pay yet" not in message
    assert "x402 payment challenge" in message
    assert "AutoAgent pays x402 challenges" in message
    assert caught.value.reason == "x402_challenge"


# -- connection errors of the unpaid request -------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_closed_port_is_a_connection_failed_error_and_a_requests_one(payer: Payer) -> None:
    """Connection refused: ConnectionFailedError, which `except requests.ConnectionError` and
    `except HumanRPCError` both catch; the requests error is its cause."""
    url = f"http://127.0.0.1:{_closed_port()}/premium"
    with pytest.raises(requests.ConnectionError) as caught:
        payer.agent.get(url, timeout=5)
    error = caught.value
    assert type(error) is ConnectionFailedError
    assert isinstance(error, HumanRPCError)
    assert isinstance(error, requests.RequestException)
    assert type(error.__cause__) is requests.ConnectionError
    assert error.url == url
    assert error.request is not None
    assert error.request.url == url
    assert error.reason == "connection_failed"
    assert "Connection refused" in str(error)
    assert "Nothing was paid" in str(error)
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.url) == (ConnectionFailedError, str(error), url)
    payer.assert_nothing_paid()


def test_a_connect_timeout_is_still_a_requests_timeout(payer: Payer) -> None:
    """A listener whose backlog is full never accepts: ConnectTimeoutError, a requests.Timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        queued = []
        for _ in range(3):  # fill the accept queue; later SYNs are dropped
            client = socket.socket()
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", port))
            queued.append(client)
        try:
            with pytest.raises(requests.Timeout) as caught:
                payer.agent.get(f"http://127.0.0.1:{port}/", timeout=(0.3, 1))
        finally:
            for client in queued:
                client.close()
    assert type(caught.value) is ConnectTimeoutError
    assert isinstance(caught.value, requests.ConnectTimeout)
    assert isinstance(caught.value, ConnectionFailedError)
    assert "timed out" in str(caught.value)
    payer.assert_nothing_paid()


def test_tls_to_a_plain_http_server_is_still_an_ssl_error(payer: Payer) -> None:
    """https:// to a server that answers in plain HTTP: SSLConnectionError, a requests SSLError."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def answer_in_plain_text() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.recv(4096)  # the TLS ClientHello
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

        thread = threading.Thread(target=answer_in_plain_text, daemon=True)
        thread.start()
        with pytest.raises(requests.exceptions.SSLError) as caught:
            payer.agent.get(f"https://127.0.0.1:{port}/premium", timeout=5)
        thread.join(5)
    assert type(caught.value) is SSLConnectionError
    assert isinstance(caught.value, ConnectionFailedError)
    payer.assert_nothing_paid()


def test_an_unreachable_proxy_is_still_a_proxy_error(site: GatewayServer, payer: Payer) -> None:
    """A proxy on a closed port: ProxyConnectionError, a requests ProxyError."""
    proxy = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(requests.exceptions.ProxyError) as caught:
        payer.agent.get(f"{site.url}/html-402", proxies={"http": proxy}, timeout=5)
    assert type(caught.value) is ProxyConnectionError
    payer.assert_nothing_paid()


# -- keys ------------------------------------------------------------------------------------------


KEY = Keypair()
OTHER = Keypair()
SWAPPED = bytes(KEY)[:32] + bytes(OTHER.pubkey())  # a secret with another key's public half


def _leaks(error: BaseException) -> bool:
    text = str(error) + repr(error.args) + repr(vars(error))
    return any(
        secret in text
        for secret in (str(KEY), json.dumps(list(bytes(KEY))), str(list(bytes(KEY))[:8])[1:-1])
    )


def test_a_keygen_array_given_as_bytes_is_a_key(tmp_path: Path) -> None:
    """A solana-keygen file's bytes (read_bytes()) load, as text and list forms do."""
    path = tmp_path / "id.json"
    path.write_text(json.dumps(list(bytes(KEY))))
    assert load_signer(path.read_bytes()).pubkey() == KEY.pubkey()
    assert load_signer(bytearray(path.read_bytes())).pubkey() == KEY.pubkey()
    assert load_signer(str(KEY).encode()).pubkey() == KEY.pubkey()
    assert load_signer(bytes(KEY)).pubkey() == KEY.pubkey()


@pytest.mark.parametrize(
    "value",
    [
        SWAPPED,
        list(SWAPPED),
        json.dumps(list(SWAPPED)),
        json.dumps(list(SWAPPED)).encode(),
        base58.b58encode(SWAPPED).decode(),
    ],
    ids=["bytes", "list", "json", "json-bytes", "base58"],
)
def test_mismatched_halves_are_named(value: object) -> None:
    """A keypair whose public half is another key's says its halves do not match."""
    with pytest.raises(SDKConfigurationError) as caught:
        load_signer(value)
    assert "two halves do not match" in str(caught.value)
    assert caught.value.reason == "bad_key"


@pytest.mark.parametrize(
    "quoted",
    [f'"{KEY}"', f"'{KEY}'", f'"{json.dumps(list(bytes(KEY)))}"'],
    ids=["double", "single", "json"],
)
def test_a_quoted_key_says_the_quotes_are_the_problem(quoted: str) -> None:
    """A value quoted twice (a .env file) is refused for its quotes, never echoing the key."""
    with pytest.raises(SDKConfigurationError) as caught:
        load_signer(environ={"SOLANA_PRIVATE_KEY": quoted})
    assert "quote" in str(caught.value)
    assert caught.value.parameter == "SOLANA_PRIVATE_KEY"
    assert not _leaks(caught.value)


def test_key_errors_never_echo_the_key() -> None:
    """None of the new key errors holds the key in its message, args or fields."""
    for value in (SWAPPED, json.dumps(list(SWAPPED)), f'"{KEY}"', str(KEY).encode()[:-3]):
        with pytest.raises(SDKConfigurationError) as caught:
            load_signer(value)
        assert not _leaks(caught.value)
        assert caught.value.__context__ is None


# -- messages ------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["argument", "environment"])
def test_a_bad_human_rpc_url_shows_a_tasks_endpoint(
    where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """human_rpc_url's error gives a HumanRPC tasks URL as its example, not a Solana RPC one."""
    options: dict[str, Any] = {}
    if where == "argument":
        options["human_rpc_url"] = "humanrpc.example/api/v1/tasks"
    else:
        monkeypatch.setenv("HUMAN_RPC_URL", "humanrpc.example/api/v1/tasks")
    with pytest.raises(SDKConfigurationError) as caught:
        AutoAgent(Keypair(), journal_path=":memory:", **options)
    assert "solana" not in str(caught.value).lower()
    assert "/api/v1/tasks" in str(caught.value)


def test_the_redirect_warning_shows_urls(
    site: GatewayServer, server: GatewayServer, payer: Payer, caplog: pytest.LogCaptureFixture
) -> None:
    """A paid request redirected to another origin is logged with both URLs, not tuples."""
    paid = f"{site.url}/api/v1/premium/sol"
    elsewhere = f"{server.url}/collect"
    site.gateway.faults.redirect_payment(elsewhere)
    try:
        with caplog.at_level(logging.WARNING, logger="human_rpc_sdk"):
            answer = payer.agent.get(paid)
    finally:
        site.gateway.faults.clear()
    assert answer.status_code == 404  # what the other origin said, not the 402 paid
    (warning,) = [r.getMessage() for r in caplog.records if "redirected" in r.getMessage()]
    assert f"the paid request to {paid} was redirected to {elsewhere}" in warning
    assert "('http'" not in warning
    assert payer.balances() == payer.before  # the payment never reached the other origin
