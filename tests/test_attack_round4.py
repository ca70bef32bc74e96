"""Attacks on issue 12's speed work (chain state ahead of time, one durable write, the lazy
and remembered hot paths, the gateway's single-run settlement). Real parts only: the stub
gateway over loopback, its LiteSVM ledger, real journals; balances and journal rows asserted.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, jsonify, request
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent, PaymentPolicyError, PendingPaymentsWarning
from human_rpc_sdk._headers import b64json, unb64json
from human_rpc_sdk._io.journal import Journal
from stub_gateway import Gateway, GatewayServer, Price
from stub_gateway.x402_routes import require_x402

from .conftest import FakeClock, Shop, sqlite_of
from .test_attack_round2 import recount, rows
from .test_replacement_proof import gateway_app, serve

PRICE = Decimal("0.001")
FEE = Decimal("0.000005")


# -- x402: an offer refused on cached state is not re-checked when another one is payable --------


@pytest.fixture
def cheap_or_dear() -> Iterator[tuple[Gateway, GatewayServer]]:
    """``GET /either``: x402 v2 with two offers, 0.01 USDC (listed first) and 0.02 PYUSD; a
    payment of either is settled and served."""
    clock = FakeClock()
    with gateway_app(clock) as (gateway, app):
        add_cheap_or_dear(app, gateway)
        server = serve(app)
        try:
            yield gateway, server
        finally:
            server.stop()


def add_cheap_or_dear(app: Flask, gateway: Gateway) -> None:
    def content() -> Response:
        return jsonify({"content": "paid for"})

    cheap = require_x402(gateway, Price(Decimal("0.01"), "USDC"))(content)
    dear = require_x402(gateway, Price(Decimal("0.02"), "PYUSD"))(content)
    usdc = str(gateway.genesis.token("USDC").mint)

    def paid_asset() -> str | None:
        header = request.headers.get("PAYMENT-SIGNATURE")
        if not header:
            return None
        accepted: Any = unb64json(header, "payment").get("accepted") or {}
        return str(accepted.get("asset"))

    @app.get("/either")
    def either() -> Response:
        if paid_asset() == usdc:
            return cheap()
        response: Response = dear()
        header = response.headers.get("PAYMENT-REQUIRED")
        if response.status_code == 402 and header:
            document = unb64json(header, "challenge")
            (pyusd,) = document["accepts"]
            offer = {**pyusd, "asset": usdc, "amount": "10000", "extra": {**pyusd["extra"]}}
            document["accepts"] = [offer, pyusd]
            response.headers["PAYMENT-REQUIRED"] = b64json(document)
        return response


def test_a_cheaper_offer_refused_on_cached_state_is_rechecked(
    cheap_or_dear: tuple[Gateway, GatewayServer], tmp_path: Path
) -> None:
    """The wallet had no USDC when the agent read it, so it paid the 0.02 PYUSD offer; then
    1 USDC is deposited. The next payment, its state cached, must not decide on the stale "no
    USDC" alone that the dearer offer is the one to pay: the cheaper offer's refusal is checked
    on a fresh read (as a refusal of every offer is), and 0.01 USDC is paid."""
    gateway, server = cheap_or_dear
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(0), "PYUSD": Decimal(1)})
    mints = [str(gateway.genesis.token(s).mint) for s in ("USDC", "PYUSD")]
    journal = tmp_path / "journal.sqlite3"
    agent = AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=journal, accept_assets=mints)
    agent._refresher.stop()  # no background refresh: the cache stays as the payment left it
    try:
        url = f"{server.url}/either"
        assert agent.get(url).status_code == 200
        assert gateway.balance(wallet.pubkey(), "PYUSD") == Decimal("0.98")
        gateway.fund(wallet.pubkey(), {"USDC": Decimal(1)})
        assert agent.get(url).status_code == 200
        assert gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.99")
        assert gateway.balance(wallet.pubkey(), "PYUSD") == Decimal("0.98")
        first, second = rows(journal)
        assert (first["currency"], first["amount"]) == ("PYUSD", "0.02")
        assert (second["currency"], second["amount"]) == ("USDC", "0.01")
        recount(journal)
    finally:
        agent.close()


# -- HumanRPC: the payee's account created since the cache read it ------------------------------


def test_rent_for_a_payee_account_created_since_the_cache_read_is_not_counted(
    shop: Shop, tmp_path: Path
) -> None:
    """The agent read that the payee had no USDC account (a 0.02 USDC payment refused by
    max_payment); then the payee's account is created. The next payment, 0.01 USDC on the
    cached "no account", would add the account's creation (idempotent on chain: no rent taken)
    and journal 0.00203928 SOL of rent that was never paid, counted against the SOL budget.
    Creating an account is decided on a fresh read, as a refusal is: no rent journaled."""
    gateway = shop.gateway
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(1)})
    payee = Keypair().pubkey()
    journal = tmp_path / "journal.sqlite3"
    agent = AutoAgent(
        wallet,
        rpc_url=shop.rpc_url,
        journal_path=journal,
        create_token_accounts=True,
        max_payment={"USDC": "0.015"},
    )
    agent._refresher.stop()  # no background refresh: the cache stays as the payment left it
    try:
        with pytest.raises(PaymentPolicyError):
            agent.get(shop.price_url("USDC", "0.02", payee))
        gateway.fund(payee, {"USDC": Decimal("0.5")})
        sol_before = gateway.balance(wallet.pubkey())
        assert agent.get(shop.price_url("USDC", "0.01", payee)).status_code == 200
        assert gateway.balance(payee, "USDC") == Decimal("0.51")
        assert gateway.balance(wallet.pubkey()) == sol_before - Decimal("0.000005")
        (row,) = rows(journal)
        assert (row["state"], row["rent_lamports"]) == ("accepted", 0)
        recount(journal)
    finally:
        agent.close()


# -- power loss: the commits made without a full sync are lost -----------------------------------


def test_a_power_loss_after_the_payments_loses_no_sent_payment(
    server: GatewayServer, gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two payments: reservation and outcome are committed without a full sync, only `signed`
    with one. A power cut keeps the write-ahead log only as far as its last full sync: the copy
    of the journal made then (the log cut at that size) still holds both payments, the second
    `signed`, the budget counting both; recovery finds it on chain and the budget refuses a
    payment the two already used up."""
    synced: list[int] = []
    count_sync = Journal._count_sync

    def recording(self: Journal) -> None:
        count_sync(self)
        wal = Path(f"{self.path}-wal")
        if self._synchronous == "FULL" and wal.exists():
            synced.append(wal.stat().st_size)

    monkeypatch.setattr(Journal, "_count_sync", recording)
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    journal = tmp_path / "journal.sqlite3"
    budget = {"SOL": str(2 * (PRICE + FEE))}
    agent = AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=journal, budget=budget)
    url = f"{server.url}/api/v1/premium/sol"
    try:
        assert agent.get(url).status_code == 200
        assert agent.get(url).status_code == 200
        assert sqlite_of(agent).full_syncs >= 2
        copy = tmp_path / "after-power-cut.sqlite3"
        shutil.copyfile(journal, copy)
        with open(f"{journal}-wal", "rb") as wal:
            kept = wal.read(synced[-1])  # what a full sync put on disk; the rest is lost
        assert len(kept) < Path(f"{journal}-wal").stat().st_size  # an outcome was cut
        Path(f"{copy}-wal").write_bytes(kept)
    finally:
        agent.close()
    copy.chmod(0o600)
    assert [r["state"] for r in rows(copy)] == ["accepted", "signed"]
    recount(copy)
    with pytest.warns(PendingPaymentsWarning):  # the cut outcome: recovery settles it
        restarted = AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=copy, budget=budget)
    try:
        (recovered,) = restarted.recover_payments()
        assert recovered.state == "accepted"
        with pytest.raises(PaymentPolicyError):
            restarted.get(url)
        assert gateway.balance(wallet.pubkey()) == 1 - 2 * (PRICE + FEE)
        assert [r["state"] for r in rows(copy)] == ["accepted", "accepted"]
        recount(copy)
    finally:
        restarted.close()


def test_a_dearer_offer_refused_on_cached_state_costs_no_fresh_read(
    cheap_or_dear: tuple[Gateway, GatewayServer], tmp_path: Path
) -> None:
    """The re-check is only for a refused offer cheaper than the one paid: with no PYUSD, the
    0.01 USDC offer is paid from the cache, with no RPC call on the critical path."""
    gateway, server = cheap_or_dear
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(1), "PYUSD": Decimal(0)})
    mints = [str(gateway.genesis.token(s).mint) for s in ("USDC", "PYUSD")]
    journal = tmp_path / "journal.sqlite3"
    agent = AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=journal, accept_assets=mints)
    agent._refresher.stop()
    try:
        url = f"{server.url}/either"
        assert agent.get(url).status_code == 200
        assert agent.get(url).status_code == 200
        assert agent.rpc_stats.round_trips == 1
        assert gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.98")
        assert [(r["currency"], r["amount"]) for r in rows(journal)] == [("USDC", "0.01")] * 2
    finally:
        agent.close()
