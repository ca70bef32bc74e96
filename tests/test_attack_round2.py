"""Attacks on the merged issue-8 code (round two): the seams between its parts.

Each test rebuilds a hostile set-up with real parts (the stub gateway on loopback, its
LiteSVM ledger, real processes) and asserts what a careful wallet owner expects: ledger
balances and journal rows.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask, Response, jsonify, request
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams
from solders.system_program import transfer as transfer_ix
from solders.transaction import VersionedTransaction

from human_rpc_sdk import (
    AutoAgent,
    HumanRPCError,
    PaymentError,
    PaymentPolicyError,
    PendingPaymentsWarning,
)
from human_rpc_sdk._headers import b64json, decode_payment_header, unb64json
from stub_gateway import Gateway, GatewayServer, Price, serve_in_thread
from stub_gateway._http import jsonable
from stub_gateway.x402_routes import require_x402, requirements_for

from .conftest import FakeClock
from .lagging_rpc import LaggingRpc
from .test_journal import ROOT, Stall, run_worker
from .test_journal_safety import V1_SCHEMA, Locker
from .test_replacement_proof import gateway_app, serve


def rows(journal: Path) -> list[dict[str, Any]]:
    """The journal's rows, as another process reads them."""
    with sqlite3.connect(journal) as db:
        db.row_factory = sqlite3.Row
        found = db.execute("SELECT * FROM payments ORDER BY id").fetchall()
    return [dict(row) for row in found]


def recount(journal: Path) -> dict[tuple[str, str], Decimal]:
    """The budget totals recounted from the rows (amount, plus fees and rent in SOL, of every
    row but a failed one), next to the journal's running totals: they must be equal."""
    counted: dict[tuple[str, str], Decimal] = {}
    for row in rows(journal):
        if row["state"] == "failed":
            if (row["landed_proof"] or "").startswith("failed on chain"):  # its fee was paid
                sol = (row["network"], "SOL")
                counted[sol] = counted.get(sol, Decimal(0)) + Decimal(row["fee_lamports"]) / 10**9
            continue
        key = (row["network"], row["currency_key"])
        counted[key] = counted.get(key, Decimal(0)) + Decimal(row["amount"])
        lamports = (row["fee_lamports"] or 0) + (row["rent_lamports"] or 0)
        if lamports:
            sol = (row["network"], "SOL")
            counted[sol] = counted.get(sol, Decimal(0)) + Decimal(lamports) / 10**9
    with sqlite3.connect(journal) as db:
        kept = {
            (n, k): Decimal(v)
            for n, k, v in db.execute("SELECT network, currency_key, spent FROM totals")
        }
    assert {k: v for k, v in kept.items() if v} == {k: v for k, v in counted.items() if v}
    return counted


USDC = Decimal("0.01")
KEEP = 890_880 + 20_000
"""Lamports the owner's other payment leaves: rent-exempt, short of any invoice here."""
TREASURY = Keypair.from_seed(bytes(32)).pubkey()
MEMO = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
FEE = Decimal("0.000005")


def add_lying_settlement(
    app: Flask, gateway: Gateway, price: Price, fake: str, success: bool | None = None
) -> None:
    """``GET /x402-lies``: a real x402 paywall (the payment is settled and lands), whose
    answer's settlement header names ``fake`` as the transaction, with ``success`` (left
    out when None)."""

    @app.get("/x402-lies")
    @require_x402(gateway, price)
    def lies() -> Response:
        return jsonify({"content": "paid for"})

    @app.after_request
    def rewrite(response: Response) -> Response:
        header = response.headers.get("PAYMENT-RESPONSE")
        if request.path == "/x402-lies" and header:
            settlement = unb64json(header, "settlement")
            claim: dict[str, Any] = {"transaction": fake, "network": settlement["network"]}
            if success is not None:
                claim["success"] = success
            response.headers["PAYMENT-RESPONSE"] = b64json(claim)
        return response


@pytest.mark.parametrize(
    "fake",
    [str(Keypair().sign_message(b"not the payment")), "0OIl-not-base58"],
    ids=["made-up-signature", "not-a-signature"],
)
def test_a_lying_settlement_signature_never_releases_a_landed_payment(
    tmp_path: Path, fake: str
) -> None:
    """An x402 server takes the payment (it lands), serves the content, and names a made-up
    transaction (or text that is no signature) in its settlement header. Once the blockhash
    expired, recovery must still find the real transaction (landed), keep it counted, and the
    budget must stop a second payment (before: failed, landed=0, budget released; or a raw
    ValueError out of recover_payments())."""
    clock = FakeClock()
    price = Price(USDC, "USDC")
    with gateway_app(clock) as (gateway, app):
        add_lying_settlement(app, gateway, price, fake)
        with serve(app) as server:
            wallet = Keypair()
            gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(1)})
            journal = tmp_path / "journal.sqlite3"
            agent = AutoAgent(
                wallet, rpc_url=server.rpc_url, journal_path=journal, budget={"USDC": "0.01"}
            )
            assert agent.get(f"{server.url}/x402-lies").status_code == 200
            assert gateway.balance(wallet.pubkey(), "USDC") == 1 - USDC
            clock.now += 61  # the payment's blockhash is now provably expired
            agent.recover_payments()
            (row,) = rows(journal)
            assert row["state"] == "accepted"
            assert row["landed"] != 0  # it landed: never recorded as landed=False
            assert agent.budget["USDC"].spent == USDC
            with pytest.raises(PaymentPolicyError):
                agent.get(f"{server.url}/x402-lies")
            assert gateway.balance(wallet.pubkey(), "USDC") == 1 - USDC
            agent.close()


