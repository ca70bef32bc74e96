"""Attacks on payments prepared ahead (``prepay=``): hostile servers, flaky networks, odd
callers, second processes. Real parts: the stub gateway over loopback, its LiteSVM ledger,
real journals; ledger balances and journal rows are what is asserted.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import requests
from flask import Flask, jsonify, redirect, request
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

from human_rpc_sdk import (
    AsyncAutoAgent,
    AutoAgent,
    HumanRPCError,
    PaymentError,
    PaymentPolicyError,
    PendingPaymentsWarning,
)
from human_rpc_sdk._effects import HttpReply
from human_rpc_sdk._headers import b64json, unb64json
from human_rpc_sdk._prepay import (
    RELEASED,
    PrepayPolicy,
    Ready,
    Remembered,
    request_key,
    to_remember,
)
from human_rpc_sdk._prepayments import Prepayments
from human_rpc_sdk._records import JournalEntry
from stub_gateway import Gateway, GatewayServer, Price, create_app

from .conftest import FakeClock
from .cut_proxy import CutProxy
from .test_attack_round2 import recount, rows
from .test_prepay import (
    PRICE,
    ROOT,
    ROUTE,
    Paywalls,
    _challenge,
    _receipt,
    add_paywalls,
    settled,
    spent_usdc,
    wallet_on,
)
from .test_replacement_proof import gateway_app, serve


@pytest.fixture
def gateway_server() -> Iterator[GatewayServer]:
    running = GatewayServer(create_app()).start()
    yield running
    running.stop()


def _upstream(server: GatewayServer) -> tuple[str, int]:
    parts = urlsplit(server.url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


# -- a payment that left is never released as never sent ---------------------------------------


class _RetryingAdapter(HTTPAdapter):
    """An adapter that retries in its own ``send`` (as some hand-written ones do)."""

    def send(self, *args: Any, **kwargs: Any) -> requests.Response:
        for attempt in range(3):
            try:
                return super().send(*args, **kwargs)
            except requests.ConnectionError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


@pytest.mark.parametrize(
    "adapter", [lambda: HTTPAdapter(max_retries=3), _RetryingAdapter], ids=["urllib3", "own"]
)
def test_a_prepared_payment_sent_then_retried_by_the_adapter_is_not_released(
    gateway_server: GatewayServer, tmp_path: Path, adapter: Callable[[], HTTPAdapter]
) -> None:
    """The caller's session retries (HTTPAdapter(max_retries=3), a common set-up, or an
    adapter retrying in its send). The prepared payment reaches the server, which settles
    it; the answer is lost and the server then refuses connections, so the last error is a
    refused connection. The payment left: it must not be released as "never sent" (failed,
    landed False, budget back)."""
    proxy = CutProxy(_upstream(gateway_server)).start()
    gateway = gateway_server.gateway
    wallet = wallet_on(gateway)
    session = requests.Session()
    session.mount("http://", adapter())
    journal = tmp_path / "journal.sqlite3"
    agent = AutoAgent(
        wallet,
        rpc_url=gateway_server.rpc_url,
        journal_path=journal,
        session=session,
        prepay=True,
        sleep=lambda seconds: None,
    )
    url = f"{proxy.url}{ROUTE}"
    try:
        assert agent.get(url).status_code == 200
        settled(agent)
        proxy.cut_next_answer()
        with pytest.raises(HumanRPCError) as caught:
            agent.get(url)
        assert isinstance(caught.value, PaymentError)
        assert "recover_payments" in str(caught.value)
        assert proxy.cut.is_set()
        assert spent_usdc(gateway, wallet) == 2 * PRICE  # the prepared payment landed
        served, prepared = rows(journal)[:2]
        assert served["state"] == "accepted"
        assert (prepared["state"], prepared["landed"]) == ("submitted", None)  # open, not released
        assert agent.budget["USDC"].spent == 2 * PRICE
        assert recount(journal)
        (recovered,) = agent.recover_payments()  # the chain shows it landed
        assert (recovered.state, recovered.landed) == ("accepted", True)
    finally:
        agent.close()
        proxy.stop()


class _RetryingTransport(httpx.AsyncBaseTransport):
    """A transport that retries a request whose answer was lost (as retry transports for
    httpx do for GET): the last error may then be a refused connection."""

    def __init__(self, tries: int = 3) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.tries = tries

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        for attempt in range(self.tries):
            try:
                return await self.inner.handle_async_request(request)
            except httpx.TransportError:
                if attempt == self.tries - 1:
                    raise
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_an_async_prepared_payment_sent_then_retried_by_the_transport_is_not_released(
    gateway_server: GatewayServer, tmp_path: Path
) -> None:
    """AsyncAutoAgent over a client whose transport retries: the prepared payment is settled,
    its answer lost, the retries refused. It left: it is not released as never sent."""
    proxy = CutProxy(_upstream(gateway_server)).start()
    gateway = gateway_server.gateway
    wallet = wallet_on(gateway)
    journal = tmp_path / "journal.sqlite3"
    url = f"{proxy.url}{ROUTE}"

    async def main() -> None:
        client = httpx.AsyncClient(transport=_RetryingTransport())
        async with AsyncAutoAgent(
            wallet,
            rpc_url=gateway_server.rpc_url,
            journal_path=journal,
            session=client,
            prepay=True,
            sleep=_no_sleep,
        ) as agent:
            assert (await agent.get(url)).status_code == 200
            assert agent._prepayer is not None
            assert await agent._prepayer.settle(30)
            proxy.cut_next_answer()
            with pytest.raises(PaymentError) as caught:
                await agent.get(url)
            assert "recover_payments" in str(caught.value)
            assert proxy.cut.is_set()
            assert agent.budget["USDC"].spent == 2 * PRICE
            (recovered,) = await agent.recover_payments()
            assert (recovered.state, recovered.landed) == ("accepted", True)

    try:
        asyncio.run(main())
    finally:
        proxy.stop()
    assert spent_usdc(gateway, wallet) == 2 * PRICE
    assert [r["state"] for r in rows(journal)] == ["accepted", "accepted"]
    assert recount(journal)


async def _no_sleep(seconds: float) -> None:
    return None


def _closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class _Mover:
    """``GET /settle-then-move``: x402, settled; answered 200, or, once armed, a redirect to
    ``location`` (the payment kept)."""

    location: str | None = None

    def install(self, app: Flask) -> None:
        gateway: Gateway = app.extensions["stub_gateway"]

        @app.get("/settle-then-move")
        @gateway.require_x402(Price(PRICE, "USDC"), description="settles, then may move")
        def settle_then_move() -> Any:
            location, self.location = self.location, None
            if location is not None:
                return redirect(location, code=307)
            return jsonify({"ok": True})


@pytest.fixture
def mover() -> Iterator[tuple[GatewayServer, _Mover]]:
    app = create_app()
    moving = _Mover()
    moving.install(app)
    running = GatewayServer(app).start()
    yield running, moving
    running.stop()


def test_a_prepared_payment_redirected_to_a_dead_end_is_not_released(
    mover: tuple[GatewayServer, _Mover], tmp_path: Path
) -> None:
    """The server settles the prepared payment and redirects to a place that refuses
    connections. The payment reached the server: it is not released as never sent, and the
    request is not paid a second time the normal way."""
    running, moving = mover
    gateway = running.gateway
    wallet = wallet_on(gateway)
    journal = tmp_path / "journal.sqlite3"
    agent = AutoAgent(
        wallet,
        rpc_url=running.rpc_url,
        journal_path=journal,
        prepay=True,
        sleep=lambda seconds: None,
    )
    url = f"{running.url}/settle-then-move"
    try:
        assert agent.get(url).status_code == 200
        settled(agent)
        moving.location = f"http://127.0.0.1:{_closed_port()}/gone"
        with pytest.raises(HumanRPCError):
            agent.get(url)
        assert spent_usdc(gateway, wallet) == 2 * PRICE  # not paid again the normal way
        served, prepared = rows(journal)[:2]
        assert served["state"] == "accepted"
        assert (prepared["state"], prepared["landed"]) != ("failed", 0)
        assert len(rows(journal)) == 2
        assert agent.budget["USDC"].spent == 2 * PRICE
        assert recount(journal)
    finally:
        agent.close()


def test_an_async_prepared_payment_redirected_to_a_dead_end_is_not_released(
    mover: tuple[GatewayServer, _Mover], tmp_path: Path
) -> None:
    """AsyncAutoAgent: the server settles the prepared payment and redirects to a place that
    refuses connections; the payment is not released, nor the request paid again."""
    running, moving = mover
    gateway = running.gateway
    wallet = wallet_on(gateway)
    journal = tmp_path / "journal.sqlite3"
    url = f"{running.url}/settle-then-move"

    async def main() -> None:
        async with AsyncAutoAgent(
            wallet,
            rpc_url=running.rpc_url,
            journal_path=journal,
            prepay=True,
            sleep=_no_sleep,
        ) as agent:
            assert (await agent.get(url, follow_redirects=True)).status_code == 200
            assert agent._prepayer is not None
            assert await agent._prepayer.settle(30)
            moving.location = f"http://127.0.0.1:{_closed_port()}/gone"
            with pytest.raises(HumanRPCError):
                await agent.get(url, follow_redirects=True)
            assert agent.budget["USDC"].spent == 2 * PRICE

    asyncio.run(main())
    assert spent_usdc(gateway, wallet) == 2 * PRICE
    served, prepared = rows(journal)[:2]
    assert served["state"] == "accepted"
    assert (prepared["state"], prepared["landed"]) != ("failed", 0)
    assert recount(journal)


# -- a prepared payment goes only with the request it was prepared for ---------------------------


def _priced_by_body(app: Flask) -> None:
    """``POST /sized``: x402, the price set by the JSON body's ``size`` (1 or 2 x PRICE), as a
    paid API priced per request (tokens, pages) is."""
    gateway: Gateway = app.extensions["stub_gateway"]

    def priced(size: int) -> Any:
        @gateway.require_x402(Price(PRICE * size, "USDC"), description="priced by size")
        def view() -> Any:
            return jsonify({"size": size})

        view.__name__ = f"sized_{size}"
        return view

    views = {1: priced(1), 2: priced(2)}

    @app.post("/sized")
    def sized() -> Any:
        body = request.get_json(silent=True) or {}
        return views[2 if body.get("size") == 2 else 1]()


@pytest.fixture
def sized() -> Iterator[GatewayServer]:
    app = create_app()
    _priced_by_body(app)
    running = GatewayServer(app).start()
    yield running
    running.stop()


def test_a_payment_prepared_for_one_body_is_not_sent_with_another(
    sized: GatewayServer, tmp_path: Path
) -> None:
    """POST /sized is priced by its body. A payment prepared after {"size": 1} is not attached
    to a POST of {"size": 2} (which the server would refuse, and the caller would get an error
    where, without prepay, the request is simply paid): that one pays the normal way."""
    gateway = sized.gateway
    wallet = wallet_on(gateway)
    journal = tmp_path / "journal.sqlite3"
    agent = AutoAgent(wallet, rpc_url=sized.rpc_url, journal_path=journal, prepay=True)
    url = f"{sized.url}/sized"
    try:
        assert agent.post(url, json={"size": 1}).json() == {"size": 1}
        settled(agent)
        assert agent.post(url, json={"size": 2}).json() == {"size": 2}
        assert spent_usdc(gateway, wallet) == 3 * PRICE
        settled(agent)
        assert agent.post(url, json={"size": 1}).json() == {"size": 1}  # its own, prepared
        assert spent_usdc(gateway, wallet) == 4 * PRICE
        assert [r["state"] for r in rows(journal)][:3] == ["accepted"] * 3
    finally:
        agent.close()


def test_a_payment_prepared_for_one_caller_is_not_sent_with_another(
    gateway_server: GatewayServer, tmp_path: Path
) -> None:
    """AsyncAutoAgent: a payment prepared after a request with ``Authorization: Bearer a`` is
    not attached to the same URL asked with ``Bearer b`` (another caller, maybe another
    price): that one pays the normal way; the next ``Bearer a`` request uses it."""
    wallet = wallet_on(gateway_server.gateway)
    journal = tmp_path / "journal.sqlite3"
    url = f"{gateway_server.url}{ROUTE}"
    sent: list[tuple[str, bool]] = []

    async def record(request: httpx.Request) -> None:
        sent.append((request.headers["Authorization"], "PAYMENT-SIGNATURE" in request.headers))

    async def main() -> None:
        client = httpx.AsyncClient(event_hooks={"request": [record]})
        async with AsyncAutoAgent(
            wallet,
            rpc_url=gateway_server.rpc_url,
            journal_path=journal,
            session=client,
            prepay=True,
        ) as agent:
            assert agent._prepayer is not None
            for who in ("a", "b", "a"):
                response = await agent.get(url, headers={"Authorization": f"Bearer {who}"})
                assert response.status_code == 200
                assert await agent._prepayer.settle(30)

    asyncio.run(main())
    assert sent == [
        ("Bearer a", False),
        ("Bearer a", True),
        ("Bearer b", False),
        ("Bearer b", True),
        ("Bearer a", True),
    ]
    assert spent_usdc(gateway_server.gateway, wallet) == 3 * PRICE


# -- an agent never closed -----------------------------------------------------------------------


def test_a_process_exiting_without_close_releases_its_prepared_payment(
    gateway_server: GatewayServer, tmp_path: Path
) -> None:
    """A script that never closes its agent (still referenced when the interpreter exits)
    releases its prepared payment on the way out: no row is left signed, counted against the
    budget and warned about by the next agent until recovery can prove it never landed."""
    wallet = wallet_on(gateway_server.gateway)
    journal = tmp_path / "journal.sqlite3"
    job = {
        "url": f"{gateway_server.url}{ROUTE}",
        "rpc_url": gateway_server.rpc_url,
        "journal": str(journal),
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.workers.prepared_then_exits", json.dumps(job)],
        cwd=ROOT,
        env={**os.environ, "SOLANA_PRIVATE_KEY": str(wallet)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.stdout.split()[:1] == ["prepared"], done.stderr
    assert done.returncode == 0, done.stderr
    assert [(r["state"], r["error"]) for r in rows(journal)] == [
        ("accepted", None),
        ("failed", RELEASED),
    ]
    assert spent_usdc(gateway_server.gateway, wallet) == PRICE


def test_an_async_agent_never_closed_releases_its_prepared_payment_when_its_loop_ends(
    gateway_server: GatewayServer, tmp_path: Path
) -> None:
    """The loop ends with an AsyncAutoAgent never closed: asyncio.run() cancels its task, which
    releases the payment it prepared on the way out (not left signed)."""
    wallet = wallet_on(gateway_server.gateway)
    journal = tmp_path / "journal.sqlite3"

    async def main() -> None:
        agent = AsyncAutoAgent(
            wallet, rpc_url=gateway_server.rpc_url, journal_path=journal, prepay=True
        )
        assert (await agent.get(f"{gateway_server.url}{ROUTE}")).status_code == 200
        prepayer = agent._prepayer
        assert prepayer is not None
        assert await prepayer.settle(30)
        assert [r["state"] for r in rows(journal)] == ["accepted", "signed"]
        task = prepayer.task
        assert task is not None
        task.cancel()  # what asyncio.run() does to the tasks left when its main one ends
        await asyncio.gather(task, return_exceptions=True)
        assert [(r["state"], r["error"]) for r in rows(journal)] == [
            ("accepted", None),
            ("failed", RELEASED),
        ]
        await agent.aclose()

    asyncio.run(main())
    assert spent_usdc(gateway_server.gateway, wallet) == PRICE


# -- many at once --------------------------------------------------------------------------------


def test_many_async_tasks_on_one_url_send_each_payment_once_within_the_budget(
    gateway_server: GatewayServer, tmp_path: Path
) -> None:
    """AsyncAutoAgent, 10 tasks asking one URL 3 times each with a budget of 12 payments,
    prepared payments among them: at most 12 transfers, each payment header sent once, one
    served answer per transfer, the journal's rows and totals agreeing."""
    k = 12
    wallet = wallet_on(gateway_server.gateway)
    journal = tmp_path / "journal.sqlite3"
    url = f"{gateway_server.url}{ROUTE}"
    payments: list[str] = []
    unpaid: list[str] = []
    served: list[int] = []
    refused: list[str] = []

    async def record(request: httpx.Request) -> None:
        if "PAYMENT-SIGNATURE" in request.headers:
            payments.append(request.headers["PAYMENT-SIGNATURE"])
        else:
            unpaid.append(str(request.url))

    async def main() -> None:
        client = httpx.AsyncClient(event_hooks={"request": [record]})
        async with AsyncAutoAgent(
            wallet,
            rpc_url=gateway_server.rpc_url,
            journal_path=journal,
            session=client,
            prepay=True,
            budget={"USDC": str(k * PRICE)},
        ) as agent:
            assert (await agent.get(url)).status_code == 200
            served.append(200)
            assert agent._prepayer is not None
            assert await agent._prepayer.settle(30)

            async def work() -> None:
                for _ in range(3):
                    try:
                        response = await agent.get(url)
                    except PaymentPolicyError as exc:
                        refused.append(exc.rule or "")
                        continue
                    served.append(response.status_code)

            await asyncio.gather(*(work() for _ in range(10)))

    asyncio.run(main())
    transfers = spent_usdc(gateway_server.gateway, wallet) / PRICE
    assert transfers <= k
    assert served == [200] * int(transfers)
    assert set(refused) <= {"budget"}
    assert len(served) + len(refused) == 31
    assert len(payments) == len(set(payments)) == transfers  # each sent once, none twice
    assert len(unpaid) < len(served) + len(refused)  # prepared payments were among them
    journal_rows = rows(journal)
    assert sum(r["state"] == "accepted" for r in journal_rows) == transfers
    assert all(r["state"] in ("accepted", "failed") for r in journal_rows)
    assert recount(journal)


