"""Paid MCP tool calls (the x402 MCP transport), and the agent as an MCP server.

* :func:`paying_session` wraps an ``mcp`` ``ClientSession`` so that ``call_tool`` pays a
  payment-required tool result with an :class:`~human_rpc_sdk.AsyncAutoAgent` (its spending
  rules, ``approve``, journal and receipts) and calls the tool once more with the payment.
* ``python -m human_rpc_sdk.mcp`` serves the agent itself as MCP tools (``fetch_paid``,
  ``ask_human``, ``wait_for_verdict``, ``budget``); see :mod:`human_rpc_sdk.mcp.server`.

Needs the ``mcp`` extra: ``pip install 'human-rpc-sdk[mcp]'``.
"""

from __future__ import annotations

from .._io.mcp import PayingSession, paying_session

__all__ = ["PayingSession", "paying_session"]
