"""Attacks on payments prepared ahead (``prepay=``): hostile servers, flaky networks, odd
callers, second processes. Real parts: the stub gateway over loopback, its LiteSVM ledger,
real journals; ledger balances and journal rows are what is asserted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from requests.adapters import HTTPAdapter

from human_rpc_sdk import AutoAgent, HumanRPCError, PaymentError
from stub_gateway import GatewayServer, create_app

from .cut_proxy import CutProxy
from .test_attack_round2 import recount, rows
from .test_prepay import PRICE, ROUTE, settled, spent_usdc, wallet_on


@pytest.fixture
def gateway_server() -> Iterator[GatewayServer]:
    running = GatewayServer(create_app()).start()
    yield running
    running.stop()


def _upstream(server: GatewayServer) -> tuple[str, int]:
    parts = urlsplit(server.url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


# -- a payment that left is never released as never sent ---------------------------------------


def test_a_prepared_payment_sent_then_retried_by_the_adapter_is_not_released(
    gateway_server: GatewayServer, tmp_path: Path
) -> None:
    """The caller's session retries (HTTPAdapter(max_retries=3), a common set-up). The
    prepared payment reaches the server, which settles it; the answer is lost and the server
    then refuses connections, so urllib3's last error is a refused connection. The payment
    left: it must not be released as "never sent" (failed, landed False, budget back)."""
    proxy = CutProxy(_upstream(gateway_server)).start()
    gateway = gateway_server.gateway
    wallet = wallet_on(gateway)
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=3))
    journal = tmp_path / "journal.sqlite3"
    agent = AutoAgent(
        wallet,
        rpc_url=gateway_server.rpc_url,
        journal_path=journal,
        session=session,
        prepay=True,
        sleep=lambda seconds: None,
    )
    url = f"{proxy.url}{ROUTE}"
    try:
        assert agent.get(url).status_code == 200
        settled(agent)
        proxy.cut_next_answer()
        with pytest.raises(HumanRPCError) as caught:
            agent.get(url)
        assert isinstance(caught.value, PaymentError)
        assert "recover_payments" in str(caught.value)
        assert proxy.cut.is_set()
        assert spent_usdc(gateway, wallet) == 2 * PRICE  # the prepared payment landed
        served, prepared = rows(journal)[:2]
        assert served["state"] == "accepted"
        assert (prepared["state"], prepared["landed"]) == ("submitted", None)  # open, not released
        assert agent.budget["USDC"].spent == 2 * PRICE
        assert recount(journal)
        (recovered,) = agent.recover_payments()  # the chain shows it landed
        assert (recovered.state, recovered.landed) == ("accepted", True)
    finally:
        agent.close()
        proxy.stop()
