"""x402 payment ids (the ``payment-identifier`` extension): one id per purchase, journaled
before the payment leaves, carried by every re-send (in this process or after a crash), and the
gateway's side of the spec (cached answer for the same id and payload, 409, 400).

Real parts throughout: the stub gateway over loopback, its LiteSVM ledger, journals on disk,
and for the crash a real process killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from solders.keypair import Keypair

from human_rpc_sdk import (
    AsyncAutoAgent,
    AutoAgent,
    InvoiceValidationError,
    PaymentError,
    PendingPaymentsWarning,
)
from human_rpc_sdk._headers import b64json, unb64json
from human_rpc_sdk._x402 import (
    PAYMENT_IDENTIFIER,
    is_payment_id,
    new_payment_id,
    read_payment_required,
)
from stub_gateway import Gateway, GatewayServer, serve_in_thread
from stub_gateway.payments import Refusal
from stub_gateway.paywall import (
    ID_CONFLICT,
    ID_FORMAT,
    ID_REQUIRED,
    PAYMENT_ID_SCHEMA,
    payment_id_of,
)

from .conftest import FakeClock
from .paid_proxy import PaidProxy, paid_proxy
from .test_errors import json_values
from .test_gateway_workers import Running, usdc_balance, x402_payment
from .test_gateway_workers import funded as workers_funded
from .test_replacement_proof import gateway_app, serve

ROOT = Path(__file__).resolve().parent.parent
PRICE = Decimal("0.01")


def funded(gateway: Gateway) -> Keypair:
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(1)})
    return wallet


def payload_of(header: str) -> dict[str, Any]:
    return unb64json(header, "PAYMENT-SIGNATURE")


def id_in(header: str) -> str:
    payment_id: str = payload_of(header)["extensions"][PAYMENT_IDENTIFIER]["info"]["id"]
    return payment_id


@pytest.fixture
def proxy(server: GatewayServer) -> Iterator[PaidProxy]:
    with paid_proxy(server.url) as running:
        yield running


@pytest.fixture(scope="module")
def strict() -> Iterator[GatewayServer]:
    """A gateway whose x402 v2 routes require a payment id (``--payment-id-required``)."""
    running = serve_in_thread(payment_id_required=True)
    try:
        yield running
    finally:
        running.stop()


def challenge_of(url: str) -> dict[str, Any]:
    answer = requests.get(url, timeout=10)
    assert answer.status_code == 402
    return unb64json(answer.headers["PAYMENT-REQUIRED"], "PAYMENT-REQUIRED")


# -- the gateway's declaration -------------------------------------------------------------


def test_the_gateway_declares_payment_ids_optional_by_default(server: GatewayServer) -> None:
    """A v2 402 declares the extension as the reference does: not required, with its schema."""
    declared = challenge_of(f"{server.url}/x402/v2/premium")["extensions"][PAYMENT_IDENTIFIER]
    assert declared == {"info": {"required": False}, "schema": PAYMENT_ID_SCHEMA}


def test_the_flag_makes_payment_ids_required(strict: GatewayServer) -> None:
    """With payment_id_required, the declaration says required."""
    declared = challenge_of(f"{strict.url}/x402/v2/premium")["extensions"][PAYMENT_IDENTIFIER]
    assert declared["info"] == {"required": True}


# -- the client: one id, journaled, on every send ------------------------------------------


def test_the_agent_sends_an_id_and_journals_it_with_the_payment(
    server: GatewayServer, gateway: Gateway, proxy: PaidProxy, tmp_path: Path
) -> None:
    """The payment carries a spec-format id, journaled in the same row as the signed payment."""
    wallet = funded(gateway)
    with AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=tmp_path / "j.db") as agent:
        assert agent.get(f"{proxy.url}/x402/v2/premium").status_code == 200
        (entry,) = agent._journal.entries()
    (sent,) = proxy.payments
    assert is_payment_id(entry.payment_id)
    assert str(entry.payment_id).startswith("pay_")
    assert id_in(sent) == entry.payment_id
    assert entry.headers == {"PAYMENT-SIGNATURE": sent}
    assert payload_of(sent)["extensions"][PAYMENT_IDENTIFIER]["schema"] == PAYMENT_ID_SCHEMA
    assert entry.state == "accepted"
    assert gateway.balance(wallet.pubkey(), "USDC") == 1 - PRICE


def test_each_purchase_gets_its_own_id(
    server: GatewayServer, gateway: Gateway, proxy: PaidProxy, tmp_path: Path
) -> None:
    """Two purchases of one URL are two payments with two ids (an id is per purchase)."""
    wallet = funded(gateway)
    with AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=tmp_path / "j.db") as agent:
        for _ in range(2):
            assert agent.get(f"{proxy.url}/x402/v2/premium").status_code == 200
    first, second = proxy.payments
    assert id_in(first) != id_in(second)
    assert gateway.balance(wallet.pubkey(), "USDC") == 1 - 2 * PRICE


def test_a_dropped_answer_is_resent_with_the_same_id_and_served_once(
    server: GatewayServer, gateway: Gateway, proxy: PaidProxy, tmp_path: Path
) -> None:
    """The first paid answer is lost: the same payment and id go again; one settlement."""
    wallet = funded(gateway)
    treasury = gateway.balance(gateway.treasury, "USDC")
    proxy.drop = 1
    with AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=tmp_path / "j.db") as agent:
        answer = agent.get(f"{proxy.url}/x402/v2/premium")
        (entry,) = agent._journal.entries()
    assert answer.status_code == 200
    first, second = proxy.payments
    assert first == second
    assert id_in(first) == entry.payment_id
    assert entry.state == "accepted"
    assert gateway.balance(wallet.pubkey(), "USDC") == 1 - PRICE
    assert gateway.balance(gateway.treasury, "USDC") - treasury == PRICE


def test_a_payment_with_no_answer_is_resumed_by_the_next_request(
    server: GatewayServer, gateway: Gateway, proxy: PaidProxy, tmp_path: Path
) -> None:
    """Every send unanswered: no_answer_after_payment; the same request later re-sends that
    payment with its id (not a new one), and the gateway's cached answer serves it."""
    wallet = funded(gateway)
    proxy.drop = 4
    url = f"{proxy.url}/x402/v2/premium"
    with AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=tmp_path / "j.db") as agent:
        with pytest.raises(PaymentError) as raised:
            agent.get(url)
        assert raised.value.reason == "no_answer_after_payment"
        (waiting,) = agent._journal.entries()
        assert waiting.state == "submitted"
        answer = agent.get(url)
        (entry,) = agent._journal.entries()
    assert answer.status_code == 200
    assert len(set(proxy.payments)) == 1
    assert len(proxy.payments) == 5
    assert entry.id == waiting.id
    assert entry.state == "accepted"
    assert entry.payment_id == waiting.payment_id == id_in(proxy.payments[0])
    assert gateway.balance(wallet.pubkey(), "USDC") == 1 - PRICE


