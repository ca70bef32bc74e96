"""Attacks on payments prepared ahead (``prepay=``): hostile servers, flaky networks, odd
callers, second processes. Real parts: the stub gateway over loopback, its LiteSVM ledger,
real journals; ledger balances and journal rows are what is asserted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import requests
from requests.adapters import HTTPAdapter

from human_rpc_sdk import AsyncAutoAgent, AutoAgent, HumanRPCError, PaymentError
from stub_gateway import GatewayServer, create_app

from .cut_proxy import CutProxy
from .test_attack_round2 import recount, rows
from .test_prepay import PRICE, ROUTE, settled, spent_usdc, wallet_on


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


def test_a_prepared_payment_sent_then_retried_by_the_adapter_is_not_released(
    gateway_server: GatewayServer, tmp_path: Path
) -> None:
    """The caller's session retries (HTTPAdapter(max_retries=3), a common set-up). The
    prepared payment reaches the server, which settles it; the answer is lost and the server
    then refuses connections, so urllib3's last error is a refused connection. The payment
    left: it must not be released as "never sent" (failed, landed False, budget back)."""
    proxy = CutProxy(_upstream(gateway_server)).start()
    gateway = gateway_server.gateway
    wallet = wallet_on(gateway)
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=3))
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
