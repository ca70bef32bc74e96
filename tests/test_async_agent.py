"""AsyncAutoAgent paying the stub gateway over loopback; every payment checked on the ledger
and in the journal. The async sleep is injected: nothing here really waits."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from solders.keypair import Keypair

from human_rpc_sdk import (
    AsyncAutoAgent,
    AutoAgent,
    ConnectionFailedError,
    PaymentPolicyError,
    SDKConfigurationError,
    SolanaRPCError,
)
from stub_gateway import Gateway, GatewayServer, serve_in_thread

from .conftest import FakeClock, Funder, Shop

FEE = Decimal("0.000005")
PRICE = Decimal("0.001")


class Pauses:
    """An async sleep that only records how long it was asked to wait."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


def funded_on(gateway: Gateway, sol: str = "1") -> Keypair:
    """A new wallet holding ``sol`` SOL on ``gateway``'s ledger."""
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(sol), "USDC": Decimal(0), "PYUSD": Decimal(0)})
    return wallet


def rows(path: Path) -> list[tuple[Any, ...]]:
    """The journal as another process reads it: (state, amount, reference) per payment."""
    with sqlite3.connect(path) as db:
        return db.execute("SELECT state, amount, reference FROM payments ORDER BY id").fetchall()


@pytest_asyncio.fixture
async def make_agent(server: GatewayServer, tmp_path: Path) -> AsyncIterator[Any]:
    """Build AsyncAutoAgents on the session gateway, journal on disk; closed after the test."""
    made: list[AsyncAutoAgent] = []

    def make(wallet: Keypair, rpc_url: str | None = None, **options: Any) -> AsyncAutoAgent:
        options.setdefault("journal_path", tmp_path / f"journal-{len(made)}.sqlite3")
        options.setdefault("sleep", Pauses())
        agent = AsyncAutoAgent(wallet, rpc_url=rpc_url or server.rpc_url, **options)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        await agent.aclose()


@pytest.mark.asyncio
async def test_pays_a_sol_invoice(
    server: GatewayServer, gateway: Gateway, funded_wallet: Funder, make_agent: Any
) -> None:
    """SOL: served; the payer loses price + fee, the treasury gains the price; one journal row."""
    wallet = funded_wallet(sol="1")
    agent = make_agent(wallet)
    treasury_before = gateway.balance(gateway.treasury)
    response = await agent.get(f"{server.url}/api/v1/premium/sol")
    assert isinstance(response, httpx.Response)
    assert response.status_code == 200
    assert response.json()["content"] == "premium sol content, unlocked"
    assert gateway.balance(wallet.pubkey()) == 1 - PRICE - FEE
    assert gateway.balance(gateway.treasury) - treasury_before == PRICE
    (receipt,) = agent.payments
    assert (receipt.amount, receipt.currency, receipt.state) == (PRICE, "SOL", "accepted")
    assert receipt.signature == response.json()["paid"]["signature"]
    assert agent.last_payment() == receipt
    assert [row[:2] for row in rows(Path(agent.journal_path))] == [("accepted", "0.001")]
    assert await agent.balance() == 1 - PRICE - FEE


@pytest.mark.asyncio
async def test_an_unpaid_answer_comes_back_untouched(
    server: GatewayServer, funded_wallet: Funder, make_agent: Any
) -> None:
    """A 404 is returned as it is; nothing is paid or journaled."""
    agent = make_agent(funded_wallet(sol="1"))
    response = await agent.get(f"{server.url}/no/such/page")
    assert response.status_code == 404
    assert agent.payments == []
    assert agent.last_payment() is None


@pytest.mark.asyncio
async def test_cookies_the_402_set_go_with_the_paid_retry(shop: Shop, make_agent: Any) -> None:
    """A paywall binding its invoice to a session cookie set on the 402 is paid and serves."""
    wallet = funded_on(shop.gateway)
    agent = make_agent(wallet, rpc_url=shop.rpc_url)
    response = await agent.get(f"{shop.url}/session-bound")
    assert response.status_code == 200
    assert response.json() == {"session": "s-42"}
    assert [row[0] for row in rows(Path(agent.journal_path))] == ["accepted"]


@pytest.mark.asyncio
async def test_concurrent_requests_pay_exactly_what_the_budget_allows(
    shop: Shop, make_agent: Any
) -> None:
    """50 concurrent get()s through one agent, on a budget of exactly K payments: K are paid,
    each invoice once; the others are refused by the budget, unsigned."""
    k = 7
    wallet = funded_on(shop.gateway)
    agent = make_agent(wallet, rpc_url=shop.rpc_url, budget={"SOL": str(k * (PRICE + FEE))})
    treasury = shop.gateway.treasury
    treasury_before = shop.gateway.balance(treasury)
    url = shop.price_url("SOL", str(PRICE))
    results = await asyncio.gather(*(agent.get(url) for _ in range(50)), return_exceptions=True)
    paid = [r for r in results if isinstance(r, httpx.Response)]
    refused = [r for r in results if isinstance(r, PaymentPolicyError)]
    assert len(paid) == k
    assert all(r.status_code == 200 for r in paid)
    assert len(refused) == 50 - k
    assert {r.rule for r in refused} == {"budget"}
    assert shop.gateway.balance(wallet.pubkey()) == 1 - k * (PRICE + FEE)
    assert shop.gateway.balance(treasury) - treasury_before == k * PRICE
    journal = rows(Path(agent.journal_path))
    assert [row[:2] for row in journal] == [("accepted", "0.001")] * k
    assert len({row[2] for row in journal}) == k  # each invoice paid once
    assert len({r.json()["signature"] for r in paid}) == k
    assert agent.budget["SOL"].remaining == 0