# -- a worker that meets the unexpected ------------------------------------------------------


class _Abort(BaseException):
    """Not an Exception: what a signer's library might raise to unwind (as SystemExit does)."""


class _AbortingInTheBackground:
    """A signer (the wallet's key) that raises :class:`_Abort` when asked to sign from the
    worker thread preparing payments ahead."""

    def __init__(self, key: Any) -> None:
        self.key = key

    def pubkey(self) -> Any:
        return self.key.pubkey()

    def sign_message(self, message: bytes) -> Any:
        if threading.current_thread() is not threading.main_thread():
            raise _Abort
        return self.key.sign_message(message)


def test_a_signer_unwinding_the_worker_leaves_nothing_stuck(
    gateway_server: GatewayServer, tmp_path: Path
) -> None:
    """The signer raises a BaseException in the worker: the reservation is released, the
    worker lives on, nothing stays "being prepared" (a request would wait for it), and the
    next request pays the normal way."""
    wallet = wallet_on(gateway_server.gateway)
    journal = tmp_path / "journal.sqlite3"
    agent = AutoAgent(
        signer=_AbortingInTheBackground(wallet),
        rpc_url=gateway_server.rpc_url,
        journal_path=journal,
        prepay=True,
    )
    url = f"{gateway_server.url}{ROUTE}"
    try:
        assert agent.get(url).status_code == 200
        prepayer = agent._prepayer
        assert prepayer is not None
        assert prepayer.settle(30)  # not stuck "preparing"
        thread = prepayer.thread
        assert thread is not None
        assert thread.is_alive()
        assert [(r["state"], r["error"]) for r in rows(journal)][1:] == [
            ("failed", "interrupted unsigned")
        ]
        assert agent.get(url).status_code == 200
        assert spent_usdc(gateway_server.gateway, wallet) == 2 * PRICE
    finally:
        agent.close()
    assert recount(journal)


