"""Interoperability with the reference x402 Python package (2.25.0), run as separate processes.

The reference pins ``solana<0.40``, so it lives in ``.venv-x402`` (``make test`` creates it) and
its scripts in ``tests/interop/`` talk HTTP to the stub gateway. Balances are checked on the
gateway's ledger.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.structures import CaseInsensitiveDict
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent, PaymentError
from human_rpc_sdk._effects import ChainCache, HttpReply, PaymentContext, Resend, RpcCall
from human_rpc_sdk._flow import pay
from human_rpc_sdk._headers import b64json, unb64json
from human_rpc_sdk._io.rpc import RpcClient
from human_rpc_sdk.wallet import KeypairSigner
from stub_gateway import Gateway, GatewayServer

from .conftest import booked
from .paid_proxy import paid_proxy
from .reference_peers import reference_process
from .test_x402 import DEVNET, offer

ROOT = Path(__file__).resolve().parent.parent
INTEROP = ROOT / "tests" / "interop"


@pytest.fixture(scope="session")
def x402_python() -> str:
    """The interpreter of the reference x402 environment."""
    python = Path(os.environ.get("X402_PYTHON", ROOT / ".venv-x402" / "bin" / "python"))
    if not python.exists():
        message = "the reference x402 environment (.venv-x402) is missing; `make test` creates it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return str(python)


def run_reference(python: str, script: str, arguments: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [python, str(INTEROP / script), json.dumps(arguments)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def funded(gateway: Gateway, usdc: str = "1", pyusd: str = "0") -> Keypair:
    wallet = Keypair()
    gateway.fund(
        wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(usdc), "PYUSD": Decimal(pyusd)}
    )
    return wallet


@pytest.mark.parametrize("version", [1, 2])
def test_reference_client_pays_the_gateway(
    x402_python: str, server: GatewayServer, gateway: Gateway, version: int
) -> None:
    """The reference client pays /x402/v1|v2/premium; USDC moves; fees are the facilitator's."""
    wallet = funded(gateway)
    fee_payer = gateway.genesis.fee_payer.pubkey()
    before = (gateway.balance(gateway.treasury, "USDC"), gateway.balance(fee_payer))
    answer = run_reference(
        x402_python,
        "ref_client.py",
        {
            "url": f"{server.url}/x402/v{version}/premium",
            "secret": str(wallet),
            "rpc_url": server.rpc_url,
        },
    )
    assert answer["status"] == 200
    assert json.loads(answer["body"])["content"] == f"premium x402 v{version} content, unlocked"
    settlement = answer["settlement"]
    assert settlement["success"] is True
    assert settlement["payer"] == str(wallet.pubkey())
    assert settlement["network"] == ("solana-devnet" if version == 1 else DEVNET)
    assert gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.99")
    assert gateway.balance(wallet.pubkey()) == 1
    assert gateway.balance(gateway.treasury, "USDC") - before[0] == Decimal("0.01")
    assert before[1] - gateway.balance(fee_payer) == Decimal("0.000010001")


def sdk_payment(
    server: GatewayServer, wallet: Keypair, requirements: dict[str, Any], version: int
) -> dict[str, Any]:
    """What this SDK sends for ``requirements``: the decoded payment payload."""
    if version == 2:
        challenge = {
            "x402Version": 2,
            "resource": {"url": "http://x/paid"},
            "accepts": [requirements],
        }
        headers = CaseInsensitiveDict({"PAYMENT-REQUIRED": b64json(challenge)})
        body = b"{}"
    else:
        headers = CaseInsensitiveDict()
        body = json.dumps({"x402Version": 1, "error": "pay", "accepts": [requirements]}).encode()
    context = PaymentContext(
        signer=KeypairSigner(wallet),
        network="devnet",
        cache=ChainCache(),
        clock=lambda: 0.0,
        now=lambda: datetime.now(UTC),
        nonce=lambda: "d1c5a4bd0a7f4c1e8f3b2a6d9e0c7b15",
    )
    rpc = RpcClient(server.rpc_url)
    flow = booked(pay(HttpReply(402, headers, body, "http://x/paid"), context))
    effect = next(flow)
    while isinstance(effect, RpcCall):
        effect = flow.send(rpc.call(effect.requests))
    assert isinstance(effect, Resend)
    name = "PAYMENT-SIGNATURE" if version == 2 else "X-PAYMENT"
    return unb64json(effect.headers[name], name)


def requirements_for(
    gateway: Gateway, fee_payer: Keypair, version: int, symbol: str, amount: str
) -> dict[str, Any]:
    """An exact offer whose fee payer is ``fee_payer`` (the reference facilitator's key)."""
    return offer(
        gateway,
        version=version,
        symbol=symbol,
        amount=amount,
        extra={"feePayer": str(fee_payer.pubkey())},
    )


