"""The hot paths: one durable journal write per payment, nothing heavy imported up front, and
the per-payment work that need not be redone (derivations, own signatures, requests' settings)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

from human_rpc_sdk import AutoAgent, KeypairSigner, PendingPaymentsWarning, TransactionBuildError
from human_rpc_sdk._io.journal import Journal
from human_rpc_sdk._offer import PaymentOffer
from human_rpc_sdk._records import Reserved
from human_rpc_sdk.wallet import OwnSignature
from stub_gateway import GatewayServer

from .conftest import FakeClock, sqlite_of

ROOT = Path(__file__).resolve().parent.parent
PRICE = Decimal("0.001")
FEE = Decimal("0.000005")


def rows(journal: Path) -> list[dict[str, Any]]:
    """The journal's rows, as another process reads them."""
    with sqlite3.connect(journal) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM payments ORDER BY id")]


def offer(url: str = "https://example.com/x") -> PaymentOffer:
    return PaymentOffer(
        url=url,
        amount=Decimal("0.001"),
        atomic_amount=1_000_000,
        currency="SOL",
        mint=None,
        recipient=str(Pubkey.new_unique()),
        destination=str(Pubkey.new_unique()),
        reference=None,
        network="devnet",
        payer=str(Pubkey.new_unique()),
        format="humanrpc",
    )


class FullCommits:
    """Counts the commits a journal's connection makes under ``synchronous=FULL``, from the
    statements SQLite runs (independently of the journal's own counter)."""

    def __init__(self, journal: Journal) -> None:
        db = journal._db
        self.full = db.execute("PRAGMA synchronous").fetchone()[0] == 2
        self.count = 0
        db.set_trace_callback(self.saw)

    def saw(self, statement: str) -> None:
        text = statement.strip().upper()
        if text.startswith("PRAGMA SYNCHRONOUS="):
            self.full = text.endswith("FULL")
        elif text == "COMMIT" and self.full:
            self.count += 1


# -- one durable write per payment -----------------------------------------------------------------


def test_a_payment_is_fully_synced_once_at_signed(server: GatewayServer, tmp_path: Path) -> None:
    """A paid request commits three times (reserved, signed, accepted) but syncs once: the
    journal's counter and SQLite's own statements agree, and the payment is journaled."""
    wallet = Keypair()
    server.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    journal = tmp_path / "journal.sqlite3"
    agent = AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=journal)
    commits = FullCommits(sqlite_of(agent))
    before = sqlite_of(agent).full_syncs
    for _ in range(2):
        assert agent.get(f"{server.url}/api/v1/premium/sol").status_code == 200
    assert sqlite_of(agent).full_syncs - before == 2
    assert commits.count == 2
    assert [row["state"] for row in rows(journal)] == ["accepted", "accepted"]
    assert server.gateway.balance(wallet.pubkey()) == 1 - 2 * (PRICE + FEE)
    agent.close()


def test_budget_raises_and_recovery_verdicts_stay_fully_synced(tmp_path: Path) -> None:
    """Off a payment's way out, every write is fully synced: a budget raise, a recovery's
    verdict (a mark without durable=False), a human task's id; a signed mark always is."""
    journal = Journal(tmp_path / "journal.sqlite3")
    assert journal.full_syncs == 1  # creating the schema
    commits = FullCommits(journal)
    journal.raise_budget("devnet", {"SOL": Decimal(1)})
    reserved = journal.reserve(offer(), currency_key="SOL", invoice_key=None, budget=None)
    assert isinstance(reserved, Reserved)
    assert (journal.full_syncs, commits.count) == (2, 1)  # the reservation was not synced
    entry = reserved.entry.id
    journal.mark(entry, "signed", {"signature": "s"}, durable=False)  # signed: synced anyway
    journal.mark(entry, "submitted", durable=False)
    assert (journal.full_syncs, commits.count) == (3, 2)
    journal.mark(entry, "failed", {"landed": False, "landed_proof": "expired"})
    journal.mark(entry, "failed", {"task_id": "t1"})
    assert (journal.full_syncs, commits.count) == (5, 4)
    journal.close()


def test_a_memory_journal_counts_no_syncs() -> None:
    """A journal in memory syncs nothing and says so."""
    journal = Journal(":memory:")
    journal.reserve(offer(), currency_key="SOL", invoice_key=None, budget=None)
    assert journal.full_syncs == 0
    journal.close()


class BlockingSigner:
    """An external signer (a remote KMS) that signs only once the test lets it."""

    def __init__(self, keypair: Keypair) -> None:
        self.keypair = keypair
        self.asked = threading.Event()
        self.release = threading.Event()

    def pubkey(self) -> Pubkey:
        return self.keypair.pubkey()

    def sign_message(self, message: bytes) -> Signature:
        self.asked.set()
        self.release.wait(30)
        return self.keypair.sign_message(message)


