"""Sign-in-with-x against the reference x402 package (2.25.0), run as separate processes.

Both ways: the reference client (its SIWX client extension on ``x402HttpxClient``) pays the
gateway's ``/x402/v2/members`` and then signs in to it; this SDK pays a route protected by the
reference SIWX server extension and hooks (``tests/interop/ref_siwx_server.py``, settled by
the gateway's facilitator) and then signs in to it. Balances are read on the gateway's ledger.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from human_rpc_sdk import AutoAgent
from human_rpc_sdk._siwx import SIGN_IN_HEADER
from stub_gateway import Gateway, GatewayServer

from .reference_peers import reference_process
from .test_x402_interop import funded, run_reference, x402_python

__all__ = ["x402_python"]  # the reference interpreter's fixture, shared with test_x402_interop

DEVNET = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"


def test_reference_client_pays_then_signs_in_to_the_gateway(
    x402_python: str, server: GatewayServer, gateway: Gateway
) -> None:
    """The reference client pays /x402/v2/members once, then gets in by its SIWS sign-in."""
    wallet = funded(gateway)
    treasury = gateway.balance(gateway.treasury, "USDC")
    answer = run_reference(
        x402_python,
        "ref_siwx_client.py",
        {
            "url": f"{server.url}/x402/v2/members",
            "secret": str(wallet),
            "rpc_url": server.rpc_url,
        },
    )
    first, second = (json.loads(a["body"]) for a in answer["answers"])
    assert [a["status"] for a in answer["answers"]] == [200, 200]
    assert (first["signed_in"], second["signed_in"]) == (False, True)
    assert second["member"] == str(wallet.pubkey())
    assert gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.99")
    assert gateway.balance(gateway.treasury, "USDC") - treasury == Decimal("0.01")


@pytest.fixture
def reference_siwx_server(
    x402_python: str, server: GatewayServer, gateway: Gateway
) -> Iterator[str]:
    """A route protected by the reference SIWX server extension, settled by the gateway."""
    options = {"fee_payer": gateway.facilitator.fee_payer_address}
    with reference_process(x402_python, "ref_siwx_server.py", server, options) as url:
        yield url


class HeaderLog(requests.adapters.HTTPAdapter):
    """Remembers the headers of every request sent through it."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[CaseInsensitiveDict[str]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append(CaseInsensitiveDict(request.headers))
        return super().send(request, **kwargs)


def test_sdk_pays_then_signs_in_to_a_reference_siwx_server(
    reference_siwx_server: str, server: GatewayServer, gateway: Gateway, tmp_path: Path
) -> None:
    """The SDK pays the reference route once (no sign-in tried: never paid), then signs in;
    the reference hooks record the payment and grant access; a replayed proof is refused."""
    wallet = funded(gateway)
    log = HeaderLog()
    session = requests.Session()
    session.mount("http://", log)
    url = f"{reference_siwx_server}/paid"
    options: dict[str, Any] = {"journal_path": tmp_path / "j", "session": session}
    with AutoAgent(wallet, rpc_url=server.rpc_url, **options) as agent:
        first = agent.get(url)
        second = agent.get(url)
        assert len(agent.payments) == 1
        assert agent._last_payment() is None
    assert (first.json()["signed_in"], second.json()["signed_in"]) == (False, True)
    assert gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.975")
    events = requests.get(f"{reference_siwx_server}/events", timeout=10).json()
    address = str(wallet.pubkey())
    assert events == [
        {"type": "payment_recorded", "resource": "/paid", "address": address},
        {"type": "access_granted", "resource": "/paid", "address": address},
    ]
    (proof,) = [headers[SIGN_IN_HEADER] for headers in log.sent if SIGN_IN_HEADER in headers]
    replayed = requests.get(url, headers={SIGN_IN_HEADER: proof}, timeout=10)
    assert replayed.status_code == 402
    assert requests.get(f"{reference_siwx_server}/events", timeout=10).json()[-1] == {
        "type": "nonce_reused",
        "resource": "/paid",
        "nonce": json.loads(base64.b64decode(proof))["nonce"],
    }
