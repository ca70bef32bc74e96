"""Paid MCP tools for local development, settled by a stub gateway's x402 facilitator.

    python -m stub_gateway --port 8402 &
    python -m stub_gateway.mcp_server --gateway http://127.0.0.1:8402 --port 8403

serves an MCP server (streamable HTTP, at ``http://127.0.0.1:8403/mcp``) with three tools:

* ``premium_quote`` (paid, 0.01 USDC by default): a quote for a symbol;
* ``premium_report`` (paid, 0.05 USDC): a longer report;
* ``echo`` (free): its text back.

A paid tool speaks the x402 MCP transport (``specs/transports-v2/mcp.md``): called without a
payment it answers ``isError: true`` with the ``PaymentRequired`` document in
``structuredContent`` (and, wrapped in ``x402/error``, in its text); called with
``_meta["x402/payment"]`` it has the gateway's facilitator verify the payment, runs the tool,
has the facilitator settle it on the gateway's ledger, and only then returns the content, with
the settlement in ``_meta["x402/payment-response"]``. A refused payment gets a fresh
``PaymentRequired`` whose ``error`` says why; a failed settlement adds the failed settlement to
``structuredContent`` (as the spec shows). The very same payment sent again within two minutes
(its answer was lost) gets the same answer, never a second settlement.

It is a separate process (or thread) talking to the gateway over HTTP, as a real tool
provider talks to its facilitator: the gateway is WSGI (waitress) and MCP's streamable HTTP is
ASGI (uvicorn), and the ``mcp`` package stays out of the gateway unless this is used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import socket
import sys
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, Literal

import httpx
import mcp_types as types
import uvicorn
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from human_rpc_sdk._money import to_base_units

__all__ = [
    "DEFAULT_TOOLS",
    "McpFaults",
    "McpGatewayServer",
    "PaidTool",
    "create_mcp_app",
    "main",
    "serve_mcp_in_thread",
]

logger = logging.getLogger("stub_gateway.mcp")

PAYMENT: Final = "x402/payment"
PAYMENT_RESPONSE: Final = "x402/payment-response"
MAX_TIMEOUT_SECONDS: Final = 60
ANSWER_TTL: Final = 120.0
"""Seconds a paid call's answer is kept for the same payment sent again."""

Handler = Callable[[Mapping[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class PaidTool:
    """A tool: its name, description, input schema, price in USDC (None: free) and handler."""

    name: str
    description: str
    handler: Handler
    price: Decimal | None = None
    schema: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}, "additionalProperties": True}
    )


async def _quote(arguments: Mapping[str, Any]) -> Any:
    symbol = str(arguments.get("symbol", "SOL"))[:16]
    return {"symbol": symbol, "quote": f"premium quote for {symbol}", "tool": "premium_quote"}


async def _report(arguments: Mapping[str, Any]) -> Any:
    topic = str(arguments.get("topic", "markets"))[:64]
    return {"topic": topic, "report": f"premium report on {topic}", "tool": "premium_report"}


async def _echo(arguments: Mapping[str, Any]) -> Any:
    return {"echo": str(arguments.get("text", ""))[:1000]}


DEFAULT_TOOLS: Final = (
    PaidTool(
        "premium_quote",
        "A premium quote for a symbol (paid: 0.01 USDC)",
        _quote,
        Decimal("0.01"),
        {"type": "object", "properties": {"symbol": {"type": "string"}}},
    ),
    PaidTool(
        "premium_report",
        "A premium report on a topic (paid: 0.05 USDC)",
        _report,
        Decimal("0.05"),
        {"type": "object", "properties": {"topic": {"type": "string"}}},
    ),
    PaidTool(
        "echo",
        "Its text back (free)",
        _echo,
        None,
        {"type": "object", "properties": {"text": {"type": "string"}}},
    ),
)


@dataclass
class McpFaults:
    """Faults a test arms: ``lose_answers`` paid calls are served and settled, then their HTTP
    answer is replaced by a 502 (the answer lost); ``reprice`` makes the server check a
    payment against twice the price it asked (a server refusing what it asked for).
    ``payments`` records every payment a paid tool received, in order. ``signalling`` is how
    payment required is said: a result with ``structuredContent`` (the default), only the
    text the spec requires (``text``), or the older JSON-RPC error 402 (``rpc-error``)."""

    lose_answers: int = 0
    reprice: bool = False
    signalling: Literal["result", "text", "rpc-error"] = "result"
    lost: int = 0
    payments: list[Mapping[str, Any]] = field(default_factory=list)