# -- the RPC behind a load balancer switches chains ------------------------------------------


class SwitchingRpc:
    """A JSON-RPC endpoint forwarding to ``upstream[0]``: a load balancer whose backend a test
    swaps for a node of another chain."""

    def __init__(self, upstream: str) -> None:
        self.upstream = [upstream]
        self._http = requests.Session()
        app = Flask("switching_rpc")

        @app.post("/")
        def forward() -> Response:
            reply = self._http.post(
                self.upstream[0],
                data=request.get_data(),
                headers={"Content-Type": "application/json"},
                timeout=10,
            )
            return Response(reply.content, status=reply.status_code, mimetype="application/json")

        self._server = GatewayServer(app)

    @property
    def url(self) -> str:
        return self._server.url

    def __enter__(self) -> SwitchingRpc:
        self._server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stop()
        self._http.close()


def add_sticky_invoice(app: Flask, gateway: Gateway, price: Price) -> None:
    """``GET /sticky``: one HumanRPC invoice, served once when paid; afterwards every request
    (paid with that same payment or not) gets the same invoice in a 402 again."""
    state: dict[str, Any] = {"invoice": None, "served": False}

    @app.get("/sticky")
    def sticky() -> Response:
        if state["invoice"] is None:
            state["invoice"] = gateway.desk.issue(price, request.path)
        header = request.headers.get("X-PAYMENT")
        if header is not None and not state["served"]:
            execution = gateway.ledger.execute(decode_payment_header(header).transaction)
            if execution.ok:
                state["served"] = True
                return jsonify({"content": "paid for"})
        response = jsonify(jsonable(state["invoice"].body(gateway.network)))
        response.status_code = 402
        return response


def test_an_rpc_swapped_to_another_chain_never_fails_a_payment_of_the_first(
    tmp_path: Path,
) -> None:
    """The agent pays an invoice on chain 1; its load balancer then sends it to a node of
    chain 2 (another genesis hash, further along). The same invoice comes back in a 402: the
    journaled payment is re-sent and refused, and chain 2 (which never saw it) must not be
    taken as proof that it never landed: the chain-1 row stays accepted and counted, and
    nothing is paid on chain 2."""
    price = Price(Decimal("0.001"), "SOL")
    first, second = FakeClock(), FakeClock()
    with gateway_app(first) as (gateway, app), gateway_app(second) as (other, other_app):
        for _ in range(5):  # chain 2 is further along, with blockhashes of its own
            second.now += 20
            other.ledger.slot()
        add_sticky_invoice(app, gateway, price)
        assert gateway.genesis_hash != other.genesis_hash
        with (
            serve(app) as server,
            serve(other_app) as other_server,
            SwitchingRpc(server.rpc_url) as balancer,
        ):
            wallet = Keypair()
            gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
            other.fund(wallet.pubkey(), {"SOL": Decimal(1)})
            journal = tmp_path / "journal.sqlite3"
            own = FakeClock()
            agent = AutoAgent(wallet, rpc_url=balancer.url, journal_path=journal, clock=own)
            assert agent.get(f"{server.url}/sticky").status_code == 200
            spent = agent.budget["SOL"].spent
            assert spent == Decimal("0.001") + FEE

            balancer.upstream[0] = other_server.rpc_url
            own.now += 30  # the agent's cached blockhash is old: it would fetch another
            with pytest.raises(HumanRPCError):
                agent.get(f"{server.url}/sticky")
            assert other.balance(wallet.pubkey()) == 1  # nothing paid on chain 2
            (row,) = [r for r in rows(journal) if r["transaction_b64"]][:1]
            assert row["state"] == "accepted"
            assert row["landed"] != 0
            assert agent.budget["SOL"].spent == spent
            assert gateway.balance(wallet.pubkey()) == 1 - spent
            agent.close()


