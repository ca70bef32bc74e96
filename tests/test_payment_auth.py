"""PaymentAuth: the agent pays 402s as the ``auth=`` of requests, httpx.Client and
httpx.AsyncClient; over loopback against the stub gateway, checked on the ledger and in the
journal. Redirects of the paid request never carry the payment to another origin."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from solders.keypair import Keypair

from human_rpc_sdk import (
    AsyncAutoAgent,
    AutoAgent,
    PaymentAuth,
    SDKConfigurationError,
)
from stub_gateway import Gateway, GatewayServer

FEE = Decimal("0.000005")
PRICE = Decimal("0.001")
PAYMENT_HEADERS = {"X-PAYMENT", "PAYMENT-SIGNATURE"}


async def no_wait(seconds: float) -> None:
    """The injected async sleep: nothing really waits."""


def funded_on(gateway: Gateway, sol: str = "1", usdc: str = "1") -> Keypair:
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(sol), "USDC": Decimal(usdc), "PYUSD": Decimal(0)})
    return wallet


def rows(path: Path) -> list[tuple[Any, ...]]:
    """The journal as another process reads it: (state, amount, format) per payment."""
    with sqlite3.connect(path) as db:
        return db.execute("SELECT state, amount, format FROM payments ORDER BY id").fetchall()


def sync_agent(wallet: Keypair, rpc_url: str, journal: Path) -> AutoAgent:
    return AutoAgent(wallet, rpc_url=rpc_url, journal_path=journal, sleep=lambda s: None)


def check_sol(gateway: Gateway, wallet: Keypair, journal: Path, response: Any) -> None:
    """A HumanRPC SOL payment: served, price + fee moved, one accepted row."""
    assert response.status_code == 200
    assert response.json()["content"] == "premium sol content, unlocked"
    assert gateway.balance(wallet.pubkey()) == 1 - PRICE - FEE
    assert rows(journal) == [("accepted", "0.001", "humanrpc")]


def check_x402(gateway: Gateway, wallet: Keypair, journal: Path, response: Any, v: int) -> None:
    """An x402 payment: served, 0.01 USDC moved, no SOL (the facilitator pays the fee)."""
    assert response.status_code == 200
    assert gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.99")
    assert gateway.balance(wallet.pubkey()) == 1
    assert rows(journal) == [("accepted", "0.01", f"x402-v{v}")]
    assert response.json()["paid"]["transaction"]


# -- requests ----------------------------------------------------------------------------------


def test_requests_pays_a_humanrpc_invoice(
    server: GatewayServer, gateway: Gateway, tmp_path: Path
) -> None:
    wallet = funded_on(gateway)
    journal = tmp_path / "j.sqlite3"
    with sync_agent(wallet, server.rpc_url, journal) as agent:
        response = requests.get(
            f"{server.url}/api/v1/premium/sol", auth=PaymentAuth(agent), timeout=10
        )
        check_sol(gateway, wallet, journal, response)
        assert response.history[0].status_code == 402
        (receipt,) = agent.payments
        assert receipt.signature == response.json()["paid"]["signature"]


# -- httpx.Client ------------------------------------------------------------------------------


def test_httpx_client_pays_a_humanrpc_invoice(
    server: GatewayServer, gateway: Gateway, tmp_path: Path
) -> None:
    wallet = funded_on(gateway)
    journal = tmp_path / "j.sqlite3"
    with (
        sync_agent(wallet, server.rpc_url, journal) as agent,
        httpx.Client(auth=PaymentAuth(agent)) as client,
    ):
        response = client.get(f"{server.url}/api/v1/premium/sol")
        check_sol(gateway, wallet, journal, response)
        assert [r.status_code for r in response.history] == [402]


# -- httpx.AsyncClient -------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/api/v1/premium/sol", "/x402/v2/premium"])
async def test_httpx_async_client_pays(
    server: GatewayServer, gateway: Gateway, tmp_path: Path, path: str
) -> None:
    wallet = funded_on(gateway)
    journal = tmp_path / "j.sqlite3"
    async with (
        AsyncAutoAgent(
            wallet, rpc_url=server.rpc_url, journal_path=journal, sleep=no_wait
        ) as agent,
        httpx.AsyncClient(auth=PaymentAuth(agent)) as client,
    ):
        response = await client.get(f"{server.url}{path}")
        if path.startswith("/x402"):
            check_x402(gateway, wallet, journal, response, 2)
        else:
            check_sol(gateway, wallet, journal, response)
        assert agent.last_payment() is None or agent.last_payment() == agent.payments[0]


# -- the wrong agent for the client --------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_agent_of_the_wrong_kind_is_refused_unpaid(
    server: GatewayServer, gateway: Gateway, tmp_path: Path
) -> None:
    wallet = funded_on(gateway)
    async with AsyncAutoAgent(
        wallet, rpc_url=server.rpc_url, journal_path=tmp_path / "a.sqlite3", sleep=no_wait
    ) as async_agent:
        with pytest.raises(SDKConfigurationError) as caught:
            requests.get(
                f"{server.url}/api/v1/premium/sol", auth=PaymentAuth(async_agent), timeout=10
            )
        assert caught.value.parameter == "agent"
        with (
            httpx.Client(auth=PaymentAuth(async_agent)) as client,
            pytest.raises(SDKConfigurationError),
        ):
            client.get(f"{server.url}/api/v1/premium/sol")
    with sync_agent(wallet, server.rpc_url, tmp_path / "s.sqlite3") as agent:
        async with httpx.AsyncClient(auth=PaymentAuth(agent)) as aclient:
            with pytest.raises(SDKConfigurationError):
                await aclient.get(f"{server.url}/api/v1/premium/sol")
    assert gateway.balance(wallet.pubkey()) == 1
    with pytest.raises(SDKConfigurationError):
        PaymentAuth(object())  # type: ignore[arg-type]