def test_another_request_is_not_served_by_a_resumed_payment(
    server: GatewayServer, gateway: Gateway, proxy: PaidProxy, tmp_path: Path
) -> None:
    """A payment is resumed only by the same request: another URL (here another query) to
    the same offer is a purchase of its own, with an id of its own."""
    wallet = funded(gateway)
    proxy.drop = 8
    with AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=tmp_path / "j.db") as agent:
        for url in (f"{proxy.url}/x402/v2/premium", f"{proxy.url}/x402/v2/premium?page=2"):
            with pytest.raises(PaymentError):
                agent.get(url)
        states = [entry.state for entry in agent._journal.entries()]
    assert states == ["submitted", "submitted"]
    assert len({id_in(sent) for sent in proxy.payments}) == 2
    assert gateway.balance(wallet.pubkey(), "USDC") == 1 - 2 * PRICE


# -- a crash between sending and the answer ------------------------------------------------

_CRASHING = """
import json, sys
from solders.keypair import Keypair
from human_rpc_sdk import AutoAgent
args = json.loads(sys.argv[1])
agent = AutoAgent(Keypair.from_base58_string(args["secret"]), rpc_url=args["rpc_url"],
                  journal_path=args["journal"])
agent.get(args["url"])
"""


def test_a_payment_sent_by_a_killed_process_is_resent_with_its_id_by_a_new_one(
    server: GatewayServer, gateway: Gateway, proxy: PaidProxy, tmp_path: Path
) -> None:
    """kill -9 after the payment left and before its answer came; a new process's request to
    the same URL re-sends the journaled payment with its id; the money moved once."""
    wallet = funded(gateway)
    journal = tmp_path / "j.db"
    url = f"{proxy.url}/x402/v2/premium"
    proxy.hold = True
    arguments = {"secret": str(wallet), "rpc_url": server.rpc_url, "journal": str(journal)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CRASHING, json.dumps({**arguments, "url": url})],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proxy.held.wait(120), "the paid request never reached the proxy"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)  # reaped: its pid is gone
    proxy.hold = False
    proxy.release.set()
    assert gateway.balance(wallet.pubkey(), "USDC") == 1 - PRICE  # the server settled it
    with pytest.warns(PendingPaymentsWarning):
        agent = AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=journal)
    with agent:
        (before,) = agent._journal.entries()
        assert before.state == "signed"
        assert before.pid == child.pid
        answer = agent.get(url)
        (after,) = agent._journal.entries()
    assert answer.status_code == 200
    assert answer.json()["content"] == "premium x402 v2 content, unlocked"
    first, second = proxy.payments
    assert first == second
    assert id_in(first) == before.payment_id == after.payment_id
    assert after.id == before.id
    assert after.state == "accepted"
    assert gateway.balance(wallet.pubkey(), "USDC") == 1 - PRICE


