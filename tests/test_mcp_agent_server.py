"""``python -m human_rpc_sdk.mcp``: the agent as MCP tools, run as a real subprocess (stdio
and streamable HTTP) and used with the ``mcp`` client; payments checked on the gateway's
ledger and in the journal the server keeps."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from solders.keypair import Keypair

from stub_gateway import Gateway, GatewayServer

from .conftest import Funder

ROOT = Path(__file__).resolve().parent.parent
PRICE = Decimal("0.01")  # the gateway's x402 premium route


def environment(server: GatewayServer, wallet: Keypair, journal: Path) -> dict[str, str]:
    """The server's environment: the variables AutoAgent reads, and nothing of the tests'."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "SOLANA_PRIVATE_KEY": str(wallet),
        "SOLANA_RPC_URL": server.rpc_url,
        "HUMAN_RPC_URL": f"{server.url}/api/v1/tasks",
        "HUMAN_RPC_JOURNAL": str(journal),
    }


@contextlib.asynccontextmanager
async def over_stdio(env: dict[str, str], *args: str) -> AsyncIterator[ClientSession]:
    """The agent's MCP server as a subprocess speaking stdio, and a client session to it."""
    parameters = StdioServerParameters(
        command=sys.executable, args=["-m", "human_rpc_sdk.mcp", *args], env=env
    )
    async with (
        stdio_client(parameters) as (read, write, *_),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


@contextlib.asynccontextmanager
async def over_http(env: dict[str, str], *args: str) -> AsyncIterator[ClientSession]:
    """The agent's MCP server as a subprocess serving streamable HTTP on a free port."""
    process = subprocess.Popen(
        [sys.executable, "-m", "human_rpc_sdk.mcp", "--transport", "http", "--port", "0", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        url = ""
        for line in process.stderr:  # its log lines, until it says where it listens
            if "MCP server at " in line:
                url = line.rsplit(" ", 1)[1].strip()
                break
        assert url, "the server did not start"
        async with (
            streamable_http_client(url) as (read, write, *_),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session
    finally:
        process.terminate()
        process.communicate(timeout=30)


TRANSPORTS = {"stdio": over_stdio, "http": over_http}


def rows(journal: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(journal) as db:
        return db.execute("SELECT state, url, amount FROM payments ORDER BY id").fetchall()


def text_of(result: Any) -> str:
    return " ".join(getattr(item, "text", "") for item in result.content)


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
async def test_fetch_paid_pays_within_limits_and_refuses_over_them(
    transport: str,
    server: GatewayServer,
    gateway: Gateway,
    funded_wallet: Funder,
    tmp_path: Path,
) -> None:
    """Within max_payment: paid once (ledger, journal, receipt); over it (the HumanRPC premium
    resource, 0.05 USDC): a tool error naming the rule, nothing signed; budget reports both."""
    wallet = funded_wallet(sol="1", usdc="1")
    journal = tmp_path / "agent.sqlite3"
    treasury = gateway.balance(gateway.treasury, "USDC")
    env = environment(server, wallet, journal)
    async with TRANSPORTS[transport](env, "--max-payment", "USDC=0.02") as session:
        tools = {tool.name for tool in (await session.list_tools()).tools}
        paid = await session.call_tool("fetch_paid", {"url": f"{server.url}/x402/v2/premium"})
        refused = await session.call_tool(
            "fetch_paid", {"url": f"{server.url}/api/v1/premium/usdc"}
        )
        budget = await session.call_tool("budget", {})
    assert tools == {"fetch_paid", "ask_human", "wait_for_verdict", "budget"}
    assert paid.is_error is False
    answer = paid.structured_content
    assert answer["status"] == 200
    assert json.loads(answer["body"])["content"] == "premium x402 v2 content, unlocked"
    assert (answer["paid"]["amount"], answer["paid"]["state"], answer["paid"]["settled"]) == (
        "0.01",
        "accepted",
        True,
    )
    assert refused.is_error is True
    said = text_of(refused)
    assert "PaymentPolicyError" in said
    assert "rule max_payment" in said
    assert "Nothing was signed" in said
    assert str(wallet) not in said  # never the key
    assert rows(journal) == [("accepted", f"{server.url}/x402/v2/premium", "0.01")]
    assert gateway.balance(wallet.pubkey(), "USDC") == 1 - PRICE
    assert gateway.balance(gateway.treasury, "USDC") - treasury == PRICE
    lines = budget.structured_content
    assert lines["wallet"] == str(wallet.pubkey())
    assert lines["max_payment"]["USDC"] == "0.02"
    assert lines["budget"]["USDC"]["spent"] == "0.01"
    assert lines["budget"]["USDC"]["lines"] == [
        {"per": None, "limit": "10", "spent": "0.01", "remaining": "9.99", "resets": None}
    ]
    assert lines["payments"] == 1


@pytest.mark.asyncio
async def test_ask_human_then_wait_for_verdict(
    server: GatewayServer, gateway: Gateway, funded_wallet: Funder, tmp_path: Path
) -> None:
    """ask_human pays the gateway's task and returns the humans' verdict; wait_for_verdict
    reads the same task's verdict again, paying nothing."""
    wallet = funded_wallet(sol="1", usdc="1")
    journal = tmp_path / "agent.sqlite3"
    env = environment(server, wallet, journal)
    async with over_stdio(env) as session:
        asked = await session.call_tool(
            "ask_human", {"question": "Is 2+2 4?", "answer": "yes", "confidence": 0.4}
        )
        assert asked.is_error is False, text_of(asked)
        verdict = asked.structured_content
        spent = gateway.balance(wallet.pubkey(), "USDC")
        again = await session.call_tool("wait_for_verdict", {"task_id": verdict["task_id"]})
        unknown = await session.call_tool("wait_for_verdict", {"task_id": "task_unknown"})
    assert (verdict["outcome"], verdict["decision"]) == ("approved", "approve")
    assert verdict["payment"]["accepted"] is True
    assert again.structured_content["task_id"] == verdict["task_id"]
    assert again.structured_content["outcome"] == "approved"
    assert gateway.balance(wallet.pubkey(), "USDC") == spent  # waiting paid nothing
    assert [state for state, _, _ in rows(journal)] == ["accepted"]
    assert unknown.is_error is True
    assert "HumanVerificationError" in text_of(unknown)


@pytest.mark.asyncio
async def test_budget_exhausted_is_refused_server_side(
    server: GatewayServer, gateway: Gateway, funded_wallet: Funder, tmp_path: Path
) -> None:
    """The owner's budget binds the calling agent: the second payment would pass it and is
    refused (rule budget), nothing signed; arguments cannot widen it."""
    wallet = funded_wallet(sol="1", usdc="1")
    journal = tmp_path / "agent.sqlite3"
    env = environment(server, wallet, journal)
    url = f"{server.url}/x402/v2/premium"
    async with over_stdio(env, "--budget", "USDC=0.015") as session:
        first = await session.call_tool("fetch_paid", {"url": url})
        second = await session.call_tool("fetch_paid", {"url": url, "budget": {"USDC": "100"}})
    assert first.is_error is False
    assert second.is_error is True
    assert "PaymentPolicyError (reason refused_by_policy, rule budget)" in text_of(second)
    assert rows(journal) == [("accepted", url, "0.01")]
    assert gateway.balance(wallet.pubkey(), "USDC") == 1 - PRICE


@pytest.mark.asyncio
async def test_only_allowed_origins_are_fetched(
    server: GatewayServer, funded_wallet: Funder, tmp_path: Path
) -> None:
    """--allow-origin: another origin is refused before any request or payment."""
    wallet = funded_wallet(sol="1", usdc="1")
    journal = tmp_path / "agent.sqlite3"
    env = environment(server, wallet, journal)
    async with over_stdio(env, "--allow-origin", "https://api.example.com") as session:
        refused = await session.call_tool("fetch_paid", {"url": f"{server.url}/x402/v2/premium"})
    assert refused.is_error is True
    assert "not one of the origins" in text_of(refused)
    assert not journal.exists() or rows(journal) == []


def test_a_missing_wallet_is_said_in_one_line(tmp_path: Path) -> None:
    """No key in the environment: the server says so and exits 2 (no traceback, no key)."""
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "human_rpc_sdk.mcp"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "SOLANA_PRIVATE_KEY" in done.stderr
    assert "Traceback" not in done.stderr