def test_a_slow_signer_holds_no_journal_lock(server: GatewayServer, tmp_path: Path) -> None:
    """While an external signer takes its time, another thread reserves and records in the
    same journal, and another connection to the file too: the reservation was committed
    before signing, and no lock is held across the signer."""
    wallet = Keypair()
    server.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    path = tmp_path / "journal.sqlite3"
    signer = BlockingSigner(wallet)
    agent = AutoAgent(signer=signer, rpc_url=server.rpc_url, journal_path=path)
    answers: list[int] = []
    paying = threading.Thread(
        target=lambda: answers.append(agent.get(f"{server.url}/api/v1/premium/sol").status_code)
    )
    paying.start()
    try:
        assert signer.asked.wait(30)
        assert [row["state"] for row in rows(path)] == ["reserved"]  # committed before signing
        other = Journal(path)
        done: list[str] = []

        def book() -> None:
            for journal in (agent._journal, other):
                got = journal.reserve(offer(), currency_key="SOL", invoice_key=None, budget=None)
                assert isinstance(got, Reserved)
                journal.mark(got.entry.id, "failed", {"error": "test"}, busy_seconds=5)
                done.append(repr(journal))

        booking = threading.Thread(target=book)
        booking.start()
        booking.join(20)  # a deadlock guard, not a timing: a held lock never lets it finish
        assert not booking.is_alive()
        assert len(done) == 2
        assert not signer.release.is_set()  # all that while, the signer was still signing
        other.close()
    finally:
        signer.release.set()
        paying.join(30)
    assert answers == [200]
    assert [row["state"] for row in rows(path)] == ["accepted", "failed", "failed"]
    agent.close()


def test_a_payment_killed_after_its_signed_commit_is_recovered(
    clocked: tuple[GatewayServer, FakeClock], tmp_path: Path
) -> None:
    """A process is killed (SIGKILL) right after its one fully synced commit, before sending:
    a new process finds the signed payment pending and counted; once its blockhash expires,
    recovery proves it never landed and releases it; no money moved."""
    server, clock = clocked
    gateway = server.gateway
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    journal = tmp_path / "journal.sqlite3"
    job = {"url": f"{server.url}/api/v1/premium/sol", "rpc_url": server.rpc_url}
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.workers.signed_then_killed",
            json.dumps({**job, "journal": str(journal)}),
        ],
        cwd=ROOT,
        env={**os.environ, "SOLANA_PRIVATE_KEY": str(wallet)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline().split()
    child.send_signal(signal.SIGKILL)
    _, errors = child.communicate(timeout=10)
    assert line == ["signed", "2"], errors  # full syncs: the new schema, the signed row
    assert child.returncode == -signal.SIGKILL

    (row,) = rows(journal)
    assert row["state"] == "signed"
    assert row["transaction_b64"]
    assert gateway.desk.settlements == []
    with pytest.warns(PendingPaymentsWarning):
        agent = AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=journal)
    (pending,) = agent.pending_payments()
    assert pending.signature == row["signature"]
    assert agent.budget["SOL"].spent == PRICE + FEE
    (unsettled,) = agent.recover_payments()
    assert unsettled.state == "signed"  # its blockhash may still land: nothing is decided
    clock.now += 61  # > 150 slots: it can no longer land
    (released,) = agent.recover_payments()
    assert (released.state, released.landed) == ("failed", False)
    assert agent.budget["SOL"].spent == 0
    assert gateway.balance(wallet.pubkey()) == 1
    agent.close()


# -- the SPL instructions, built with solders alone --------------------------------------------

keys = st.binary(min_size=32, max_size=32).map(Pubkey.from_bytes)


def test_the_program_ids_are_spl_s() -> None:
    """The program ids defined here are solana-py's."""
    from spl.memo.constants import MEMO_PROGRAM_ID
    from spl.token import constants

    from human_rpc_sdk import solana_utils

    assert solana_utils.MEMO_PROGRAM_ID == MEMO_PROGRAM_ID
    assert solana_utils.TOKEN_PROGRAM_ID == constants.TOKEN_PROGRAM_ID
    assert solana_utils.TOKEN_2022_PROGRAM_ID == constants.TOKEN_2022_PROGRAM_ID
    assert solana_utils.ASSOCIATED_TOKEN_PROGRAM_ID == constants.ASSOCIATED_TOKEN_PROGRAM_ID


# -- nothing heavy imported up front -----------------------------------------------------------

HEAVY = ("pydantic", "construct", "spl", "httpx", "tenacity", "asyncio", "requests")
PROBE = """
import sys
import human_rpc_sdk
heavy = sorted(m for m in sys.argv[1:] if m in sys.modules)
from human_rpc_sdk import AutoAgent
agent_heavy = sorted(m for m in sys.argv[1:] if m in sys.modules)
names = [getattr(human_rpc_sdk, name) for name in human_rpc_sdk.__all__]
print(heavy, agent_heavy, len(names), "__version__" in dir(human_rpc_sdk))
"""