def test_a_recovered_payment_whose_answer_never_came_is_still_resumed(
    server: GatewayServer, gateway: Gateway, proxy: PaidProxy, tmp_path: Path
) -> None:
    """recover_payments() books an unanswered payment as landed; the same request then gets
    its answer by re-sending it (the answer is owed), and pays nothing more."""
    wallet = funded(gateway)
    proxy.drop = 4
    url = f"{proxy.url}/x402/v2/premium"
    with AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=tmp_path / "j.db") as agent:
        with pytest.raises(PaymentError):
            agent.get(url)
        agent.recover_payments()
        (booked,) = agent._journal.entries()
        assert (booked.state, booked.receipt.landed, booked.receipt.http_status) == (
            "accepted",
            True,
            None,
        )
        assert agent.get(url).status_code == 200
        (entry,) = agent._journal.entries()
    assert (entry.state, entry.receipt.http_status, entry.receipt.landed) == ("accepted", 200, True)
    assert len(set(proxy.payments)) == 1
    assert gateway.balance(wallet.pubkey(), "USDC") == 1 - PRICE


def test_a_resumed_payment_that_again_gets_no_answer_stays_recoverable(
    server: GatewayServer, gateway: Gateway, proxy: PaidProxy, tmp_path: Path
) -> None:
    """Resuming a recovered payment whose answer is lost again leaves it open (submitted,
    landing unknown) for the next recovery: never stuck pending, never paid again."""
    wallet = funded(gateway)
    proxy.drop = 8
    url = f"{proxy.url}/x402/v2/premium"
    with AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=tmp_path / "j.db") as agent:
        with pytest.raises(PaymentError):
            agent.get(url)
        agent.recover_payments()
        with pytest.raises(PaymentError) as raised:
            agent.get(url)
        assert raised.value.reason == "no_answer_after_payment"
        (reopened,) = agent._journal.entries()
        assert (reopened.state, reopened.receipt.landed) == ("submitted", None)
        (booked,) = agent.recover_payments()
        assert (booked.state, booked.landed) == ("accepted", True)
        assert agent.pending_payments() == []
    assert len(set(proxy.payments)) == 1
    assert gateway.balance(wallet.pubkey(), "USDC") == 1 - PRICE


