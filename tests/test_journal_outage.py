"""The fleet's journal when its PostgreSQL database breaks, at agent level, against the real
gateway and ledger: the database refusing connections fails a payment at once (nothing signed,
nothing on the ledger, nothing at the server); the database lost while a paid request is held
loses no answer and no outcome; the first payment after it is back goes through at once."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from flask import Response, jsonify
from solders.keypair import Keypair
from solders.signature import Signature

from human_rpc_sdk import (
    AsyncAutoAgent,
    AutoAgent,
    KeypairSigner,
    PaymentError,
    SDKConfigurationError,
)
from stub_gateway import Gateway, GatewayServer, Price, create_app

PRICE = Decimal("0.001")
FEE = Decimal("0.000005")
AGENTS = ["sync", "async"]


class CountingSigner(KeypairSigner):
    """A keypair signer that counts what it signs (a real signer: the payments are real)."""

    __slots__ = ("signed",)

    def __init__(self, keypair: Keypair) -> None:
        super().__init__(keypair)
        self.signed = 0

    def sign_message(self, message: bytes) -> Signature:
        self.signed += 1
        return super().sign_message(message)


class Payer:
    """An AutoAgent or an AsyncAutoAgent (in a loop of its own thread), called the same way."""

    def __init__(self, kind: str, signer: KeypairSigner, rpc_url: str, **options: Any) -> None:
        self.kind = kind
        self.loop = asyncio.new_event_loop() if kind == "async" else None
        if self.loop is None:
            self.agent: Any = AutoAgent(signer=signer, rpc_url=rpc_url, **options)
        else:
            self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
            self.thread.start()
            self.agent = self._run(self._make(signer, rpc_url, options))

    @staticmethod
    async def _make(signer: KeypairSigner, rpc_url: str, options: dict[str, Any]) -> Any:
        return AsyncAutoAgent(signer=signer, rpc_url=rpc_url, **options)

    def _run(self, work: Any) -> Any:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()

    def get(self, url: str) -> int:
        if self.loop is None:
            return int(self.agent.get(url).status_code)
        return int(self._run(self.agent.get(url)).status_code)

    def recover(self) -> list[Any]:
        if self.loop is None:
            return list(self.agent.recover_payments())
        return list(self._run(self.agent.recover_payments()))

    def close(self) -> None:
        if self.loop is None:
            self.agent.close()
            return
        self._run(self.agent.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


@contextlib.contextmanager
def database_down(url: str) -> Iterator[None]:
    """The journal's database unreachable: new connections refused, open ones cut."""
    name = url.rsplit("/", 1)[1]
    admin = psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True)
    try:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        yield
    finally:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin.close()


