"""The gateway's payment ids and sign-in, second pass (issue 13): an id is bound only by the
payment that settles with it (a stranger who saw it cannot block it), its answer is kept as
long as the binding, the members route works the same over ``--workers``, and the journal
answers "paid before?" from an index.

Real parts: the stub gateway over loopback on its LiteSVM ledger (on a fake clock where time
matters), a real ``python -m stub_gateway --workers 2`` process tree, journals on disk.
"""

from __future__ import annotations

import json
import secrets
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
import requests
from flask import Response
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent, PaymentError
from human_rpc_sdk._headers import b64json, unb64json
from human_rpc_sdk._io.journal import SCHEMA_VERSION, Journal
from human_rpc_sdk._records import JournalEntry, Reserved
from human_rpc_sdk._siwx import SIGN_IN_HEADER
from human_rpc_sdk._x402 import PAYMENT_IDENTIFIER, new_payment_id
from stub_gateway.app import create_app
from stub_gateway.gateway import Gateway
from stub_gateway.paywall import ID_CONFLICT, payment_id_declaration
from stub_gateway.replies import ID_WINDOW, REPLAY_WINDOW, PaidReplies, PaymentIds, id_key
from stub_gateway.server import GatewayServer
from stub_gateway.x402 import SETTLEMENT_TTL

from .conftest import FakeClock
from .test_gateway_capacity import offer, payment
from .test_gateway_workers import Running, usdc_balance, x402_payment
from .test_gateway_workers import funded as workers_funded
from .test_journal_safety import offer as journal_offer
from .test_siwx import challenge_from, error_of, proof

ROUTE = "/x402/v2/premium"
PRICE = Decimal("0.01")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def gateway(clock: FakeClock) -> Gateway:
    return Gateway(clock=clock, sleep=clock.sleep)


@pytest.fixture
def served(gateway: Gateway) -> Iterator[GatewayServer]:
    with GatewayServer(create_app(gateway)).start() as server:
        yield server


def funded(gateway: Gateway, usdc: int = 1) -> Keypair:
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(usdc)})
    return wallet


def identified(document: dict[str, Any], payment_id: str) -> str:
    """``document`` (a v2 payment) carrying ``payment_id``, as a PAYMENT-SIGNATURE header."""
    extension = {**payment_id_declaration(False), "info": {"required": False, "id": payment_id}}
    return b64json({**document, "extensions": {PAYMENT_IDENTIFIER: extension}})


def fresh_id() -> str:
    return new_payment_id(secrets.token_hex(16))


def pay(server: GatewayServer, header: str) -> requests.Response:
    return requests.get(server.url + ROUTE, headers={"PAYMENT-SIGNATURE": header}, timeout=30)


def usdc(gateway: Gateway, wallet: Keypair) -> Decimal:
    return gateway.balance(wallet.pubkey(), "USDC")


# -- 1. an id is bound by the payment that settles, not by whoever shows it first ----------------


def test_garbage_shown_first_under_a_clients_id_does_not_block_its_payment(
    served: GatewayServer, gateway: Gateway
) -> None:
    """A stranger sends the client's id first with a payload that fails verification, then
    with one that verifies but settles nothing (an unfunded wallet's transfer): both are
    refused, and the client's payment under that id is then served and settled once; only
    then is the id bound (the stranger's payload again: 409)."""
    client, stranger = funded(gateway), Keypair()
    gateway.fund(stranger.pubkey(), {"SOL": Decimal(1)})  # fees, but no USDC to move
    wanted = offer(served)
    payment_id = fresh_id()
    real = identified(payment(gateway, client, wanted), payment_id)
    garbage = identified(
        {**payment(gateway, client, wanted), "payload": {"transaction": "AA=="}}, payment_id
    )
    unfunded = identified(payment(gateway, stranger, wanted), payment_id)

    assert pay(served, garbage).status_code == 402
    refused = pay(served, unfunded)
    assert refused.status_code == 402
    assert unb64json(refused.headers["PAYMENT-REQUIRED"], "x")["error"] == (
        "transaction_simulation_failed"
    )
    served_answer = pay(served, real)
    assert served_answer.status_code == 200, served_answer.text
    assert usdc(gateway, client) == 1 - PRICE

    late = pay(served, unfunded)
    assert (late.status_code, late.json()) == (409, {"error": ID_CONFLICT, "paymentId": payment_id})
    assert pay(served, real).content == served_answer.content
    assert usdc(gateway, client) == 1 - PRICE


