"""The MCP driver: paying a paid tool call through the agent's payment flow.

:class:`PayingSession` wraps an ``mcp`` ``ClientSession``. Its ``call_tool`` sends the call as
given; a payment-required result (see :mod:`human_rpc_sdk._mcp`) is read as a 402 and paid
by the agent's own flow (:func:`human_rpc_sdk._flow.pay`, run by the agent's
:class:`~human_rpc_sdk._io.aio.AsyncDriver`): pricing, spending rules, ``approve``, the
journal, signing. Each :class:`~human_rpc_sdk._effects.Resend` the flow yields is a tool call
with the payment in ``_meta["x402/payment"]`` (:class:`PaidToolCall`): a call that gets no
answer (a read timeout, a closed connection, an HTTP error of the transport) is
:class:`~human_rpc_sdk._effects.NoAnswer`, so the flow re-sends *the same* payment, never a
new one; the answer is judged as an HTTP answer is.

Written for ``mcp`` 2.x (``MCPError``, timeouts in seconds; the ``mcp`` extra) and 1.x
(``McpError``, ``timedelta`` timeouts; results read by their wire names either way); the
tests run it with 2.x, against servers and clients of both lines.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from datetime import timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final, Protocol

import anyio

from .._effects import HttpReply, NoAnswer, Resend
from .._flow import PaymentOutcome, pay
from .._mcp import ToolAnswer, payment_meta, payment_required_of, reply_of, rpc_error_reply
from .._mcp import tool_url as url_of_tool
from ..exceptions import PaymentError, SDKConfigurationError
from .async_agent import AsyncAutoAgent

__all__ = ["PaidToolCall", "PayingSession", "ToolSession", "paying_session"]

logger = logging.getLogger("human_rpc_sdk")

NO_ANSWER_CODES: Final = frozenset({-32000, -32001, -32603})
"""JSON-RPC codes that are no answer to a paid call: the connection closed (-32000), the read
timed out (-32001), the transport got an HTTP error or the server failed inside (-32603)."""


class ToolSession(Protocol):
    """What :class:`PayingSession` needs of an ``mcp`` ``ClientSession`` (1.x or 2.x)."""

    async def call_tool(self, name: str, arguments: Any = None, *args: Any, **kwargs: Any) -> Any:
        """Call tool ``name``; the ``CallToolResult``."""


@functools.cache
def _mcp_major() -> int:
    try:
        return int(version("mcp").split(".", 1)[0])
    except (PackageNotFoundError, ValueError):
        return 2


@functools.cache
def _mcp_errors() -> tuple[type[Exception], ...]:
    """The exception ``mcp`` raises for a JSON-RPC error answer (``MCPError`` in 2.x)."""
    from mcp.shared import exceptions

    return tuple(
        kind
        for name in ("MCPError", "McpError")
        if isinstance(kind := getattr(exceptions, name, None), type) and issubclass(kind, Exception)
    )


class PaidToolCall:
    """Calls one tool again with a payment attached, as many times as the flow asks.

    ``meta`` is the caller's own ``_meta`` (kept); the payment is added under its key.
    ``error`` keeps a JSON-RPC error that answered a paid call (raised to the caller once the
    flow has journaled the outcome); ``result`` the last result.
    """

    def __init__(
        self,
        session: ToolSession,
        name: str,
        arguments: Any,
        *,
        meta: Mapping[str, Any] | None,
        timeout: float,
        options: Mapping[str, Any],
    ) -> None:
        self.session = session
        self.name = name
        self.arguments = arguments
        self.meta = dict(meta or {})
        seconds: float | timedelta = timeout if _mcp_major() >= 2 else timedelta(seconds=timeout)
        self.timeout = seconds
        self.options = dict(options)
        self.url = url_of_tool(name)
        self.result: Any = None
        self.error: Exception | None = None
        self.sends = 0

    async def __call__(self, effect: Resend) -> HttpReply | NoAnswer:
        meta = {**self.meta, **payment_meta(effect.headers)}
        self.sends += 1
        try:
            result = await self.session.call_tool(
                self.name,
                self.arguments,
                read_timeout_seconds=self.timeout,
                meta=meta,
                **self.options,
            )
        except _mcp_errors() as exc:
            code, message, data = _rpc_error(exc)
            if code in NO_ANSWER_CODES:
                logger.debug("paid call of tool %s: no answer (%s)", self.name, message)
                return NoAnswer(f"MCP error {code}: {message[:200]}")
            self.error = exc
            return rpc_error_reply(code, message, data, self.url)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
            return NoAnswer(f"the MCP connection broke ({type(exc).__name__})")
        except (TimeoutError, OSError) as exc:
            return NoAnswer(f"{type(exc).__name__}: {str(exc)[:200]}")
        self.result = result
        self.error = None
        return reply_of(answer_of(result), self.url)


def _rpc_error(exc: Exception) -> tuple[int, str, Any]:
    """The code, message and data of an ``mcp`` JSON-RPC error (1.x or 2.x)."""
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    message = getattr(error, "message", None)
    return (
        code if isinstance(code, int) else 0,
        message if isinstance(message, str) else str(exc),
        getattr(error, "data", None),
    )


def answer_of(result: Any) -> ToolAnswer:
    """A ``CallToolResult`` of any ``mcp`` version (or its JSON) as a :class:`ToolAnswer`."""
    if isinstance(result, Mapping):
        return ToolAnswer.of(result)
    dump = getattr(result, "model_dump", None)
    if dump is None:
        return ToolAnswer(False, None, (), {})
    wire = dump(by_alias=True, mode="json", exclude_none=True)
    return ToolAnswer.of(wire if isinstance(wire, Mapping) else {})


class PayingSession:
    """An ``mcp`` ``ClientSession`` whose ``call_tool`` pays a payment-required tool result
    with ``agent`` (see :func:`paying_session`). Every other attribute is the session's."""

    def __init__(self, session: ToolSession, agent: AsyncAutoAgent) -> None:
        self.session = session
        self.agent = agent

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)

    async def call_tool(
        self,
        name: str,
        arguments: Any = None,
        read_timeout_seconds: Any = None,
        progress_callback: Any = None,
        *,
        meta: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        """Call tool ``name``; pay a payment-required result once and call it again.

        A result that asks for no payment is returned untouched. The paid call's result is
        returned (its settlement in ``_meta["x402/payment-response"]``); the receipt is
        ``agent.last_payment()`` and in the journal.

        :raises InvoiceValidationError: the payment request is malformed (nothing was paid).
        :raises PaymentPolicyError: a spending rule refused the payment (nothing was signed).
        :raises PaymentError: the payment could not be made, or the server refused it.
        """
        self.agent._in_its_loop()
        self.agent._receipt.set(None)
        try:
            first = await self.session.call_tool(
                name,
                arguments,
                read_timeout_seconds,
                progress_callback,
                meta=dict(meta) if meta is not None else None,
                **options,
            )
        except _mcp_errors() as exc:
            code, message, data = _rpc_error(exc)
            reply = rpc_error_reply(code, message, data, url_of_tool(name))
            if reply.status != 402:
                raise
            return await self._pay(name, arguments, reply, meta, progress_callback, options)
        answer = answer_of(first)
        if payment_required_of(answer) is None:
            return first
        reply = reply_of(answer, url_of_tool(name))
        return await self._pay(name, arguments, reply, meta, progress_callback, options)

    async def _pay(
        self,
        name: str,
        arguments: Any,
        reply: HttpReply,
        meta: Mapping[str, Any] | None,
        progress_callback: Any,
        options: Mapping[str, Any],
    ) -> Any:
        agent = self.agent
        if progress_callback is not None:
            options = {**options, "progress_callback": progress_callback}
        paid = PaidToolCall(
            self.session,
            name,
            arguments,
            meta=meta,
            timeout=agent.paid_timeout,
            options=options,
        )
        outcome: PaymentOutcome = await agent._driver.run(pay(reply, agent._context()), paid)
        agent._receipt.set(outcome.receipt)
        if outcome.error is not None:
            raise outcome.error
        if paid.error is not None:
            raise paid.error
        if paid.result is None:  # the flow ends without an error only once an answer came
            raise PaymentError(
                f"the paid call of tool {name} ended without a result. Check "
                "agent.last_payment() and agent.recover_payments()",
                reason="no_answer_after_payment",
            )
        return paid.result


def paying_session(session: ToolSession, agent: Any) -> PayingSession:
    """``session`` (an ``mcp`` ``ClientSession``), paying paid tool calls with ``agent``.

    ``agent`` must be an :class:`~human_rpc_sdk.AsyncAutoAgent` (MCP sessions are async).

    :raises SDKConfigurationError: ``agent`` is not an ``AsyncAutoAgent``.
    """
    if not isinstance(agent, AsyncAutoAgent):
        raise SDKConfigurationError(
            f"paying_session needs an AsyncAutoAgent (got a {type(agent).__name__}): an MCP "
            "session is async, and AutoAgent pays from blocking code. Nothing was paid; create "
            "an AsyncAutoAgent with the same settings (and journal_path, so both count the same "
            "budget) inside the event loop: 'async with AsyncAutoAgent(...) as agent:'",
            parameter="agent",
        )
    return PayingSession(session, agent)