def test_a_payment_after_a_chain_swap_is_journaled_with_its_own_chain(tmp_path: Path) -> None:
    """Chain 1 first (the agent reads its genesis hash), then the load balancer serves chain 2
    and the agent pays a chain-2 HumanRPC paywall that answers 200 with no settlement header
    (landing unknown); back on chain 1 (far along), recovery must not judge the chain-2
    payment there: it landed, it stays counted, never landed=0."""
    first, second = FakeClock(), FakeClock()
    with gateway_app(first) as (gateway, app), gateway_app(second) as (other, other_app):
        for _ in range(3):
            second.now += 20
            other.ledger.slot()
        add_sticky_invoice(other_app, other, Price(Decimal("0.001"), "SOL"))
        with (
            serve(app) as server,
            serve(other_app) as other_server,
            SwitchingRpc(server.rpc_url) as balancer,
        ):
            wallet = Keypair()
            gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
            other.fund(wallet.pubkey(), {"SOL": Decimal(1)})
            journal = tmp_path / "journal.sqlite3"
            own = FakeClock()
            agent = AutoAgent(wallet, rpc_url=balancer.url, journal_path=journal, clock=own)
            assert agent.get(f"{server.url}/api/v1/premium/sol").status_code == 200
            balancer.upstream[0] = other_server.rpc_url
            own.now += 30
            try:
                answer = agent.get(f"{other_server.url}/sticky")
            except HumanRPCError:
                answer = None  # refusing to pay on a chain it did not start on is fine too
            if answer is not None:
                assert answer.status_code == 200
                assert other.balance(wallet.pubkey()) == 1 - Decimal("0.001") - FEE
            spent = agent.budget["SOL"].spent
            balancer.upstream[0] = server.rpc_url
            for _ in range(10):  # chain 1 moves far past chain 2's blockhashes
                first.now += 20
                gateway.ledger.slot()
            agent.recover_payments()
            assert all(r["landed"] != 0 for r in rows(journal))
            assert agent.budget["SOL"].spent == spent
            chains = [r["genesis_hash"] for r in rows(journal)]
            if answer is not None:  # each payment is journaled with the chain it was made on
                assert chains == [gateway.genesis_hash, other.genesis_hash]
            agent.close()


def add_duplicate_liar(app: Flask, gateway: Gateway, price: Price, fake: str) -> None:
    """``GET /x402-dup``: x402 v2; a payment is settled (it lands, the money is kept) and
    answered 402 ``duplicate_settlement``, the settlement header naming ``fake``."""

    @app.get("/x402-dup")
    def dup() -> Response:
        wanted = requirements_for(gateway, price, 2, request.base_url, "dup")
        header = request.headers.get("PAYMENT-SIGNATURE")
        if header is not None:
            payload = unb64json(header, "payment")
            if not gateway.facilitator.already_settled(payload):
                assert gateway.facilitator.settle(payload, wanted)["success"]
            response = jsonify({})
            response.status_code = 402
            response.headers["PAYMENT-RESPONSE"] = b64json(
                {
                    "success": False,
                    "errorReason": "duplicate_settlement",
                    "transaction": fake,
                    "network": wanted["network"],
                }
            )
            return response
        document = {
            "x402Version": 2,
            "error": "Payment required",
            "resource": {"url": request.base_url, "description": "dup"},
            "accepts": [wanted],
        }
        response = jsonify({})
        response.headers["PAYMENT-REQUIRED"] = b64json(document)
        response.status_code = 402
        return response


def test_paid_not_delivered_names_the_transaction_that_landed(tmp_path: Path) -> None:
    """A server settles the payment, then refuses it as a duplicate naming a made-up
    transaction: the error (paid_not_delivered) and the journal must name the transaction
    that landed, which the agent found on chain, not the server's invention."""
    clock = FakeClock()
    price = Price(USDC, "USDC")
    fake = str(Keypair().sign_message(b"not the payment"))
    with gateway_app(clock) as (gateway, app):
        add_duplicate_liar(app, gateway, price, fake)
        with serve(app) as server:
            wallet = Keypair()
            gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(1)})
            journal = tmp_path / "journal.sqlite3"
            agent = AutoAgent(
                wallet, rpc_url=server.rpc_url, journal_path=journal, sleep=clock.sleep
            )
            with pytest.raises(PaymentError) as caught:
                agent.get(f"{server.url}/x402-dup")
            assert caught.value.reason == "paid_not_delivered"
            assert gateway.balance(wallet.pubkey(), "USDC") == 1 - USDC
            (row,) = rows(journal)
            assert (row["state"], row["landed"]) == ("refused", 1)
            landed = gateway.ledger.status(Signature.from_string(row["signature"]))
            assert landed is not None
            assert landed.ok
            assert caught.value.signature == row["signature"]
            recount(journal)
            agent.close()


# -- a version-1 journal, in every state, then recovery -----------------------------------------