class GatewayFacilitator:
    """The gateway's x402 facilitator and network facts, over HTTP (a client per exchange:
    none is left open when the server stops)."""

    def __init__(self, gateway_url: str) -> None:
        self.url = gateway_url.rstrip("/")
        self.facts: dict[str, Any] | None = None

    async def requirements(self, price: Decimal) -> dict[str, Any]:
        """The ``accepts`` entry for ``price`` USDC (the gateway's treasury is paid)."""
        facts = await self._facts()
        return {
            "scheme": "exact",
            "network": facts["network"],
            "amount": str(to_base_units(price, facts["decimals"])),
            "asset": facts["mint"],
            "payTo": facts["recipient"],
            "maxTimeoutSeconds": MAX_TIMEOUT_SECONDS,
            "extra": {"feePayer": facts["fee_payer"]},
        }

    async def _facts(self) -> dict[str, Any]:
        if self.facts is None:
            async with httpx.AsyncClient() as client:
                info = (await client.get(f"{self.url}/api/v1/info")).json()
                supported = (await client.get(f"{self.url}/facilitator/supported")).json()
            kind = next(k for k in supported["kinds"] if k["x402Version"] == 2)
            usdc = info["mints"]["USDC"]
            self.facts = {
                "network": kind["network"],
                "fee_payer": kind["extra"]["feePayer"],
                "mint": usdc["mint"],
                "decimals": usdc["decimals"],
                "recipient": info["recipient"],
            }
        return self.facts

    async def verify(self, payload: Mapping[str, Any], wanted: Mapping[str, Any]) -> Any:
        return await self._post("verify", payload, wanted)

    async def settle(self, payload: Mapping[str, Any], wanted: Mapping[str, Any]) -> Any:
        return await self._post("settle", payload, wanted)

    async def _post(self, what: str, payload: Mapping[str, Any], wanted: Mapping[str, Any]) -> Any:
        body = {"x402Version": 2, "paymentPayload": payload, "paymentRequirements": wanted}
        async with httpx.AsyncClient() as client:
            answer = await client.post(f"{self.url}/facilitator/{what}", json=body, timeout=30)
        return answer.json()


class PaidTools:
    """The tools, their paywall, and the answers kept for a payment sent again."""

    def __init__(
        self, tools: Sequence[PaidTool], facilitator: GatewayFacilitator, faults: McpFaults
    ) -> None:
        self.tools = {tool.name: tool for tool in tools}
        self.facilitator = facilitator
        self.faults = faults
        self.answers: dict[str, tuple[float, types.CallToolResult]] = {}
        self.locks: dict[str, asyncio.Lock] = {}

    async def list_tools(self, ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(name=t.name, description=t.description, input_schema=dict(t.schema))
                for t in self.tools.values()
            ]
        )

    async def call_tool(
        self, ctx: Any, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        tool = self.tools.get(params.name)
        if tool is None:
            return _error(f"no tool {params.name!r}; try one of {', '.join(self.tools)}")
        arguments = params.arguments or {}
        if tool.price is None:
            return _result(await tool.handler(arguments))
        meta = params.meta if isinstance(params.meta, Mapping) else {}
        payload = meta.get(PAYMENT)
        if not isinstance(payload, Mapping):
            required = await self._required(tool, "Payment required to access this tool")
            if self.faults.signalling == "rpc-error":  # the older signalling
                raise MCPError(402, "Payment required", data=required.structured_content)
            return required
        self.faults.payments.append(payload)
        key = _answer_key(tool.name, arguments, payload)
        lock = self.locks.setdefault(key, asyncio.Lock())
        async with lock:  # the same payment sent twice at once: the second waits the first
            kept = self.answers.get(key)
            now = asyncio.get_running_loop().time()
            if kept is not None and now - kept[0] < ANSWER_TTL:
                return kept[1]
            answer = await self._paid(tool, arguments, payload)
            if answer.meta and PAYMENT_RESPONSE in answer.meta:
                self._forget_older_than(now - ANSWER_TTL)
                self.answers[key] = (now, answer)
            return answer

    def _forget_older_than(self, cutoff: float) -> None:
        """Drop the answers (and their locks) kept past their time."""
        for key in [k for k, (at, _) in self.answers.items() if at < cutoff]:
            del self.answers[key]
            lock = self.locks.get(key)
            if lock is not None and not lock.locked():
                del self.locks[key]

    async def _paid(
        self, tool: PaidTool, arguments: Mapping[str, Any], payload: Mapping[str, Any]
    ) -> types.CallToolResult:
        assert tool.price is not None  # noqa: S101 - only paid tools come here
        price = tool.price * 2 if self.faults.reprice else tool.price
        wanted = await self.facilitator.requirements(price)
        accepted = payload.get("accepted")
        if not isinstance(accepted, Mapping) or not _matches(accepted, wanted):
            return await self._required(tool, "No matching payment requirements found")
        verified = await self.facilitator.verify(payload, wanted)
        if not verified.get("isValid"):
            return await self._required(tool, str(verified.get("invalidReason") or "invalid"))
        try:
            content = await tool.handler(arguments)
        except Exception:  # a tool failing is not settled: nothing is taken
            logger.exception("tool %s failed; its payment is not settled", tool.name)
            return _error("the tool failed; the payment was not settled")
        settlement = await self.facilitator.settle(payload, wanted)
        if settlement.get("success") is not True:
            reason = str(settlement.get("errorReason") or "settlement failed")
            return await self._required(
                tool, f"Payment settlement failed: {reason}", settlement=settlement
            )
        logger.info("tool %s paid: %s", tool.name, settlement.get("transaction"))
        return _result(content, meta={PAYMENT_RESPONSE: settlement})

    async def _required(
        self, tool: PaidTool, error: str, *, settlement: Mapping[str, Any] | None = None
    ) -> types.CallToolResult:
        assert tool.price is not None  # noqa: S101 - only paid tools come here
        document: dict[str, Any] = {
            "x402Version": 2,
            "error": error,
            "resource": {
                "url": f"mcp://tool/{tool.name}",
                "description": tool.description,
                "mimeType": "application/json",
            },
            "accepts": [await self.facilitator.requirements(tool.price)],
        }
        if settlement is not None:
            document[PAYMENT_RESPONSE] = dict(settlement)
        wrapped = {"x402/error": {"code": 402, "message": error, "data": document}}
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=json.dumps(wrapped))],
            structured_content=None if self.faults.signalling == "text" else document,
            is_error=True,
        )