# -- the gateway: same id, other payload; required; invalid ----------------------------------


def test_the_same_id_with_another_payload_is_409_and_moves_nothing(
    server: GatewayServer, gateway: Gateway, proxy: PaidProxy, tmp_path: Path
) -> None:
    """A second payload under a used id gets 409 in the reference example's shape."""
    wallet = funded(gateway)
    with AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=tmp_path / "j.db") as agent:
        assert agent.get(f"{proxy.url}/x402/v2/premium").status_code == 200
    (sent,) = proxy.payments
    other = payload_of(sent)
    other["resource"] = {**other["resource"], "description": "another payload"}
    before = gateway.balance(wallet.pubkey(), "USDC")
    answer = requests.get(
        f"{server.url}/x402/v2/premium", headers={"PAYMENT-SIGNATURE": b64json(other)}, timeout=10
    )
    assert answer.status_code == 409
    assert answer.json() == {"error": ID_CONFLICT, "paymentId": id_in(sent)}
    assert gateway.balance(wallet.pubkey(), "USDC") == before


def test_the_same_id_and_payload_get_the_cached_answer(
    server: GatewayServer, gateway: Gateway, proxy: PaidProxy, tmp_path: Path
) -> None:
    """The identical payload again (another body even) gets the first answer, settled once."""
    wallet = funded(gateway)
    with AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=tmp_path / "j.db") as agent:
        first = agent.get(f"{proxy.url}/x402/v2/premium")
    (sent,) = proxy.payments
    again = requests.get(
        f"{server.url}/x402/v2/premium?again=1", headers={"PAYMENT-SIGNATURE": sent}, timeout=10
    )
    assert again.status_code == 200
    assert again.content == first.content
    assert again.headers["PAYMENT-RESPONSE"] == first.headers["PAYMENT-RESPONSE"]
    assert gateway.balance(wallet.pubkey(), "USDC") == 1 - PRICE


def test_a_required_id_that_is_missing_is_400(strict: GatewayServer) -> None:
    """Required and absent: 400 with the reference's message; nothing settles."""
    gateway = strict.gateway
    wallet = funded(gateway)
    with paid_proxy(strict.url) as proxy:
        with AutoAgent(wallet, rpc_url=strict.rpc_url, journal_path=":memory:") as agent:
            assert agent.get(f"{proxy.url}/x402/v2/premium").status_code == 200
        (sent,) = proxy.payments
    assert gateway.balance(wallet.pubkey(), "USDC") == 1 - PRICE
    bare = payload_of(sent)
    del bare["extensions"]
    answer = requests.get(
        f"{strict.url}/x402/v2/premium", headers={"PAYMENT-SIGNATURE": b64json(bare)}, timeout=10
    )
    assert (answer.status_code, answer.json()) == (400, {"error": [ID_REQUIRED]})


@pytest.mark.parametrize("bad", ["short", "pay_" + "x" * 130, "pay_0123456789abcdef!"])
def test_an_invalid_id_is_400(server: GatewayServer, bad: str) -> None:
    """An id outside the spec's format is refused before anything is verified."""
    document = challenge_of(f"{server.url}/x402/v2/premium")
    payload = {
        "x402Version": 2,
        "accepted": document["accepts"][0],
        "resource": document["resource"],
        "payload": {"transaction": "AA=="},
        "extensions": {PAYMENT_IDENTIFIER: {"info": {"required": False, "id": bad}}},
    }
    answer = requests.get(
        f"{server.url}/x402/v2/premium", headers={"PAYMENT-SIGNATURE": b64json(payload)}, timeout=10
    )
    assert (answer.status_code, answer.json()) == (400, {"error": [ID_FORMAT]})


# -- hostile servers -----------------------------------------------------------------------


