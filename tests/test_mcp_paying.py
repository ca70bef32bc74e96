"""Paid MCP tool calls: ``paying_session`` against the gateway's paid MCP tools over loopback
(streamable HTTP, the real ``mcp`` client), each payment checked on the LiteSVM ledger and in
the journal; and the pure translation of tool results (:mod:`human_rpc_sdk._mcp`)."""

from __future__ import annotations

import base64
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from solders.keypair import Keypair

from human_rpc_sdk import (
    AsyncAutoAgent,
    AutoAgent,
    InvoiceValidationError,
    PaymentError,
    PaymentPolicyError,
    SDKConfigurationError,
)
from human_rpc_sdk._mcp import (
    ToolAnswer,
    payment_meta,
    payment_required_of,
    reply_of,
    rpc_error_reply,
)
from human_rpc_sdk.mcp import paying_session
from stub_gateway import Gateway, GatewayServer
from stub_gateway.mcp_server import (
    DEFAULT_TOOLS,
    McpFaults,
    McpGatewayServer,
    PaidTool,
    serve_mcp_in_thread,
)

from .conftest import CountingSigner, Funder

PRICE = Decimal("0.01")


class Pauses:
    """An async sleep that only records how long it was asked to wait."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


@pytest.fixture(scope="module")
def faults() -> McpFaults:
    return McpFaults()


async def _broken(arguments: Mapping[str, Any]) -> Any:
    raise RuntimeError("the tool broke")


BROKEN = PaidTool("broken", "A paid tool that fails (0.01 USDC)", _broken, PRICE)


@pytest.fixture(scope="module")
def mcp_server(server: GatewayServer, faults: McpFaults) -> Iterator[McpGatewayServer]:
    """The gateway's paid MCP tools (and one that fails), settled by the session gateway's
    facilitator."""
    tools = (*DEFAULT_TOOLS, BROKEN)
    with serve_mcp_in_thread(server.url, tools=tools, faults=faults) as running:
        yield running


@pytest.fixture(autouse=True)
def _disarmed(faults: McpFaults) -> Iterator[None]:
    yield
    faults.lose_answers, faults.reprice, faults.lost, faults.signalling = 0, False, 0, "result"
    faults.payments.clear()


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[ClientSession]:
    """An initialized ``mcp`` client session over streamable HTTP."""
    async with (
        streamable_http_client(url) as (read, write, *_),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


@pytest_asyncio.fixture
async def make_agent(server: GatewayServer, tmp_path: Path) -> AsyncIterator[Any]:
    made: list[AsyncAutoAgent] = []

    def make(wallet: Keypair | None, **options: Any) -> AsyncAutoAgent:
        options.setdefault("journal_path", tmp_path / f"journal-{len(made)}.sqlite3")
        options.setdefault("sleep", Pauses())
        agent = AsyncAutoAgent(wallet, rpc_url=server.rpc_url, **options)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        await agent.aclose()


def rows(agent: AsyncAutoAgent) -> list[tuple[Any, ...]]:
    """The journal as another process reads it: (state, url, amount, signature) per payment."""
    with sqlite3.connect(agent.journal_path) as db:
        return db.execute(
            "SELECT state, url, amount, signature FROM payments ORDER BY id"
        ).fetchall()


def usdc(gateway: Gateway, owner: Any) -> Decimal:
    return gateway.balance(owner, "USDC")


@pytest.mark.asyncio
async def test_paid_tool_is_paid_once(
    mcp_server: McpGatewayServer, gateway: Gateway, funded_wallet: Funder, make_agent: Any
) -> None:
    """A paid tool: one transfer on the ledger, one accepted journal row, the receipt, the content
    and the settlement in _meta; the facilitator pays the fee (no SOL moves)."""
    wallet = funded_wallet(sol="1", usdc="1")
    treasury = usdc(gateway, gateway.treasury)
    agent = make_agent(wallet)
    async with connected(mcp_server.url) as session:
        result = await paying_session(session, agent).call_tool("premium_quote", {"symbol": "BTC"})
    assert result.is_error is False
    assert result.structured_content == {
        "symbol": "BTC",
        "quote": "premium quote for BTC",
        "tool": "premium_quote",
    }
    settlement = result.meta["x402/payment-response"]
    assert settlement["success"] is True
    receipt = agent.last_payment()
    assert receipt is not None
    assert (receipt.url, receipt.amount, receipt.currency, receipt.format, receipt.settled) == (
        "mcp://tool/premium_quote",
        PRICE,
        "USDC",
        "x402-v2",
        True,
    )
    assert receipt.signature == settlement["transaction"]
    assert rows(agent) == [("accepted", "mcp://tool/premium_quote", "0.01", receipt.signature)]
    assert usdc(gateway, wallet.pubkey()) == 1 - PRICE
    assert usdc(gateway, gateway.treasury) - treasury == PRICE
    assert gateway.balance(wallet.pubkey()) == 1


@pytest.mark.asyncio
async def test_free_tool_passes_through_untouched(
    mcp_server: McpGatewayServer, gateway: Gateway, funded_wallet: Funder, make_agent: Any
) -> None:
    """A free tool's result is the session's own: nothing journaled, nothing paid."""
    wallet = funded_wallet(sol="1", usdc="1")
    agent = make_agent(wallet)
    async with connected(mcp_server.url) as session:
        plain = await session.call_tool("echo", {"text": "hello"})
        paid = await paying_session(session, agent).call_tool("echo", {"text": "hello"})
        tools = await paying_session(session, agent).list_tools()
    assert paid == plain
    assert paid.structured_content == {"echo": "hello"}
    assert {tool.name for tool in tools.tools} >= {"echo", "premium_quote"}
    assert agent.last_payment() is None
    assert rows(agent) == []
    assert usdc(gateway, wallet.pubkey()) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("signalling", ["text", "rpc-error"])
async def test_every_signalling_of_payment_required_is_paid(
    signalling: Any,
    mcp_server: McpGatewayServer,
    faults: McpFaults,
    gateway: Gateway,
    funded_wallet: Funder,
    make_agent: Any,
) -> None:
    """Payment required said only in the text (the spec's minimum) or as the older JSON-RPC
    error 402: paid once all the same."""
    wallet = funded_wallet(sol="1", usdc="1")
    agent = make_agent(wallet)
    faults.signalling = signalling
    async with connected(mcp_server.url) as session:
        result = await paying_session(session, agent).call_tool("premium_quote", {"symbol": "X"})
    assert result.structured_content["quote"] == "premium quote for X"
    assert [state for state, *_ in rows(agent)] == ["accepted"]
    assert usdc(gateway, wallet.pubkey()) == 1 - PRICE


@pytest.mark.asyncio
async def test_price_over_max_payment_is_refused_unsigned(
    mcp_server: McpGatewayServer, gateway: Gateway, funded_wallet: Funder, make_agent: Any
) -> None:
    """A tool priced over max_payment: PaymentPolicyError, nothing signed or journaled."""
    wallet = funded_wallet(sol="1", usdc="1")
    agent = make_agent(wallet, max_payment={"USDC": "0.005"})
    async with connected(mcp_server.url) as session:
        with pytest.raises(PaymentPolicyError) as raised:
            await paying_session(session, agent).call_tool("premium_quote", {"symbol": "BTC"})
    assert raised.value.rule == "max_payment"
    assert "Nothing was signed" in str(raised.value)
    assert rows(agent) == []
    assert usdc(gateway, wallet.pubkey()) == 1


@pytest.mark.asyncio
async def test_declined_by_approve_is_refused_unsigned(
    mcp_server: McpGatewayServer, gateway: Gateway, funded_wallet: Funder, make_agent: Any
) -> None:
    """approve sees the tool's offer (its mcp:// URL and price); declined, nothing is signed."""
    wallet = funded_wallet(sol="1", usdc="1")
    seen: list[Any] = []

    def approve(offer: Any) -> bool:
        seen.append(offer)
        return False

    agent = make_agent(wallet, approve=approve)
    async with connected(mcp_server.url) as session:
        with pytest.raises(PaymentPolicyError) as raised:
            await paying_session(session, agent).call_tool("premium_report", {"topic": "x"})
    assert raised.value.rule == "approve"
    assert [(o.url, o.amount, o.currency) for o in seen] == [
        ("mcp://tool/premium_report", Decimal("0.05"), "USDC")
    ]
    assert rows(agent) == []
    assert usdc(gateway, wallet.pubkey()) == 1


@pytest.mark.asyncio
async def test_lost_answer_is_resent_with_the_same_payment(
    mcp_server: McpGatewayServer,
    faults: McpFaults,
    gateway: Gateway,
    funded_wallet: Funder,
    make_agent: Any,
) -> None:
    """The paid call is served and settled but its answer lost: the same payment is sent again
    and answered from the server's record; one transfer, one journal row, never re-signed."""
    wallet = funded_wallet(sol="1", usdc="1")
    treasury = usdc(gateway, gateway.treasury)
    pauses = Pauses()
    signer = CountingSigner(wallet)
    agent = make_agent(None, signer=signer, sleep=pauses)
    faults.lose_answers = 1
    async with connected(mcp_server.url) as session:
        result = await paying_session(session, agent).call_tool("premium_quote", {"symbol": "ETH"})
    assert faults.lost == 1
    assert pauses.seconds == [0.25]  # one re-send, after the first pause
    first, again = faults.payments
    assert again == first  # the very same payment, byte for byte
    assert signer.count == 1  # signed once
    assert result.structured_content["symbol"] == "ETH"
    receipt = agent.last_payment()
    assert receipt is not None
    assert receipt.settled is True
    assert rows(agent) == [("accepted", "mcp://tool/premium_quote", "0.01", receipt.signature)]
    assert usdc(gateway, wallet.pubkey()) == 1 - PRICE
    assert usdc(gateway, gateway.treasury) - treasury == PRICE


@pytest.mark.asyncio
async def test_every_answer_lost_leaves_the_payment_open(
    mcp_server: McpGatewayServer,
    faults: McpFaults,
    gateway: Gateway,
    funded_wallet: Funder,
    make_agent: Any,
) -> None:
    """No answer to any send: PaymentError no_answer_after_payment; the one payment (settled
    once on the ledger) stays journaled ``submitted`` for recover_payments(); it is paid once."""
    wallet = funded_wallet(sol="1", usdc="1")
    signer = CountingSigner(wallet)
    agent = make_agent(None, signer=signer)
    faults.lose_answers = 10
    async with connected(mcp_server.url) as session:
        with pytest.raises(PaymentError) as raised:
            await paying_session(session, agent).call_tool("premium_quote", {"symbol": "SOL"})
    assert raised.value.reason == "no_answer_after_payment"
    assert faults.lost == 4
    assert len(faults.payments) == 4
    assert all(payment == faults.payments[0] for payment in faults.payments)
    assert signer.count == 1
    ((state, url, amount, _),) = rows(agent)
    assert (state, url, amount) == ("submitted", "mcp://tool/premium_quote", "0.01")
    assert usdc(gateway, wallet.pubkey()) == 1 - PRICE
    (recovered,) = await agent.recover_payments()
    assert (recovered.state, recovered.landed) == ("accepted", True)


@pytest.mark.asyncio
async def test_server_refusing_the_payment_is_a_payment_error(
    mcp_server: McpGatewayServer,
    faults: McpFaults,
    gateway: Gateway,
    funded_wallet: Funder,
    make_agent: Any,
) -> None:
    """A server that checks another price than it asked refuses the payment: PaymentError
    payment_refused with its reason; nothing moved on the ledger; the row is ``refused``."""
    wallet = funded_wallet(sol="1", usdc="1")
    agent = make_agent(wallet)
    faults.reprice = True
    async with connected(mcp_server.url) as session:
        with pytest.raises(PaymentError) as raised:
            await paying_session(session, agent).call_tool("premium_quote", {"symbol": "SOL"})
    assert raised.value.reason == "payment_refused"
    assert "No matching payment requirements" in raised.value.details["server_reason"]
    ((state, url, _, _),) = rows(agent)
    assert (state, url) == ("refused", "mcp://tool/premium_quote")
    assert usdc(gateway, wallet.pubkey()) == 1


@pytest.mark.asyncio
async def test_a_tool_failing_after_payment_is_an_answer_not_resent(
    mcp_server: McpGatewayServer,
    faults: McpFaults,
    gateway: Gateway,
    funded_wallet: Funder,
    make_agent: Any,
) -> None:
    """A paid tool that fails (the server does not settle): its error result is returned, sent
    once (an answer, not a lost one), journaled ``refused`` with no settlement; no money moved."""
    wallet = funded_wallet(sol="1", usdc="1")
    agent = make_agent(wallet)
    async with connected(mcp_server.url) as session:
        result = await paying_session(session, agent).call_tool("broken", {})
    assert result.is_error is True
    assert "the payment was not settled" in result.content[0].text
    assert len(faults.payments) == 1
    receipt = agent.last_payment()
    assert receipt is not None
    assert (receipt.state, receipt.http_status, receipt.settled) == ("refused", 400, None)
    assert [state for state, *_ in rows(agent)] == ["refused"]
    assert usdc(gateway, wallet.pubkey()) == 1


@pytest.mark.asyncio
async def test_unfunded_wallet_is_refused_unsigned(
    mcp_server: McpGatewayServer, funded_wallet: Funder, make_agent: Any
) -> None:
    """A wallet without the tokens: the flow's own refusal (insufficient funds), unsigned."""
    wallet = funded_wallet(sol="1", usdc="0")
    agent = make_agent(wallet)
    async with connected(mcp_server.url) as session:
        with pytest.raises(PaymentError) as raised:
            await paying_session(session, agent).call_tool("premium_quote", {})
    assert raised.value.reason in ("insufficient_funds", "no_payable_offer")
    assert rows(agent) == []


def test_a_blocking_agent_is_refused(server: GatewayServer, funded_wallet: Funder) -> None:
    """paying_session needs an AsyncAutoAgent; an AutoAgent is refused saying what to do."""
    agent = AutoAgent(funded_wallet(), rpc_url=server.rpc_url)
    try:
        with pytest.raises(SDKConfigurationError, match="AsyncAutoAgent"):
            paying_session(object(), agent)  # type: ignore[arg-type]
    finally:
        agent.close()


# -- the pure translation --------------------------------------------------------------------

CHALLENGE = {
    "x402Version": 2,
    "error": "Payment required",
    "resource": {"url": "mcp://tool/t"},
    "accepts": [{"scheme": "exact", "network": "solana:x", "amount": "1"}],
}


@pytest.mark.parametrize(
    "wire",
    [
        {"isError": True, "structuredContent": CHALLENGE, "content": []},
        {"isError": True, "structuredContent": {"x402/error": {"code": 402, "data": CHALLENGE}}},
        {"isError": True, "content": [{"type": "text", "text": json.dumps(CHALLENGE)}]},
        {
            "isError": True,
            "content": [{"type": "text", "text": json.dumps({"x402/error": {"data": CHALLENGE}})}],
        },
    ],
    ids=["structured", "structured-wrapped", "text", "text-wrapped"],
)
def test_payment_required_is_found_where_the_spec_puts_it(wire: dict[str, Any]) -> None:
    """Each of the spec's three places (and the wrapper) yields the challenge, as a 402 whose
    PAYMENT-REQUIRED header is the document."""
    answer = ToolAnswer.of(wire)
    assert payment_required_of(answer) == CHALLENGE
    reply = reply_of(answer, "mcp://tool/t")
    assert reply.status == 402
    assert json.loads(base64.b64decode(reply.headers["PAYMENT-REQUIRED"])) == CHALLENGE


def test_a_result_that_is_not_an_error_asks_no_payment() -> None:
    """A challenge in a result without isError is content, not a request for payment."""
    answer = ToolAnswer.of({"structuredContent": CHALLENGE, "content": []})
    assert payment_required_of(answer) is None
    assert reply_of(answer, "u").status == 200


def test_a_tool_error_is_a_definite_answer() -> None:
    """Another tool error is a 400 (an answer: never re-sent); a settlement rides along."""
    settlement = {"success": True, "transaction": "abc"}
    answer = ToolAnswer.of(
        {
            "isError": True,
            "content": [{"type": "text", "text": "boom"}],
            "_meta": {"x402/payment-response": settlement},
        }
    )
    reply = reply_of(answer, "u")
    assert reply.status == 400
    assert json.loads(base64.b64decode(reply.headers["PAYMENT-RESPONSE"])) == settlement


def test_a_failed_settlement_in_structured_content_is_read() -> None:
    """The spec's failed settlement (in structuredContent, next to a fresh challenge)."""
    failed = {"success": False, "errorReason": "insufficient_funds", "transaction": ""}
    answer = ToolAnswer.of(
        {"isError": True, "structuredContent": {**CHALLENGE, "x402/payment-response": failed}}
    )
    reply = reply_of(answer, "u")
    assert reply.status == 402
    assert json.loads(base64.b64decode(reply.headers["PAYMENT-RESPONSE"])) == failed


def test_json_rpc_402_is_the_older_signalling() -> None:
    """A JSON-RPC error 402 with a challenge is payment required; other errors are a 400."""
    assert rpc_error_reply(402, "Payment required", CHALLENGE, "u").status == 402
    assert rpc_error_reply(-32602, "bad params", None, "u").status == 400


def test_the_payment_meta_is_the_signed_payload() -> None:
    """The _meta payload is the PAYMENT-SIGNATURE document itself (a JSON object)."""
    document = {"x402Version": 2, "payload": {"transaction": "AAAA"}}
    header = base64.b64encode(json.dumps(document).encode()).decode()
    assert payment_meta({"PAYMENT-SIGNATURE": header}) == {"x402/payment": document}
    with pytest.raises(ValueError, match="not an x402 payment"):
        payment_meta({"X-Other": "1"})


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(
    st.dictionaries(
        st.sampled_from(["isError", "structuredContent", "content", "_meta"]), JSON, max_size=4
    )
)
def test_any_tool_result_reads_without_raising(wire: dict[str, Any]) -> None:
    """Whatever a server answers, reading it yields an answer the flow can judge."""
    reply = reply_of(ToolAnswer.of(wire), "u")
    assert reply.status in (200, 400, 402)


def test_a_malformed_challenge_is_refused_unsigned() -> None:
    """A challenge of a version the flow does not read is an InvoiceValidationError (the
    flow's own reading of the translated 402)."""
    from human_rpc_sdk._x402 import read_payment_required

    bad = {**CHALLENGE, "x402Version": 3}
    reply = reply_of(ToolAnswer.of({"isError": True, "structuredContent": bad}), "u")
    with pytest.raises(InvoiceValidationError):
        read_payment_required(reply.headers, reply.body)
