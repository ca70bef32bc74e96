"""The agent as an MCP server: other agents use its wallet, within its owner's rules.

:func:`agent_server` builds an ``mcp`` ``MCPServer`` over an
:class:`~human_rpc_sdk.AsyncAutoAgent` with four tools:

* ``fetch_paid(url, method, json_body)``: request ``url``, paying a 402 within the agent's
  spending rules; the answer's status, content type and text (at most 64 KiB), and the
  receipt when a payment was made. Restricted to some origins, it follows no redirect: a
  redirect is answered as it is, with its ``location``.
* ``ask_human(question, answer, ...)``: humans verify ``answer`` (the agent's
  ``ask_human_rpc``; it pays the task); the verdict.
* ``wait_for_verdict(task_id)``: the verdict of a task asked before (nothing is paid).
* ``budget()``: the wallet, the ceilings, and what the journal counts as spent.

The rules are the agent's, set by whoever runs the server: no tool raises a limit, and no
argument reaches one. A refusal comes back as a tool error naming the error, its ``reason``
code and the SDK's message (which never holds key material); any other failure is reported
by the MCP server as a bare "Error executing tool" (its text is logged here, not sent).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from .._budgets import per_text
from .._money import format_amount
from .._receipts import PaymentReceipt
from ..exceptions import HumanRPCError
from .aio import BODY_LIMIT
from .async_agent import AsyncAutoAgent

__all__ = ["MAX_BODY_BYTES", "MAX_BODY_CHARS", "MAX_WAIT_SECONDS", "agent_server"]

logger = logging.getLogger("human_rpc_sdk")

MAX_BODY_CHARS: Final = 64 * 1024
"""The most text of an answer ``fetch_paid`` returns (the rest is cut, and says so)."""
MAX_BODY_BYTES: Final = 4 * MAX_BODY_CHARS
"""The most bytes of an answer ``fetch_paid`` reads (the rest is never read)."""
MAX_WAIT_SECONDS: Final = 600.0
"""The longest ``ask_human`` or ``wait_for_verdict`` waits in one call."""
DEFAULT_WAIT_SECONDS: Final = 60.0


def agent_server(
    agent: AsyncAutoAgent,
    *,
    name: str = "human-rpc-agent",
    allowed_origins: Sequence[str] | None = None,
) -> MCPServer:
    """An MCP server whose tools use ``agent`` (see the module's text).

    ``allowed_origins`` (``https://api.example.com``), when given, are the only origins
    ``fetch_paid`` requests: a calling agent cannot make this one fetch (and pay) elsewhere.
    """
    origins = None if allowed_origins is None else {_origin(o) for o in allowed_origins}
    server = MCPServer(
        name,
        instructions=(
            "Tools of a paying agent: fetch_paid pays HTTP 402 answers (x402 or HumanRPC) "
            "within this agent's spending rules; ask_human has humans verify an answer; "
            "budget says what is left. Limits are set by the server's owner."
        ),
    )

    @server.tool(description="GET or POST a URL, paying a 402 within this agent's limits.")
    async def fetch_paid(
        url: str,
        method: Literal["GET", "POST"] = "GET",
        json_body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if origins is not None and _origin(url) not in origins:
            raise ToolError(
                f"refused: {_origin(url)} is not one of the origins this agent may fetch "
                f"({', '.join(sorted(origins))}); nothing was requested or paid"
            )
        try:
            # Restricted to origins, redirects are not followed: an allowed origin redirecting
            # elsewhere (an open redirect) would have the agent request, and pay, outside them.
            # The redirect is returned (its location too): fetching it is checked as any URL.
            # Only the first bytes are read: an endless answer cannot fill this server's memory.
            limit = BODY_LIMIT.set(MAX_BODY_BYTES)
            try:
                response = await agent.request(
                    method, url, json=json_body, follow_redirects=origins is None
                )
            finally:
                BODY_LIMIT.reset(limit)
        except HumanRPCError as exc:
            raise _refused(exc) from None
        text = response.text
        receipt = agent.last_payment()
        answer: dict[str, Any] = {
            "status": response.status_code,
            "content_type": response.headers.get("content-type", ""),
            "body": text[:MAX_BODY_CHARS],
            "truncated": len(text) > MAX_BODY_CHARS or len(response.content) > MAX_BODY_BYTES,
            "paid": None if receipt is None else _receipt(receipt),
        }
        if response.is_redirect:  # where it points, made absolute: fetch_paid it to follow
            answer["location"] = str(response.url.join(response.headers.get("location", "")))
        return answer

    @server.tool(description="Have humans verify an answer (pays the task); the verdict.")
    async def ask_human(
        question: str,
        answer: str,
        confidence: float | None = None,
        context: dict[str, Any] | None = None,
        reward: str | None = None,
        currency: str = "USDC",
        timeout: float = DEFAULT_WAIT_SECONDS,
    ) -> dict[str, Any]:
        try:
            verdict = await agent.ask_human_rpc(
                question,
                answer=answer,
                confidence=confidence,
                context=context,
                reward=reward,
                currency=currency,
                timeout=_wait(timeout),
            )
        except HumanRPCError as exc:
            raise _refused(exc) from None
        return dict(verdict)

    @server.tool(description="Wait for the verdict of a task asked before (nothing is paid).")
    async def wait_for_verdict(
        task_id: str, timeout: float = DEFAULT_WAIT_SECONDS
    ) -> dict[str, Any]:
        try:
            verdict = await agent.wait_for_verdict(task_id, timeout=_wait(timeout))
        except HumanRPCError as exc:
            raise _refused(exc) from None
        return dict(verdict)

    @server.tool(description="This agent's wallet, spending ceilings and what is left.")
    async def budget() -> dict[str, Any]:
        lines = agent.budget
        pending = await agent.pending_payments()
        return {
            "network": agent.network,
            "wallet": agent.address,
            "budget": {
                currency: {
                    "limit": _amount(line.limit),
                    "spent": format_amount(line.spent),
                    "remaining": _amount(line.remaining),
                    "lines": [
                        {
                            "per": per_text(each.per),  # "day", "rolling 90m"
                            "limit": _amount(each.limit),
                            "spent": format_amount(each.spent),
                            "remaining": _amount(each.remaining),
                            "resets": None if each.resets is None else each.resets.isoformat(),
                        }
                        for each in line
                    ],
                }
                for currency, line in lines.items()
            },
            "max_payment": {
                currency: _amount(limit) for currency, limit in agent._rules.max_payment.items()
            },
            "payments": len(agent.payments),
            "pending": [_receipt(r) for r in pending],
        }

    return server


def _refused(exc: HumanRPCError) -> ToolError:
    """The tool error for an SDK refusal: what was refused and why, never a key."""
    rule = getattr(exc, "rule", None)
    what = f"{type(exc).__name__} (reason {exc.reason}" + (f", rule {rule})" if rule else ")")
    logger.info("MCP tool refused: %s", what)
    return ToolError(f"refused: {what}: {exc.message}")


def _wait(seconds: float) -> float:
    if not 0 < seconds <= MAX_WAIT_SECONDS:
        raise ToolError(f"timeout must be more than 0 and at most {MAX_WAIT_SECONDS:g} seconds")
    return seconds


def _origin(url: str) -> str:
    parts = urlsplit(url.strip())
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def _amount(value: Decimal | None) -> str | None:
    return None if value is None else format_amount(value)


def _receipt(receipt: PaymentReceipt) -> Mapping[str, Any]:
    return {
        "id": receipt.id,
        "url": receipt.url,
        "amount": format_amount(receipt.amount),
        "currency": receipt.currency,
        "recipient": receipt.recipient,
        "signature": receipt.signature or None,
        "settled": receipt.settled,
        "state": receipt.state,
        "format": receipt.format,
    }