class Hostile(ThreadingHTTPServer):
    """Answers 402 with ``challenge`` (a v2 document) and every paid request with ``paid``."""

    daemon_threads = True

    def __init__(self, challenge: dict[str, Any], paid: tuple[int, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), _HostileHandler)
        self.challenge = challenge
        self.paid = paid
        self.payments: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/paid"


class _HostileHandler(BaseHTTPRequestHandler):
    server: Hostile
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        payment = self.headers.get("PAYMENT-SIGNATURE")
        if payment is None:
            status, body = 402, b"{}"
            extra = {"PAYMENT-REQUIRED": b64json(self.server.challenge)}
        else:
            self.server.payments.append(payment)
            (status, body), extra = self.server.paid, {}
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **extra}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def hostile(server: GatewayServer) -> Iterator[Any]:
    made: list[Hostile] = []

    def make(extension: Any, paid: tuple[int, bytes] = (200, b"{}")) -> Hostile:
        document = challenge_of(f"{server.url}/x402/v2/premium")
        document["extensions"] = {PAYMENT_IDENTIFIER: extension}
        running = Hostile(document, paid)
        threading.Thread(target=running.serve_forever, daemon=True).start()
        made.append(running)
        return running

    yield make
    for running in made:
        running.shutdown()
        running.server_close()


def test_a_409_to_the_first_send_is_its_own_reason_and_nothing_new_is_signed(
    server: GatewayServer, gateway: Gateway, hostile: Any, tmp_path: Path
) -> None:
    """409 to a fresh id: payment_id_conflict; one journal row, kept open; no second payment."""
    wallet = funded(gateway)
    conflict = json.dumps({"error": ID_CONFLICT}).encode()
    site = hostile({"info": {"required": True}, "schema": PAYMENT_ID_SCHEMA}, (409, conflict))
    with AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=tmp_path / "j.db") as agent:
        with pytest.raises(PaymentError) as raised:
            agent.get(site.url)
        (entry,) = agent._journal.entries()
    assert raised.value.reason == "payment_id_conflict"
    assert raised.value.details["payment_id"] == entry.payment_id == id_in(site.payments[0])
    assert len(site.payments) == 1
    assert entry.state == "refused"
    assert entry.receipt.landed is None  # open for recovery
    assert gateway.balance(wallet.pubkey(), "USDC") == 1


@pytest.mark.parametrize(
    "declared",
    [
        {"info": {"required": "yes"}},
        {"info": {"required": True}, "schema": "garbage"},
        {"info": {"required": False}, "schema": {"properties": {"id": {"type": "integer"}}}},
        ["not", "an", "object"],
        {"schema": PAYMENT_ID_SCHEMA},
    ],
)
def test_a_malformed_declaration_is_refused_unsigned(
    server: GatewayServer, gateway: Gateway, hostile: Any, tmp_path: Path, declared: Any
) -> None:
    """A declaration the agent cannot read: malformed_payment_identifier, nothing journaled."""
    wallet = funded(gateway)
    site = hostile(declared)
    with AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=tmp_path / "j.db") as agent:
        with pytest.raises(InvoiceValidationError) as raised:
            agent.get(site.url)
        assert agent._journal.entries() == []
    assert raised.value.reason == "malformed_payment_identifier"
    assert site.payments == []
    assert gateway.balance(wallet.pubkey(), "USDC") == 1


# -- payments prepared ahead, and the async agent ------------------------------------------