class _AsyncAbortingInTheBackground:
    """An async signer raising :class:`_Abort` in the task preparing payments ahead."""

    def __init__(self, key: Any) -> None:
        self.key = key

    def pubkey(self) -> Any:
        return self.key.pubkey()

    async def sign_message(self, message: bytes) -> Any:
        task = asyncio.current_task()
        if task is not None and task.get_name() == "human-rpc-sdk payments prepared ahead":
            raise _Abort
        return self.key.sign_message(message)


def test_an_async_signer_unwinding_the_task_leaves_nothing_stuck(
    gateway_server: GatewayServer, tmp_path: Path
) -> None:
    """AsyncAutoAgent: the signer raises a BaseException in the preparing task: the
    reservation is released, nothing stays "being prepared", the next request pays the
    normal way, and aclose() ends cleanly."""
    wallet = wallet_on(gateway_server.gateway)
    journal = tmp_path / "journal.sqlite3"
    url = f"{gateway_server.url}{ROUTE}"

    signer: Any = _AsyncAbortingInTheBackground(wallet)

    async def main() -> None:
        async with AsyncAutoAgent(
            signer=signer,
            rpc_url=gateway_server.rpc_url,
            journal_path=journal,
            prepay=True,
        ) as agent:
            assert (await agent.get(url)).status_code == 200
            prepayer = agent._prepayer
            assert prepayer is not None
            assert await prepayer.settle(30)
            assert prepayer.task is not None
            await asyncio.wait([prepayer.task])
            assert not prepayer.state.preparing(0.0)
            assert (await agent.get(url)).status_code == 200

    asyncio.run(main())
    assert [(r["state"], r["error"]) for r in rows(journal)] == [
        ("accepted", None),
        ("failed", "interrupted unsigned"),
        ("accepted", None),
    ]
    assert spent_usdc(gateway_server.gateway, wallet) == 2 * PRICE
    assert recount(journal)


