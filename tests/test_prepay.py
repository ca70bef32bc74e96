"""Payments prepared ahead (issue 12, ``prepay=``): the next x402 payment for a method and URL
is built, approved, reserved, signed and journaled in the background, and sent with the next
request to it: one HTTP request, no signing on the way, the same money safety.

Real parts throughout: the stub gateway over loopback (its own records of what it received),
its LiteSVM ledger (balances: what moved), real journals; crashes are real processes killed.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask, Response, jsonify, redirect, request
from requests.structures import CaseInsensitiveDict
from solders.hash import Hash
from solders.keypair import Keypair

from human_rpc_sdk import (
    AsyncAutoAgent,
    AutoAgent,
    ConnectionFailedError,
    PaymentError,
    PaymentPolicyError,
    PendingPaymentsWarning,
    SDKConfigurationError,
)
from human_rpc_sdk._effects import HttpReply
from human_rpc_sdk._headers import b64json, unb64json
from human_rpc_sdk._prepay import (
    NEVER_SENT,
    RELEASED,
    WAITING_NOTE,
    Key,
    PrepayPolicy,
    Ready,
    Remembered,
    prepay_policy,
    to_remember,
)
from human_rpc_sdk._prepayments import Prepayments
from human_rpc_sdk._receipts import PaymentReceipt
from human_rpc_sdk._records import JournalEntry
from stub_gateway import Gateway, GatewayServer, Price, create_app

from .conftest import FakeClock
from .test_attack_round2 import recount, rows
from .test_examples_and_cli import run_example
from .test_replacement_proof import gateway_app, serve

ROOT = Path(__file__).resolve().parent.parent
PRICE = Decimal("0.01")  # the gateway's x402 price, in USDC
ROUTE = "/x402/v2/premium"


# -- the servers ---------------------------------------------------------------------------------


@dataclass
class Paywalls:
    """A gateway with extra x402 routes, recording every request it receives."""

    server: GatewayServer
    seen: list[tuple[str, str, bool]] = field(default_factory=list)

    @property
    def gateway(self) -> Gateway:
        return self.server.gateway

    @property
    def url(self) -> str:
        return self.server.url

    def received(self, path: str) -> list[tuple[str, bool]]:
        """(method, paid) of each request received for ``path``."""
        return [(method, paid) for method, at, paid in self.seen if at == path]

    def forget(self) -> None:
        self.seen.clear()


def add_paywalls(app: Flask, seen: list[tuple[str, str, bool]]) -> None:
    """Record every request; add ``/both`` (GET and POST), ``/memo`` (an offer with a fixed
    memo) and ``/moved`` (a redirect to the x402 route)."""
    gateway: Gateway = app.extensions["stub_gateway"]
    price = Price(PRICE, "USDC")

    @app.before_request
    def record() -> None:
        paid = "PAYMENT-SIGNATURE" in request.headers or "X-PAYMENT" in request.headers
        seen.append((request.method, request.full_path.rstrip("?"), paid))

    @app.route("/both", methods=["GET", "POST"])
    @gateway.require_x402(price, description="both methods")
    def both() -> Response:
        return jsonify({"method": request.method})

    @gateway.require_x402(price, description="memo")
    def plain() -> Response:
        return jsonify({"memo": True})

    @app.get("/memo")
    def memo() -> Response:
        response = plain()
        header = response.headers.get("PAYMENT-REQUIRED")
        if header:
            document = unb64json(header, "PAYMENT-REQUIRED")
            document["accepts"][0]["extra"]["memo"] = "order-42"
            response.headers["PAYMENT-REQUIRED"] = b64json(document)
        return response

    @app.get("/moved")
    def moved() -> Any:
        return redirect(ROUTE)


@pytest.fixture(scope="module")
def walls() -> Iterator[Paywalls]:
    seen: list[tuple[str, str, bool]] = []
    app = create_app()
    add_paywalls(app, seen)
    running = GatewayServer(app).start()
    yield Paywalls(running, seen)
    running.stop()


@pytest.fixture
def clocked() -> Iterator[tuple[Paywalls, FakeClock]]:
    """A gateway on a fake clock (the test moves its slots), with the extra routes."""
    clock = FakeClock()
    seen: list[tuple[str, str, bool]] = []
    with gateway_app(clock) as (_, app):
        add_paywalls(app, seen)
        running = serve(app)
        yield Paywalls(running, seen), clock
        running.stop()


def wallet_on(gateway: Gateway, usdc: str = "1") -> Keypair:
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(usdc)})
    return wallet


@pytest.fixture
def make_agent(tmp_path: Path) -> Iterator[Callable[..., AutoAgent]]:
    """AutoAgents with prepay on and their own journal on disk; closed after the test."""
    made: list[AutoAgent] = []

    def make(wallet: Keypair, rpc_url: str, **options: Any) -> AutoAgent:
        options.setdefault("prepay", True)
        path = tmp_path / f"journal-{len(made)}.sqlite3"
        agent = AutoAgent(wallet, rpc_url=rpc_url, journal_path=path, **options)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.close()


def settled(agent: AutoAgent) -> None:
    """Wait until the agent prepares nothing more (its payment prepared, or none)."""
    assert agent._prepayer is not None
    assert agent._prepayer.settle(30)


def states(agent: AutoAgent) -> list[str]:
    return [str(row["state"]) for row in rows(Path(agent.journal_path))]


def spent_usdc(gateway: Gateway, wallet: Keypair, start: str = "1") -> Decimal:
    """What the ledger shows the wallet paid in USDC."""
    return Decimal(start) - gateway.balance(wallet.pubkey(), "USDC")


# -- the setting ---------------------------------------------------------------------------------


def test_prepay_takes_a_bool_or_origins() -> None:
    """prepay= is False, True, or origins, kept as (scheme, host, port); a trailing slash and
    upper case are fine, the default port is made explicit."""
    assert prepay_policy(False) == PrepayPolicy(False)
    assert prepay_policy(True) == PrepayPolicy(True, None)
    assert prepay_policy([]) == PrepayPolicy(False)  # no origin: nothing prepared
    policy = prepay_policy(["https://API.example.com/", "http://localhost:8080"])
    assert policy.origins == frozenset(
        {("https", "api.example.com", 443), ("http", "localhost", 8080)}
    )
    assert policy.allows("https://api.example.com:443/premium?x=1")
    assert not policy.allows("https://api.example.com:8443/premium")
    assert not policy.allows("http://api.example.com/premium")


@pytest.mark.parametrize(
    "value",
    [
        "https://api.example.com",
        1,
        None,
        ["https://api.example.com/premium"],
        ["ftp://x"],
        ["api.example.com"],
        ["https://user@api.example.com"],
        ["https://x?q=1"],
        [b"https://x"],
        ["https://x:99999"],
    ],
)
def test_a_bad_prepay_is_refused_naming_it(value: Any) -> None:
    """Anything but a bool or a list of origins is SDKConfigurationError(parameter="prepay"),
    saying what to pass; nothing is built."""
    with pytest.raises(SDKConfigurationError) as caught:
        AutoAgent(Keypair(), journal_path=":memory:", prepay=value)
    assert caught.value.parameter == "prepay"
    assert "list of origins" in str(caught.value)


# -- eligibility (the pure core) -----------------------------------------------------------------


def _challenge(url: str, **extra: Any) -> HttpReply:
    gateway_offer = {
        "scheme": "exact",
        "network": "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1",
        "asset": "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU",
        "payTo": "3shRVY7cX18PMufcpg4VDo7UakiQ8ZAVLb7DkQ7EvJc3",
        "amount": "10000",
        "maxTimeoutSeconds": 300,
        "extra": {"feePayer": "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin", **extra},
    }
    document = {"x402Version": 2, "resource": {"url": url}, "accepts": [gateway_offer]}
    headers = CaseInsensitiveDict({"PAYMENT-REQUIRED": b64json(document)})
    return HttpReply(402, headers, b"{}", url)


def _receipt(status: int = 200, fmt: Any = "x402-v2") -> PaymentReceipt:
    from datetime import UTC, datetime

    return PaymentReceipt(
        url="http://x/paid",
        amount=Decimal("0.01"),
        currency="USDC",
        mint="4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU",
        recipient="3shRVY7cX18PMufcpg4VDo7UakiQ8ZAVLb7DkQ7EvJc3",
        reference=None,
        network="devnet",
        signature="",
        time=datetime.now(UTC),
        atomic_amount=10000,
        payer="p",
        destination="d",
        fee_lamports=0,
        http_status=status,
        format=fmt,
    )


def test_a_plain_served_offer_is_remembered_until_its_max_timeout() -> None:
    """A served x402 payment of an offer with no memo and no blockhash of the server's is
    remembered, with only that offer, until maxTimeoutSeconds after its 402."""
    url = "http://x/paid"
    found = to_remember(_challenge(url), _receipt(), asked=url, served=url, challenged_at=100.0)
    assert found is not None
    assert found.stale_at == 400.0
    assert found.payable.url == url
    assert [o.amount for o in found.payable.challenge.offers] == [10000]


@pytest.mark.parametrize(
    ("why", "reply", "receipt", "asked", "served"),
    [
        ("a memo binds it", _challenge("http://x/paid", memo="order-1"), _receipt(), None, None),
        (
            "the server chose the blockhash",
            _challenge("http://x/paid", recentBlockhash=str(Hash.default())),
            _receipt(),
            None,
            None,
        ),
        ("not served", _challenge("http://x/paid"), _receipt(status=404), None, None),
        ("HumanRPC", _challenge("http://x/paid"), _receipt(fmt="humanrpc"), None, None),
        (
            "the 402 came after a redirect",
            _challenge("http://x/paid"),
            _receipt(),
            "http://x/a",
            None,
        ),
        ("served after a redirect", _challenge("http://x/paid"), _receipt(), None, "http://x/b"),
        (
            "the 402 opened a session",
            HttpReply(
                402,
                CaseInsensitiveDict(
                    {**_challenge("http://x/paid").headers, "Set-Cookie": "session=s-1"}
                ),
                b"{}",
                "http://x/paid",
            ),
            _receipt(),
            None,
            None,
        ),
        (
            "another offer was paid",
            _challenge("http://x/paid"),
            PaymentReceipt(**{**_receipt().__dict__, "atomic_amount": 5}),
            None,
            None,
        ),
    ],
)
def test_bound_or_unserved_challenges_are_not_remembered(
    why: str, reply: HttpReply, receipt: PaymentReceipt, asked: str | None, served: str | None
) -> None:
    """Nothing is prepared for a challenge bound to one request, a payment not served (2xx),
    a HumanRPC invoice, or a 402 or answer that came from another URL than the one asked."""
    found = to_remember(
        reply,
        receipt,
        asked=asked or "http://x/paid",
        served=served or "http://x/paid",
        challenged_at=0.0,
    )
    assert found is None, why


def _remembered() -> Remembered:
    url = "http://x/paid"
    found = to_remember(_challenge(url), _receipt(), asked=url, served=url, challenged_at=0.0)
    assert found is not None
    return found


def _ready(key: Key, until: float, remembered: Remembered, entry_id: int = 1) -> Ready:
    entry = JournalEntry(receipt=PaymentReceipt(**{**_receipt().__dict__, "id": entry_id}))
    return Ready(key, entry, remembered.payable, until)


def test_the_state_prepares_one_per_request_and_hands_each_out_once() -> None:
    """One preparation per request; a ready payment is taken once; an expired one is handed
    back to release (and the next one wanted); a refused request prepares no more."""
    state = Prepayments(PrepayPolicy(True))
    key = ("GET", "http://x/paid", "")
    remembered = _remembered()
    assert state.remember(key, remembered) == []
    assert state.coming(key, 0.0)
    job = state.next_job(0.0)
    assert job is not None
    assert job[0] == key
    assert state.next_job(0.0) is None  # one at a time per request
    assert state.finished(key, _ready(key, 50.0, remembered)) == []
    assert not state.preparing(0.0)
    taken, stale = state.take(key, 10.0)
    assert taken is not None
    assert stale == []
    assert state.take(key, 10.0) == (None, [])  # taken once
    state.served(key)
    assert state.next_job(10.0) is not None
    state.finished(key, _ready(key, 50.0, remembered, entry_id=2))
    taken, stale = state.take(key, 60.0)  # past its usable time
    assert taken is None
    assert [r.entry.id for r in stale] == [2]
    assert state.next_job(60.0) is not None  # the next is wanted
    assert state.refused(key) == []  # under way: its result is released when it ends
    assert [r.entry.id for r in state.finished(key, _ready(key, 90.0, remembered, 3))] == [3]
    assert state.next_job(60.0) is None


def test_a_payment_prepared_for_an_older_challenge_is_not_kept() -> None:
    """A normal payment brought a newer challenge while one was being prepared: the one
    prepared for the older challenge is released, and one for the newer one is prepared."""
    state = Prepayments(PrepayPolicy(True))
    key = ("GET", "http://x/paid", "")
    older, newer = _remembered(), _remembered()
    state.remember(key, older)
    assert state.next_job(0.0) is not None
    state.remember(key, newer)
    assert [r.entry.id for r in state.finished(key, _ready(key, 50.0, older, 7))] == [7]
    job = state.next_job(0.0)
    assert job is not None
    assert job[1] is newer


def test_an_idle_request_stops_being_prepared_for() -> None:
    """Payments prepared for a request nobody makes expire unused; after two in a row none is
    prepared for it until its next served payment."""
    state = Prepayments(PrepayPolicy(True))
    key = ("GET", "http://x/paid", "")
    remembered = _remembered()
    state.remember(key, remembered)
    for n, until in enumerate((20.0, 40.0)):
        assert state.next_job(until - 20) is not None
        state.finished(key, _ready(key, until, remembered, entry_id=n))
        assert [r.entry.id for r in state.expired(until)] == [n]
    assert state.next_job(40.0) is None
    state.served(key)
    assert state.next_job(40.0) is not None


def test_at_most_eight_requests_hold_a_prepared_payment() -> None:
    """A ninth request remembered forgets the least recently used one, releasing its payment."""
    state = Prepayments(PrepayPolicy(True))
    for n in range(8):
        key = ("GET", f"http://x/{n}", "")
        remembered = _remembered()
        state.remember(key, remembered)
        assert state.next_job(0.0) is not None
        state.finished(key, _ready(key, 50.0, remembered, entry_id=n))
    released = state.remember(("GET", "http://x/8", ""), _remembered())
    assert [r.entry.id for r in released] == [0]
    assert state.take(("GET", "http://x/0", ""), 1.0) == (None, [])
    assert [r.entry.id for r in state.close()] == list(range(1, 8))


def test_a_stale_challenge_is_not_prepared_for() -> None:
    """Past its maxTimeoutSeconds (less the margin), a challenge prepares nothing more."""
    state = Prepayments(PrepayPolicy(True))
    key = ("GET", "http://x/paid", "")
    state.remember(key, _remembered())  # stale at 300
    assert not state.coming(key, 299.0)
    assert state.next_job(299.0) is None


# -- paying with payments prepared ahead ---------------------------------------------------------


def test_a_prepared_payment_makes_the_next_request_one_http_request(
    walls: Paywalls, make_agent: Callable[..., AutoAgent]
) -> None:
    """After the first paid request, each next one to the same URL is one HTTP request
    carrying its payment; the ledger shows one transfer per served answer, the journal one
    accepted row each, and the budget counts them plus at most the one prepared."""
    wallet = wallet_on(walls.gateway)
    agent = make_agent(wallet, walls.server.rpc_url)
    url = f"{walls.url}/both"
    walls.forget()
    for _ in range(4):
        response = agent.get(url)
        assert response.status_code == 200
        assert response.json() == {"method": "GET"}
        assert agent._last_payment() is not None
        assert agent._last_payment().state == "accepted"  # type: ignore[union-attr]
    assert walls.received("/both") == [("GET", False)] + [("GET", True)] * 4
    assert spent_usdc(walls.gateway, wallet) == 4 * PRICE
    settled(agent)
    assert states(agent) == ["accepted"] * 4 + ["signed"]
    (waiting,) = agent.pending_payments()
    assert waiting.error_reason == WAITING_NOTE
    assert agent.budget["USDC"].spent == 5 * PRICE
    assert spent_usdc(walls.gateway, wallet) == 4 * PRICE


def test_an_unused_prepared_payment_is_released_at_close(
    walls: Paywalls, make_agent: Callable[..., AutoAgent]
) -> None:
    """close() releases the payment still prepared: failed, landed False, with why; its
    budget is back; nothing moved on the ledger; recovery has nothing to ask about it."""
    wallet = wallet_on(walls.gateway)
    agent = make_agent(wallet, walls.server.rpc_url)
    assert agent.get(f"{walls.url}{ROUTE}").status_code == 200
    settled(agent)
    assert states(agent) == ["accepted", "signed"]
    agent.close()
    accepted, released = rows(Path(agent.journal_path))
    assert (released["state"], released["landed"]) == ("failed", 0)
    assert (released["error"], released["landed_proof"]) == (RELEASED, NEVER_SENT)
    assert accepted["state"] == "accepted"
    assert spent_usdc(walls.gateway, wallet) == PRICE
    again = AutoAgent(wallet, rpc_url=walls.server.rpc_url, journal_path=agent.journal_path)
    assert again.budget["USDC"].spent == PRICE
    assert again.pending_payments() == []
    assert [r.id for r in again.recover_payments()] == []
    assert recount(Path(agent.journal_path))
    again.close()


def test_an_agent_never_closed_releases_its_prepared_payment_when_collected(
    walls: Paywalls, tmp_path: Path
) -> None:
    """An agent dropped without close(): once collected, its worker thread releases the
    payment it prepared and ends (nothing it runs holds the agent)."""
    wallet = wallet_on(walls.gateway)
    journal = tmp_path / "journal.sqlite3"
    agent = AutoAgent(wallet, rpc_url=walls.server.rpc_url, journal_path=journal, prepay=True)
    assert agent.get(f"{walls.url}{ROUTE}").status_code == 200
    settled(agent)
    assert agent._prepayer is not None
    thread = agent._prepayer.thread
    assert thread is not None
    agent.session.close()
    del agent
    gc.collect()
    thread.join(30)
    assert not thread.is_alive()
    assert [(r["state"], r["error"]) for r in rows(journal)] == [
        ("accepted", None),
        ("failed", RELEASED),
    ]


def test_an_expired_prepared_payment_is_released_and_the_normal_way_taken(
    walls: Paywalls, make_agent: Callable[..., AutoAgent]
) -> None:
    """A prepared payment past its usable time (the agent's clock moved on) is not sent: it
    is released, and the request pays the normal way (unpaid, 402, paid)."""
    clock = FakeClock(1000.0)
    wallet = wallet_on(walls.gateway)
    agent = make_agent(wallet, walls.server.rpc_url, clock=clock, sleep=clock.sleep)
    url = f"{walls.url}{ROUTE}"
    walls.forget()
    assert agent.get(url).status_code == 200
    settled(agent)
    first_prepared = rows(Path(agent.journal_path))[1]["id"]
    clock.now += 30  # its blockhash is no fresher than the cache keeps one (20 s)
    assert agent.get(url).status_code == 200
    assert walls.received(ROUTE) == [("GET", False), ("GET", True)] * 2
    released = next(r for r in rows(Path(agent.journal_path)) if r["id"] == first_prepared)
    assert (released["state"], released["error"]) == ("failed", RELEASED)
    assert spent_usdc(walls.gateway, wallet) == 2 * PRICE


def test_other_methods_and_urls_do_not_use_it(
    walls: Paywalls, make_agent: Callable[..., AutoAgent]
) -> None:
    """A payment prepared for GET /both is used by neither POST /both nor GET /both?page=2:
    they pay the normal way; the prepared one is still there for GET /both."""
    wallet = wallet_on(walls.gateway)
    agent = make_agent(wallet, walls.server.rpc_url)
    url = f"{walls.url}/both"
    assert agent.get(url).status_code == 200
    settled(agent)
    walls.forget()
    assert agent.post(url, json={}).json() == {"method": "POST"}
    assert agent.get(url, params={"page": "2"}).status_code == 200
    assert walls.received("/both") == [("POST", False), ("POST", True)]
    assert walls.received("/both?page=2") == [("GET", False), ("GET", True)]
    assert agent.get(url).status_code == 200
    assert walls.received("/both")[-1:] == [("GET", True)]
    assert len(walls.received("/both")) == 3


def test_only_the_origins_given_are_prepared_for(
    walls: Paywalls, make_agent: Callable[..., AutoAgent]
) -> None:
    """prepay=[origin]: a payment to another origin (127.0.0.1 is not localhost) is not
    prepared; one to the origin given is."""
    port = walls.url.rsplit(":", 1)[1]
    wallet = wallet_on(walls.gateway)
    agent = make_agent(wallet, walls.server.rpc_url, prepay=[f"http://localhost:{port}"])
    assert agent.get(f"{walls.url}{ROUTE}").status_code == 200
    assert agent._prepayer is not None
    assert agent._prepayer.thread is None
    assert states(agent) == ["accepted"]
    assert agent.get(f"http://localhost:{port}{ROUTE}").status_code == 200
    settled(agent)
    assert states(agent) == ["accepted", "accepted", "signed"]


def test_bound_offers_and_humanrpc_invoices_are_never_prepared(
    walls: Paywalls, make_agent: Callable[..., AutoAgent]
) -> None:
    """An offer with a memo, a HumanRPC invoice and a 402 reached through a redirect are paid
    as usual, and nothing is prepared for them: each next request pays the normal way."""
    wallet = wallet_on(walls.gateway)
    agent = make_agent(wallet, walls.server.rpc_url)
    walls.forget()
    for path in ("/memo", "/api/v1/premium/usdc", "/moved"):
        for _ in range(2):
            assert agent.get(f"{walls.url}{path}").status_code == 200
    assert agent._prepayer is not None
    assert agent._prepayer.thread is None
    assert walls.received("/memo") == [("GET", False), ("GET", True)] * 2
    assert walls.received("/api/v1/premium/usdc") == [("GET", False), ("GET", True)] * 2
    # The fixed memo over the same blockhash is the same transaction: re-sent, not paid again.
    assert states(agent) == ["accepted"] * 5


def test_approve_is_asked_for_every_prepared_payment(
    walls: Paywalls, make_agent: Callable[..., AutoAgent]
) -> None:
    """The owner's approve callback judges each prepared payment (in the background); one it
    declines is not prepared, and the next request pays the normal way, asking again."""
    asked: list[str] = []
    answers = iter([True, False, True])

    def approve(offer: Any) -> bool:
        asked.append(threading.current_thread().name)
        return next(answers)

    wallet = wallet_on(walls.gateway)
    agent = make_agent(wallet, walls.server.rpc_url, approve=approve)
    url = f"{walls.url}{ROUTE}"
    walls.forget()
    assert agent.get(url).status_code == 200
    settled(agent)
    assert asked == ["MainThread", "human-rpc-sdk payments prepared ahead"]
    assert states(agent) == ["accepted"]  # declined: nothing reserved or signed
    assert agent.get(url).status_code == 200
    assert walls.received(ROUTE) == [("GET", False), ("GET", True)] * 2
    assert asked[2] == "MainThread"


def test_a_prepared_payment_counts_against_the_budget(
    walls: Paywalls, make_agent: Callable[..., AutoAgent], caplog: pytest.LogCaptureFixture
) -> None:
    """A budget of exactly K payments: never more than K transfers on the ledger, with 8
    threads requesting the same URL through one agent, payments prepared ahead among them;
    each payment is sent in one paid request (none twice), each served one journaled."""
    k = 12
    wallet = wallet_on(walls.gateway)
    agent = make_agent(wallet, walls.server.rpc_url, budget={"USDC": str(k * PRICE)})
    url = f"{walls.url}/both"
    walls.forget()
    assert agent.get(url).status_code == 200
    settled(agent)
    served: list[int] = [200]
    refused: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(3):
            try:
                response = agent.get(url)
            except PaymentPolicyError as exc:
                with lock:
                    refused.append(exc.rule or "")
                continue
            with lock:
                served.append(response.status_code)

    caplog.set_level("INFO", logger="human_rpc_sdk")
    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)
    agent.close()
    transfers = spent_usdc(walls.gateway, wallet) / PRICE
    assert transfers <= k
    assert served == [200] * int(transfers)
    assert set(refused) <= {"budget"}
    assert len(served) + len(refused) == 25
    paid_requests = [paid for method, paid in walls.received("/both") if paid]
    assert len(paid_requests) == transfers  # every payment sent once, none twice
    used = [r for r in caplog.records if r.getMessage().endswith("prepared ahead)")]
    assert used  # payments prepared ahead were among them
    journal = rows(Path(agent.journal_path))
    assert sum(r["state"] == "accepted" for r in journal) == transfers
    assert all(r["state"] in ("accepted", "failed") for r in journal)
    assert recount(Path(agent.journal_path))


def test_a_prepared_payment_yields_its_budget_to_another_request(
    walls: Paywalls, make_agent: Callable[..., AutoAgent]
) -> None:
    """A budget of two payments: one paid and one prepared for GET /x402/v2/premium hold it
    all; a payment to /both is not refused for it: the prepared one is released (never
    sent) and /both is paid. Then the budget is spent: refused, as without prepay."""
    wallet = wallet_on(walls.gateway)
    agent = make_agent(wallet, walls.server.rpc_url, budget={"USDC": str(2 * PRICE)})
    assert agent.get(f"{walls.url}{ROUTE}").status_code == 200
    settled(agent)
    assert states(agent) == ["accepted", "signed"]
    assert agent.get(f"{walls.url}/both").status_code == 200
    settled(agent)
    assert states(agent) == ["accepted", "failed", "accepted"]
    with pytest.raises(PaymentPolicyError) as caught:
        agent.get(f"{walls.url}{ROUTE}")
    assert caught.value.rule == "budget"
    assert spent_usdc(walls.gateway, wallet) == 2 * PRICE


def test_a_prepared_payment_to_a_server_gone_is_released_not_left_open(
    tmp_path: Path,
) -> None:
    """The server went away while a payment was prepared for it: the request cannot connect,
    so the payment never left; it is released at once and the caller gets the connection
    error of an unpaid request (nothing pending, nothing moved)."""
    running = GatewayServer(create_app()).start()
    gateway = running.gateway
    wallet = wallet_on(gateway)
    journal = tmp_path / "journal.sqlite3"
    agent = AutoAgent(wallet, rpc_url=running.rpc_url, journal_path=journal, prepay=True)
    assert agent.get(f"{running.url}{ROUTE}").status_code == 200
    settled(agent)
    running.stop()
    with pytest.raises(ConnectionFailedError):
        agent.get(f"{running.url}{ROUTE}")
    served, released = rows(journal)
    assert served["state"] == "accepted"
    assert (released["state"], released["error"]) == ("failed", RELEASED)
    assert agent.pending_payments() == []
    assert agent.budget["USDC"].spent == PRICE
    assert spent_usdc(gateway, wallet) == PRICE
    agent.close()


def test_a_refused_prepared_payment_is_not_followed_by_another(
    clocked: tuple[Paywalls, FakeClock], tmp_path: Path
) -> None:
    """The price changed after a payment was prepared: the server refuses it. The caller gets
    a PaymentError, no second payment is made while the first could land, nothing more is
    prepared; the ledger shows only the first transfer. Once the blockhash has expired,
    recovery proves it never landed and releases it; the next request pays the new price."""
    walls, clock = clocked
    gateway = walls.gateway
    wallet = wallet_on(gateway)
    journal = tmp_path / "journal.sqlite3"
    agent = AutoAgent(wallet, rpc_url=walls.server.rpc_url, journal_path=journal, prepay=True)
    url = f"{walls.url}{ROUTE}"
    assert agent.get(url).status_code == 200
    settled(agent)
    gateway.x402_price = Price(Decimal("0.02"), "USDC")
    walls.forget()
    with pytest.raises(PaymentError) as caught:
        agent.get(url)
    assert caught.value.reason == "payment_refused"
    assert walls.received(ROUTE) == [("GET", True)]  # no automatic second payment
    assert spent_usdc(gateway, wallet) == PRICE
    _first, refused = rows(journal)
    assert (refused["state"], refused["landed"]) == ("refused", None)  # open until proven
    assert agent._prepayer is not None
    assert not agent._prepayer.state.preparing(clock())
    assert len(rows(journal)) == 2  # nothing more prepared for it
    assert agent.budget["USDC"].spent == 2 * PRICE
    clock.now += 61  # past its blockhash's last valid height
    (recovered,) = agent.recover_payments()
    assert (recovered.state, recovered.landed) == ("failed", False)
    assert agent.budget["USDC"].spent == PRICE
    agent._cache.forget_blockhash()  # 61 s passed for the chain, not for the agent's clock
    walls.forget()
    assert agent.get(url).status_code == 200
    assert walls.received(ROUTE) == [("GET", False), ("GET", True)]
    assert spent_usdc(gateway, wallet) == PRICE + Decimal("0.02")
    agent.close()


def test_a_prepared_payment_of_a_killed_process_is_released_by_recovery(
    clocked: tuple[Paywalls, FakeClock], tmp_path: Path
) -> None:
    """A process holding a prepared payment is killed (SIGKILL): its row stays signed, listed
    pending and counted; recovery from another process leaves it while it could land, and
    once its blockhash has expired proves it never landed and releases it. Nothing moved
    but the one payment that was served."""
    walls, clock = clocked
    gateway = walls.gateway
    wallet = wallet_on(gateway)
    journal = tmp_path / "journal.sqlite3"
    job = {"url": f"{walls.url}{ROUTE}", "rpc_url": walls.server.rpc_url, "journal": str(journal)}
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.workers.prepared_then_killed", json.dumps(job)],
        cwd=ROOT,
        env={**os.environ, "SOLANA_PRIVATE_KEY": str(wallet)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline().split()
    child.send_signal(signal.SIGKILL)
    _, errors = child.communicate(timeout=10)
    assert line[:1] == ["prepared"], errors
    assert child.returncode == -signal.SIGKILL
    served, prepared = rows(journal)
    assert (served["state"], prepared["state"]) == ("accepted", "signed")
    assert prepared["transaction_b64"]
    assert prepared["last_valid_block_height"]
    with pytest.warns(PendingPaymentsWarning):
        agent = AutoAgent(wallet, rpc_url=walls.server.rpc_url, journal_path=journal)
    (pending,) = agent.pending_payments()
    assert pending.error_reason == WAITING_NOTE
    assert agent.budget["USDC"].spent == 2 * PRICE
    (unsettled,) = agent.recover_payments()
    assert unsettled.state == "signed"  # it could still land: nothing is decided
    clock.now += 61
    (released,) = agent.recover_payments()
    assert (released.state, released.landed) == ("failed", False)
    assert agent.budget["USDC"].spent == PRICE
    assert spent_usdc(gateway, wallet) == PRICE
    agent.close()


# -- hostile servers and flaky networks ------------------------------------------------------


@pytest.fixture
def faulty(
    clocked: tuple[Paywalls, FakeClock], tmp_path: Path
) -> Iterator[tuple[Paywalls, Keypair, AutoAgent]]:
    """A gateway of its own (its faults are the test's), an agent holding a payment prepared
    for its x402 route, and the wallet (one transfer made so far)."""
    walls, _ = clocked
    wallet = wallet_on(walls.gateway)
    agent = AutoAgent(
        wallet,
        rpc_url=walls.server.rpc_url,
        journal_path=tmp_path / "journal.sqlite3",
        prepay=True,
        sleep=lambda seconds: None,
    )
    assert agent.get(f"{walls.url}{ROUTE}").status_code == 200
    settled(agent)
    walls.forget()
    yield walls, wallet, agent
    agent.close()


def test_a_prepared_payment_whose_answer_is_lost_is_sent_again_not_paid_again(
    faulty: tuple[Paywalls, Keypair, AutoAgent],
) -> None:
    """The server settles the prepared payment and drops the connection: the same payment is
    sent again and served; one transfer for the request."""
    walls, wallet, agent = faulty
    walls.gateway.faults.drop_after_payment()
    assert agent.get(f"{walls.url}{ROUTE}").status_code == 200
    assert walls.received(ROUTE) == [("GET", True), ("GET", True)]
    assert spent_usdc(walls.gateway, wallet) == 2 * PRICE
    assert states(agent)[:2] == ["accepted", "accepted"]


def test_a_server_that_takes_a_prepared_payment_and_answers_402_gets_no_second(
    faulty: tuple[Paywalls, Keypair, AutoAgent],
) -> None:
    """The server settles the prepared payment and answers 402 all the same: PaymentError;
    the chain shows it landed, so the row says so; nothing more is paid or prepared, and the
    next request pays the normal way."""
    walls, wallet, agent = faulty
    walls.gateway.faults.repeat_402_after_payment()
    with pytest.raises(PaymentError) as caught:
        agent.get(f"{walls.url}{ROUTE}")
    assert caught.value.reason == "payment_refused"
    assert spent_usdc(walls.gateway, wallet) == 2 * PRICE
    refused = rows(Path(agent.journal_path))[1]
    assert (refused["state"], refused["landed"]) == ("refused", 1)
    assert len(rows(Path(agent.journal_path))) == 2
    assert walls.received(ROUTE) == [("GET", True)]
    assert agent.get(f"{walls.url}{ROUTE}").status_code == 200
    assert walls.received(ROUTE)[1:] == [("GET", False), ("GET", True)]


def test_a_prepared_payment_redirected_to_another_origin_is_not_sent_there(
    faulty: tuple[Paywalls, Keypair, AutoAgent], walls: Paywalls
) -> None:
    """The server redirects the paid request to another origin: the payment headers do not
    follow; nothing more is prepared for the request."""
    own, wallet, agent = faulty
    walls.forget()
    own.gateway.faults.redirect_payment(f"{walls.url}/both")
    with pytest.raises(PaymentError):
        agent.get(f"{own.url}{ROUTE}")
    assert walls.received("/both") == [("GET", False)]  # reached, without the payment
    assert spent_usdc(own.gateway, wallet) == PRICE
    settled(agent)
    assert [r["state"] for r in rows(Path(agent.journal_path))] == ["accepted", "refused"]


# -- AsyncAutoAgent --------------------------------------------------------------------------


def test_the_async_agent_prepares_ahead_too(walls: Paywalls, tmp_path: Path) -> None:
    """AsyncAutoAgent(prepay=True): each request after the first is one HTTP request; one
    transfer per served answer; aclose() releases the payment still prepared."""
    wallet = wallet_on(walls.gateway)
    journal = tmp_path / "journal.sqlite3"
    sent: list[tuple[str, bool]] = []

    async def record(request: httpx.Request) -> None:
        sent.append((request.method, "PAYMENT-SIGNATURE" in request.headers))

    async def main() -> None:
        client = httpx.AsyncClient(event_hooks={"request": [record]})
        async with AsyncAutoAgent(
            wallet, rpc_url=walls.server.rpc_url, journal_path=journal, session=client, prepay=True
        ) as agent:
            for _ in range(3):
                response = await agent.get(f"{walls.url}{ROUTE}")
                assert response.status_code == 200
            assert agent._prepayer is not None
            assert await agent._prepayer.settle(30)
            assert [r["state"] for r in rows(journal)] == ["accepted"] * 3 + ["signed"]

    asyncio.run(main())
    assert sent == [("GET", False)] + [("GET", True)] * 3
    assert spent_usdc(walls.gateway, wallet) == 3 * PRICE
    *_accepted, released = rows(journal)
    assert (released["state"], released["error"]) == ("failed", RELEASED)
    assert recount(journal)


def test_the_async_agent_does_not_follow_a_refused_prepared_payment(
    clocked: tuple[Paywalls, FakeClock], tmp_path: Path
) -> None:
    """AsyncAutoAgent: a prepared payment refused after a price change raises PaymentError,
    with no second payment; the ledger shows only the first transfer."""
    walls, _ = clocked
    gateway = walls.gateway
    wallet = wallet_on(gateway)
    journal = tmp_path / "journal.sqlite3"

    async def main() -> None:
        async with AsyncAutoAgent(
            wallet, rpc_url=walls.server.rpc_url, journal_path=journal, prepay=True
        ) as agent:
            url = f"{walls.url}{ROUTE}"
            assert (await agent.get(url)).status_code == 200
            assert agent._prepayer is not None
            assert await agent._prepayer.settle(30)
            gateway.x402_price = Price(Decimal("0.02"), "USDC")
            walls.forget()
            with pytest.raises(PaymentError) as caught:
                await agent.get(url)
            assert caught.value.reason == "payment_refused"
            assert walls.received(ROUTE) == [("GET", True)]

    asyncio.run(main())
    assert spent_usdc(gateway, wallet) == PRICE
    assert [r["state"] for r in rows(journal)] == ["accepted", "refused"]


def test_the_async_agent_releases_a_payment_prepared_for_a_server_gone(tmp_path: Path) -> None:
    """AsyncAutoAgent: a payment prepared for a server that went away never leaves: released,
    and the caller gets the connection error of an unpaid request."""
    running = GatewayServer(create_app()).start()
    gateway = running.gateway
    wallet = wallet_on(gateway)
    journal = tmp_path / "journal.sqlite3"

    async def main() -> None:
        async with AsyncAutoAgent(
            wallet, rpc_url=running.rpc_url, journal_path=journal, prepay=True
        ) as agent:
            assert (await agent.get(f"{running.url}{ROUTE}")).status_code == 200
            assert agent._prepayer is not None
            assert await agent._prepayer.settle(30)
            running.stop()
            with pytest.raises(ConnectionFailedError):
                await agent.get(f"{running.url}{ROUTE}")
            assert await agent.pending_payments() == []

    asyncio.run(main())
    assert [(r["state"], r["error"]) for r in rows(journal)] == [
        ("accepted", None),
        ("failed", RELEASED),
    ]
    assert spent_usdc(gateway, wallet) == PRICE


# -- the example -------------------------------------------------------------------------------


def test_the_prepay_example_runs() -> None:
    """examples/prepay.py: one unpaid round trip, then prepared payments, the last released."""
    done = run_example("prepay.py")
    assert "released" in done.stdout