def test_a_payment_prepared_ahead_gets_its_id_when_prepared(
    strict: GatewayServer, tmp_path: Path
) -> None:
    """prepay=True on a route requiring ids: the prepared payment is journaled with its id
    before any request takes it, carries it when sent, and is bound to that request then."""
    gateway = strict.gateway
    wallet = funded(gateway)
    with paid_proxy(strict.url) as proxy:
        url = f"{proxy.url}/x402/v2/premium"
        with AutoAgent(
            wallet, rpc_url=strict.rpc_url, journal_path=tmp_path / "j.db", prepay=True
        ) as agent:
            assert agent.get(url).status_code == 200
            assert agent._prepayer is not None
            assert agent._prepayer.settle(30)
            _, prepared = agent._journal.entries()
            assert prepared.state == "signed"
            assert is_payment_id(prepared.payment_id)
            assert agent.get(url).status_code == 200
            _, taken, *_ = agent._journal.entries()
        first, second = proxy.payments
    assert id_in(second) == prepared.payment_id == taken.payment_id
    assert id_in(first) != id_in(second)
    assert taken.state == "accepted"
    assert gateway.balance(wallet.pubkey(), "USDC") == 1 - 2 * PRICE


def test_the_async_agent_resumes_an_identified_payment_with_no_answer(
    server: GatewayServer, gateway: Gateway, proxy: PaidProxy, tmp_path: Path
) -> None:
    """AsyncAutoAgent: the same id on every send, and the same request later re-sends the
    unanswered payment instead of paying anew."""
    wallet = funded(gateway)
    proxy.drop = 4
    url = f"{proxy.url}/x402/v2/premium"

    async def main() -> tuple[int, list[Any]]:
        async with AsyncAutoAgent(
            wallet, rpc_url=server.rpc_url, journal_path=tmp_path / "j.db"
        ) as agent:
            with pytest.raises(PaymentError) as raised:
                await agent.get(url)
            assert raised.value.reason == "no_answer_after_payment"
            answer = await agent.get(url)
            return answer.status_code, agent._journal.entries()

    status, entries = asyncio.run(main())
    assert status == 200
    (entry,) = entries
    assert entry.state == "accepted"
    assert {id_in(sent) for sent in proxy.payments} == {entry.payment_id}
    assert len(proxy.payments) == 5
    assert gateway.balance(wallet.pubkey(), "USDC") == 1 - PRICE


# -- the gateway with --workers: ids bound in the ledger process ------------------------------


@pytest.fixture(scope="module")
def workers() -> Iterator[Running]:
    """``python -m stub_gateway --workers 2 --payment-id-required``."""
    command = [sys.executable, "-m", "stub_gateway", "--port", "0", "--quiet", "--workers", "2"]
    command.append("--payment-id-required")
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().split(" on ", 1)[1].split()[0]
            info = requests.get(f"{url}/api/v1/info", timeout=30).json()
            yield Running(url, process, info)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def test_workers_share_payment_ids(workers: Running) -> None:
    """Over two workers: a required id missing is 400; the same id and payload, wherever it
    lands, gets the first answer; another payload under that id gets 409; one settlement."""
    wallet = workers_funded(workers)
    url = f"{workers.url}/x402/v2/premium"
    declared = challenge_of(url)["extensions"][PAYMENT_IDENTIFIER]
    assert declared["info"] == {"required": True}
    bare = x402_payment(workers, wallet)
    answer = requests.get(url, headers={"PAYMENT-SIGNATURE": bare}, timeout=30)
    assert (answer.status_code, answer.json()) == (400, {"error": [ID_REQUIRED]})
    payload = payload_of(bare)
    payload["extensions"] = {
        PAYMENT_IDENTIFIER: {**declared, "info": {"required": True, "id": "pay_" + "7" * 32}}
    }
    header = b64json(payload)
    answers = [
        requests.get(url, headers={"PAYMENT-SIGNATURE": header}, timeout=30) for _ in range(6)
    ]
    assert {(a.status_code, a.content) for a in answers} == {(200, answers[0].content)}
    payload["resource"] = {"url": url, "description": "another payload"}
    other = requests.get(url, headers={"PAYMENT-SIGNATURE": b64json(payload)}, timeout=30)
    assert other.status_code == 409
    assert other.json() == {"error": ID_CONFLICT, "paymentId": "pay_" + "7" * 32}
    assert usdc_balance(workers, wallet.pubkey()) == 100_000_000 - 10_000