def v1_row(
    db: sqlite3.Connection,
    state: str,
    transaction: VersionedTransaction | None,
    *,
    invoice_key: str | None = None,
    landed: int | None = None,
    replaces: int | None = None,
    pid: int | None = None,
    error: str | None = None,
    payer: Pubkey,
) -> int:
    """A row as the previous release wrote it (no lastValidBlockHeight, no genesis hash)."""
    signed = None
    if transaction is not None:
        signed = (
            str(transaction.signatures[0]),
            str(payer),
            str(transaction.message.recent_blockhash),
            base64.b64encode(bytes(transaction)).decode(),
            json.dumps({"X-PAYMENT": "old"}),
        )
    cursor = db.execute(
        "INSERT INTO payments (invoice_key, state, created, updated, updated_unix, url, network, "
        "format, currency, currency_key, amount, atomic_amount, recipient, destination, payer, "
        "fee_lamports, signature, fee_payer, blockhash, transaction_b64, headers, landed, "
        "replaces, pid, host, process, error) VALUES (?, ?, '2026-01-01T00:00:00+00:00', "
        "'2026-01-01T00:00:00+00:00', 0, 'http://x', 'devnet', 'humanrpc', 'SOL', 'SOL', "
        "'0.001', '1000000', ?, ?, ?, 5000, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'old', ?)",
        (
            invoice_key,
            state,
            str(TREASURY),
            str(TREASURY),
            str(payer),
            *(signed or (None,) * 5),
            landed,
            replaces,
            pid,
            socket.gethostname(),
            error,
        ),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def test_a_v1_journal_in_every_state_is_recovered_without_losing_a_landed_payment(
    tmp_path: Path,
) -> None:
    """The previous release's journal, with real transactions: a payment it failed and
    replaced although both landed (its isBlockhashValid rule), one it refused with landed=0
    that landed, one signed and never sent, one accepted with landing unknown, and a
    reservation of a dead process. Migration then recovery: every landed payment is counted
    (the replaced one revived), nothing landed is failed, the totals equal a recount."""
    clock = FakeClock()
    with gateway_app(clock) as (gateway, app), serve(app) as server:
        wallet = Keypair()
        gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})

        def transfer(memo: str) -> VersionedTransaction:
            blockhash, _last_valid, _slot = gateway.ledger.latest_blockhash()
            message = MessageV0.try_compile(
                wallet.pubkey(),
                [
                    transfer_ix(
                        TransferParams(
                            from_pubkey=wallet.pubkey(), to_pubkey=TREASURY, lamports=1_000_000
                        )
                    ),
                    Instruction(MEMO, memo.encode(), []),
                ],
                [],
                blockhash,
            )
            return VersionedTransaction(message, [wallet])

        replaced, replacement, refused, unsent, accepted = (
            transfer(m) for m in ("a", "b", "c", "d", "e")
        )
        for landed in (replaced, replacement, refused, accepted):
            assert gateway.ledger.execute(landed).ok
        path = tmp_path / "old.sqlite3"
        with sqlite3.connect(path) as db:
            db.executescript(V1_SCHEMA)
            payer = wallet.pubkey()
            first = v1_row(
                db,
                "failed",
                replaced,
                invoice_key="k1",
                landed=0,
                error="replaced: its blockhash expired before it landed",
                payer=payer,
            )
            v1_row(db, "accepted", replacement, invoice_key="k1", replaces=first, payer=payer)
            v1_row(db, "refused", refused, invoice_key="k2", landed=0, payer=payer)
            v1_row(db, "signed", unsent, invoice_key="k3", pid=os.getpid(), payer=payer)
            v1_row(db, "accepted", accepted, payer=payer)
            v1_row(db, "reserved", None, invoice_key="k4", pid=99_999_999, payer=payer)
            db.execute("PRAGMA user_version=1")
        path.chmod(0o600)
        with pytest.warns(PendingPaymentsWarning, match="holds 2 payment"):
            agent = AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=path)
        recount(path)
        agent.recover_payments()
        by_id = {row["id"]: row for row in rows(path)}
        assert [(r["state"], r["landed"]) for r in by_id.values()] == [
            ("accepted", 1),  # revived: it landed (its invoice stays the replacement's)
            ("accepted", 1),
            ("refused", 1),
            ("signed", None),  # never sent, never provable (no recorded height): open
            ("accepted", 1),
            ("failed", 0),  # the dead process's reservation, never signed
        ]
        counted = recount(path)
        assert counted[("devnet", "SOL")] == 5 * (Decimal("0.001") + FEE)
        assert agent.budget["SOL"].spent == 5 * (Decimal("0.001") + FEE)
        agent.close()


# -- a transaction that executes and fails still pays its fee ------------------------------------


def add_front_run(app: Flask, gateway: Gateway, price: Price, spend: Any) -> None:
    """``GET /front-run``: a HumanRPC invoice; when the payment arrives, ``spend()`` first
    spends the payer's SOL (its owner's other payment, landing first), then the payment is
    executed (it fails on chain, and its fee is charged) and answered 402."""

    @app.get("/front-run")
    def front_run() -> Response:
        header = request.headers.get("X-PAYMENT")
        if header is not None:
            spend()
            execution = gateway.ledger.execute(decode_payment_header(header).transaction)
            assert not execution.ok
        invoice = gateway.desk.issue(price, request.path)
        response = jsonify(jsonable(invoice.body(gateway.network)))
        response.status_code = 402
        return response