def _matches(accepted: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    return (
        all(accepted.get(name) == wanted[name] for name in ("scheme", "network", "amount", "asset"))
        and accepted.get("payTo") == wanted["payTo"]
    )


def _answer_key(name: str, arguments: Mapping[str, Any], payload: Mapping[str, Any]) -> str:
    text = json.dumps([name, arguments, payload], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _result(content: Any, meta: dict[str, Any] | None = None) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=json.dumps(content))],
        structured_content=content if isinstance(content, dict) else None,
        _meta=meta,
    )


def _error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


class _LoseAnswers:
    """ASGI middleware: while ``faults.lose_answers`` is armed, a paid tool call is served
    (and settled) but its HTTP answer is replaced by a 502, as if the connection failed."""

    def __init__(self, app: ASGIApp, faults: McpFaults) -> None:
        self.app = app
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or not self.faults.lose_answers:
            await self.app(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if not _is_paid_call(body):
            await self.app(scope, _replay(body), send)
            return
        self.faults.lose_answers -= 1
        self.faults.lost += 1

        async def swallow(message: Message) -> None:
            return None

        await self.app(scope, _replay(body), swallow)
        await send({"type": "http.response.start", "status": 502, "headers": []})
        await send({"type": "http.response.body", "body": b"answer lost (a test fault)"})


def _is_paid_call(body: bytes) -> bool:
    try:
        message = json.loads(body)
    except ValueError:
        return False
    params = message.get("params") if isinstance(message, dict) else None
    meta = params.get("_meta") if isinstance(params, dict) else None
    return message.get("method") == "tools/call" and isinstance(meta, dict) and PAYMENT in meta


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def create_mcp_app(
    gateway_url: str,
    *,
    tools: Sequence[PaidTool] = DEFAULT_TOOLS,
    faults: McpFaults | None = None,
) -> ASGIApp:
    """The ASGI app serving ``tools`` at ``/mcp``, paid through the gateway at ``gateway_url``."""
    faults = faults if faults is not None else McpFaults()
    facilitator = GatewayFacilitator(gateway_url)
    paid = PaidTools(tools, facilitator, faults)
    server = Server("stub-gateway-mcp", on_list_tools=paid.list_tools, on_call_tool=paid.call_tool)
    app = server.streamable_http_app(json_response=True, stateless_http=True)
    return _LoseAnswers(app, faults)


class McpGatewayServer:
    """The MCP app on uvicorn, on a socket bound (and listening) before the thread starts: a
    client may connect as soon as this object exists."""

    def __init__(self, app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.socket = socket.create_server((host, port))
        self.host, self.port = self.socket.getsockname()[:2]
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/mcp"

    def start(self) -> McpGatewayServer:
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )
        self.thread.start()
        return self

    def serve_forever(self) -> None:
        self.server.run(sockets=[self.socket])

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join()
        self.socket.close()

    def __enter__(self) -> McpGatewayServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve_mcp_in_thread(
    gateway_url: str,
    *,
    tools: Sequence[PaidTool] = DEFAULT_TOOLS,
    faults: McpFaults | None = None,
    port: int = 0,
) -> McpGatewayServer:
    """Start ``tools``, paid through the gateway at ``gateway_url``, on a free loopback port."""
    app = create_mcp_app(gateway_url, tools=tools, faults=faults)
    return McpGatewayServer(app, port=port).start()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stub_gateway.mcp_server",
        description="Paid MCP tools (x402 MCP transport) settled by a stub gateway.",
    )
    parser.add_argument(
        "--gateway", required=True, help="the gateway's URL, e.g. http://127.0.0.1:8402"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8403)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        server = McpGatewayServer(create_mcp_app(args.gateway), host=args.host, port=args.port)
    except OSError as exc:
        parser.exit(1, f"cannot listen on {args.host}:{args.port}: {exc}\n")
    sys.stdout.write(f"paid MCP tools at {server.url} (settled by {args.gateway})\n")
    sys.stdout.flush()
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
