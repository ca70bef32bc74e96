"""The payment journal: written before money leaves, never paying an invoice twice,
surviving crashes, and telling a restarted agent what was paid."""

from __future__ import annotations

import base64
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from solders.keypair import Keypair

from human_rpc_sdk import PaymentError, PendingPaymentsWarning
from human_rpc_sdk._io.journal import Journal
from human_rpc_sdk._offer import PaymentOffer
from human_rpc_sdk._records import Existing, OverBudget, Reserved
from stub_gateway import GatewayServer, serve_in_thread

from .conftest import CountingSigner
from .drivers import Maker

ROOT = Path(__file__).resolve().parent.parent
PRICE = Decimal("0.001")
FEE = Decimal("0.000005")


def rows(path: Path) -> list[dict[str, Any]]:
    """The journal's rows, read as another process would."""
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM payments ORDER BY id")]


def test_the_signed_payment_is_journaled_before_it_is_sent(
    server: GatewayServer, tmp_path: Path, driven: Maker
) -> None:
    """When X-PAYMENT leaves, the journal already holds it, signed, with that very header."""
    journal = tmp_path / "journal.sqlite3"
    wallet = Keypair()
    server.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    agent = driven(wallet, rpc_url=server.rpc_url, journal_path=journal, capture=True)
    seen: list[list[dict[str, Any]]] = []  # the journal, read when a payment leaves
    agent.sent.before_payment = lambda: seen.append(rows(journal))
    assert agent.get(f"{server.url}/api/v1/premium/sol").status_code == 200
    ((row,),) = seen
    assert row["state"] == "signed"
    assert json.loads(row["headers"]) == {"X-PAYMENT": agent.sent_payments[0]}
    (final,) = rows(journal)
    assert (final["state"], final["amount"], final["http_status"]) == ("accepted", "0.001", 200)
    assert final["signature"] == agent.payments[0].signature
    agent.close()