# -- a replacement is a new purchase attempt, with a new id ----------------------------------


def test_a_resumed_payment_proven_never_landed_is_replaced_under_a_new_id(
    tmp_path: Path,
) -> None:
    """A payment never reached the server and its blockhash expired: the same request
    resumes it (same id), the gateway refuses it, the chain proves it never landed, and the
    replacement goes under a new id (a server that binds ids on sight would answer 409 to the
    old one; the gateway binds an id only when its payment settles, so the old id is free, and
    the replacement shown under it again settles nothing)."""
    clock = FakeClock()
    with gateway_app(clock) as (gateway, app), serve(app) as server:
        wallet = funded(gateway)
        with paid_proxy(server.url) as proxy:
            proxy.swallow = 4
            url = f"{proxy.url}/x402/v2/premium"
            with AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=tmp_path / "j.db") as agent:
                with pytest.raises(PaymentError):
                    agent.get(url)
                clock.now += 61  # > 150 slots: its blockhash can no longer land
                assert agent.get(url).status_code == 200
                expired, replacement = agent._journal.entries()
            *swallowed, resumed, paid = proxy.payments
        assert set(swallowed) == {resumed}
        assert (expired.state, expired.receipt.landed) == ("failed", False)
        assert (replacement.state, replacement.receipt.replaces) == ("accepted", expired.id)
        assert id_in(resumed) == expired.payment_id
        assert id_in(paid) == replacement.payment_id != expired.payment_id
        assert gateway.balance(wallet.pubkey(), "USDC") == 1 - PRICE
        under_old_id = payload_of(paid)
        under_old_id["extensions"][PAYMENT_IDENTIFIER]["info"]["id"] = expired.payment_id
        conflict = requests.get(
            f"{server.url}/x402/v2/premium",
            headers={"PAYMENT-SIGNATURE": b64json(under_old_id)},
            timeout=10,
        )
        assert conflict.status_code == 402  # duplicate_settlement: the old id bound nothing
        assert gateway.balance(wallet.pubkey(), "USDC") == 1 - PRICE


# -- the parsers of outside input ------------------------------------------------------------

declarations = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"info": st.one_of(json_values, st.fixed_dictionaries({"required": json_values}))},
        optional={"schema": json_values},
    ),
)


@given(declared=declarations)
def test_any_declaration_is_read_or_refused_with_its_reason(declared: Any) -> None:
    """Whatever a challenge declares for payment ids: a declaration, or the reason it is not."""
    document = {
        "x402Version": 2,
        "resource": {"url": "http://x/paid"},
        "accepts": [{"scheme": "exact"}],
        "extensions": {PAYMENT_IDENTIFIER: declared},
    }
    headers = {"PAYMENT-REQUIRED": b64json(document)}
    try:
        challenge = read_payment_required(headers, b"{}")
    except InvoiceValidationError as exc:
        refused: InvoiceValidationError | None = exc
    else:
        refused = None
    if refused is not None:
        assert refused.reason == "malformed_payment_identifier"
        return
    assert challenge is not None
    assert challenge.payment_identifier is not None
    assert isinstance(challenge.payment_identifier.required, bool)
    echoed = challenge.payment_identifier.with_id("pay_" + "0" * 32)
    assert echoed["info"]["id"] == "pay_" + "0" * 32


@given(extensions=st.one_of(json_values, st.fixed_dictionaries({PAYMENT_IDENTIFIER: json_values})))
def test_the_gateway_reads_any_payment_id_extension(extensions: Any) -> None:
    """Whatever a payment's extensions hold: an id in the spec's format, none, or a refusal."""
    found = payment_id_of({"extensions": extensions})
    assert found is None or isinstance(found, Refusal) or is_payment_id(found)


@given(nonce=st.text(max_size=64))
def test_a_payment_id_is_made_of_any_nonce(nonce: str) -> None:
    """Whatever the nonce source gives, the id is in the spec's format."""
    assert is_payment_id(new_payment_id(nonce))