def test_the_fee_of_a_payment_that_failed_on_chain_counts_against_the_budget(
    tmp_path: Path,
) -> None:
    """The payment executes and fails on chain (the wallet's SOL was spent first): no SOL
    reached the payee, but the network fee left the wallet; the SOL budget must count it
    (before: a failed row counted nothing, so failing payments drained fees uncounted)."""
    clock = FakeClock()
    price = Price(Decimal("0.001"), "SOL")
    wallet = Keypair()
    with gateway_app(clock) as (gateway, app):

        def spend() -> None:
            left = gateway.ledger.balance(wallet.pubkey()) - KEEP - 5000  # and its own fee
            blockhash, _last_valid, _slot = gateway.ledger.latest_blockhash()
            move = transfer_ix(
                TransferParams(from_pubkey=wallet.pubkey(), to_pubkey=TREASURY, lamports=left)
            )
            message = MessageV0.try_compile(wallet.pubkey(), [move], [], blockhash)
            assert gateway.ledger.execute(VersionedTransaction(message, [wallet])).ok

        add_front_run(app, gateway, price, spend)
        with serve(app) as server:
            gateway.fund(wallet.pubkey(), {"SOL": Decimal("0.01")})
            journal = tmp_path / "journal.sqlite3"
            agent = AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=journal)
            with pytest.raises(HumanRPCError):
                agent.get(f"{server.url}/front-run")
            agent.recover_payments()
            executed = [r for r in rows(journal) if r["transaction_b64"]]
            assert gateway.ledger.balance(wallet.pubkey()) == KEEP - 5000 * len(executed)
            assert all(r["state"] == "failed" for r in executed)
            recount(journal)
            assert agent.budget["SOL"].spent == 5000 * Decimal(len(executed)) / 10**9
            agent.close()


# -- an RPC node whose history does not reach back to the payment -------------------------------


class PrunedRpc(LaggingRpc):
    """An up-to-date node whose ledger history starts at ``first`` (restarted from a recent
    snapshot, or one that keeps only recent slots): transactions of older slots are simply
    not found, and ``minimumLedgerSlot`` says so."""

    def __init__(self, upstream: str, ledger: Any, first: list[int]) -> None:
        super().__init__(upstream, ledger, lag=0)
        self.first = first
        self._handlers["getSignatureStatuses"] = self._pruned_statuses
        self._handlers["getSignaturesForAddress"] = self._pruned_history
        self._handlers["minimumLedgerSlot"] = lambda call, view: self.first[0]

    def __enter__(self) -> PrunedRpc:
        super().__enter__()
        return self

    def _pruned_statuses(self, call: dict[str, Any], view: int) -> Any:
        result = self._forward(call)
        result["value"] = [
            None if status is None or status["slot"] < self.first[0] else status
            for status in result["value"]
        ]
        return result

    def _pruned_history(self, call: dict[str, Any], view: int) -> Any:
        return [item for item in self._forward(call) if item["slot"] >= self.first[0]]


def test_a_node_without_the_history_proves_nothing(tmp_path: Path) -> None:
    """A payment lands and is served with no settlement header (landing unknown). Much later
    recovery asks a node whose history begins after the payment's slot: its 'not found'
    is no proof; the row stays open and counted."""
    clock = FakeClock()
    price = Price(Decimal("0.001"), "SOL")
    with gateway_app(clock) as (gateway, app):
        add_sticky_invoice(app, gateway, price)
        with serve(app) as server, PrunedRpc(server.rpc_url, gateway.ledger, [0]) as node:
            wallet = Keypair()
            gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
            journal = tmp_path / "journal.sqlite3"
            agent = AutoAgent(wallet, rpc_url=node.url, journal_path=journal)
            assert agent.get(f"{server.url}/sticky").status_code == 200
            clock.now += 120  # the blockhash expired long ago
            node.first[0] = gateway.ledger.slot()  # a node restarted from a fresh snapshot
            agent.recover_payments()
            (row,) = rows(journal)
            assert row["landed"] != 0
            assert row["state"] != "failed"
            assert agent.budget["SOL"].spent == Decimal("0.001") + FEE
            assert gateway.balance(wallet.pubkey()) == 1 - Decimal("0.001") - FEE
            assert "minimumLedgerSlot" in node.calls  # asked how far back its history goes
            node.first[0] = 0  # a node with the whole history finds it
            (found,) = agent.recover_payments()
            assert (found.state, found.landed) == ("accepted", True)
            assert agent.budget["SOL"].spent == Decimal("0.001") + FEE
            agent.close()


# -- kill -9 after an x402 settlement, then two processes recover at once -----------------------

RECOVER = """
import json, sys
from human_rpc_sdk import AutoAgent
agent = AutoAgent(rpc_url=sys.argv[1], journal_path=sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()
print(json.dumps([[r.state, r.landed] for r in agent.recover_payments()]), flush=True)
"""


@pytest.fixture
def stalled() -> Iterator[tuple[GatewayServer, Stall]]:
    """A gateway whose slow answers (after a settlement) wait until the test releases them."""
    stall = Stall()
    with serve_in_thread(sleep=stall) as running:
        yield running, stall
        stall.release.set()


