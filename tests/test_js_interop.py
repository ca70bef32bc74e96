"""Interoperability with the official JavaScript packages, run as separate node processes.

``tests/interop/js`` pins ``@solana/kit`` 8, ``@x402/fetch``, ``@x402/svm``, ``@x402/express``
(2.27) and express in its ``package-lock.json``; ``make test`` installs them with ``npm ci``
into ``tests/interop/js/node_modules``. The scripts there talk HTTP to the stub gateway on
loopback; every test checks the exact movements on the gateway's ledger. Under ``CI=true`` a
missing node or package fails the tests instead of skipping them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from human_rpc_sdk import AutoAgent
from stub_gateway import Gateway, GatewayServer

from .test_x402 import DEVNET

JS = Path(__file__).resolve().parent / "interop" / "js"
PACKAGES = ("@solana/kit", "@x402/fetch", "@x402/svm", "@x402/express", "express")
# Two signatures (the payer's and the fee payer's) and @x402/svm's (and this SDK's) priority
# fee: 20,000 compute units at 1 micro-lamport, rounded up to 1 lamport.
X402_FEE = Decimal("0.000010001")


@pytest.fixture(scope="session")
def node() -> str:
    """The node binary, once the pinned packages are installed (``make test`` does it)."""
    found = shutil.which("node")
    missing = [p for p in PACKAGES if not (JS / "node_modules" / p / "package.json").exists()]
    if found is None or missing:
        what = "node is not installed" if found is None else f"missing {', '.join(missing)}"
        message = f"the JavaScript interop tests cannot run: {what}; `make test` runs npm ci"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def run_js(node: str, script: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Run ``script`` with ``arguments``; its last line of output is the JSON answer."""
    done = subprocess.run(
        [node, str(JS / script), json.dumps(arguments)],
        cwd=JS,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def funded(gateway: Gateway, sol: str = "1", usdc: str = "1") -> Keypair:
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(sol), "USDC": Decimal(usdc)})
    return wallet


def ledger(gateway: Gateway, *holdings: tuple[Pubkey, str]) -> list[Decimal]:
    return [gateway.balance(owner, currency) for owner, currency in holdings]


# -- (a) the kit RPC client ------------------------------------------------------------------


def test_kit_sends_and_confirms_a_transfer(
    node: str, server: GatewayServer, gateway: Gateway
) -> None:
    """@solana/kit estimates compute units (simulation without signatures, blockhash replaced),
    asks getFeeForMessage, sends, polls getSignatureStatuses and reads getTransaction."""
    wallet = funded(gateway, usdc="0")
    payee = Keypair().pubkey()
    answer = run_js(
        node,
        "kit_transfer.mjs",
        {"rpc_url": server.rpc_url, "secret": str(wallet), "to": str(payee), "lamports": 10**6},
    )
    assert answer["err"] is None
    assert answer["confirmationStatus"] in ("confirmed", "finalized")
    assert answer["quotedFee"] == answer["fee"] == "5000"
    assert int(answer["units"]) > 0
    assert answer["preBalances"][:2] == [str(10**9), "0"]
    assert answer["postBalances"][:2] == [str(10**9 - 10**6 - 5000), str(10**6)]
    assert gateway.balance(wallet.pubkey()) == Decimal("0.998995")
    assert gateway.balance(payee) == Decimal("0.001")


# -- (b) @x402/fetch pays the gateway's x402 routes ------------------------------------------


@pytest.mark.parametrize("version", [1, 2])
def test_x402_fetch_pays_the_gateway(
    node: str, server: GatewayServer, gateway: Gateway, version: int
) -> None:
    """@x402/fetch with the @x402/svm exact client pays /x402/v{1,2}/premium: 0.01 USDC moves
    to the treasury, the gateway's fee payer pays the network fee, the payer's SOL stays."""
    wallet = funded(gateway)
    fee_payer = gateway.genesis.fee_payer.pubkey()
    holdings = (
        (wallet.pubkey(), "USDC"),
        (wallet.pubkey(), "SOL"),
        (gateway.treasury, "USDC"),
        (fee_payer, "SOL"),
    )
    before = ledger(gateway, *holdings)
    answer = run_js(
        node,
        "x402_fetch.mjs",
        {
            "url": f"{server.url}/x402/v{version}/premium",
            "secret": str(wallet),
            "rpc_url": server.rpc_url,
        },
    )
    assert answer["status"] == 200, answer
    assert json.loads(answer["body"])["content"] == f"premium x402 v{version} content, unlocked"
    settlement = answer["settlement"]
    assert settlement["success"] is True
    assert settlement["payer"] == str(wallet.pubkey())
    assert settlement["network"] == ("solana-devnet" if version == 1 else DEVNET)
    after = ledger(gateway, *holdings)
    assert [a - b for a, b in zip(after, before, strict=True)] == [
        Decimal("-0.01"),
        0,
        Decimal("0.01"),
        -X402_FEE,
    ]


