"""Round-3 attacks on issue 10: raised budgets kept in the journal, the public low-level
payment helpers, errors that keep what the server said, paid tasks in the journal."""

from __future__ import annotations

import base64
import http.server
import json
import pickle
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from flask import Response, jsonify, request
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import MessageV0, to_bytes_versioned
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from human_rpc_sdk import (
    AutoAgent,
    ConnectionFailedError,
    HumanRPCError,
    HumanVerificationError,
    InvoiceValidationError,
    PaymentError,
    PaymentPolicyError,
    SDKConfigurationError,
    TransactionBuildError,
    encode_payment_header,
    get_latest_blockhash,
    sign_transaction,
)
from stub_gateway import Gateway, GatewayServer, Price, create_app, serve_in_thread

from .conftest import PaymentCapture, Shop

ROOT = Path(__file__).resolve().parent.parent
PRICE = "0.01"  # USDC, per request


@pytest.fixture
def agents() -> Iterator[list[AutoAgent]]:
    made: list[AutoAgent] = []
    yield made
    for agent in made:
        agent.close()


def funded(shop: Shop) -> Keypair:
    wallet = Keypair()
    shop.gateway.fund(wallet.pubkey(), {"SOL": Decimal("1"), "USDC": Decimal("1")})
    return wallet


def usdc(shop: Shop, wallet: Keypair) -> Decimal:
    return shop.gateway.balance(wallet.pubkey(), "USDC")


