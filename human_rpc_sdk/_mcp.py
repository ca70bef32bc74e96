"""x402 over MCP tool calls, without I/O: reading a tool result as the payment flow's answer.

The x402 MCP transport (``specs/transports-v2/mcp.md``) carries an HTTP 402 exchange inside a
tool call: a tool that wants payment answers a result with ``isError: true`` whose
``structuredContent`` (or first text content, bare or in an ``x402/error`` wrapper) is the
``PaymentRequired`` document; the client calls the tool again with the payment payload in the
request's ``_meta["x402/payment"]``; the settlement comes back in the result's
``_meta["x402/payment-response"]`` (a failed settlement: in ``structuredContent``, next to a
fresh ``PaymentRequired``).

The payment flow (:func:`human_rpc_sdk._flow.pay`) speaks HTTP. This module translates, so
the flow runs unchanged: a tool result becomes an :class:`~human_rpc_sdk._effects.HttpReply`
(402 with ``PAYMENT-REQUIRED`` for a payment-required result, ``PAYMENT-RESPONSE`` for a
settlement, 400 for any other tool error, 200 for a result), and the payment header the flow
signs becomes the ``_meta`` payload. Reading, pricing, spending rules, the journal, re-sending
the same payment on no answer and judging the answer are the flow's, as for HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ._effects import HttpReply
from ._headers import b64json, unb64json
from ._x402 import (
    PAYMENT_REQUIRED_HEADER,
    PAYMENT_RESPONSE_HEADER,
    PAYMENT_SIGNATURE_HEADER,
    V1_PAYMENT_HEADER,
)

__all__ = [
    "ERROR_WRAPPER",
    "PAYMENT_META_KEY",
    "PAYMENT_REQUIRED_CODE",
    "PAYMENT_RESPONSE_META_KEY",
    "ToolAnswer",
    "payment_meta",
    "payment_required_of",
    "reply_of",
    "rpc_error_reply",
    "tool_url",
]

PAYMENT_META_KEY: Final = "x402/payment"
PAYMENT_RESPONSE_META_KEY: Final = "x402/payment-response"
ERROR_WRAPPER: Final = "x402/error"
PAYMENT_REQUIRED_CODE: Final = 402
"""The JSON-RPC error code of the older MCP signalling (``error.data`` is the challenge)."""
MAX_TEXT_CHARS: Final = 64 * 1024
"""A text content larger than this is not parsed for a challenge (no real one comes close)."""


@dataclass(frozen=True)
class ToolAnswer:
    """A tool call's result in its wire form (the MCP ``CallToolResult`` JSON, any version)."""

    is_error: bool
    structured: Any
    content: tuple[Any, ...]
    meta: Mapping[str, Any]

    @classmethod
    def of(cls, wire: Mapping[str, Any]) -> ToolAnswer:
        """Read ``wire``, a ``CallToolResult`` dumped with its wire names (``isError``, ...)."""
        content = wire.get("content")
        meta = wire.get("_meta")
        return cls(
            is_error=wire.get("isError") is True,
            structured=wire.get("structuredContent"),
            content=tuple(content) if isinstance(content, list) else (),
            meta=meta if isinstance(meta, Mapping) else {},
        )


def tool_url(name: str) -> str:
    """The URL receipts and ``approve`` show for tool ``name`` (the reference's form).

    The agent's own naming, not the server's ``resource.url``: a server cannot make a tool
    call look like a payment to another site.
    """
    return f"mcp://tool/{name}"


def payment_required_of(answer: ToolAnswer) -> dict[str, Any] | None:
    """The ``PaymentRequired`` document of a payment-required result, or None.

    Looked for in the spec's order: ``structuredContent`` itself, its ``x402/error`` wrapper's
    ``data``, then the first content's text (bare or wrapped). Only an error result asks for
    payment.
    """
    if not answer.is_error:
        return None
    found = _challenge_in(answer.structured)
    if found is not None:
        return found
    if answer.content:
        first = answer.content[0]
        if isinstance(first, Mapping) and first.get("type") == "text":
            text = first.get("text")
            if isinstance(text, str) and len(text) <= MAX_TEXT_CHARS:
                try:
                    return _challenge_in(json.loads(text))
                except (ValueError, RecursionError):
                    return None
    return None