# -- (c, d) an @x402/express server, settled by the gateway or by the TypeScript facilitator --


ExpressServer = Callable[..., str]


@pytest.fixture
def express_server(node: str, server: GatewayServer, gateway: Gateway) -> Iterator[ExpressServer]:
    """Start @x402/express servers charging ``amount`` USDC base units to ``pay_to``."""
    processes: list[subprocess.Popen[str]] = []

    def start(pay_to: Pubkey, amount: str, **settle_with: str) -> str:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        arguments = {
            "port": port,
            "pay_to": str(pay_to),
            "asset": str(gateway.genesis.token("USDC").mint),
            "amount": amount,
            "network": DEVNET,
            **settle_with,
        }
        process = subprocess.Popen(
            [node, str(JS / "express_server.mjs"), json.dumps(arguments)],
            cwd=JS,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()
        assert json.loads(line or "{}") == {"ready": True}, process.stderr
        return f"http://127.0.0.1:{port}/paid"

    yield start
    for process in processes:
        process.terminate()
        process.communicate(timeout=10)


def settle_through(
    which: str, server: GatewayServer, gateway: Gateway
) -> tuple[Pubkey, dict[str, str]]:
    """The fee payer and the express server's settings for ``which`` facilitator."""
    if which == "gateway":
        return gateway.genesis.fee_payer.pubkey(), {"facilitator_url": f"{server.url}/facilitator"}
    fee_payer = funded(gateway, usdc="0")
    return fee_payer.pubkey(), {"rpc_url": server.rpc_url, "fee_payer_secret": str(fee_payer)}


@pytest.mark.parametrize("facilitator", ["gateway", "typescript"])
def test_autoagent_pays_an_x402_express_route(
    express_server: ExpressServer,
    server: GatewayServer,
    gateway: Gateway,
    agent_for: Callable[[Keypair], AutoAgent],
    facilitator: str,
) -> None:
    """AutoAgent pays a route behind @x402/express, settled by the gateway's /facilitator or
    by the official TypeScript facilitator (@x402/svm exact) on the gateway's /rpc (which
    simulates the partly signed payment with sigVerify false)."""
    fee_payer, settings = settle_through(facilitator, server, gateway)
    payee = funded(gateway, sol="0.01", usdc="0.01").pubkey()
    url = express_server(payee, "25000", **settings)
    wallet = funded(gateway)
    holdings = (
        (wallet.pubkey(), "USDC"),
        (wallet.pubkey(), "SOL"),
        (payee, "USDC"),
        (fee_payer, "SOL"),
    )
    before = ledger(gateway, *holdings)
    agent = agent_for(wallet)
    response = agent.get(url)
    assert response.status_code == 200, response.text
    assert response.json() == {"content": "served by @x402/express"}
    (receipt,) = agent.payments
    assert (receipt.format, receipt.settled, receipt.amount, receipt.currency) == (
        "x402-v2",
        True,
        Decimal("0.025"),
        "USDC",
    )
    assert receipt.signature
    after = ledger(gateway, *holdings)
    assert [a - b for a, b in zip(after, before, strict=True)] == [
        Decimal("-0.025"),
        0,
        Decimal("0.025"),
        -X402_FEE,
    ]


def test_x402_fetch_pays_an_express_route_settled_by_the_typescript_facilitator(
    node: str, express_server: ExpressServer, server: GatewayServer, gateway: Gateway
) -> None:
    """The all-official path on the gateway's chain: @x402/fetch pays @x402/express, whose
    TypeScript facilitator verifies, sends and confirms through the gateway's /rpc."""
    fee_payer, settings = settle_through("typescript", server, gateway)
    payee = funded(gateway, sol="0.01", usdc="0.01").pubkey()
    url = express_server(payee, "25000", **settings)
    wallet = funded(gateway)
    holdings = (
        (wallet.pubkey(), "USDC"),
        (wallet.pubkey(), "SOL"),
        (payee, "USDC"),
        (fee_payer, "SOL"),
    )
    before = ledger(gateway, *holdings)
    answer = run_js(
        node, "x402_fetch.mjs", {"url": url, "secret": str(wallet), "rpc_url": server.rpc_url}
    )
    assert answer["status"] == 200, answer
    assert answer["settlement"]["success"] is True
    after = ledger(gateway, *holdings)
    assert [a - b for a, b in zip(after, before, strict=True)] == [
        Decimal("-0.025"),
        0,
        Decimal("0.025"),
        -X402_FEE,
    ]
