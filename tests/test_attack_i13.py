"""Issue 13 attacked: payment ids and resuming, sign-in-with-x, paid MCP tool calls.

Each test is a hostile server, a crash or a second caller against the real parts: the stub
gateway over loopback, its LiteSVM ledger, real journals, real MCP server processes.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from human_rpc_sdk import AutoAgent, PaymentError, PendingPaymentsWarning
from human_rpc_sdk._headers import b64json, unb64json
from stub_gateway import Gateway, GatewayServer

from .conftest import Funder
from .paid_proxy import PaidProxy, paid_proxy
from .paid_proxy import _Handler as _ProxyHandler
from .test_mcp_agent_server import environment, over_stdio, rows, text_of
from .test_payment_identifier import _CRASHING, ROOT, funded, id_in, proxy

__all__ = ["proxy"]  # the fixture, shared

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


@pytest.mark.asyncio
async def test_a_relative_redirect_is_returned_as_an_absolute_location(
    server: GatewayServer, funded_wallet: Funder, responder: str, tmp_path: Path
) -> None:
    """Restricted to origins, fetch_paid returns a redirect with its location made absolute,
    so the caller can fetch it (checked against the origins like any URL)."""
    wallet = funded_wallet(sol="1", usdc="1")
    env = environment(server, wallet, tmp_path / "agent.sqlite3")
    spec = {"status": 307, "headers": {"Location": "/fixed/200"}}
    async with over_stdio(env, "--allow-origin", responder) as session:
        answer = await session.call_tool(
            "fetch_paid", {"url": f"{responder}/respond", "method": "POST", "json_body": spec}
        )
    assert answer.is_error is False
    assert answer.structured_content["status"] == 307
    assert answer.structured_content["location"] == f"{responder}/fixed/200"
    assert answer.structured_content["paid"] is None


# -- sign-in-with-x: what the agent signs -----------------------------------------------------


def test_a_sign_in_issued_in_the_future_is_never_signed(tmp_path: Path) -> None:
    """A server whose challenges are issued a day ahead collects sign-ins good for later (a
    verifier judges a proof's age by its issuedAt): the agent signs none; it pays as usual,
    through its rules."""
    from stub_gateway import create_app

    from .test_siwx import HeaderLog, WallClock

    clock = WallClock()
    app = create_app(seed="siwx-ahead", siwx_ttl=10 * 86400, siwx_now=clock)
    with GatewayServer(app).start() as running:
        wallet = funded(running.gateway)
        url = f"{running.url}/x402/v2/members"
        with AutoAgent(wallet, rpc_url=running.rpc_url, journal_path=tmp_path / "j.db") as agent:
            log = HeaderLog()
            agent.session.mount("http://", log)
            assert agent.get(url).json()["signed_in"] is False
            clock.advance(86400)  # its challenges are now issued a day after the agent's now
            again = agent.get(url)
            states = [entry.state for entry in agent._journal.entries()]
        assert log.signed_in() == 0
        assert again.json()["signed_in"] is False
        assert states == ["accepted", "accepted"]
        assert running.gateway.balance(wallet.pubkey(), "USDC") == 1 - 2 * PRICE


# -- resuming identified payments ---------------------------------------------------------------


def test_a_recovered_payment_whose_last_answer_was_a_5xx_is_resumed_not_paid_again(
    tmp_path: Path,
) -> None:
    """The README's own case: the gateway settles, then answers 500 to every send
    (no_answer_after_payment). The error says to call recover_payments(), which books the
    payment landed; the same request must then resume it (its answer is still owed), not
    sign and pay a second time for the same purchase."""
    from stub_gateway import create_app

    with GatewayServer(create_app(seed="i13-attack-5xx")).start() as running:
        gateway = running.gateway
        wallet = funded(gateway)
        url = f"{running.url}/x402/v2/premium"
        journal = tmp_path / "j.db"
        with AutoAgent(
            wallet, rpc_url=running.rpc_url, journal_path=journal, sleep=lambda _: None
        ) as agent:
            gateway.faults.error_after_payment(count=4)
            with pytest.raises(PaymentError) as raised:
                agent.get(url)
            assert raised.value.reason == "no_answer_after_payment"
            (booked,) = agent.recover_payments()
            assert (booked.state, booked.landed) == ("accepted", True)
            answer = agent.get(url)
            entries = agent._journal.entries()
        assert answer.status_code == 200
        assert [(e.id, e.state) for e in entries] == [(booked.id, "accepted")]
        assert gateway.balance(wallet.pubkey(), "USDC") == 1 - PRICE


@pytest.mark.parametrize(
    "restart",
    [
        "UPDATE payments SET pid = :pid",  # the new process got the dead one's pid
        # a new pod, a new host name, which cannot be asked whether that process lives: its row
        # is resumed once it has had no outcome for _resume.ABANDONED_AFTER (300 s)
        "UPDATE payments SET host = 'pod-before-restart', updated_unix = updated_unix - 301",
    ],
    ids=["same-pid", "new-host-name-5-minutes-on"],
)
def test_a_payment_of_a_process_gone_before_a_restart_is_resumed(
    restart: str, server: GatewayServer, gateway: Gateway, proxy: PaidProxy, tmp_path: Path
) -> None:
    """kill -9 after the payment left; the agent restarts as a container or pod does: with the
    same pid (pid 1 each time), or under a new host name (a pod's name), with its journal on a
    volume. The row's process is gone: the same request must resume it with its id, not pay a
    second time."""
    wallet = funded(gateway)
    journal = tmp_path / "j.db"
    url = f"{proxy.url}/x402/v2/premium"
    proxy.hold = True
    arguments = {"secret": str(wallet), "rpc_url": server.rpc_url, "journal": str(journal)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CRASHING, json.dumps({**arguments, "url": url})],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proxy.held.wait(120), "the paid request never reached the proxy"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    proxy.hold = False
    proxy.release.set()
    assert gateway.balance(wallet.pubkey(), "USDC") == 1 - PRICE  # the server settled it
    with sqlite3.connect(journal) as db:
        db.execute(restart, {"pid": os.getpid()})
    with pytest.warns(PendingPaymentsWarning):
        agent = AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=journal)
    with agent:
        answer = agent.get(url)
        entries = agent._journal.entries()
    assert answer.status_code == 200
    assert len(entries) == 1
    assert len({id_in(sent) for sent in proxy.payments}) == 1
    assert gateway.balance(wallet.pubkey(), "USDC") == 1 - PRICE


@pytest.mark.parametrize("brk", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x00"])
def test_a_field_holding_any_line_break_is_never_signed(brk: str) -> None:
    """Python's splitlines() (a verifier's or a wallet's reader) breaks lines at \\v, \\f and
    \\x1c-\\x1e too: a statement holding one could forge the message's URI or Chain ID line
    for that reader. The offer is malformed: nothing signed, the 402 paid as usual."""
    from human_rpc_sdk._siwx import challenge_for

    from .test_siwx import DEVNET

    statement = f"Welcome{brk}URI: https://bank.example/{brk}Chain ID: mainnet"
    assert len(statement.splitlines()) == 3 or brk == "\x00"
    info = {
        "domain": "api.example.com",
        "uri": "https://api.example.com/x",
        "version": "1",
        "nonce": "0123456789abcdef",
        "issuedAt": "2026-01-15T10:30:00Z",
        "statement": statement,
    }
    extension = {"info": info, "supportedChains": [{"chainId": DEVNET, "type": "ed25519"}]}
    with pytest.raises(ValueError, match="line break"):
        challenge_for(extension, DEVNET)


HUGE = 64 * 1024 * 1024


class _Endless:
    """A plain HTTP server whose every answer is a 64 MiB body, written as the client reads
    (a blocking socket: the count is what left, give or take the socket buffers)."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(HUGE))
                self.end_headers()
                chunk = b"x" * 65536
                try:
                    for _ in range(HUGE // len(chunk)):
                        self.wfile.write(chunk)
                        served.sent += len(chunk)
                except OSError:
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.sent = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.asyncio
async def test_fetch_paid_reads_no_more_of_an_answer_than_it_returns(
    server: GatewayServer, funded_wallet: Funder, tmp_path: Path
) -> None:
    """fetch_paid returns 64 KiB of an answer: a URL answering 64 MiB (or an endless body)
    must not be read whole into the agent server's memory (a calling agent could exhaust
    it). The answer is cut, and says so."""
    wallet = funded_wallet(sol="1", usdc="1")
    env = environment(server, wallet, tmp_path / "agent.sqlite3")
    endless = _Endless()
    try:
        async with over_stdio(env) as session:
            answer = await session.call_tool("fetch_paid", {"url": f"{endless.url}/big"})
    finally:
        endless.close()
    assert answer.is_error is False
    assert answer.structured_content["truncated"] is True
    assert len(answer.structured_content["body"]) == 64 * 1024
    assert endless.sent < HUGE // 2  # what the socket buffers hold, never the whole body


@pytest.mark.asyncio
@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://x/"])
async def test_a_url_of_another_scheme_is_refused_saying_why(
    url: str, server: GatewayServer, funded_wallet: Funder, tmp_path: Path
) -> None:
    """AsyncAutoAgent (and so fetch_paid) refuses a URL that is not http(s) with the SDK's
    SDKConfigurationError, as AutoAgent does, not a bare httpx error (which the agent's MCP
    server reports to its caller as an unexplained crash). Nothing is sent."""
    from human_rpc_sdk import AsyncAutoAgent, SDKConfigurationError

    wallet = funded_wallet(sol="1", usdc="1")
    async with AsyncAutoAgent(wallet, rpc_url=server.rpc_url, journal_path=":memory:") as agent:
        with pytest.raises(SDKConfigurationError, match="Nothing was sent"):
            await agent.get(url)
    env = environment(server, wallet, tmp_path / "agent.sqlite3")
    async with over_stdio(env) as session:
        refused = await session.call_tool("fetch_paid", {"url": url})
    assert refused.is_error is True
    assert "SDKConfigurationError" in text_of(refused)


class _Stamping(_ProxyHandler):
    """The reference x402 server's Solana exact scheme (``ExactSvmScheme(rpc_url=...)``):
    every 402 carries a fresh ``extra.recentBlockhash`` and ``extra.lastValidBlockHeight``
    (its "dynamic extra fields", which it leaves out when it matches a payment's offer)."""

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() == "payment-required":
            document = unb64json(value, keyword)
            stamped = next(_STAMPS)
            latest = requests.post(
                _RPC[0],
                json={"jsonrpc": "2.0", "id": 1, "method": "getLatestBlockhash", "params": []},
                timeout=10,
            ).json()["result"]["value"]
            for offer in document["accepts"]:
                offer["extra"]["recentBlockhash"] = latest["blockhash"]
                offer["extra"]["lastValidBlockHeight"] = str(
                    latest["lastValidBlockHeight"] + stamped
                )
            value = b64json(document)
        super().send_header(keyword, value)


_STAMPS = itertools.count()
_RPC: list[str] = []


def test_a_server_stamping_each_402_with_its_blockhash_still_resumes(
    server: GatewayServer, gateway: Gateway, tmp_path: Path
) -> None:
    """Against a server whose offers carry the blockhash of the moment (the reference
    package's Solana server does), the next 402 of the same request differs only in those
    dynamic fields: it is the same offer, and the payment whose answer was lost is resumed
    with its id, not paid a second time under a new id."""
    _RPC[:] = [server.rpc_url]
    wallet = funded(gateway)
    with paid_proxy(server.url) as stamping:
        stamping.RequestHandlerClass = _Stamping
        stamping.drop = 4
        url = f"{stamping.url}/x402/v2/premium"
        journal = tmp_path / "j.db"
        with AutoAgent(
            wallet, rpc_url=server.rpc_url, journal_path=journal, sleep=lambda _: None
        ) as agent:
            with pytest.raises(PaymentError) as raised:
                agent.get(url)
            assert raised.value.reason == "no_answer_after_payment"
            answer = agent.get(url)
            entries = agent._journal.entries()
        assert answer.status_code == 200
        assert [entry.state for entry in entries] == ["accepted"]
        assert len({id_in(sent) for sent in stamping.payments}) == 1
    assert gateway.balance(wallet.pubkey(), "USDC") == 1 - PRICE


@pytest.mark.asyncio
async def test_the_agent_server_logs_no_rpc_api_key(
    server: GatewayServer, funded_wallet: Funder, tmp_path: Path
) -> None:
    """An RPC provider's URL carries its API key (``?api-key=...``). The agent's MCP server logs
    to stderr (which MCP hosts keep in log files): a paid fetch must not write the key there
    (httpx logs every request's URL at INFO)."""
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    wallet = funded_wallet(sol="1", usdc="1")
    env = environment(server, wallet, tmp_path / "agent.sqlite3")
    env["SOLANA_RPC_URL"] = f"{server.rpc_url}?api-key=SeCrEt-rpc-key-42"
    log = tmp_path / "stderr.txt"
    parameters = StdioServerParameters(
        command=sys.executable, args=["-m", "human_rpc_sdk.mcp"], env=env
    )
    with log.open("w") as errlog:
        async with (
            stdio_client(parameters, errlog=errlog) as (read, write, *_),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            paid = await session.call_tool("fetch_paid", {"url": f"{server.url}/x402/v2/premium"})
    assert paid.is_error is False
    assert paid.structured_content["paid"]["state"] == "accepted"
    written = log.read_text()
    assert "paying 0.01 USDC" in written  # it does log, at INFO
    assert "SeCrEt-rpc-key-42" not in written