# -- a second process -----------------------------------------------------------------------------


@pytest.fixture
def clocked() -> Iterator[tuple[Paywalls, FakeClock]]:
    """A gateway on a fake clock (its chain moves only when the test says), with the routes
    of test_prepay."""
    clock = FakeClock()
    seen: list[tuple[str, str, bool]] = []
    with gateway_app(clock) as (_, app):
        add_paywalls(app, seen)
        running = serve(app)
        yield Paywalls(running, seen), clock
        running.stop()


def test_recovery_in_another_process_leaves_a_live_prepared_payment_to_its_owner(
    clocked: tuple[Paywalls, FakeClock], tmp_path: Path
) -> None:
    """Process A holds a payment prepared ahead; process B, on the same journal, recovers
    payments: the prepared one could still land, so it is left signed (not released while
    its owner may send it). A then sends it and is served: one transfer for it, its row
    accepted, the budget counting exactly what moved."""
    walls, _clock = clocked
    gateway = walls.gateway
    wallet = wallet_on(gateway)
    journal = tmp_path / "journal.sqlite3"
    job = {"url": f"{walls.url}{ROUTE}", "rpc_url": walls.server.rpc_url, "journal": str(journal)}
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.workers.prepared_then_used", json.dumps(job)],
        cwd=ROOT,
        env={**os.environ, "SOLANA_PRIVATE_KEY": str(wallet)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdin is not None
    try:
        assert child.stdout.readline().split()[:1] == ["prepared"]
        with pytest.warns(PendingPaymentsWarning):
            other = AutoAgent(wallet, rpc_url=walls.server.rpc_url, journal_path=journal)
        (left,) = other.recover_payments()
        assert left.state == "signed"  # it could still land: its owner may still send it
        child.stdin.write("go\n")
        child.stdin.flush()
        line = child.stdout.readline().split()
        _, errors = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert line[:2] == ["served", "200"], errors
    assert int(line[2]) == left.id  # the very payment recovery left alone
    assert spent_usdc(gateway, wallet) == 2 * PRICE
    assert [(r["state"], r["landed"]) for r in rows(journal)][:2] == [
        ("accepted", 1),
        ("accepted", 1),
    ]
    assert other.budget["USDC"].spent == 2 * PRICE  # the third, prepared then, was released
    other.close()
    assert recount(journal)


# -- the server changes its terms ---------------------------------------------------------------


def _remembered_at(amount: int) -> Remembered:
    """A challenge for http://x/paid of ``amount`` base units, as its served payment leaves it."""
    url = "http://x/paid"
    plain = _challenge(url)
    document = unb64json(plain.headers["PAYMENT-REQUIRED"], "PAYMENT-REQUIRED")
    document["accepts"][0]["amount"] = str(amount)
    headers = CaseInsensitiveDict({"PAYMENT-REQUIRED": b64json(document)})
    reply = HttpReply(402, headers, b"{}", url)
    receipt = replace(_receipt(), atomic_amount=amount)
    found = to_remember(reply, receipt, asked=url, served=url, challenged_at=0.0)
    assert found is not None
    return found


def test_a_payment_prepared_for_terms_the_server_has_changed_is_released() -> None:
    """A request paid the normal way (at the same time as one that used the prepared
    payment) brings new terms while a payment for the old ones is ready: that one is
    released, not kept for the next request (the server would refuse it, and no second
    payment may follow), and one for the new terms is prepared. Same terms: kept."""
    state = Prepayments(PrepayPolicy(True))
    key = ("GET", "http://x/paid", "")
    old = _remembered_at(10000)
    state.remember(key, old)
    assert state.next_job(0.0) is not None
    entry = JournalEntry(receipt=replace(_receipt(), id=1))
    assert state.finished(key, Ready(key, entry, old.payable, 50.0)) == []
    assert state.remember(key, _remembered_at(10000)) == []  # the same terms: kept
    new = _remembered_at(20000)
    assert [r.entry.id for r in state.remember(key, new)] == [1]
    assert state.take(key, 1.0) == (None, [])
    job = state.next_job(1.0)
    assert job is not None
    assert job[1] is new


# -- bodies that are not in memory ---------------------------------------------------------------


@pytest.fixture
def walls_of_own() -> Iterator[Paywalls]:
    """A gateway of the test's own with the routes of test_prepay, recording what it got."""
    seen: list[tuple[str, str, bool]] = []
    app = create_app()
    add_paywalls(app, seen)
    running = GatewayServer(app).start()
    yield Paywalls(running, seen)
    running.stop()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(lambda text: {"data": io.BytesIO(text)}, id="file"),
        pytest.param(lambda text: {"files": {"page": text}}, id="multipart"),
    ],
)
def test_a_request_with_a_file_or_multipart_body_is_never_prepared_for(
    walls_of_own: Paywalls, tmp_path: Path, body: Callable[[bytes], dict[str, Any]]
) -> None:
    """POST /both with a file as its body (not read to tell one request from the next), or a
    multipart one (its random boundary makes each request unlike the last): each pays the
    normal way, nothing is prepared (a payment no request would use), nothing left signed."""
    walls = walls_of_own
    wallet = wallet_on(walls.gateway)
    journal = tmp_path / "journal.sqlite3"
    with AutoAgent(
        wallet, rpc_url=walls.server.rpc_url, journal_path=journal, prepay=True
    ) as agent:
        for text in (b"first page", b"first page"):
            assert agent.post(f"{walls.url}/both", **body(text)).status_code == 200
        assert agent._prepayer is not None
        assert agent._prepayer.thread is None
    assert walls.received("/both") == [("POST", False), ("POST", True)] * 2
    assert [r["state"] for r in rows(journal)] == ["accepted", "accepted"]
    assert spent_usdc(walls.gateway, wallet) == 2 * PRICE