def test_x402_killed_after_settling_then_recovered_by_two_processes_at_once(
    stalled: tuple[GatewayServer, Stall], tmp_path: Path
) -> None:
    """An x402 payment settles (the facilitator signs: the agent never learns the
    signature), its process is killed with SIGKILL before the answer. Two processes then
    recover the journal at the same moment: the payment is found in the payer's history,
    landed, counted once; the totals equal a recount; the USDC moved once."""
    server, stall = stalled
    gateway = server.gateway
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(1)})
    journal = tmp_path / "journal.sqlite3"
    gateway.faults.slow_after_payment(60)
    job = {
        "url": f"{server.url}/x402/v2/premium",
        "rpc_url": server.rpc_url,
        "journal": str(journal),
    }
    child = run_worker(job, wallet)
    settled = stall.started.wait(timeout=30)
    child.send_signal(signal.SIGKILL)
    _, errors = child.communicate(timeout=10)
    stall.release.set()
    assert settled, errors
    (row,) = rows(journal)
    assert (row["state"], row["signature"]) == ("signed", None)
    paid = 1 - gateway.balance(wallet.pubkey(), "USDC")
    assert paid > 0

    env = {**os.environ, "SOLANA_PRIVATE_KEY": str(wallet)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", RECOVER, server.rpc_url, str(journal)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for worker in workers:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready"
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    results = [worker.communicate(timeout=60) for worker in workers]
    assert [w.returncode for w in workers] == [0, 0], results
    (row,) = rows(journal)
    assert (row["state"], row["landed"]) == ("accepted", 1)
    assert row["signature"]
    landed = gateway.ledger.status(Signature.from_string(row["signature"]))
    assert landed is not None
    assert landed.ok
    counted = recount(journal)
    assert counted[("devnet", "USDC")] == paid
    assert gateway.balance(wallet.pubkey(), "USDC") == 1 - paid


@pytest.mark.parametrize(
    "fake", [str(Keypair().sign_message(b"not the payment")), ""], ids=["made-up", "none"]
)
def test_a_settlement_naming_another_transaction_is_not_the_receipt(
    tmp_path: Path, fake: str
) -> None:
    """A server serves the paid content with a settlement claiming success for a made-up
    transaction (or naming none). The receipt must not carry the invention as the payment's
    signature, nor take the claim as proof it landed; recovery finds the real transaction."""
    clock = FakeClock()
    price = Price(USDC, "USDC")
    with gateway_app(clock) as (gateway, app):
        add_lying_settlement(app, gateway, price, fake, success=True)
        with serve(app) as server:
            wallet = Keypair()
            gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(1)})
            journal = tmp_path / "journal.sqlite3"
            agent = AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=journal)
            assert agent.get(f"{server.url}/x402-lies").status_code == 200
            (row,) = rows(journal)
            assert row["signature"] != fake
            agent.recover_payments()
            (row,) = rows(journal)
            assert (row["state"], row["landed"]) == ("accepted", 1)
            landed = gateway.ledger.status(Signature.from_string(row["signature"]))
            assert landed is not None
            assert landed.ok
            assert gateway.balance(wallet.pubkey(), "USDC") == 1 - USDC
            recount(journal)
            agent.close()


def add_claims_without_executing(app: Flask, gateway: Gateway, price: Price) -> None:
    """``GET /claims``: a HumanRPC invoice; the payment is never executed, but the answer is
    200 with a settlement claiming success for another transaction."""

    @app.get("/claims")
    def claims() -> Response:
        if request.headers.get("X-PAYMENT") is not None:
            response = jsonify({"content": "served"})
            response.headers["PAYMENT-RESPONSE"] = b64json(
                {
                    "success": True,
                    "transaction": str(Keypair().sign_message(b"another")),
                    "network": "solana:devnet",
                }
            )
            return response
        invoice = gateway.desk.issue(price, request.path)
        response = jsonify(jsonable(invoice.body(gateway.network)))
        response.status_code = 402
        return response


def test_a_success_claimed_for_another_transaction_is_no_landing(tmp_path: Path) -> None:
    """The server never executes the payment but claims success for another transaction:
    the claim is not the payment's, so its landing stays unknown; once its blockhash
    expired, recovery proves it never landed and releases its budget (before: landed=1,
    counted for ever, never looked at again)."""
    clock = FakeClock()
    price = Price(Decimal("0.001"), "SOL")
    with gateway_app(clock) as (gateway, app):
        add_claims_without_executing(app, gateway, price)
        with serve(app) as server:
            wallet = Keypair()
            gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
            journal = tmp_path / "journal.sqlite3"
            agent = AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=journal)
            assert agent.get(f"{server.url}/claims").status_code == 200
            (row,) = rows(journal)
            assert row["landed"] is None
            clock.now += 61
            agent.recover_payments()
            (row,) = rows(journal)
            assert (row["state"], row["landed"]) == ("failed", 0)
            assert agent.budget["SOL"].spent == 0
            assert gateway.balance(wallet.pubkey()) == 1
            recount(journal)
            agent.close()