def test_the_journal_file_is_private_durable_and_in_wal_mode(tmp_path: Path) -> None:
    """0600 file in a 0700 directory, write-ahead log, synchronous=FULL."""
    path = tmp_path / "state" / "journal.sqlite3"
    journal = Journal(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert journal._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    journal.close()


def test_the_default_journal_is_one_file_per_wallet_and_network(
    journal_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, driven: Maker
) -> None:
    """Under $XDG_STATE_HOME/human-rpc-sdk by default; $HUMAN_RPC_JOURNAL overrides."""
    wallet = Keypair()
    agent = driven(wallet)
    expected = journal_home / "human-rpc-sdk" / f"journal-devnet-{wallet.pubkey()}.sqlite3"
    assert agent.journal_path == str(expected)
    assert expected.exists()
    agent.close()
    monkeypatch.setenv("HUMAN_RPC_JOURNAL", str(tmp_path / "named.sqlite3"))
    named = driven(wallet)
    assert named.journal_path == str(tmp_path / "named.sqlite3")
    named.close()


def offer_for(amount: str = "0.001", recipient: str | None = None) -> PaymentOffer:
    return PaymentOffer(
        url="http://shop/item",
        amount=Decimal(amount),
        currency="SOL",
        mint=None,
        recipient=recipient or str(Keypair().pubkey()),
        destination=recipient or str(Keypair().pubkey()),
        network="devnet",
        payer=str(Keypair().pubkey()),
        format="humanrpc",
        atomic_amount=int(Decimal(amount).scaleb(9)),
    )


def test_reserving_refuses_a_second_payment_and_checks_the_budget() -> None:
    """One live row per invoice; the budget counts every row but failed ones."""
    journal = Journal(":memory:")
    first = journal.reserve(
        offer_for(), currency_key="SOL", invoice_key="inv-1", budget=Decimal("0.002")
    )
    assert isinstance(first, Reserved)
    again = journal.reserve(
        offer_for(), currency_key="SOL", invoice_key="inv-1", budget=Decimal("0.002")
    )
    assert isinstance(again, Existing)
    assert again.entry.id == first.entry.id
    second = journal.reserve(
        offer_for(), currency_key="SOL", invoice_key=None, budget=Decimal("0.002")
    )
    assert isinstance(second, Reserved)
    over = journal.reserve(
        offer_for(), currency_key="SOL", invoice_key=None, budget=Decimal("0.002")
    )
    assert over == OverBudget(Decimal("0.002"), Decimal("0.002"), "SOL", Decimal("0.001"))
    assert journal.mark(second.entry.id, "failed", expect=("reserved",)) is not None
    assert isinstance(
        journal.reserve(offer_for(), currency_key="SOL", invoice_key=None, budget=Decimal("0.002")),
        Reserved,
    )
    assert journal.mark(second.entry.id, "accepted", expect=("reserved",)) is None


def test_an_invoice_is_never_paid_twice(
    server: GatewayServer, responder: str, tmp_path: Path, driven: Maker
) -> None:
    """A server that keeps sending the same invoice: the second request re-sends the very
    same signed payment (one signature in all) and raises, never paying anew."""
    gateway = server.gateway
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    invoice = {
        "status": "payment_required",
        "invoice": {
            "amount": "0.001",
            "currency": "SOL",
            "recipient": str(gateway.treasury),
            "reference": str(Keypair().pubkey()),
            "network": "devnet",
        },
    }
    body = base64.urlsafe_b64encode(json.dumps(invoice).encode()).decode()
    signer = CountingSigner(wallet)
    agent = driven(
        signer=signer, rpc_url=server.rpc_url, journal_path=tmp_path / "j.sqlite3", capture=True
    )
    url = f"{responder}/fixed/402/{body}"
    for _ in range(2):
        with pytest.raises(PaymentError) as caught:
            agent.get(url)
        assert caught.value.reason == "payment_refused"
    assert signer.count == 1
    assert len(agent.sent_payments) == 2
    assert agent.sent_payments[0] == agent.sent_payments[1]
    (receipt,) = agent.payments
    assert receipt.state == "refused"
    assert gateway.balance(wallet.pubkey()) == 1
    agent.close()


def test_a_payment_being_made_elsewhere_is_not_made_again(
    server: GatewayServer, responder: str, tmp_path: Path, driven: Maker
) -> None:
    """The journal holds a reservation for the invoice (another process is paying it):
    PaymentError payment_in_progress, nothing signed."""
    journal_path = tmp_path / "j.sqlite3"
    reference = str(Keypair().pubkey())
    treasury = str(server.gateway.treasury)
    key = f"devnet|humanrpc|{treasury}|SOL|0.001|{reference}"
    Journal(journal_path).reserve(
        offer_for(recipient=treasury), currency_key="SOL", invoice_key=key, budget=None
    )
    invoice = {
        "invoice": {
            "amount": "0.001",
            "currency": "SOL",
            "recipient": treasury,
            "reference": reference,
            "network": "devnet",
        }
    }
    body = base64.urlsafe_b64encode(json.dumps(invoice).encode()).decode()
    with pytest.warns(PendingPaymentsWarning):  # the other process's payment
        agent = driven(Keypair(), rpc_url=server.rpc_url, journal_path=journal_path)
    with pytest.raises(PaymentError) as caught:
        agent.get(f"{responder}/fixed/402/{body}")
    assert caught.value.reason == "payment_in_progress"
    assert len(rows(journal_path)) == 1
    agent.close()


def test_an_abandoned_reservation_is_released_by_recovery(tmp_path: Path, driven: Maker) -> None:
    """A reservation whose process is gone holds no signature: recovery releases it."""
    path = tmp_path / "j.sqlite3"
    Journal(path).reserve(offer_for(), currency_key="SOL", invoice_key=None, budget=None)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    with sqlite3.connect(path) as db:
        db.execute("UPDATE payments SET pid = ?, process = 'gone'", (int(dead.stdout),))
    with pytest.warns(PendingPaymentsWarning):
        agent = driven(Keypair(), journal_path=path)
    assert [r.state for r in agent.pending_payments()] == ["reserved"]
    (released,) = agent.recover_payments()
    assert (released.state, released.landed) == ("failed", False)
    assert agent.budget["SOL"].spent == 0
    agent.close()


def test_a_broken_journal_stops_payments(
    server: GatewayServer, tmp_path: Path, driven: Maker
) -> None:
    """If the journal cannot be written, nothing is signed or sent: PaymentError says why."""
    path = tmp_path / "j.sqlite3"
    wallet = Keypair()
    server.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    agent = driven(wallet, rpc_url=server.rpc_url, journal_path=path, capture=True)
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE payments RENAME TO vandalised")
    with pytest.raises(PaymentError) as caught:
        agent.get(f"{server.url}/api/v1/premium/sol")
    assert caught.value.reason == "journal_unavailable"
    assert agent.sent_payments == []
    assert server.gateway.balance(wallet.pubkey()) == 1
    agent.close()


# -- a real crash ---------------------------------------------------------------------------------


class Stall:
    """The gateway's sleep for slow answers: says it started, then waits to be released."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, seconds: float) -> None:
        self.started.set()
        self.release.wait(seconds)


@pytest.fixture
def stalling() -> Iterator[tuple[GatewayServer, Stall]]:
    """A gateway whose slow answers (after a settlement) wait until the test releases them."""
    stall = Stall()
    with serve_in_thread(sleep=stall) as running:
        yield running, stall
        stall.release.set()


def run_worker(job: dict[str, Any], key: Keypair) -> subprocess.Popen[str]:
    env = {**os.environ, "SOLANA_PRIVATE_KEY": str(key)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.workers.payer", json.dumps(job)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_crash_after_paying_is_recovered_from_the_journal(
    stalling: tuple[GatewayServer, Stall], tmp_path: Path, driven: Maker
) -> None:
    """A process is killed (SIGKILL) after its payment settled but before the answer came:
    a new agent on its journal sees the payment pending, and recovery finds it on chain."""
    server, stall = stalling
    gateway = server.gateway
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    journal = tmp_path / "journal.sqlite3"
    gateway.faults.slow_after_payment(60)
    job = {
        "url": f"{server.url}/api/v1/premium/sol",
        "rpc_url": server.rpc_url,
        "journal": str(journal),
    }
    child = run_worker(job, wallet)
    settled = stall.started.wait(timeout=30)  # the payment settled; its answer is stalled
    child.send_signal(signal.SIGKILL)
    _, errors = child.communicate(timeout=10)
    stall.release.set()
    assert settled, errors
    assert len(gateway.desk.settlements) == 1

    (row,) = rows(journal)
    assert row["state"] == "signed"
    with pytest.warns(PendingPaymentsWarning):
        agent = driven(wallet, rpc_url=server.rpc_url, journal_path=journal)
    (pending,) = agent.pending_payments()
    assert pending.signature == gateway.desk.settlements[0].signature
    (recovered,) = agent.recover_payments()
    assert (recovered.state, recovered.landed) == ("accepted", True)
    assert [p.state for p in agent.payments] == ["accepted"]
    assert gateway.balance(wallet.pubkey()) == 1 - PRICE - FEE
    agent.close()


def test_recovery_needs_no_pending_payments_to_be_safe(tmp_path: Path, driven: Maker) -> None:
    """Recovery on an empty journal does nothing and asks the chain nothing."""
    agent = driven(Keypair(), rpc_url="http://127.0.0.1:9", journal_path=tmp_path / "j")
    assert agent.recover_payments() == []
    agent.close()