def test_importing_the_package_imports_nothing_heavy() -> None:
    """In a fresh interpreter, ``import human_rpc_sdk`` loads none of pydantic, construct,
    spl, httpx, tenacity, asyncio or requests; AutoAgent brings requests alone; every name
    in ``__all__`` still resolves when accessed."""
    import human_rpc_sdk

    found = subprocess.run(
        [sys.executable, "-c", PROBE, *HEAVY],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split(" ", 2)
    assert found[0] == "[]"
    assert found[1] == "['requests']"
    assert found[2].split() == [str(len(human_rpc_sdk.__all__)), "True"]


def test_lazy_exports_are_the_modules_own() -> None:
    """A lazy export is the very object its module defines, and an unknown name is an
    AttributeError."""
    import human_rpc_sdk
    from human_rpc_sdk import exceptions
    from human_rpc_sdk._io.auth import PaymentAuth
    from human_rpc_sdk._io.errors import ConnectionFailedError
    from human_rpc_sdk.async_agent import AsyncAutoAgent

    assert human_rpc_sdk.PaymentAuth is PaymentAuth
    assert human_rpc_sdk.AsyncAutoAgent is AsyncAutoAgent
    assert human_rpc_sdk.ConnectionFailedError is exceptions.ConnectionFailedError
    assert exceptions.ConnectionFailedError is ConnectionFailedError
    with pytest.raises(AttributeError):
        _ = human_rpc_sdk.NoSuchThing
    with pytest.raises(AttributeError):
        _ = exceptions.NoSuchError


# -- a local keypair's own signature is not verified again ---------------------------------------


class Verifications:
    """Counts the flow's verifying attachments (``add_signature``) and unverified ones."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from human_rpc_sdk.solana_utils import add_signature as add
        from human_rpc_sdk.solana_utils import place_signature as place

        self.verified = 0
        self.placed = 0

        def counted_add(*args: Any) -> Any:
            self.verified += 1
            return add(*args)

        def counted_place(*args: Any) -> Any:
            self.placed += 1
            return place(*args)

        monkeypatch.setattr("human_rpc_sdk._flow.add_signature", counted_add)
        monkeypatch.setattr("human_rpc_sdk._flow.place_signature", counted_place)


class ExternalSigner:
    """A remote signer (a KMS, say): a plain object with the keypair's key."""

    def __init__(self, keypair: Keypair) -> None:
        self.keypair = keypair

    def pubkey(self) -> Pubkey:
        return self.keypair.pubkey()

    def sign_message(self, message: bytes) -> Signature:
        return self.keypair.sign_message(message)


@pytest.mark.parametrize("kind", ["keypair", "external"])
def test_only_an_external_signers_signature_is_verified(
    server: GatewayServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """An agent's own keypair: its signature is attached without verifying it again; an
    external signer's is verified. Both pay, once."""
    counts = Verifications(monkeypatch)
    wallet = Keypair()
    server.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    key: Any = {"solana_private_key": wallet} if kind == "keypair" else {}
    signer = None if kind == "keypair" else ExternalSigner(wallet)
    agent = AutoAgent(**key, signer=signer, rpc_url=server.rpc_url, journal_path=tmp_path / "j")
    assert agent.get(f"{server.url}/api/v1/premium/sol").status_code == 200
    assert (counts.verified, counts.placed) == ((0, 1) if kind == "keypair" else (1, 0))
    assert server.gateway.balance(wallet.pubkey()) == 1 - PRICE - FEE
    agent.close()


class LyingKeypairSigner(KeypairSigner):
    """A KeypairSigner subclass that signs with another key: not the SDK's own signer."""

    def sign_message(self, message: bytes) -> Signature:
        return Keypair().sign_message(message)


def test_a_keypair_signer_subclass_that_lies_sends_nothing(
    server: GatewayServer, tmp_path: Path
) -> None:
    """Only the SDK's own KeypairSigner is trusted: a subclass's wrong signature is verified,
    refused, and nothing moves."""
    wallet = Keypair()
    server.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    signer = LyingKeypairSigner(wallet)
    agent = AutoAgent(signer=signer, rpc_url=server.rpc_url, journal_path=tmp_path / "j")
    with pytest.raises(TransactionBuildError, match="does not verify"):
        agent.get(f"{server.url}/api/v1/premium/sol")
    assert server.gateway.balance(wallet.pubkey()) == 1
    assert [row["state"] for row in rows(tmp_path / "j")] == ["failed"]
    agent.close()


def test_a_driver_keypair_of_another_key_is_verified() -> None:
    """A driver whose KeypairSigner holds another key than the one asked for: its signature
    is verified like any other, refused, and the row fails."""
    from .conftest import Books
    from .test_signing_effect import finish, states, until_sign

    books = Books(signer=KeypairSigner(Keypair()))
    flow, sign, _ = until_sign(books)
    answer = books.answer(sign, flow)
    assert not isinstance(answer, OwnSignature)
    with pytest.raises(TransactionBuildError, match="does not verify"):
        finish(flow, flow.send(answer), books)
    assert states(books) == ["failed"]


# -- requests' environment settings, once per origin -----------------------------------------------

PROXY_VARIABLES = [
    *("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"),
    *("no_proxy", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"),
]


@pytest.fixture
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def recording_proxy() -> Iterator[tuple[str, list[str]]]:
    """A plain HTTP forward proxy on loopback (it forwards without any proxy of its own);
    records the absolute URL of every request it forwards."""
    import requests
    from flask import Flask, Response, request

    app = Flask("proxy")
    seen: list[str] = []
    onward = requests.Session()
    onward.trust_env = False

    @app.route("/", defaults={"path": ""}, methods=["GET", "POST"])
    @app.route("/<path:path>", methods=["GET", "POST"])
    def forward(path: str) -> Response:
        seen.append(request.url)
        headers = {k: v for k, v in request.headers if k.lower() not in ("host", "connection")}
        answer = onward.request(
            request.method,
            request.url,
            headers=headers,
            data=request.get_data(),
            timeout=30,
            allow_redirects=False,
        )
        skip = {"content-encoding", "transfer-encoding", "connection", "content-length"}
        return Response(
            answer.content,
            status=answer.status_code,
            headers=[(k, v) for k, v in answer.headers.items() if k.lower() not in skip],
        )

    with GatewayServer(app).start() as running:
        yield running.url, seen
    onward.close()


def test_requests_settings_are_remembered_and_follow_the_environment(
    server: GatewayServer,
    tmp_path: Path,
    no_proxy_environment: pytest.MonkeyPatch,
    recording_proxy: tuple[str, list[str]],
) -> None:
    """Three payments work the environment settings out once for the resource and once for
    the RPC; a proxy set in the environment afterwards carries the next payment and RPC call
    (a real forward proxy sees them), and once removed, requests go direct again."""
    proxy, seen = recording_proxy
    wallet = Keypair()
    server.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    agent = AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=tmp_path / "j")
    url = f"{server.url}/api/v1/premium/sol"
    for _ in range(3):
        assert agent.get(url).status_code == 200
    assert agent._environment.computed == 1
    assert agent._rpc._environment.computed == 1
    assert seen == []

    no_proxy_environment.setenv("HTTP_PROXY", proxy)
    assert agent.get(url).status_code == 200
    agent.balance()
    assert seen.count(url) == 2  # the unpaid request and the paid one
    assert server.rpc_url in seen

    no_proxy_environment.delenv("HTTP_PROXY")
    before = len(seen)
    assert agent.get(url).status_code == 200
    agent.balance()
    assert len(seen) == before
    assert server.gateway.balance(wallet.pubkey()) == 1 - 5 * (PRICE + FEE)
    agent.close()


@pytest.mark.parametrize(
    ("environment", "arguments"),
    [
        ({}, {}),
        ({"HTTPS_PROXY": "http://proxy:3128"}, {}),
        ({"https_proxy": "http://a:1", "NO_PROXY": "example.com"}, {}),
        ({"ALL_PROXY": "http://b:2"}, {"proxies": {"https": "http://c:3"}, "verify": False}),
        ({"REQUESTS_CA_BUNDLE": "/etc/ca.pem"}, {"stream": True, "cert": "/etc/c.pem"}),
    ],
)
def test_remembered_settings_equal_requests_own(
    no_proxy_environment: pytest.MonkeyPatch,
    environment: dict[str, str],
    arguments: dict[str, Any],
) -> None:
    """What is remembered is what requests works out, for each environment and arguments;
    the caller's proxies are left as they were."""
    import requests

    from human_rpc_sdk._io.environment import EnvironmentSettings

    for name, value in environment.items():
        no_proxy_environment.setenv(name, value)
    session = requests.Session()
    remembered = EnvironmentSettings(session)
    given = {"proxies": None, "stream": None, "verify": None, "cert": None, **arguments}
    mine = dict(given["proxies"] or {})
    for url in ("https://example.com/a", "https://example.com/b?x=1", "https://other.org/"):
        expected = session.merge_environment_settings(
            url, dict(mine), given["stream"], given["verify"], given["cert"]
        )
        got = remembered(url, given["proxies"], given["stream"], given["verify"], given["cert"])
        assert got == expected
    assert remembered.computed == 2  # two origins
    assert (given["proxies"] or {}) == mine
