"""Paid MCP tool calls, offline against the stub gateway (needs the ``mcp`` extra).

* The gateway's paid MCP tools (``stub_gateway.mcp_server``) run next to it; an
  ``mcp`` client session wrapped by ``paying_session`` calls a free tool (untouched), a paid one
  (paid once through the agent's journal and spending rules; the settlement comes back in
  ``_meta``), and one priced over ``max_payment`` (refused, nothing signed).
* The agent itself as an MCP server (``python -m human_rpc_sdk.mcp``, over stdio, a real
  subprocess): another agent calls its ``fetch_paid`` and ``budget`` tools; the limits are the
  ones the server was started with.

    python examples/mcp_paid_tools.py
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from decimal import Decimal

from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from solders.keypair import Keypair

from human_rpc_sdk import AsyncAutoAgent, PaymentPolicyError
from human_rpc_sdk.mcp import paying_session
from stub_gateway import serve_in_thread
from stub_gateway.mcp_server import serve_mcp_in_thread


async def buy_tools(mcp_url: str, rpc_url: str, wallet: Keypair) -> None:
    async with (
        AsyncAutoAgent(wallet, rpc_url=rpc_url, max_payment={"USDC": "0.02"}) as agent,
        streamable_http_client(mcp_url) as (read, write, *_),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        tools = paying_session(session, agent)
        free = await tools.call_tool("echo", {"text": "hello"})
        print("free tool:", free.structured_content)
        paid = await tools.call_tool("premium_quote", {"symbol": "SOL"})
        print("paid tool:", paid.structured_content["quote"])
        settlement = paid.meta["x402/payment-response"]
        receipt = agent.last_payment()  # also in agent.payments, from the journal
        if receipt is not None:
            print(f"  paid {receipt.amount} {receipt.currency} for {receipt.url} ({receipt.state})")
        print(f"  settled in {settlement['transaction'][:16]}...")
        try:
            await tools.call_tool("premium_report", {"topic": "markets"})
        except PaymentPolicyError as error:
            print(f"refused ({error.rule}): 0.05 USDC is over max_payment 0.02")


async def use_agent_server(gateway_url: str, rpc_url: str, wallet: Keypair) -> None:
    env = {
        **os.environ,
        "SOLANA_PRIVATE_KEY": str(wallet),  # the server's wallet, from the environment
        "SOLANA_RPC_URL": rpc_url,
        "HUMAN_RPC_URL": f"{gateway_url}/api/v1/tasks",
    }
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "human_rpc_sdk.mcp", "--max-payment", "USDC=0.02", "--budget", "USDC=1"],
        env=env,
    )
    async with (
        stdio_client(server) as (read, write, *_),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        fetched = await session.call_tool("fetch_paid", {"url": f"{gateway_url}/x402/v2/premium"})
        print("fetch_paid:", fetched.structured_content["status"], "paid", end=" ")
        print(fetched.structured_content["paid"]["amount"], "USDC")
        refused = await session.call_tool(
            "fetch_paid", {"url": f"{gateway_url}/api/v1/premium/usdc"}
        )
        # "...: refused: PaymentPolicyError (reason ..., rule ...): <the SDK's message>"
        said = getattr(refused.content[0], "text", "")
        print("fetch_paid over the limit:", said.split("refused: ", 1)[1].split(":")[0])
        budget = await session.call_tool("budget", {})
        usdc = budget.structured_content["budget"]["USDC"]
        print(f"budget: spent {usdc['spent']} of {usdc['limit']} USDC")


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="  [log] %(message)s")
    with serve_in_thread() as gateway, serve_mcp_in_thread(gateway.url) as tools:
        wallet = Keypair()
        gateway.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(1)})
        asyncio.run(buy_tools(tools.url, gateway.rpc_url, wallet))
        asyncio.run(use_agent_server(gateway.url, gateway.rpc_url, wallet))
        print("USDC left:", gateway.gateway.balance(wallet.pubkey(), "USDC"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
