"""A hostile network between an agent and its PostgreSQL journal: a TCP proxy that stalls or
resets a connection in the middle of a transaction, or loses the answer to a COMMIT the
server did carry out. The agent never signs on a reservation whose outcome it does not know,
never sends a payment whose ``signed`` commit it did not see confirmed, never waits past
``journal_wait``; what did commit behind its back is released by the lease or settled from the
chain; nothing is paid twice or lost."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from solders.keypair import Keypair
from solders.signature import Signature

from human_rpc_sdk import AutoAgent, KeypairSigner, PaymentError
from stub_gateway import GatewayServer

from .conftest import FakeClock
from .test_journal_outage import Payer

PRICE = Decimal("0.001")
FEE = Decimal("0.000005")
ROUTE = "/api/v1/premium/sol"
WAIT = 2  # the agents' journal_wait here: a stalled connection is cut after it


class Link:
    """One proxied connection: what the trap did to it."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.seen = False  # the trap's statement went through it
        self.stalled = False  # nothing forwarded any more, either way
        self.mute = False  # the server's answers dropped
        self.reset = False  # the client reset on the server's next answer


class HostileProxy:
    """A TCP proxy to PostgreSQL. :meth:`arm` sets one trap, on the first connection whose
    client sends ``after`` (a statement's text):

    * ``stall``: that statement and everything after it are held (neither side hears more);
    * ``lose-answer``: the transaction's COMMIT is carried to the server, its answer dropped,
      and the connection then stays silent;
    * ``reset-answer``: the COMMIT is carried, and on its answer the client's side is reset.

    ``fired`` is set once the trap has acted (for a lost answer: once the server answered)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.trap: tuple[bytes, str] | None = None
        self.trapped: Link | None = None
        self.fired = threading.Event()
        self.links: list[Link] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, after: bytes, action: str) -> None:
        with self.lock:
            self.trap, self.trapped = (after, action), None
            self.fired.clear()

    def close(self) -> None:
        self.listener.close()
        for link in self.links:
            for side in (link.client, link.upstream):
                side.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            link = Link(client, socket.create_connection(self.target))
            self.links.append(link)
            threading.Thread(target=self._outbound, args=(link,), daemon=True).start()
            threading.Thread(target=self._inbound, args=(link,), daemon=True).start()

    def _outbound(self, link: Link) -> None:
        """Client to server, where the traps are sprung."""
        while data := _recv(link.client):
            with self.lock:
                if self.trap is not None and self.trapped in (None, link):
                    after, action = self.trap
                    if after in data and self.trapped is None:
                        self.trapped, link.seen = link, True
                        if action == "stall":
                            link.stalled = True
                            self.trap = None
                            self.fired.set()
                    elif link.seen and b"COMMIT\x00" in data:
                        link.mute = True
                        link.reset = action == "reset-answer"
                        self.trap = None
            if link.stalled:
                continue
            try:
                link.upstream.sendall(data)
            except OSError:
                break
        _close(link)

    def _inbound(self, link: Link) -> None:
        """Server to client: answers dropped once muted, or the client reset on one."""
        while data := _recv(link.upstream):
            if link.reset:
                link.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                link.client.close()  # a reset, not a clean end
                self.fired.set()
                break
            if link.mute:
                self.fired.set()
                continue
            if link.stalled:
                continue
            try:
                link.client.sendall(data)
            except OSError:
                break
        _close(link)


def _recv(side: socket.socket) -> bytes:
    try:
        return side.recv(65536)
    except OSError:
        return b""


def _close(link: Link) -> None:
    for side in (link.client, link.upstream):
        with contextlib.suppress(OSError):
            side.shutdown(socket.SHUT_RDWR)


class ArmingSigner(KeypairSigner):
    """A real signer that, as it signs, arms the proxy for the ``signed`` commit to come."""

    __slots__ = ("proxy", "signed", "trap")

    def __init__(self, keypair: Keypair, proxy: HostileProxy, trap: tuple[bytes, str] | None):
        super().__init__(keypair)
        self.proxy = proxy
        self.trap = trap
        self.signed = 0

    def sign_message(self, message: bytes) -> Signature:
        self.signed += 1
        if self.trap is not None:
            self.proxy.arm(*self.trap)
            self.trap = None
        return super().sign_message(message)


@pytest.fixture
def proxy(journal_url: str) -> Iterator[HostileProxy]:
    info = psycopg.conninfo.conninfo_to_dict(journal_url)
    running = HostileProxy(str(info["host"]), int(str(info["port"])))
    yield running
    running.close()


def proxied(journal_url: str, proxy: HostileProxy) -> str:
    info = psycopg.conninfo.conninfo_to_dict(journal_url)
    return journal_url.replace(f":{info['port']}/", f":{proxy.port}/")


def rows(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as db:
        return db.execute(
            "SELECT id, state, landed, transaction_b64, error FROM payments ORDER BY id"
        ).fetchall()


def expire_leases(url: str) -> None:
    with psycopg.connect(url) as db:
        db.execute(
            "UPDATE payments SET expires_at = now() - interval '1 second' WHERE state = 'reserved'"
        )


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("action", ["lose-answer", "reset-answer"])
def test_a_reservation_committed_behind_the_agents_back_is_never_signed(
    action: str,
    kind: str,
    clocked: tuple[GatewayServer, FakeClock],
    journal_url: str,
    proxy: HostileProxy,
) -> None:
    """The reservation's COMMIT reaches the server but its answer is lost (silence: cut after
    ``journal_wait``; or a reset): the agent does not know it reserved, so it signs nothing
    and fails with ``journal_unavailable``. The row did commit; the journal remembers it
    inserted it and releases it in its next write that succeeds (it does not hold its budget
    until its lease expires). The next payment goes through, once; the ledger and the totals
    agree."""
    server, _clock = clocked
    gateway = server.gateway
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    signer = ArmingSigner(wallet, proxy, None)
    payer = Payer(
        kind, signer, server.rpc_url, journal_url=proxied(journal_url, proxy), journal_wait=WAIT
    )
    agent = payer.agent
    url = f"{server.url}{ROUTE}"
    try:
        proxy.arm(b"INSERT INTO payments", action)
        with pytest.raises(PaymentError) as lost:
            payer.get(url)
        assert proxy.fired.is_set()
        assert lost.value.reason == "journal_unavailable"
        assert "nothing was signed or paid" in str(lost.value)
        if action == "lose-answer":
            assert f"no answer within {WAIT} s" in str(lost.value)
        assert signer.signed == 0
        assert [row["state"] for row in rows(journal_url)] == ["reserved"]  # it did commit
        assert gateway.balance(wallet.pubkey()) == 1
        assert gateway.desk.settlements == []

        assert payer.get(url) == 200  # the network is fine again
        assert signer.signed == 1
        lost_row, paid_row = rows(journal_url)
        assert (lost_row["state"], paid_row["state"]) == ("failed", "accepted")
        assert "never confirmed the reservation" in lost_row["error"]
        assert agent.budget["SOL"].spent == PRICE + FEE  # released, not held for its lease
        expire_leases(journal_url)
        assert payer.recover() == []
        assert [row["state"] for row in rows(journal_url)] == ["failed", "accepted"]
        assert agent.budget["SOL"].spent == PRICE + FEE
        assert Decimal(1) - gateway.balance(wallet.pubkey()) == PRICE + FEE
        assert len(gateway.desk.settlements) == 1
    finally:
        payer.close()


def test_a_stall_before_the_commit_rolls_the_reservation_back(
    clocked: tuple[GatewayServer, FakeClock], journal_url: str, proxy: HostileProxy
) -> None:
    """The network stalls in the middle of the reservation (its INSERT never arrives): the
    agent gives up after ``journal_wait`` (the watchdog cuts the connection), signs nothing;
    the server rolls the transaction back: no row, no budget held."""
    server, _clock = clocked
    gateway = server.gateway
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    signer = ArmingSigner(wallet, proxy, None)
    agent = AutoAgent(
        signer=signer,
        rpc_url=server.rpc_url,
        journal_url=proxied(journal_url, proxy),
        journal_wait=WAIT,
    )
    try:
        proxy.arm(b"INSERT INTO payments", "stall")
        with pytest.raises(PaymentError) as stalled:
            agent.get(f"{server.url}{ROUTE}")
        assert stalled.value.reason == "journal_unavailable"
        assert f"no answer within {WAIT} s" in str(stalled.value)
        assert signer.signed == 0
        assert rows(journal_url) == []
        assert agent.budget["SOL"].spent == 0
        assert gateway.balance(wallet.pubkey()) == 1
    finally:
        agent.close()


@pytest.mark.parametrize("action", ["lose-answer", "reset-answer"])
def test_a_signed_commit_whose_answer_is_lost_is_never_sent(
    action: str,
    clocked: tuple[GatewayServer, FakeClock],
    journal_url: str,
    proxy: HostileProxy,
) -> None:
    """The ``signed`` commit reaches the server, its answer is lost: the agent cannot know the
    payment is journaled, so it does not send it (``journal_unavailable``: not sent, nothing
    paid). The row says ``signed``: recovery leaves it while it could land, then releases it
    once its blockhash has expired. Nothing moved on the ledger, the server saw nothing."""
    server, clock = clocked
    gateway = server.gateway
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    signer = ArmingSigner(wallet, proxy, (b"UPDATE payments SET state", action))
    agent = AutoAgent(
        signer=signer,
        rpc_url=server.rpc_url,
        journal_url=proxied(journal_url, proxy),
        journal_wait=WAIT,
    )
    try:
        with pytest.raises(PaymentError) as lost:
            agent.get(f"{server.url}{ROUTE}")
        assert proxy.fired.is_set()
        assert lost.value.reason == "journal_unavailable"
        assert "it was not sent, so nothing was paid" in str(lost.value)
        assert signer.signed == 1
        ((row),) = rows(journal_url)
        assert row["state"] == "signed"  # it did commit
        assert row["transaction_b64"]
        assert gateway.desk.settlements == []
        (waiting,) = agent.recover_payments()
        assert waiting.state == "signed"  # it could still land: left alone
        clock.now += 61  # past its blockhash's last valid height
        (released,) = agent.recover_payments()
        assert (released.state, released.landed) == ("failed", False)
        assert agent.budget["SOL"].spent == 0
        assert gateway.balance(wallet.pubkey()) == 1
        assert gateway.desk.settlements == []
    finally:
        agent.close()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_outcome_write_that_stalls_is_cut_and_the_answer_returned(
    kind: str,
    clocked: tuple[GatewayServer, FakeClock],
    journal_url: str,
    proxy: HostileProxy,
) -> None:
    """The payment was served; writing its outcome stalls in the network. The write is cut
    (bounded by ``journal_wait``), tried again, and the caller gets the answer; the outcome
    is journaled once and the totals match the ledger."""
    server, _clock = clocked
    gateway = server.gateway
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    signer = ArmingSigner(wallet, proxy, (b"http_status = ", "stall"))
    payer = Payer(
        kind,
        signer,
        server.rpc_url,
        journal_url=proxied(journal_url, proxy),
        journal_wait=WAIT,
    )
    try:
        assert payer.get(f"{server.url}{ROUTE}") == 200
        assert proxy.fired.is_set()  # the first outcome write stalled
        ((row),) = rows(journal_url)
        assert (row["state"], row["landed"]) == ("accepted", True)
        assert payer.recover() == []
        assert signer.signed == 1
        with psycopg.connect(journal_url) as db:
            (spent,) = db.execute(
                "SELECT spent FROM totals WHERE currency_key = 'SOL'"
            ).fetchone() or (0,)
        assert Decimal(spent) == PRICE + FEE == Decimal(1) - gateway.balance(wallet.pubkey())
    finally:
        payer.close()