def rows(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as db:
        return list(db.execute("SELECT state, amount FROM payments ORDER BY id"))


# -- raised budgets -------------------------------------------------------------------------------


@pytest.mark.parametrize("edited", ["Infinity", "NaN", "-0.05", "lots", "1e999999999"])
def test_a_hand_edited_raise_stops_payments_instead_of_moving_the_ceiling(
    shop: Shop, tmp_path: Path, agents: list[AutoAgent], edited: str
) -> None:
    """budget_raises has no write counter: an edit by hand to Infinity voided the ceiling
    (every payment let through), a negative one lowered it, NaN or text raised a bare
    decimal.InvalidOperation. Now such a row stops payments with journal_unavailable, nothing
    moves, and the owner is told which row to delete."""
    path = tmp_path / "journal.sqlite3"
    url = shop.price_url("USDC", PRICE)
    wallet = funded(shop)
    agent = AutoAgent(wallet, rpc_url=shop.rpc_url, journal_path=path, budget={"USDC": "0.015"})
    agents.append(agent)
    assert agent.get(url).status_code == 200
    agent.raise_budget({"USDC": "0.001"})
    with sqlite3.connect(path) as db:
        db.execute("UPDATE budget_raises SET raised = ?", (edited,))
    before = usdc(shop, wallet)
    with pytest.raises(PaymentError, match="budget_raises") as caught:
        agent.get(url)
    assert caught.value.reason == "journal_unavailable"
    with pytest.raises(HumanRPCError, match="raise the budget again"):
        agent.budget  # noqa: B018
    assert usdc(shop, wallet) == before
    assert rows(path) == [("accepted", PRICE)]


def test_raises_from_two_processes_at_once_all_add_up(tmp_path: Path) -> None:
    """Two processes raise the same budget 25 times each, at the same time: every raise is
    counted (the read-modify-write runs under the journal's write lock)."""
    path = tmp_path / "journal.sqlite3"
    AutoAgent(Keypair(), journal_path=path, budget={"USDC": "1"}).close()
    code = (
        "import sys\n"
        "from solders.keypair import Keypair\n"
        "from human_rpc_sdk import AutoAgent\n"
        "agent = AutoAgent(Keypair(), journal_path=sys.argv[1], budget={'USDC': '1'})\n"
        "for _ in range(25):\n"
        "    agent.raise_budget({'USDC': '0.001'})\n"
        "agent.close()\n"
    )
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(path)], env=env, cwd=ROOT)
        for _ in range(2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    agent = AutoAgent(Keypair(), journal_path=path, budget={"USDC": "1"})
    assert agent.budget["USDC"].limit == Decimal("1.05")
    agent.close()


@pytest.mark.parametrize("amount", ["-1", "0", "NaN", "Infinity", float("nan"), True, "1e3"])
def test_a_raise_that_is_not_a_positive_number_is_refused(tmp_path: Path, amount: object) -> None:
    path = tmp_path / "journal.sqlite3"
    agent = AutoAgent(Keypair(), journal_path=path, budget={"USDC": "1", "SOL": None})
    with pytest.raises(SDKConfigurationError):
        agent.raise_budget({"USDC": amount})
    with pytest.raises(SDKConfigurationError, match="nothing to raise"):
        agent.raise_budget({"SOL": "1"})
    assert agent.budget["USDC"].limit == Decimal("1")
    with sqlite3.connect(path) as db:
        assert list(db.execute("SELECT * FROM budget_raises")) == []
    agent.close()


def test_a_raise_too_large_to_add_up_is_refused(tmp_path: Path) -> None:
    """raise_budget({"USDC": Decimal("1e999999999")}) raised a bare decimal.Overflow; a raise
    of 1e999999 was journaled, and the next one overflowed the same way."""
    path = tmp_path / "journal.sqlite3"
    agent = AutoAgent(Keypair(), journal_path=path, budget={"USDC": "1"})
    for huge in (Decimal("1e999999999"), Decimal("1e999999"), 10**21):
        with pytest.raises(SDKConfigurationError, match="must be below"):
            agent.raise_budget({"USDC": huge})
    assert agent.raise_budget({"USDC": 10**20})["USDC"].limit == 10**20 + 1
    assert agent.raise_budget({"USDC": "0.5"})["USDC"].limit == Decimal(10**20) + Decimal("1.5")
    agent.close()


# -- the public low-level helpers -----------------------------------------------------------------


def unsigned(payer: Keypair) -> VersionedTransaction:
    move = transfer(
        TransferParams(from_pubkey=payer.pubkey(), to_pubkey=Keypair().pubkey(), lamports=1)
    )
    message = MessageV0.try_compile(payer.pubkey(), [move], [], Hash.default())
    return VersionedTransaction.populate(message, [Keypair().sign_message(b"")])


@pytest.mark.parametrize(
    "given",
    ["keypair", None, 5, b"\x01" * 64, bytearray(b"x")],
    ids=["keypair", "none", "int", "bytes", "bytearray"],
)
def test_encode_payment_header_takes_only_a_transaction(given: object) -> None:
    """encode_payment_header took bytes() of anything: a Keypair passed by mistake became an
    X-PAYMENT header holding its 64-byte secret key, ready to send to a server; None raised a
    bare TypeError."""
    wallet = Keypair()
    value = wallet if given == "keypair" else given
    with pytest.raises(TransactionBuildError, match="VersionedTransaction") as caught:
        encode_payment_header(value, "devnet")  # type: ignore[arg-type]
    assert str(wallet) not in str(caught.value)
    header = encode_payment_header(sign_transaction(unsigned(wallet), wallet), "devnet")
    payload = json.loads(base64.b64decode(header))["payload"]["serializedTransaction"]
    assert bytes(wallet) not in base64.b64decode(payload)
    with pytest.raises(TransactionBuildError, match="network"):
        encode_payment_header(sign_transaction(unsigned(wallet), wallet), None)  # type: ignore[arg-type]


def test_sign_transaction_refuses_bad_input_with_sdk_errors() -> None:
    """sign_transaction raised bare AttributeErrors for a None/str transaction or signer, and
    compared a signer's str pubkey with Pubkeys ("not a required signer"). Now: SDK errors,
    any Signer form load_signer accepts, never the key in the message."""
    wallet = Keypair()
    tx = unsigned(wallet)
    for transaction in (None, "AAAA", b"tx"):
        with pytest.raises(TransactionBuildError, match="VersionedTransaction"):
            sign_transaction(transaction, wallet)  # type: ignore[arg-type]
    for signer in (None, str(wallet), bytes(wallet), object()):
        with pytest.raises(SDKConfigurationError) as caught:
            sign_transaction(tx, signer)  # type: ignore[arg-type]
        assert str(wallet) not in str(caught.value)

    class TextKeySigner:
        def pubkey(self) -> str:
            return str(wallet.pubkey())

        def sign_message(self, message: bytes) -> bytes:
            return bytes(wallet.sign_message(message))

    signed = sign_transaction(tx, TextKeySigner())  # type: ignore[arg-type]
    assert signed.signatures[0] == wallet.sign_message(to_bytes_versioned(signed.message))

    class BadBytes:
        def pubkey(self) -> str:
            return str(wallet.pubkey())

        def sign_message(self, message: bytes) -> bytes:
            return b"x"

    with pytest.raises(SDKConfigurationError, match="64 signature bytes"):
        sign_transaction(tx, BadBytes())  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", [-1, 0, float("nan"), "x", float("inf")])
def test_get_latest_blockhash_refuses_a_bad_timeout(timeout: object) -> None:
    """A bad timeout reached requests and raised a bare ValueError."""
    with pytest.raises(SDKConfigurationError, match="timeout"):
        get_latest_blockhash("http://127.0.0.1:9", timeout=timeout)  # type: ignore[arg-type]


# -- what the server said, and connections that fail ----------------------------------------------


class _Hostile402(http.server.BaseHTTPRequestHandler):
    """A 402 that is no invoice: a charset naming a bytes codec, 100 headers of 8 KiB, binary."""

    charset = "base64"

    def do_GET(self) -> None:
        body = b"\xff\xfe\x00 not an invoice \x00" * 400
        self.send_response(402)
        self.send_header("Content-Type", f"text/plain; charset={self.charset}")
        for n in range(90):
            self.send_header(f"X-Junk-{n}", "j" * 8000)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize("charset", ["base64", "rot13", "idna", "undefined", "zlib"])
def test_a_402_naming_a_hostile_charset_is_an_invoice_error_kept_bounded(
    tmp_path: Path, charset: str
) -> None:
    """A 402 whose Content-Type names a codec that is no text encoding (base64, rot13, zlib) or
    refuses errors="replace" (idna, undefined) made agent.get raise a bare AssertionError,
    TypeError or UnicodeError while keeping the answer on the error. Now it is an
    InvoiceValidationError whose response is bounded, pickles, and keeps no URL password."""
    handler = type("Handler", (_Hostile402,), {"charset": charset})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        path = tmp_path / "journal.sqlite3"
        agent = AutoAgent(Keypair(), rpc_url="http://127.0.0.1:9", journal_path=path)
        url = f"http://someone:hunter2@127.0.0.1:{server.server_address[1]}/item"
        with pytest.raises(InvoiceValidationError) as caught:
            agent.get(url)
        agent.close()
    finally:
        server.shutdown()
        server.server_close()
    said = caught.value.response
    assert said is not None
    assert said.status == 402
    assert isinstance(said.text, str)
    assert said.truncated
    assert len(said.headers) <= 64
    assert sum(len(k) + len(v) for k, v in said.headers.items()) < 200_000
    assert "hunter2" not in repr(said)
    assert "hunter2" not in str(said.url)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert copy.response == said
    assert rows(path) == []


def test_a_paid_request_whose_connections_all_drop_is_no_answer_not_nothing_paid(
    tmp_path: Path,
) -> None:
    """Every re-send of the paid request is dropped: the error is a PaymentError carrying the
    signature, never ConnectionFailedError ("nothing was paid"); every re-send carried the same
    payment; the money moved once and the journal has one row."""
    with serve_in_thread() as running:
        gateway = running.gateway
        wallet = Keypair()
        gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
        path = tmp_path / "journal.sqlite3"
        agent = AutoAgent(
            wallet, rpc_url=running.rpc_url, journal_path=path, sleep=lambda seconds: None
        )
        capture = PaymentCapture()
        agent.session.mount("http://", capture)
        gateway.faults.drop_after_payment(count=50)
        before = gateway.balance(wallet.pubkey())
        with pytest.raises(PaymentError) as caught:
            agent.get(f"{running.url}/api/v1/premium/sol")
        agent.close()
        spent = before - gateway.balance(wallet.pubkey())
    assert not isinstance(caught.value, ConnectionFailedError)
    assert not isinstance(caught.value, requests.ConnectionError)
    assert "Nothing was paid" not in str(caught.value)
    assert caught.value.signature
    assert len(capture.headers) >= 2
    assert len(set(capture.headers)) == 1
    assert Decimal("0.001") < spent < Decimal("0.0011")  # the price and one fee
    with sqlite3.connect(path) as db:
        assert [r[0] for r in db.execute("SELECT signature FROM payments")] == [
            caught.value.signature
        ]


# -- paid tasks -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def limiting() -> Iterator[GatewayServer]:
    """A task service that takes the payment, then answers 429 (its rate limit checked only
    after the paywall): the payment moved, no task was made."""
    app = create_app(Gateway())
    gateway: Gateway = app.extensions["stub_gateway"]

    @app.post("/limited/tasks")
    @gateway.require_payment(Price(Decimal("0.01"), "USDC"))
    def create() -> Response:
        response = jsonify({"error": {"code": "rate_limited", "message": "too many tasks"}})
        response.status_code = 429
        response.headers["Retry-After"] = "1"
        return response

    running = GatewayServer(app).start()
    yield running
    running.stop()


@pytest.mark.parametrize("reiterate", [False, True])
def test_a_429_after_the_payment_is_not_nothing_paid_and_not_paid_again(
    limiting: GatewayServer, tmp_path: Path, reiterate: bool
) -> None:
    """The task POST is paid, then answered 429. create() said "rate limiting ... Nothing was
    paid" with reason rate_limited, so the reiterator waited and resubmitted: a second payment
    for a second 429. Now the error names the payment, is not rate_limited, and nothing is
    paid again."""
    wallet = Keypair()
    limiting.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(1)})
    path = tmp_path / "journal.sqlite3"
    agent = AutoAgent(
        wallet,
        rpc_url=limiting.rpc_url,
        human_rpc_url=f"{limiting.url}/limited/tasks",
        journal_path=path,
        sleep=lambda seconds: None,
    )
    if reiterate:
        agent.enable_reiterator()
    before = limiting.gateway.balance(wallet.pubkey(), "USDC")
    with pytest.raises(HumanRPCError) as caught:
        agent.ask_human_rpc("Is 2 + 2 = 4?", answer="4", confidence=0.5, timeout=30)
    agent.close()
    assert before - limiting.gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.01")
    assert rows(path) == [("refused", "0.01")]  # landed, answered with no task
    assert type(caught.value) is HumanVerificationError
    assert caught.value.reason != "rate_limited"
    assert "Nothing was paid" not in str(caught.value)
    (signature,) = {
        row[0] for row in sqlite3.connect(path).execute("SELECT signature FROM payments")
    }
    assert signature in str(caught.value)


