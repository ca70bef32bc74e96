"""Issue 13 attacked: payment ids and resuming, sign-in-with-x, paid MCP tool calls.

Each test is a hostile server, a crash or a second caller against the real parts: the stub
gateway over loopback, its LiteSVM ledger, real journals, real MCP server processes.
"""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from pathlib import Path

import pytest

from stub_gateway import Gateway, GatewayServer

from .conftest import Funder
from .test_mcp_agent_server import environment, over_stdio, rows, text_of

PRICE = Decimal("0.01")  # the gateway's x402 v2 premium route


# -- the agent as an MCP server: --allow-origin ----------------------------------------------


@pytest.mark.asyncio
async def test_a_redirect_from_an_allowed_origin_never_pays_another(
    server: GatewayServer,
    gateway: Gateway,
    funded_wallet: Funder,
    responder: str,
    tmp_path: Path,
) -> None:
    """--allow-origin names the only origins fetch_paid may pay: an allowed origin that
    redirects (an open redirect, a hostile page) to a paid URL elsewhere must not make the
    agent pay there. Nothing is paid; the caller is told where it was sent."""
    wallet = funded_wallet(sol="1", usdc="1")
    journal = tmp_path / "agent.sqlite3"
    env = environment(server, wallet, journal)
    elsewhere = f"{server.url}/x402/v2/premium"  # another origin (another port)
    spec = {"status": 302, "headers": {"Location": elsewhere}}
    async with over_stdio(env, "--allow-origin", responder) as session:
        answer = await session.call_tool(
            "fetch_paid", {"url": f"{responder}/respond", "method": "POST", "json_body": spec}
        )
    said = text_of(answer) + json.dumps(answer.structured_content)
    assert not journal.exists() or rows(journal) == []
    assert gateway.balance(wallet.pubkey(), "USDC") == 1
    assert answer.is_error is True or answer.structured_content["status"] == 302
    assert elsewhere in said