def test_two_valid_payloads_under_one_id_at_once_settle_once(
    served: GatewayServer, gateway: Gateway
) -> None:
    """Two different valid payments of one wallet under one id, sent together: one settles,
    the other gets 409, and the ledger moves once."""
    wallet = funded(gateway)
    wanted = offer(served)
    payment_id = fresh_id()
    headers = [identified(payment(gateway, wallet, wanted), payment_id) for _ in range(2)]
    answers: list[requests.Response] = []
    threads = [threading.Thread(target=lambda h=h: answers.append(pay(served, h))) for h in headers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [200, 409]
    assert usdc(gateway, wallet) == 1 - PRICE


def test_a_claim_waits_for_the_payment_settling_under_the_id(clock: FakeClock) -> None:
    """While one payload settles under an id, another waits for its outcome: released (it
    settled nothing), the other may settle; confirmed, the other is a conflict."""
    ids = PaymentIds(clock)
    assert ids.claim("/r", "pay_x", "a") == "claimed"
    outcomes: list[str] = []
    waiting = threading.Thread(target=lambda: outcomes.append(ids.claim("/r", "pay_x", "b")))
    waiting.start()
    assert ids.wait_for_waits(1, timeout=30)
    ids.release("/r", "pay_x", "a")
    waiting.join()
    assert outcomes == ["claimed"]

    waiting = threading.Thread(target=lambda: outcomes.append(ids.claim("/r", "pay_x", "c")))
    waiting.start()
    assert ids.wait_for_waits(2, timeout=30)
    ids.confirm("/r", "pay_x", "b")
    waiting.join()
    assert outcomes == ["claimed", "conflict"]
    assert ids.claim("/r", "pay_x", "b") == "claimed"  # the bound payload itself, again


def test_a_claim_that_waits_in_vain_is_busy_and_the_gateway_says_send_again(
    served: GatewayServer, gateway: Gateway
) -> None:
    """Another payload still settling under the id after the wait: 503 with Retry-After
    (the client sends it again), nothing moved, nothing bound."""
    wallet = funded(gateway)
    wanted = offer(served)
    payment_id = fresh_id()
    gateway.payment_ids.wait = 0.0
    assert gateway.payment_ids.claim(ROUTE, payment_id, "another payload, settling") == "claimed"
    header = identified(payment(gateway, wallet, wanted), payment_id)
    busy = pay(served, header)
    assert busy.status_code == 503
    assert busy.headers["Retry-After"] == "1"
    assert busy.json()["reason"] == "payment_identifier_busy"
    assert usdc(gateway, wallet) == 1
    gateway.payment_ids.release(ROUTE, payment_id, "another payload, settling")
    assert pay(served, header).status_code == 200
    assert usdc(gateway, wallet) == 1 - PRICE


# -- 2. the answer to an id is kept as long as its binding -------------------------------------


def test_the_same_id_and_payload_after_the_replay_window_get_the_same_answer(
    served: GatewayServer, gateway: Gateway, clock: FakeClock
) -> None:
    """Past the two-minute replay window (and the facilitator's duplicate memory), within the
    id's hour: the same payload gets the first answer, with its PAYMENT-RESPONSE; one
    settlement. Past the hour it is refused and moves nothing."""
    wallet = funded(gateway)
    header = identified(payment(gateway, wallet, offer(served)), fresh_id())
    first = pay(served, header)
    assert first.status_code == 200, first.text

    clock.now += max(REPLAY_WINDOW, SETTLEMENT_TTL) + 1
    again = pay(served, header)
    assert again.status_code == 200, again.text
    assert again.content == first.content
    assert again.headers["PAYMENT-RESPONSE"] == first.headers["PAYMENT-RESPONSE"]
    assert usdc(gateway, wallet) == 1 - PRICE

    clock.now += ID_WINDOW
    late = pay(served, header)
    assert late.status_code == 402
    assert usdc(gateway, wallet) == 1 - PRICE


def test_an_agent_resumes_an_identified_payment_after_the_replay_window(
    served: GatewayServer, gateway: Gateway, clock: FakeClock, tmp_path: Path
) -> None:
    """Every answer lost, the agent asks again five minutes later: its journaled payment is
    re-sent with its id and served from the answer kept for that id (not paid_not_delivered),
    one payment on the ledger."""
    wallet = funded(gateway)
    url = served.url + ROUTE
    with AutoAgent(wallet, rpc_url=served.rpc_url, journal_path=tmp_path / "j.db") as agent:
        gateway.faults.error_after_payment(count=4)
        with pytest.raises(PaymentError) as lost:
            agent.get(url)
        assert lost.value.reason == "no_answer_after_payment"
        gateway.faults.clear()
        clock.now += 300
        answer = agent.get(url)
        assert answer.status_code == 200, answer.text
        assert len(agent.payments) == 1
    assert usdc(gateway, wallet) == 1 - PRICE


def test_answers_kept_by_id_are_capped_oldest_first(clock: FakeClock) -> None:
    """Past the cap, the oldest answer kept by id is forgotten first; answers kept by
    request (the two-minute window) are not counted against it."""
    replies = PaidReplies(clock, id_limit=2)
    keys = [id_key("/r", f"pay_{n:016d}", "digest") for n in range(3)]
    for key in keys:
        replies.put(key, Response(key))
        clock.now += 1
    replies.put("a request's key", Response("by request"))
    assert replies.kept_by_id == 2
    assert replies.get(keys[0]) is None
    kept = [replies.get(key) for key in keys[1:]]
    assert [r.get_data(as_text=True) for r in kept if r is not None] == keys[1:]
    clock.now += REPLAY_WINDOW
    assert replies.get("a request's key") is None
    assert replies.get(keys[2]) is not None


# -- 4. the journal answers "paid before?" from an index ----------------------------------------


def served_row(journal: Journal) -> JournalEntry:
    """A payment the journal shows served (``accepted``)."""
    made = journal.reserve(journal_offer(), currency_key="SOL", invoice_key=None, budget=None)
    assert isinstance(made, Reserved)
    accepted = journal.mark(made.entry.id, "accepted")
    assert accepted is not None
    return accepted


def paid_for_plan(journal: Journal, entry: JournalEntry) -> str:
    """What SQLite does for :meth:`Journal.paid_for` (the traced query, explained)."""
    statements: list[str] = []
    journal._db.set_trace_callback(statements.append)
    receipt = entry.receipt
    found = journal.paid_for(receipt.url, receipt.payer, receipt.network)
    journal._db.set_trace_callback(None)
    assert found is not None
    assert found.id == entry.id
    (query,) = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    plan = journal._db.execute(f"EXPLAIN QUERY PLAN {query}").fetchall()
    return " ".join(str(row[-1]) for row in plan)


def test_paid_before_is_read_through_its_own_index(tmp_path: Path) -> None:
    """Sign-in's "paid before" query searches the served rows by wallet, network and URL
    (one row read, no sort), not every row of the wallet."""
    journal = Journal(tmp_path / "j.sqlite3")
    plan = paid_for_plan(journal, served_row(journal))
    journal.close()
    assert "USING INDEX payments_paid_for (payer=? AND network=? AND url=?)" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


def test_a_version_4_journal_gains_the_paid_before_index(tmp_path: Path) -> None:
    """A journal of schema 4 (no payment ids, no resume key, no paid-before index) gains
    them on opening, keeps its rows, and answers "paid before" through the index."""
    path = tmp_path / "v4.sqlite3"
    journal = Journal(path)
    entry = served_row(journal)
    journal.close()
    with sqlite3.connect(path) as db:
        for index in ("payments_resumable", "payments_paid_for"):
            db.execute(f"DROP INDEX {index}")
        for column in ("resume_key", "payment_id"):
            db.execute(f"ALTER TABLE payments DROP COLUMN {column}")
        db.execute("PRAGMA user_version=4")
    journal = Journal(path)
    plan = paid_for_plan(journal, entry)
    journal.close()
    assert "USING INDEX payments_paid_for" in plan, plan
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
        columns = {row[1] for row in db.execute("PRAGMA table_info(payments)")}
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert {"payment_id", "resume_key"} <= columns
    assert {"payments_resumable", "payments_paid_for"} <= names


# -- 3. over --workers: sign-in and payment ids as in one process ------------------------------


@pytest.fixture(scope="module")
def workers() -> Iterator[Running]:
    """``python -m stub_gateway --workers 2 --siwx-ttl 600``: two worker processes."""
    command = [sys.executable, "-m", "stub_gateway", "--port", "0", "--quiet", "--workers", "2"]
    command += ["--siwx-ttl", "600"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().split(" on ", 1)[1].split()[0]
            info = requests.get(f"{url}/api/v1/info", timeout=30).json()
            yield Running(url, process, info)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def test_workers_serve_sign_in_to_a_wallet_that_paid_once(workers: Running, tmp_path: Path) -> None:
    """Over two workers: paid once, then every sign-in is served, whichever worker issued
    the challenge or answers the proof; one transfer on the ledger; the TTL given is the one
    every worker lists."""
    members = f"{workers.url}/x402/v2/members"
    wallet = workers_funded(workers)
    with AutoAgent(wallet, rpc_url=workers.rpc_url, journal_path=tmp_path / "j.db") as agent:
        assert agent.get(members).json()["signed_in"] is False
        assert [agent.get(members).json()["signed_in"] for _ in range(4)] == [True] * 4
        assert len(agent.payments) == 1
    for _ in range(6):
        challenge = challenge_from(requests.get(members, timeout=30))
        header = {SIGN_IN_HEADER: proof(challenge, wallet)}
        answer = requests.get(members, headers=header, timeout=30)
        assert (answer.status_code, answer.json()["member"]) == (200, str(wallet.pubkey()))
    assert usdc_balance(workers, wallet.pubkey()) == 100_000_000 - 10_000
    for _ in range(4):
        listed = requests.get(f"{workers.url}/api/v1/info", timeout=30).json()
        assert json.dumps(listed, sort_keys=True).count('"ttl_seconds": 600.0') == 1


def test_workers_refuse_a_replayed_sign_in_nonce_on_every_worker(
    workers: Running, tmp_path: Path
) -> None:
    """A proof served once is refused however many times, and by whichever worker, it is
    sent again."""
    members = f"{workers.url}/x402/v2/members"
    wallet = workers_funded(workers)
    with AutoAgent(wallet, rpc_url=workers.rpc_url, journal_path=tmp_path / "j.db") as agent:
        assert agent.get(members).json()["signed_in"] is False
    challenge = challenge_from(requests.get(members, timeout=30))
    header = {SIGN_IN_HEADER: proof(challenge, wallet)}
    assert requests.get(members, headers=header, timeout=30).json()["signed_in"] is True
    for _ in range(6):
        again = requests.get(members, headers=header, timeout=30)
        assert again.status_code == 402
        assert error_of(again) == "sign_in_refused: its nonce was used already"


def test_workers_let_no_stranger_block_a_clients_payment_id(workers: Running) -> None:
    """Over two workers: a payload that fails verification and one that settles nothing,
    both under the client's id, leave it free; the client's payment then settles once; only
    then is the id bound (409 to the stranger on every worker)."""
    url = f"{workers.url}{ROUTE}"
    client, stranger = workers_funded(workers), Keypair()
    payment_id = fresh_id()
    real = identified(unb64json(x402_payment(workers, client), "x"), payment_id)
    unfunded = identified(unb64json(x402_payment(workers, stranger), "x"), payment_id)
    garbage = unb64json(x402_payment(workers, client), "x")
    garbage["payload"] = {"transaction": "AA=="}
    for header in (identified(garbage, payment_id), unfunded) * 2:
        refused = requests.get(url, headers={"PAYMENT-SIGNATURE": header}, timeout=30)
        assert refused.status_code == 402
    served_answer = requests.get(url, headers={"PAYMENT-SIGNATURE": real}, timeout=30)
    assert served_answer.status_code == 200, served_answer.text
    for _ in range(4):
        late = requests.get(url, headers={"PAYMENT-SIGNATURE": unfunded}, timeout=30)
        assert (late.status_code, late.json()) == (
            409,
            {"error": ID_CONFLICT, "paymentId": payment_id},
        )
    assert usdc_balance(workers, client.pubkey()) == 100_000_000 - 10_000


# -- 5. /api/v1/info lists the x402 routes and their extensions ---------------------------------


@pytest.mark.parametrize("required", [False, True])
def test_info_lists_each_x402_route_with_the_extensions_its_402_declares(required: bool) -> None:
    """Each x402 route in /api/v1/info names the extensions its 402 declares, payment ids
    optional or required as the gateway was made; the listing matches the 402s."""
    with GatewayServer(create_app(payment_id_required=required)).start() as server:
        routes = requests.get(f"{server.url}/api/v1/info", timeout=10).json()["x402"]
        assert [r["url"] for r in routes] == [
            f"{server.url}/x402/v1/premium",
            f"{server.url}/x402/v2/premium",
            f"{server.url}/x402/v2/members",
        ]
        for route in routes:
            challenge = requests.get(route["url"], timeout=10)
            assert challenge.status_code == 402
            if route["x402Version"] == 1:
                assert route["extensions"] == {}
                continue
            declared = unb64json(challenge.headers["PAYMENT-REQUIRED"], "x")["extensions"]
            assert set(route["extensions"]) == set(declared)
            assert route["extensions"]["payment-identifier"] == {"required": required}
            assert declared["payment-identifier"]["info"] == {"required": required}
            (offer_,) = unb64json(challenge.headers["PAYMENT-REQUIRED"], "x")["accepts"]
            assert offer_["amount"] == "10000"
            assert (route["amount"], route["currency"]) == ("0.01", "USDC")


def test_an_agent_told_busy_sends_the_same_payment_again_and_is_served_once(
    served: GatewayServer, gateway: Gateway, tmp_path: Path
) -> None:
    """The agent's payment meets another payload still settling under its id: the 503 is a
    no-answer, so the agent re-sends the same payment (same id) after its pause; by then the
    other settled nothing (released) and the agent's payment is served, settled once."""
    wallet = funded(gateway)
    url = served.url + ROUTE
    gateway.payment_ids.wait = 0.0
    held: list[tuple[str, str, str]] = []
    claims: list[str] = []
    real_claim = gateway.payment_ids.claim

    def first_claim_meets_a_stranger(scope: str, payment_id: str, digest: str) -> Any:
        if not held:  # a stranger's payload under this id arrived just before, still settling
            held.append((scope, payment_id, "a stranger's payload"))
            assert real_claim(*held[0]) == "claimed"
        claimed = real_claim(scope, payment_id, digest)
        claims.append(claimed)
        return claimed

    pauses: list[float] = []

    def pause(seconds: float) -> None:  # the stranger's payment settles nothing meanwhile
        pauses.append(seconds)
        gateway.payment_ids.release(*held[0])

    gateway.payment_ids.claim = first_claim_meets_a_stranger  # type: ignore[method-assign]
    with AutoAgent(
        wallet, rpc_url=served.rpc_url, journal_path=tmp_path / "j.db", sleep=pause
    ) as agent:
        answer = agent.get(url)
        assert answer.status_code == 200, answer.text
        (paid,) = agent.payments
    assert claims == ["busy", "claimed"]
    assert pauses
    assert paid.payment_id == held[0][1]
    assert usdc(gateway, wallet) == 1 - PRICE