def reference_verify(
    x402_python: str,
    server: GatewayServer,
    fee_payer: Keypair,
    payload: dict[str, Any],
    requirements: dict[str, Any],
) -> dict[str, Any]:
    """The reference facilitator's verify response, simulating on the gateway's RPC."""
    return run_reference(
        x402_python,
        "ref_verify.py",
        {
            "rpc_url": server.rpc_url,
            "fee_payer_secret": str(fee_payer),
            "network": DEVNET,
            "payload": payload,
            "requirements": requirements,
        },
    )


@pytest.mark.parametrize(("version", "symbol"), [(1, "USDC"), (2, "USDC"), (2, "PYUSD")])
def test_reference_facilitator_accepts_sdk_payments(
    x402_python: str, server: GatewayServer, gateway: Gateway, version: int, symbol: str
) -> None:
    """The reference facilitator's verify (simulating on the gateway) accepts SDK payments."""
    fee_payer = Keypair()
    gateway.fund(fee_payer.pubkey(), {"SOL": Decimal(1)})
    wallet = funded(gateway, usdc="1", pyusd="1")
    requirements = requirements_for(gateway, fee_payer, version, symbol, "12345")
    payload = sdk_payment(server, wallet, requirements, version)
    verdict = reference_verify(x402_python, server, fee_payer, payload, requirements)
    assert verdict == {"isValid": True, "payer": str(wallet.pubkey())}


def test_reference_facilitator_refuses_an_underpayment(
    x402_python: str, server: GatewayServer, gateway: Gateway
) -> None:
    """Control: an underpayment is refused by the reference, with the same reason as ours."""
    fee_payer = Keypair()
    gateway.fund(fee_payer.pubkey(), {"SOL": Decimal(1)})
    wallet = funded(gateway)
    payload = sdk_payment(
        server, wallet, requirements_for(gateway, fee_payer, 2, "USDC", "1000"), 2
    )
    required = requirements_for(gateway, fee_payer, 2, "USDC", "1001")
    payload["accepted"] = required
    verdict = reference_verify(x402_python, server, fee_payer, payload, required)
    assert verdict["isValid"] is False
    assert verdict["invalidReason"] == "invalid_exact_svm_payload_amount_insufficient"


def test_reference_facilitator_accepts_an_overpayment_the_gateway_refuses(
    x402_python: str, server: GatewayServer, gateway: Gateway
) -> None:
    """Where the reference 2.25.0 is looser than the v2 spec ("amount MUST equal"), the
    gateway's facilitator follows the spec (and @x402/svm): one base unit too many is valid
    for the reference and amount_mismatch for the gateway."""
    fee_payer = Keypair()
    gateway.fund(fee_payer.pubkey(), {"SOL": Decimal(1)})
    wallet = funded(gateway)
    payload = sdk_payment(
        server, wallet, requirements_for(gateway, fee_payer, 2, "USDC", "1001"), 2
    )
    required = requirements_for(gateway, fee_payer, 2, "USDC", "1000")
    payload["accepted"] = required
    verdict = reference_verify(x402_python, server, fee_payer, payload, required)
    assert verdict == {"isValid": True, "payer": str(wallet.pubkey())}
    ours = offer(gateway, amount="1000")
    payload = sdk_payment(server, wallet, offer(gateway, amount="1001"), 2)
    payload["accepted"] = ours
    body = {"x402Version": 2, "paymentPayload": payload, "paymentRequirements": ours}
    answer = requests.post(f"{server.url}/facilitator/verify", json=body, timeout=10).json()
    assert (answer["isValid"], answer["invalidReason"]) == (
        False,
        "invalid_exact_svm_payload_amount_mismatch",
    )
    assert gateway.balance(wallet.pubkey(), "USDC") == 1


@pytest.fixture
def reference_server(x402_python: str, server: GatewayServer, gateway: Gateway) -> Iterator[str]:
    """A route behind the reference x402 Flask middleware, with the gateway as its facilitator."""
    with reference_route(x402_python, server, {}) as url:
        yield url


@contextlib.contextmanager
def reference_route(
    x402_python: str, server: GatewayServer, options: dict[str, Any]
) -> Iterator[str]:
    """``ref_server.py`` running with ``options``; its paid route's URL."""
    with reference_process(x402_python, "ref_server.py", server, options) as url:
        yield f"{url}/paid"