@pytest.mark.asyncio
async def test_an_async_approve_callback_is_awaited(
    server: GatewayServer, gateway: Gateway, funded_wallet: Funder, make_agent: Any
) -> None:
    """approve= may be a coroutine function: awaited; a refusal pays nothing, a yes pays."""
    offers: list[Any] = []

    async def only_usdc(offer: Any) -> bool:
        offers.append(offer)
        return bool(offer.currency == "USDC")

    wallet = funded_wallet(sol="1", usdc="1")
    agent = make_agent(wallet, approve=only_usdc)
    with pytest.raises(PaymentPolicyError) as caught:
        await agent.get(f"{server.url}/api/v1/premium/sol")
    assert (caught.value.rule, caught.value.reason) == ("approve", "not_approved")
    assert gateway.balance(wallet.pubkey()) == 1
    assert (await agent.get(f"{server.url}/api/v1/premium/usdc")).status_code == 200
    assert [offer.currency for offer in offers] == ["SOL", "USDC"]
    assert [row[:2] for row in rows(Path(agent.journal_path))] == [("accepted", "0.05")]


@pytest.mark.asyncio
async def test_raise_budget_lets_a_refused_payment_through(
    server: GatewayServer, gateway: Gateway, funded_wallet: Funder, make_agent: Any
) -> None:
    """A budget too small refuses, unsigned; raise_budget (journaled) lets the next one pay."""
    wallet = funded_wallet(sol="1")
    agent = make_agent(wallet, budget={"SOL": "0.0005"})
    url = f"{server.url}/api/v1/premium/sol"
    with pytest.raises(PaymentPolicyError) as caught:
        await agent.get(url)
    assert caught.value.rule == "budget"
    lines = await agent.raise_budget({"SOL": "0.001"})
    assert lines["SOL"].limit == Decimal("0.0015")
    assert (await agent.get(url)).status_code == 200
    assert gateway.balance(wallet.pubkey()) == 1 - PRICE - FEE
    assert agent.budget["SOL"].spent == PRICE + FEE
    assert await agent.pending_payments() == []
    assert await agent.pending_tasks() == []
    assert [r.id for r in await agent.payments_since(0)] == [r.id for r in agent.payments]


# -- a hostile gateway: a failing RPC node ---------------------------------------------------------


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def hostile(clock: FakeClock) -> Iterator[GatewayServer]:
    """A gateway of its own (faults are per gateway), on a clock the tests move."""
    with serve_in_thread(clock=clock) as running:
        yield running


@pytest.mark.asyncio
async def test_rpc_failures_are_retried_with_the_injected_sleep(
    hostile: GatewayServer, make_agent: Any
) -> None:
    """Two 503s from the RPC node: tenacity retries them, waiting with the injected sleep (the
    policy's backoff); paid once. Past the policy's tries: SolanaRPCError, nothing signed."""
    gateway = hostile.gateway
    wallet = funded_on(gateway)
    pauses = Pauses()
    agent = make_agent(wallet, rpc_url=hostile.rpc_url, sleep=pauses)
    fails_before = gateway.faults.triggered.count("fail_rpc")
    gateway.faults.fail_rpc(2)
    try:
        assert (await agent.get(f"{hostile.url}/api/v1/premium/sol")).status_code == 200
    finally:
        gateway.faults.clear()
    assert gateway.faults.triggered.count("fail_rpc") == fails_before + 2
    assert pauses.seconds[:2] == [0.0, 0.2]
    agent._cache.clear()  # the chain cache forgotten: this payment reads the chain itself
    gateway.faults.fail_rpc(50)
    try:
        with pytest.raises(SolanaRPCError) as caught:
            await agent.get(f"{hostile.url}/api/v1/premium/sol")
    finally:
        gateway.faults.clear()
    assert "503" in str(caught.value)
    assert [row[0] for row in rows(Path(agent.journal_path))] == ["accepted"]