# -- an upgrade: a process of the previous release still writes the migrated journal ------------


def test_a_payment_written_by_a_previous_release_counts_against_the_budget(
    tmp_path: Path,
) -> None:
    """A v1 journal is opened (migrated) by an upgraded agent with a 0.0015 SOL budget; a
    process of the previous release, still running, then pays 0.001 SOL into it (its own
    INSERT, as that release writes). The upgraded agent must refuse a second 0.001 SOL."""
    clock = FakeClock()
    with gateway_app(clock) as (gateway, app), serve(app) as server:
        wallet = Keypair()
        gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
        path = tmp_path / "shared.sqlite3"
        with sqlite3.connect(path) as db:
            db.executescript(V1_SCHEMA)
            db.execute("PRAGMA user_version=1")
        path.chmod(0o600)
        agent = AutoAgent(
            wallet, rpc_url=server.rpc_url, journal_path=path, budget={"SOL": "0.0015"}
        )
        with sqlite3.connect(path) as db:  # the old release's process pays, as it writes
            v1_row(db, "accepted", None, payer=wallet.pubkey())
        with pytest.raises(PaymentPolicyError):
            agent.get(f"{server.url}/api/v1/premium/sol")
        assert gateway.balance(wallet.pubkey()) == 1
        agent.close()


# -- many x402 offers, with fee payer and payTo tricks -------------------------------------------


def test_many_offers_with_self_payer_and_self_payee_tricks_pay_one_valid_offer(
    tmp_path: Path,
) -> None:
    """32 offers: the cheapest ones name the agent as fee payer or as payTo, some repeat, some
    ask for an asset the agent does not accept; exactly one valid offer (the cheapest of them)
    is paid, once, to the facilitator's payee."""
    clock = FakeClock()
    price = Price(USDC, "USDC")
    wallet = Keypair()
    agent_key = str(wallet.pubkey())
    with gateway_app(clock) as (gateway, app):

        @app.get("/many")
        @require_x402(gateway, price)
        def many() -> Response:
            return jsonify({"content": "paid for"})

        @app.after_request
        def offers(response: Response) -> Response:
            header = response.headers.get("PAYMENT-REQUIRED")
            if request.path != "/many" or not header:
                return response
            document = unb64json(header, "challenge")
            (real,) = document["accepts"]
            tricks = []
            for n in range(10):
                cheap = {**real, "amount": str(1 + n), "extra": {**real["extra"]}}
                cheap["extra"]["feePayer"] = agent_key
                tricks.append(cheap)
                tricks.append({**real, "amount": str(1 + n), "payTo": agent_key})
                tricks.append({**real, "amount": "1", "asset": str(Keypair().pubkey())})
            document["accepts"] = [*tricks, real, {**real, "amount": str(10**9)}]
            response.headers["PAYMENT-REQUIRED"] = b64json(document)
            return response

        with serve(app) as server:
            gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(1)})
            treasury = gateway.balance(gateway.treasury, "USDC")
            journal = tmp_path / "journal.sqlite3"
            agent = AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=journal)
            assert agent.get(f"{server.url}/many").status_code == 200
            assert gateway.balance(wallet.pubkey(), "USDC") == 1 - USDC
            assert gateway.balance(gateway.treasury, "USDC") - treasury == USDC
            assert gateway.balance(wallet.pubkey()) == 1  # the facilitator paid the fee
            (row,) = rows(journal)
            assert (row["state"], row["amount"], row["recipient"]) == (
                "accepted",
                "0.01",
                str(gateway.treasury),
            )
            recount(journal)
            agent.close()


# -- a lagging node and a server that refuses as "already paid" --------------------------------


def add_already_paid_keeper(app: Flask, gateway: Gateway, price: Price) -> None:
    """``GET /keeper``: one HumanRPC invoice; the first payment is executed (kept), and every
    paid request is answered 402 ``invoice_already_paid``, never served."""
    state: dict[str, Any] = {"invoice": None}

    @app.get("/keeper")
    def keeper() -> Response:
        if state["invoice"] is None:
            state["invoice"] = gateway.desk.issue(price, request.path)
        header = request.headers.get("X-PAYMENT")
        if header is not None:
            transaction = decode_payment_header(header).transaction
            if gateway.ledger.status(transaction.signatures[0]) is None:
                assert gateway.ledger.execute(transaction).ok
            response = jsonify({"status": "payment_required", "reason": "invoice_already_paid"})
        else:
            response = jsonify(jsonable(state["invoice"].body(gateway.network)))
        response.status_code = 402
        return response