@pytest.fixture(scope="module")
def reissuing() -> Iterator[GatewayServer]:
    """A task service that hands every unpaid POST the same invoice (one reference) and makes
    a new task for every paid POST, a re-sent payment included; tasks never finish."""
    app = create_app(Gateway())
    gateway: Gateway = app.extensions["stub_gateway"]
    first: list[Response] = []
    made: list[str] = []

    @gateway.require_payment(Price(Decimal("0.01"), "USDC"))
    def paid() -> Response:
        return jsonify({"ok": True})

    @app.post("/reissue/tasks")
    def create() -> Response:
        if "X-PAYMENT" not in request.headers:
            if not first:
                first.append(paid())
            return first[0]
        answer = paid()
        if answer.status_code >= 400:
            return answer
        made.append(f"task-{len(made) + 1}")
        response = jsonify({"status": "pending", "task_id": made[-1]})
        response.status_code = 202
        return response

    @app.get("/reissue/tasks/<task_id>")
    def pending(task_id: str) -> Response:
        response = jsonify({"error": "busy"})
        response.status_code = 503
        return response

    running = GatewayServer(app).start()
    yield running
    running.stop()


def test_a_payment_sent_again_for_a_second_task_keeps_the_first_task(
    reissuing: GatewayServer, tmp_path: Path
) -> None:
    """The service reissues one invoice: the second ask re-sends the journaled payment (nothing
    more is paid) and gets a second task. The "last payment" of that ask is the first ask's
    row, and its task id was overwritten: the first task, paid and undecided, left
    pending_tasks(), so a restarted program would pay for it again. Now the row keeps its
    first task."""
    wallet = Keypair()
    reissuing.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(1)})
    path = tmp_path / "journal.sqlite3"
    agent = AutoAgent(
        wallet,
        rpc_url=reissuing.rpc_url,
        human_rpc_url=f"{reissuing.url}/reissue/tasks",
        journal_path=path,
    )
    before = reissuing.gateway.balance(wallet.pubkey(), "USDC")
    for _ in range(2):
        with pytest.raises(HumanVerificationError) as caught:
            agent.ask_human_rpc("Is 2 + 2 = 4?", answer="4", confidence=0.5, timeout=0.2)
        assert caught.value.reason == "timeout"
    assert before - reissuing.gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.01")
    assert [r.task_id for r in agent.pending_tasks()] == ["task-1"]
    agent.close()