# -- construction ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_unreachable_server_is_an_sdk_error_and_httpx_s_own(
    funded_wallet: Funder, make_agent: Any
) -> None:
    """Nothing listens: the error is a ConnectionFailedError and also the httpx.ConnectError
    it wraps (with httpx's request), as AutoAgent's are requests' own; nothing journaled."""
    wallet = funded_wallet(sol="1")
    agent = make_agent(wallet)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/premium"
    with pytest.raises(httpx.ConnectError) as caught:
        await agent.get(url)
    error = caught.value
    assert isinstance(error, ConnectionFailedError)
    assert isinstance(error, httpx.HTTPError)
    assert error.reason == "connection_failed"
    assert str(error.request.url) == url
    assert "Nothing was paid" in str(error)
    assert rows(Path(agent.journal_path)) == []


@pytest.mark.asyncio
async def test_constructor_checks_are_autoagents(tmp_path: Path) -> None:
    """The same validation as AutoAgent (one AgentSettings): the same errors, same parameter."""
    wallet = Keypair()
    for options in (
        {"network": "moonnet"},
        {"timeout": -1},
        {"paid_timeout": 0},
        {"rpc_url": "ftp://x"},
        {"max_payment": {"SOL": "-1"}},
        {"approve": 3},
    ):
        with pytest.raises(SDKConfigurationError) as sync_error:
            AutoAgent(wallet, journal_path=":memory:", **options)
        with pytest.raises(SDKConfigurationError) as async_error:
            AsyncAutoAgent(wallet, journal_path=":memory:", **options)
        assert async_error.value.parameter == sync_error.value.parameter
        assert str(async_error.value) == str(sync_error.value)
    with pytest.raises(SDKConfigurationError) as caught:
        AsyncAutoAgent(wallet, journal_path=":memory:", session=object())  # type: ignore[arg-type]
    assert caught.value.parameter == "session"


@pytest.mark.asyncio
async def test_async_with_closes_and_balance_of_an_unknown_symbol_is_refused(
    server: GatewayServer, funded_wallet: Funder, tmp_path: Path
) -> None:
    async with AsyncAutoAgent(
        funded_wallet(sol="2"), rpc_url=server.rpc_url, journal_path=tmp_path / "j.sqlite3"
    ) as agent:
        assert await agent.balance() == 2
        with pytest.raises(SDKConfigurationError) as caught:
            await agent.balance("DOGE")
        assert caught.value.parameter == "currency"
    assert agent.session.is_closed


# -- the pure pieces both drivers share ----------------------------------------------------------


def test_the_retry_policy_is_data_both_transports_apply() -> None:
    """Backoff, the Retry-After cap and the tries per kind; urllib3's Retry is built from it."""
    from datetime import UTC, datetime, timedelta
    from email.utils import format_datetime

    from human_rpc_sdk._io.rpc import RPC_RETRY
    from human_rpc_sdk._retry import RPC_RETRY_POLICY as policy

    assert [policy.backoff(n) for n in (1, 2, 3, 10)] == [0.0, 0.2, 0.4, 2.0]
    assert policy.retry_after("3") == 3.0
    assert policy.retry_after("100") == policy.max_retry_after
    assert policy.retry_after("soon") is None
    assert policy.retry_after(None) is None
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert policy.retry_after(format_datetime(now + timedelta(seconds=2), usegmt=True), now) == 2
    assert policy.delay(2, "1", now) == 1.0
    assert policy.delay(2, None, now) == 0.2
    assert policy.allows(["status"] * 3)
    assert not policy.allows(["status"] * 4)
    assert not policy.allows(["connect", "read", "read", "read"])
    assert not policy.allows(["connect", "status", "connect", "status", "connect"])
    assert (RPC_RETRY.total, RPC_RETRY.connect, RPC_RETRY.read, RPC_RETRY.status) == (
        policy.total,
        policy.connect,
        policy.read,
        policy.status,
    )
    assert set(RPC_RETRY.status_forcelist or ()) == policy.statuses


def test_payment_headers_stay_on_their_origin() -> None:
    from human_rpc_sdk._http import headers_to_strip, same_origin

    names = ["Accept", "x-payment", "PAYMENT-SIGNATURE", "Cookie"]
    assert headers_to_strip("http://a.example/x", "http://A.example:80/y", names) == []
    assert headers_to_strip("http://a.example/x", "http://a.example:81/x", names) == [
        "x-payment",
        "PAYMENT-SIGNATURE",
    ]
    assert headers_to_strip("http://a.example/", "https://a.example/", ["X-PAYMENT"]) == [
        "X-PAYMENT"
    ]
    assert same_origin("https://a.example/p", "https://a.example:443/q")


def test_a_bounded_body_stops_at_its_limit_and_its_deadline() -> None:
    from human_rpc_sdk._http import BoundedBody, read_deadline

    clock = FakeClock()
    body = BoundedBody(4, read_deadline((1, None, 2), clock), clock)
    assert body.deadline == 3
    assert not body.feed(b"ab")
    assert body.overdue() is None
    assert body.feed(b"cdefg")  # over the limit: stop reading
    assert body.body() == b"abcde"  # limit + 1 bytes: "too large" is visible
    clock.now = 3.5
    assert body.overdue() == 3.5
    assert read_deadline((None, True), clock) is None