def test_a_prepared_payment_shows_nothing_of_its_request_credentials() -> None:
    """The key a prepared payment is kept under digests the request's Authorization header
    (a password in Basic auth could be guessed from it offline): no repr shows it."""
    key = request_key("GET", "http://x/paid", None, "Basic dXNlcjpodW50ZXIy")
    assert key is not None
    remembered = _remembered_at(10000)
    ready = Ready(key, JournalEntry(receipt=_receipt()), remembered.payable, 50.0)
    assert key[2] not in repr(ready)
    assert "dXNlcjpodW50ZXIy" not in repr(ready)
    assert request_key("GET", "http://x/paid", None, "Basic other") != key
    assert request_key("GET", "http://x/paid", b"", None) == request_key(
        "GET", "http://x/paid", None, None
    )


# -- flaky answers to a prepared payment ---------------------------------------------------------


def test_a_prepared_payment_answered_5xx_after_settling_is_sent_again_not_paid_again(
    walls_of_own: Paywalls, tmp_path: Path
) -> None:
    """The server settles the prepared payment and answers 500: the same payment is sent
    again (never a second one) and served; one transfer for the request."""
    walls = walls_of_own
    wallet = wallet_on(walls.gateway)
    journal = tmp_path / "journal.sqlite3"
    url = f"{walls.url}{ROUTE}"
    with AutoAgent(
        wallet,
        rpc_url=walls.server.rpc_url,
        journal_path=journal,
        prepay=True,
        sleep=lambda seconds: None,
    ) as agent:
        assert agent.get(url).status_code == 200
        settled(agent)
        walls.forget()
        walls.gateway.faults.error_after_payment(status=503)
        assert agent.get(url).status_code == 200
        assert walls.received(ROUTE) == [("GET", True), ("GET", True)]
        assert spent_usdc(walls.gateway, wallet) == 2 * PRICE
    assert [r["state"] for r in rows(journal)][:2] == ["accepted", "accepted"]
    assert recount(journal)


