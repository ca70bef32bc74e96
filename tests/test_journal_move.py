"""A wallet whose journal moves from this machine's SQLite file to the fleet's PostgreSQL
database, with payments still open in the file: the database's recovery never sees them, so
the agent says so (PendingPaymentsWarning), naming the file and how to settle them; a file
whose payments all ended says nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import warnings
from decimal import Decimal
from pathlib import Path

import pytest
from solders.keypair import Keypair

from human_rpc_sdk import AsyncAutoAgent, AutoAgent, PendingPaymentsWarning
from human_rpc_sdk._io.journal import Journal
from human_rpc_sdk._records import Reserved
from human_rpc_sdk._settings import machine_journal_path
from stub_gateway import GatewayServer

from .workers.forked import offer


def test_payments_left_open_in_the_sqlite_file_are_named_after_the_move(
    server: GatewayServer, journal_url: str
) -> None:
    wallet = Keypair()
    address = str(wallet.pubkey())
    server.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    before = AutoAgent(wallet, rpc_url=server.rpc_url)  # the machine's SQLite file
    try:
        assert before.get(f"{server.url}/api/v1/premium/sol").status_code == 200
        path = Path(before.journal_path)
        assert path == machine_journal_path(before.network, address)
    finally:
        before.close()
    with warnings.catch_warnings():  # all ended: the move says nothing
        warnings.simplefilter("error", PendingPaymentsWarning)
        AutoAgent(wallet, rpc_url=server.rpc_url, journal_url=journal_url).close()

    file = Journal(path)  # a payment signed there, its outcome unknown (the worker died)
    made = file.reserve(
        dataclasses.replace(offer(), payer=address, network=before.network),
        currency_key="USDC",
        invoice_key=None,
        budget=None,
    )
    assert isinstance(made, Reserved)
    file.mark(made.entry.id, "signed", {"signature": "sig", "transaction_b64": "dHg="})
    file.close()
    for kind in (AutoAgent, AsyncAutoAgent):
        with pytest.warns(PendingPaymentsWarning) as caught:
            agent = kind(wallet, rpc_url=server.rpc_url, journal_url=journal_url)
        text = " ".join(str(w.message) for w in caught)
        assert str(path) in text
        assert f"journal ids {made.entry.id}" in text
        assert "the database's recovery does not see" in text
        assert f"AutoAgent(journal_path={str(path)!r}).recover_payments()" in text
        if isinstance(agent, AutoAgent):
            agent.close()
        else:
            asyncio.run(agent.aclose())