def _challenge_in(document: Any) -> dict[str, Any] | None:
    if not isinstance(document, Mapping):
        return None
    if _is_challenge(document):
        return dict(document)
    wrapper = document.get(ERROR_WRAPPER)
    if isinstance(wrapper, Mapping) and _is_challenge(wrapper.get("data")):
        return dict(wrapper["data"])
    return None


def _is_challenge(document: Any) -> bool:
    return (
        isinstance(document, Mapping)
        and "x402Version" in document
        and isinstance(document.get("accepts"), list)
    )


def settlement_of(answer: ToolAnswer) -> Mapping[str, Any] | None:
    """The settlement the result carries: in ``_meta``, else (a failed settlement) in
    ``structuredContent``; None when there is none."""
    found = answer.meta.get(PAYMENT_RESPONSE_META_KEY)
    if isinstance(found, Mapping):
        return found
    if isinstance(answer.structured, Mapping):
        found = answer.structured.get(PAYMENT_RESPONSE_META_KEY)
        if isinstance(found, Mapping):
            return found
    return None


def reply_of(answer: ToolAnswer, url: str) -> HttpReply:
    """``answer`` as the HTTP answer the payment flow reads.

    A payment-required result is a 402 (a v2 challenge in ``PAYMENT-REQUIRED``, a v1 one as
    the body); its settlement, if any, is ``PAYMENT-RESPONSE``. Any other error result is a
    400: the tool answered, without serving (the flow journals a paid one ``refused``, and
    never re-sends it: a tool error is an answer, not a lost one). A result is a 200.
    """
    headers: dict[str, str] = {}
    body = b""
    settlement = settlement_of(answer)
    if settlement is not None:
        headers[PAYMENT_RESPONSE_HEADER] = b64json(settlement)
    challenge = payment_required_of(answer)
    if challenge is not None:
        status = 402
        if challenge.get("x402Version") == 1:
            body = json.dumps(challenge).encode()
        else:
            headers[PAYMENT_REQUIRED_HEADER] = b64json(challenge)
    elif answer.is_error:
        status = 400
        body = json.dumps({"error": _error_text(answer)}).encode()
    else:
        status = 200
    return HttpReply(status=status, headers=headers, body=body, url=url)


def rpc_error_reply(code: int, message: str, data: Any, url: str) -> HttpReply:
    """A JSON-RPC error answering a tool call, as the HTTP answer the flow reads.

    Code 402 with a challenge in ``data`` is the older MCP signalling of payment required: a
    402. Any other error is a definite answer that served nothing: a 400 saying so.
    """
    if code == PAYMENT_REQUIRED_CODE and _is_challenge(data):
        return reply_of(ToolAnswer(True, dict(data), (), {}), url)
    body = json.dumps({"error": f"JSON-RPC error {code}: {message[:200]}"}).encode()
    return HttpReply(status=400, headers={}, body=body, url=url)


def _error_text(answer: ToolAnswer) -> str:
    for item in answer.content:
        if isinstance(item, Mapping) and isinstance(item.get("text"), str):
            return str(item["text"])[:200]
    return "the tool answered with an error"


def payment_meta(headers: Mapping[str, str]) -> dict[str, Any]:
    """The ``_meta`` entry carrying the payment the flow signed into ``headers`` (an x402
    ``PAYMENT-SIGNATURE`` or ``X-PAYMENT``): the same payload, as a JSON object.

    :raises ValueError: ``headers`` carry no x402 payment (a HumanRPC invoice's payment has
        no MCP form; the caller refuses before anything is sent).
    """
    for name in (PAYMENT_SIGNATURE_HEADER, V1_PAYMENT_HEADER):
        value = headers.get(name)
        if value:
            return {PAYMENT_META_KEY: unb64json(value, name)}
    raise ValueError("the payment is not an x402 payment: it has no MCP form")