# -- close() while a prepared payment is on its way ---------------------------------------------


@dataclass
class _Holder:
    """``GET /hold``: x402, settled; once armed, the answer waits (after the settlement)
    until the test lets it go."""

    armed: bool = False
    entered: threading.Event = field(default_factory=threading.Event)
    go: threading.Event = field(default_factory=threading.Event)

    def install(self, app: Flask) -> None:
        gateway: Gateway = app.extensions["stub_gateway"]

        @app.get("/hold")
        @gateway.require_x402(Price(PRICE, "USDC"), description="holds its answer")
        def hold() -> Any:
            if self.armed:
                self.entered.set()
                self.go.wait(60)
            return jsonify({"held": self.armed})


def test_close_while_a_prepared_payment_is_on_its_way_does_not_release_it(
    tmp_path: Path,
) -> None:
    """close() is called while a request that took the prepared payment waits for its answer
    (the server has settled it): the payment is not released as never sent; whatever the
    request learns, its row stays open or accepted, counted; recovery finds it landed."""
    app = create_app()
    holder = _Holder()
    holder.install(app)
    running = GatewayServer(app).start()
    wallet = wallet_on(running.gateway)
    journal = tmp_path / "journal.sqlite3"
    url = f"{running.url}/hold"
    agent = AutoAgent(wallet, rpc_url=running.rpc_url, journal_path=journal, prepay=True)
    outcome: list[object] = []

    def request() -> None:
        try:
            outcome.append(agent.get(url).status_code)
        except Exception as exc:  # noqa: BLE001 - whatever it is, it is the test's to see
            outcome.append(exc)

    try:
        assert agent.get(url).status_code == 200
        settled(agent)
        holder.armed = True
        on_its_way = threading.Thread(target=request)
        on_its_way.start()
        assert holder.entered.wait(60)
        agent.close()
        holder.go.set()
        on_its_way.join(60)
        assert not on_its_way.is_alive()
        assert spent_usdc(running.gateway, wallet) == 2 * PRICE
        taken = rows(journal)[1]
        assert (taken["state"], taken["landed"]) != ("failed", 0), outcome
        with pytest.warns(PendingPaymentsWarning):
            again = AutoAgent(wallet, rpc_url=running.rpc_url, journal_path=journal)
        assert again.budget["USDC"].spent == 2 * PRICE
        (recovered,) = again.recover_payments()
        assert (recovered.id, recovered.state, recovered.landed) == (taken["id"], "accepted", True)
        again.close()
        assert recount(journal)
    finally:
        holder.go.set()
        agent.close()
        running.stop()