def journal_rows(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as db:
        return db.execute(
            "SELECT id, state, http_status, landed, fee_lamports FROM payments ORDER BY id"
        ).fetchall()


def sol_spent(url: str) -> Decimal:
    with psycopg.connect(url) as db:
        row = db.execute("SELECT spent FROM totals WHERE currency_key = 'SOL'").fetchone()
    return Decimal(0) if row is None else Decimal(row[0])


@pytest.mark.parametrize("kind", AGENTS)
def test_a_database_refusing_connections_fails_a_payment_at_once(
    kind: str, server: GatewayServer, journal_url: str
) -> None:
    """The database refuses connections before a payment: the payment fails with
    ``journal_unavailable`` at once (``journal_wait`` is an hour here: a wait for it would
    hang the test), saying what is down (the URL without its password) and that nothing was
    signed or paid; nothing was signed, the ledger and the server saw nothing. Once the
    database is back, the same agent pays at once."""
    gateway = server.gateway
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    signer = CountingSigner(wallet)
    url = f"{server.url}/api/v1/premium/sol"
    settlements = len(gateway.desk.settlements)
    treasury = gateway.balance(gateway.treasury)
    secret_url = journal_url.replace("postgres@", "postgres:hunter2@")
    payer = Payer(kind, signer, server.rpc_url, journal_url=secret_url, journal_wait=3600)
    try:
        with database_down(journal_url), pytest.raises(PaymentError) as refused:
            payer.get(url)
        assert refused.value.reason == "journal_unavailable"
        message = str(refused.value)
        assert "hunter2" not in message
        assert "postgres:***@127.0.0.1" in message
        assert "nothing was signed or paid" in message
        assert "check that the database server runs" in message
        assert signer.signed == 0
        assert gateway.balance(wallet.pubkey()) == 1
        assert gateway.balance(gateway.treasury) == treasury
        assert len(gateway.desk.settlements) == settlements
        assert journal_rows(journal_url) == []

        assert payer.get(url) == 200  # back: the next payment goes through
        (row,) = journal_rows(journal_url)
        assert (row["state"], row["http_status"]) == ("accepted", 200)
        assert sol_spent(journal_url) == Decimal(1) - gateway.balance(wallet.pubkey())
        assert sol_spent(journal_url) == PRICE + FEE
    finally:
        payer.close()


class HeldShop:
    """A gateway whose ``/held`` route, once paid (the payment settled), waits for the test
    before it answers: the test breaks the journal's database meanwhile."""

    def __init__(self) -> None:
        app = create_app(Gateway())
        gateway: Gateway = app.extensions["stub_gateway"]
        self.gateway = gateway
        self.entered = threading.Event()
        self.release = threading.Event()

        @app.get("/held")
        @gateway.require_payment(Price(PRICE, "SOL"))
        def held() -> Response:
            self.entered.set()
            self.release.wait(timeout=120)
            return jsonify({"served": True})

        self.server = GatewayServer(app).start()
        self.url = f"{self.server.url}/held"


@pytest.fixture
def held_shop() -> Iterator[HeldShop]:
    shop = HeldShop()
    yield shop
    shop.release.set()
    shop.server.stop()


@pytest.mark.parametrize("kind", AGENTS)
def test_the_database_lost_while_a_paid_request_is_held_loses_nothing(
    kind: str, held_shop: HeldShop, journal_url: str
) -> None:
    """The payment is journaled ``signed`` and sent; while the server holds the request, the
    database goes away; then the server answers. The caller gets the answer; the outcome is
    kept in the process and written first once the database is back; the budget's totals
    match the ledger, the payment counted once."""
    gateway = held_shop.gateway
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    signer = CountingSigner(wallet)
    payer = Payer(kind, signer, held_shop.server.rpc_url, journal_url=journal_url)
    answers: list[int | BaseException] = []

    def pay() -> None:
        try:
            answers.append(payer.get(held_shop.url))
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            answers.append(exc)

    try:
        paying = threading.Thread(target=pay)
        paying.start()
        assert held_shop.entered.wait(timeout=60)
        with database_down(journal_url):
            held_shop.release.set()
            paying.join()
            assert answers == [200]  # the caller got the answer, the journal down
        (row,) = journal_rows(journal_url)
        assert row["state"] in ("signed", "submitted")  # the outcome is not written yet
        assert len(gateway.desk.settlements) == 1
        assert payer.recover() == []  # writes the kept outcome first: nothing left open
        (row,) = journal_rows(journal_url)
        assert (row["state"], row["http_status"]) == ("accepted", 200)
        assert signer.signed == 1
        assert sol_spent(journal_url) == Decimal(1) - gateway.balance(wallet.pubkey())
        assert sol_spent(journal_url) == PRICE + FEE
    finally:
        payer.close()


@pytest.mark.parametrize("wait", [0, -1, "10", float("nan"), True])
def test_journal_wait_must_be_a_positive_number_of_seconds(wait: Any) -> None:
    for agent in (AutoAgent, AsyncAutoAgent):
        with pytest.raises(SDKConfigurationError) as caught:
            agent(Keypair(), journal_wait=wait)
        assert caught.value.parameter == "journal_wait"
        assert "journal_wait must be a positive number of seconds" in str(caught.value)


def test_journal_wait_bounds_the_postgresql_journal(journal_url: str) -> None:
    agent = AutoAgent(Keypair(), journal_url=journal_url, journal_wait=2.5)
    try:
        assert agent._journal.wait_seconds == 2.5  # type: ignore[attr-defined]
    finally:
        agent.close()
