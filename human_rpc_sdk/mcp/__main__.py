"""``python -m human_rpc_sdk.mcp``: serve this agent as MCP tools (stdio or streamable HTTP).

The wallet, RPC node, HumanRPC service and journal come from the environment, as for
``AutoAgent`` (``SOLANA_PRIVATE_KEY`` or ``SOLANA_KEYPAIR_PATH``, ``SOLANA_RPC_URL``,
``HUMAN_RPC_URL``, ``HUMAN_RPC_JOURNAL``); the spending rules from the command line, set by
whoever runs the server (a calling agent cannot change them)::

    python -m human_rpc_sdk.mcp --max-payment USDC=0.05 --budget USDC=2          # stdio
    python -m human_rpc_sdk.mcp --transport http --port 8765 --budget USDC=2     # HTTP

Over HTTP it says where it listens on stderr (``... MCP server at http://host:port/mcp``);
over stdio, stdout is the protocol's and logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import Any

from ..exceptions import HumanRPCError

__all__ = ["main"]

PROG = "python -m human_rpc_sdk.mcp"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve this agent (wallet from SOLANA_PRIVATE_KEY) as MCP tools.",
    )
    parser.add_argument("--transport", choices=("stdio", "http"), default="stdio")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP only")
    parser.add_argument("--port", type=int, default=8765, help="HTTP only; 0: any free port")
    parser.add_argument("--network", default="devnet")
    parser.add_argument(
        "--max-payment",
        action="append",
        default=[],
        metavar="CURRENCY=AMOUNT",
        help="the most one payment may cost, e.g. USDC=0.05 (repeatable)",
    )
    parser.add_argument(
        "--budget",
        action="append",
        default=[],
        metavar="CURRENCY=AMOUNT",
        help="the most this agent's journal may count as spent, e.g. USDC=2 (repeatable)",
    )
    parser.add_argument("--trusted-recipient", action="append", default=None, metavar="ADDRESS")
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=None,
        metavar="ORIGIN",
        help="only these origins may be fetched, e.g. https://api.example.com (repeatable)",
    )
    return parser


def _amounts(pairs: Sequence[str], parser: argparse.ArgumentParser, name: str) -> dict[str, str]:
    amounts = {}
    for pair in pairs:
        currency, sep, amount = pair.partition("=")
        if not sep or not currency or not amount:
            parser.error(f"{name} takes CURRENCY=AMOUNT, such as USDC=0.05 (got {pair!r})")
        amounts[currency.strip()] = amount.strip()
    return amounts


async def _serve(args: argparse.Namespace, options: dict[str, Any]) -> int:
    # The I/O package, imported when the server runs (this module is the command line).
    from .._io.async_agent import AsyncAutoAgent
    from .._io.mcp_serve import serve_http
    from .._io.mcp_tools import agent_server

    try:
        agent = AsyncAutoAgent(network=args.network, **options)
    except HumanRPCError as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return 2
    async with agent:
        server = agent_server(agent, allowed_origins=args.allow_origin)
        if args.transport == "stdio":
            await server.run_stdio_async()
            return 0
        return await serve_http(server, args.host, args.port, prog=PROG)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # httpx logs every request's URL at INFO: an RPC provider's carries its API key.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    options: dict[str, Any] = {}
    if args.max_payment:
        options["max_payment"] = _amounts(args.max_payment, parser, "--max-payment")
    if args.budget:
        options["budget"] = _amounts(args.budget, parser, "--budget")
    if args.trusted_recipient:
        options["trusted_recipients"] = args.trusted_recipient
    return asyncio.run(_serve(args, options))


if __name__ == "__main__":
    raise SystemExit(main())
