"""Paid MCP tool calls against the reference x402 package (2.25.0, with ``mcp`` 1.x), each
side in its own process: the reference MCP client pays the gateway's paid MCP tools, and
``paying_session`` (``mcp`` 2.x) pays a tool behind the reference MCP payment wrapper whose
facilitator is the gateway. Ledger deltas asserted on the gateway's LiteSVM ledger."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from human_rpc_sdk import AsyncAutoAgent, PaymentPolicyError
from human_rpc_sdk.mcp import paying_session
from stub_gateway import Gateway, GatewayServer
from stub_gateway.mcp_server import McpGatewayServer, serve_mcp_in_thread

from .conftest import Funder
from .reference_peers import reference_process

ROOT = Path(__file__).resolve().parent.parent
INTEROP = ROOT / "tests" / "interop"
DEVNET = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"


@pytest.fixture(scope="module")
def x402_python() -> str:
    """The interpreter of the reference x402 environment (required under CI=true)."""
    python = Path(os.environ.get("X402_PYTHON", ROOT / ".venv-x402" / "bin" / "python"))
    if not python.exists():
        message = "the reference x402 environment (.venv-x402) is missing; `make test` creates it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return str(python)


@pytest.fixture(scope="module")
def mcp_server(server: GatewayServer) -> Iterator[McpGatewayServer]:
    with serve_mcp_in_thread(server.url) as running:
        yield running


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_reference_client_pays_the_gateway_mcp_tool(
    x402_python: str,
    mcp_server: McpGatewayServer,
    server: GatewayServer,
    gateway: Gateway,
    funded_wallet: Funder,
) -> None:
    """The reference x402MCPSession pays premium_quote once (0.01 USDC to the treasury, the
    fee paid by the facilitator) and gets the content and settlement; echo is free."""
    wallet = funded_wallet(sol="1", usdc="1")
    treasury = gateway.balance(gateway.treasury, "USDC")
    arguments = {
        "url": mcp_server.url,
        "secret": str(wallet),
        "rpc_url": server.rpc_url,
        "calls": [["echo", {"text": "hi"}], ["premium_quote", {"symbol": "BTC"}]],
    }
    done = subprocess.run(
        [x402_python, str(INTEROP / "ref_mcp_client.py"), json.dumps(arguments)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    free, paid = json.loads(done.stdout)
    assert (free["payment_made"], free["is_error"], free["settlement"]) == (False, False, None)
    assert json.loads(free["text"][0]) == {"echo": "hi"}
    assert (paid["payment_made"], paid["is_error"]) == (True, False)
    assert json.loads(paid["text"][0])["quote"] == "premium quote for BTC"
    assert paid["settlement"]["success"] is True
    assert paid["settlement"]["payer"] == str(wallet.pubkey())
    assert gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.99")
    assert gateway.balance(gateway.treasury, "USDC") - treasury == Decimal("0.01")
    assert gateway.balance(wallet.pubkey()) == 1


@pytest.fixture(scope="module")
def reference_mcp_server(x402_python: str, server: GatewayServer) -> Iterator[str]:
    """A tool behind the reference MCP payment wrapper, the gateway as its facilitator."""
    with reference_process(x402_python, "ref_mcp_server.py", server, stop_within=30) as url:
        yield f"{url}/mcp"


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[ClientSession]:
    """An initialized ``mcp`` (2.x) client session over streamable HTTP."""
    async with (
        streamable_http_client(url) as (read, write, *_),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def rows(journal: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(journal) as db:
        return db.execute("SELECT state, url, amount, settled FROM payments").fetchall()


@pytest.mark.asyncio
async def test_sdk_pays_the_reference_mcp_server(
    reference_mcp_server: str,
    server: GatewayServer,
    gateway: Gateway,
    funded_wallet: Funder,
    tmp_path: Path,
) -> None:
    """paying_session pays the reference wrapper's tool once (0.025 USDC; the settlement's
    transaction is the receipt's); its free tool passes through untouched."""
    wallet = funded_wallet(sol="1", usdc="1")
    treasury = gateway.balance(gateway.treasury, "USDC")
    journal = tmp_path / "journal.sqlite3"
    async with (
        AsyncAutoAgent(wallet, rpc_url=server.rpc_url, journal_path=journal) as agent,
        connected(reference_mcp_server) as session,
    ):
        paying = paying_session(session, agent)
        free = await paying.call_tool("free_ping", {})
        assert agent.last_payment() is None
        paid = await paying.call_tool("paid_weather", {"city": "Oslo"})
        receipt = agent.last_payment()
    assert free.is_error is False
    assert free.content[0].text == "pong"
    assert paid.is_error is False
    assert json.loads(paid.content[0].text) == {
        "city": "Oslo",
        "weather": "sunny",
        "served_by": "reference",
    }
    settlement = paid.meta["x402/payment-response"]
    assert settlement["success"] is True
    assert receipt is not None
    assert receipt.signature == settlement["transaction"]
    assert (receipt.amount, receipt.currency, receipt.settled) == (Decimal("0.025"), "USDC", True)
    assert rows(journal) == [("accepted", "mcp://tool/paid_weather", "0.025", 1)]
    assert gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.975")
    assert gateway.balance(gateway.treasury, "USDC") - treasury == Decimal("0.025")
    assert gateway.balance(wallet.pubkey()) == 1


@pytest.mark.asyncio
async def test_sdk_refuses_the_reference_price_over_max_payment(
    reference_mcp_server: str,
    server: GatewayServer,
    gateway: Gateway,
    funded_wallet: Funder,
    tmp_path: Path,
) -> None:
    """The reference tool's 0.025 USDC over max_payment 0.02: refused, nothing signed."""
    wallet = funded_wallet(sol="1", usdc="1")
    journal = tmp_path / "journal.sqlite3"
    agent = AsyncAutoAgent(
        wallet, rpc_url=server.rpc_url, journal_path=journal, max_payment={"USDC": "0.02"}
    )
    async with agent, connected(reference_mcp_server) as session:
        with pytest.raises(PaymentPolicyError) as raised:
            await paying_session(session, agent).call_tool("paid_weather", {"city": "Oslo"})
    assert raised.value.rule == "max_payment"
    assert rows(journal) == []
    assert gateway.balance(wallet.pubkey(), "USDC") == 1