def test_sdk_pays_a_reference_middleware_route(
    reference_server: str, server: GatewayServer, gateway: Gateway
) -> None:
    """This SDK pays a route protected by the reference Flask middleware (gateway facilitates)."""
    wallet = funded(gateway)
    treasury_before = gateway.balance(gateway.treasury, "USDC")
    agent = AutoAgent(wallet, rpc_url=server.rpc_url)
    response = agent.get(reference_server)
    assert response.status_code == 200
    assert response.json() == {"content": "served by the reference middleware"}
    (receipt,) = agent.payments
    assert (receipt.format, receipt.settled, receipt.amount, receipt.currency) == (
        "x402-v2",
        True,
        Decimal("0.025"),
        "USDC",
    )
    assert receipt.signature
    assert gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.975")
    assert gateway.balance(gateway.treasury, "USDC") - treasury_before == Decimal("0.025")
    assert gateway.balance(wallet.pubkey()) == 1


def test_reference_client_with_a_payment_id_gets_the_cached_answer_on_a_resend(
    x402_python: str, server: GatewayServer, gateway: Gateway
) -> None:
    """The reference client pays /x402/v2/premium with a payment id (its own helpers) and
    sends that payment again: the gateway answers the same, from its cache; one settlement."""
    wallet = funded(gateway)
    treasury = gateway.balance(gateway.treasury, "USDC")
    result = run_reference(
        x402_python,
        "ref_client_id.py",
        {
            "url": f"{server.url}/x402/v2/premium",
            "secret": str(wallet),
            "rpc_url": server.rpc_url,
        },
    )
    first, again = result["answers"]
    assert result["id"].startswith("pay_")
    assert first["status"] == again["status"] == 200
    assert first["body"] == again["body"]
    assert first["settlement"] == again["settlement"]
    assert gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.99")
    assert gateway.balance(gateway.treasury, "USDC") - treasury == Decimal("0.01")


@pytest.fixture
def reference_server_with_ids(x402_python: str, server: GatewayServer) -> Iterator[str]:
    """A reference Flask middleware route requiring a payment id, keeping answers by id."""
    with reference_process(x402_python, "ref_server_id.py", server) as url:
        yield url


def test_sdk_pays_a_reference_route_requiring_ids_and_a_dropped_answer_is_served_once(
    reference_server_with_ids: str, server: GatewayServer, gateway: Gateway, tmp_path: Path
) -> None:
    """The reference server requires a payment id; the first paid answer is dropped on the
    way back; the SDK re-sends the same payment with the same id and is served from the
    reference server's cache: one settlement on the ledger, one journal row."""
    wallet = funded(gateway)
    treasury = gateway.balance(gateway.treasury, "USDC")
    with paid_proxy(reference_server_with_ids) as proxy:
        proxy.drop = 1
        with AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=tmp_path / "j.db") as agent:
            answer = agent.get(f"{proxy.url}/paid")
            (entry,) = agent._journal.entries()
        first, second = proxy.payments
    assert answer.status_code == 200
    assert answer.json() == {"content": "served by the reference middleware", "cached": True}
    assert first == second
    sent = unb64json(first, "PAYMENT-SIGNATURE")["extensions"]["payment-identifier"]
    assert sent["info"] == {"required": True, "id": entry.payment_id}
    assert entry.state == "accepted"
    assert entry.receipt.settled is True
    count = requests.get(f"{reference_server_with_ids}/settlements", timeout=10).json()
    assert count == {"count": 1}
    assert gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.975")
    assert gateway.balance(gateway.treasury, "USDC") - treasury == Decimal("0.025")


def test_a_reference_route_requiring_ids_it_does_not_keep_is_never_paid_twice(
    x402_python: str, server: GatewayServer, gateway: Gateway, tmp_path: Path
) -> None:
    """The reference server as it ships: it declares ids required and keeps none. The first
    paid answer is dropped; the re-sent payment (same id) fails the reference's verification
    (its simulation of a transaction already executed); the SDK asks the chain, journals the
    payment as landed and refused, and signs nothing more: one settlement, no second."""
    wallet = funded(gateway)
    options = {"payment_id_required": True}
    with (
        reference_route(x402_python, server, options) as url,
        paid_proxy(url.removesuffix("/paid")) as proxy,
    ):
        proxy.drop = 1
        with AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=tmp_path / "j.db") as agent:
            with pytest.raises(PaymentError) as raised:
                agent.get(f"{proxy.url}/paid")
            (entry,) = agent._journal.entries()
        assert len(set(proxy.payments)) == 1
    assert raised.value.reason == "payment_refused"
    assert raised.value.details["server_reason"] == "transaction_simulation_failed"
    assert (entry.state, entry.receipt.landed) == ("refused", True)
    assert gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.975")