def test_a_cancelled_async_request_does_not_release_the_prepared_payment_it_sent(
    tmp_path: Path,
) -> None:
    """AsyncAutoAgent: the task using a prepared payment is cancelled while the server (which
    settled it) holds its answer: the payment is not released; recovery finds it landed."""
    app = create_app()
    holder = _Holder()
    holder.install(app)
    running = GatewayServer(app).start()
    wallet = wallet_on(running.gateway)
    journal = tmp_path / "journal.sqlite3"
    url = f"{running.url}/hold"

    async def main() -> None:
        async with AsyncAutoAgent(
            wallet, rpc_url=running.rpc_url, journal_path=journal, prepay=True
        ) as agent:
            assert (await agent.get(url)).status_code == 200
            assert agent._prepayer is not None
            assert await agent._prepayer.settle(30)
            holder.armed = True
            task = asyncio.create_task(agent.get(url))
            assert await asyncio.to_thread(holder.entered.wait, 60)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            holder.go.set()
            taken = rows(journal)[1]
            assert (taken["state"], taken["landed"]) == ("signed", None)
            assert agent.budget["USDC"].spent >= 2 * PRICE
            (recovered,) = [r for r in await agent.recover_payments() if r.id == taken["id"]]
            assert (recovered.state, recovered.landed) == ("accepted", True)

    try:
        asyncio.run(main())
    finally:
        holder.go.set()
        running.stop()
    assert spent_usdc(running.gateway, wallet) == 2 * PRICE
    assert recount(journal)