@pytest.mark.parametrize("edited", ["NaN", "-1", "Infinity", "0"])
def test_a_hand_edited_total_is_recounted_before_the_budget_is_checked(
    shop: Shop, tmp_path: Path, agents: list[AutoAgent], edited: str
) -> None:
    """The totals are a cache of the payments: spent edited by hand (to -1, which gave the
    budget back, to Infinity or NaN, which raised a bare decimal error, or back to 0) is seen by
    the write counter and recounted from the payments; the budget still refuses, nothing moves."""
    path = tmp_path / "journal.sqlite3"
    url = shop.price_url("USDC", PRICE)
    wallet = funded(shop)
    agent = AutoAgent(wallet, rpc_url=shop.rpc_url, journal_path=path, budget={"USDC": "0.015"})
    agents.append(agent)
    assert agent.get(url).status_code == 200
    with sqlite3.connect(path) as db:
        db.execute("UPDATE totals SET spent = ? WHERE currency_key = 'USDC'", (edited,))
    before = usdc(shop, wallet)
    with pytest.raises(PaymentPolicyError) as refused:
        agent.get(url)  # recounted: 0.01 spent, 0.01 more is over 0.015
    assert refused.value.rule == "budget"
    assert refused.value.details["spent"] == Decimal(PRICE)
    assert usdc(shop, wallet) == before
    assert rows(path) == [("accepted", PRICE)]
