"""Paid MCP tool calls (the x402 MCP transport), and the agent as an MCP server.

* :func:`paying_session` wraps an ``mcp`` ``ClientSession`` so that ``call_tool`` pays a
  payment-required tool result with an :class:`~human_rpc_sdk.AsyncAutoAgent` (its spending
  rules, ``approve``, journal and receipts) and calls the tool once more with the payment.
* ``python -m human_rpc_sdk.mcp`` serves the agent itself as MCP tools (``fetch_paid``,
  ``ask_human``, ``wait_for_verdict``, ``budget``); :func:`agent_server` builds that server
  for a program of its own.

Needs the ``mcp`` extra: ``pip install 'human-rpc-sdk[mcp]'``.
"""

from __future__ import annotations

from .._io.mcp import PayingSession, paying_session
from .._io.mcp_tools import agent_server

__all__ = ["PayingSession", "agent_server", "paying_session"]