def test_a_lagging_node_and_already_paid_refusals_pay_once(tmp_path: Path) -> None:
    """A node 3 slots late cannot yet see the kept payment: the refusal is journaled with
    landing unknown and nothing is paid again. Once the node catches up, the same invoice
    re-sends the same payment: paid_not_delivered, landed, one payment on the ledger."""
    clock = FakeClock()
    price = Price(Decimal("0.001"), "SOL")
    with gateway_app(clock) as (gateway, app):
        add_already_paid_keeper(app, gateway, price)
        with serve(app) as server, LaggingRpc(server.rpc_url, gateway.ledger, lag=3) as node:
            wallet = Keypair()
            gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
            journal = tmp_path / "journal.sqlite3"
            agent = AutoAgent(wallet, rpc_url=node.url, journal_path=journal, sleep=clock.sleep)
            with pytest.raises(PaymentError) as first:
                agent.get(f"{server.url}/keeper")
            assert first.value.reason == "payment_refused"
            (row,) = rows(journal)
            assert (row["state"], row["landed"]) == ("refused", None)
            clock.now += 5 * 0.4  # the node catches up
            with pytest.raises(PaymentError) as second:
                agent.get(f"{server.url}/keeper")
            assert second.value.reason == "paid_not_delivered"
            (row,) = rows(journal)
            assert (row["state"], row["landed"]) == ("refused", 1)
            assert gateway.balance(wallet.pubkey()) == 1 - Decimal("0.001") - FEE
            assert agent.budget["SOL"].spent == Decimal("0.001") + FEE
            recount(journal)
            agent.close()


# -- the journal is locked when the refusal comes ----------------------------------------------


def test_a_refusal_the_journal_could_not_record_is_not_recovered_as_accepted(
    tmp_path: Path,
) -> None:
    """The server keeps the payment (it lands) and answers 402, while another process holds
    the journal's write lock: the caller gets payment_refused; after the lock is gone,
    recovery must not journal the payment as accepted (served)."""
    clock = FakeClock()
    price = Price(Decimal("0.001"), "SOL")
    journal = tmp_path / "journal.sqlite3"
    locker = Locker(journal)
    with gateway_app(clock) as (gateway, app):

        @app.get("/keeps-and-locks")
        def keeps_and_locks() -> Response:
            header = request.headers.get("X-PAYMENT")
            if header is not None:
                transaction = decode_payment_header(header).transaction
                assert gateway.ledger.execute(transaction).ok
                locker.take()
                response = jsonify({"status": "payment_required", "reason": "we_lost_it"})
            else:
                invoice = gateway.desk.issue(price, request.path)
                response = jsonify(jsonable(invoice.body(gateway.network)))
            response.status_code = 402
            return response

        with serve(app) as server:
            wallet = Keypair()
            gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
            agent = AutoAgent(
                wallet, rpc_url=server.rpc_url, journal_path=journal, sleep=clock.sleep
            )
            try:
                with pytest.raises(PaymentError) as caught:
                    agent.get(f"{server.url}/keeps-and-locks")
            finally:
                locker.release()
            assert caught.value.reason == "payment_refused"
            assert gateway.balance(wallet.pubkey()) == 1 - Decimal("0.001") - FEE
            agent.recover_payments()
            (row,) = rows(journal)
            assert row["landed"] == 1
            assert row["state"] == "refused"
            agent.close()


# -- an x402 offer with a fixed memo ---------------------------------------------------------------


@pytest.mark.parametrize("new_blockhash", [False, True])
def test_an_offer_with_a_fixed_memo_is_never_counted_twice(
    tmp_path: Path, new_blockhash: bool
) -> None:
    """An x402 paywall whose offer carries a fixed memo, requested twice within one blockhash:
    the second payment would be the same bytes (nothing random left in it), a replay that
    moves nothing. It is the same payment: journaled once, re-sent, and the books agree with
    the ledger; every live row is a transaction of its own. Over a new blockhash, the second
    request is a new transaction: paid and counted twice, as the ledger says."""
    clock = FakeClock()
    price = Price(USDC, "USDC")
    with gateway_app(clock) as (gateway, app):

        @app.get("/memo")
        @require_x402(gateway, price)
        def memo() -> Response:
            return jsonify({"content": "paid for"})

        @app.after_request
        def fixed_memo(response: Response) -> Response:
            header = response.headers.get("PAYMENT-REQUIRED")
            if request.path == "/memo" and header:
                document = unb64json(header, "challenge")
                document["accepts"][0]["extra"]["memo"] = "order-42"
                response.headers["PAYMENT-REQUIRED"] = b64json(document)
            return response

        with serve(app) as server:
            wallet = Keypair()
            gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(1)})
            journal = tmp_path / "journal.sqlite3"
            agent = AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=journal)
            for _ in range(2):  # a refused replay is the server's answer: the books must agree
                with contextlib.suppress(HumanRPCError):
                    agent.get(f"{server.url}/memo")
                if new_blockhash:
                    clock.now += 0.4  # the next slot, a new blockhash
                    gateway.ledger.slot()
                    agent._cache.forget_blockhash()
            payments = 2 if new_blockhash else 1
            moved = 1 - gateway.balance(wallet.pubkey(), "USDC")
            assert moved == payments * USDC
            assert agent.budget["USDC"].spent == moved
            live = [r for r in rows(journal) if r["state"] != "failed"]
            assert len({r["transaction_b64"] for r in live}) == len(live) == payments
            agent.close()
