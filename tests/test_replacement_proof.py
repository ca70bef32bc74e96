"""A payment is replaced only on proof that it can never land (issue 8, section 1).

The set-ups of the issue, rebuilt: an RPC node that reports the ledger 3 slots late
(:mod:`tests.lagging_rpc`), alone or behind a load balancer that sends ``getLatestBlockhash``
to an up-to-date node; a hostile x402 server that chooses the newest blockhash and answers 402
after settling; a HumanRPC server that keeps the payment and answers 402 half a second later.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, jsonify, request
from solders.epoch_info import EpochInfo
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.rpc.responses import (
    GetEpochInfoResp,
    GetGenesisHashResp,
    GetSignaturesForAddressResp,
    GetSignatureStatusesResp,
    MinimumLedgerSlotResp,
    RpcResponseContext,
)
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction
from solders.transaction_status import TransactionConfirmationStatus, TransactionStatus

from human_rpc_sdk import AutoAgent, PaymentError, SolanaRPCError
from human_rpc_sdk._effects import FindPayment, Record, RpcCall
from human_rpc_sdk._headers import b64json, decode_payment_header, unb64json
from human_rpc_sdk._landing import Landing, landing
from human_rpc_sdk._receipts import PaymentReceipt
from human_rpc_sdk._records import JournalEntry
from human_rpc_sdk._recovery import needs_recovery, recover
from stub_gateway import Gateway, GatewayServer, Price, create_app
from stub_gateway._http import jsonable
from stub_gateway.ledger import GENESIS_SLOT
from stub_gateway.x402_routes import requirements_for

from .conftest import FakeClock
from .lagging_rpc import LaggingRpc

FEE = Decimal("0.000005")
LAG = 3


def rows(journal: Path) -> list[dict[str, Any]]:
    """The journal as another process reads it."""
    with sqlite3.connect(journal) as db:
        db.row_factory = sqlite3.Row
        found = db.execute(
            "SELECT id, state, amount, currency, landed, landed_proof, replaces, signature, "
            "transaction_b64, blockhash, last_valid_block_height, blockhash_slot, http_status "
            "FROM payments ORDER BY id"
        ).fetchall()
    return [dict(row) for row in found]


@contextmanager
def gateway_app(clock: FakeClock) -> Iterator[tuple[Gateway, Flask]]:
    """A stub gateway on a fake clock (its slow answers move the clock), not yet serving;
    10 s (25 slots) old, so a node that lags has blockhashes to offer."""
    app = create_app(clock=clock, sleep=clock.sleep)
    clock.now += 10
    yield app.extensions["stub_gateway"], app


def serve(app: Flask) -> GatewayServer:
    return GatewayServer(app).start()


# -- the hostile servers -------------------------------------------------------------------------


def add_hostile_x402(app: Flask, gateway: Gateway, price: Price) -> None:
    """``GET /x402-hostile``: x402 v2 whose offer carries the newest blockhash; a payment is
    settled (the money kept), then answered with the same 402 again."""

    def challenge() -> Response:
        wanted = requirements_for(gateway, price, 2, request.base_url, "hostile")
        blockhash, _last_valid, _slot = gateway.ledger.latest_blockhash()
        wanted["extra"]["recentBlockhash"] = str(blockhash)
        document = {
            "x402Version": 2,
            "error": "Payment required",
            "resource": {"url": request.base_url, "description": "hostile"},
            "accepts": [wanted],
        }
        response = jsonify({})
        response.headers["PAYMENT-REQUIRED"] = b64json(document)
        response.status_code = 402
        return response

    @app.get("/x402-hostile")
    def hostile_x402() -> Response:
        header = request.headers.get("PAYMENT-SIGNATURE")
        if header is not None:
            payload = unb64json(header, "payment")
            wanted = requirements_for(gateway, price, 2, request.base_url, "hostile")
            settlement = gateway.facilitator.settle(payload, wanted)
            assert settlement["success"], settlement
        return challenge()


def add_keeping_humanrpc(app: Flask, gateway: Gateway, price: Price) -> None:
    """``GET /keeps``: a HumanRPC invoice; a payment is executed on the ledger (kept), and
    0.5 s later the answer is 402 all the same, with no settlement header."""

    def challenge() -> Response:
        invoice = gateway.desk.issue(price, request.path)
        response = jsonify(jsonable(invoice.body(gateway.network)))
        response.status_code = 402
        return response

    @app.get("/keeps")
    def keeps() -> Response:
        header = request.headers.get("X-PAYMENT")
        if header is not None:
            execution = gateway.ledger.execute(decode_payment_header(header).transaction)
            assert execution.ok, execution.describe()
            gateway.sleep(0.5)
        return challenge()


# -- the two set-ups of the issue ---------------------------------------------------------------


def test_lagging_node_and_server_chosen_blockhash_pay_once(tmp_path: Path) -> None:
    """A node 3 slots late, an x402 server choosing the newest blockhash and answering 402
    after settling: one 0.01 USDC payment, left open (refused, landed unknown), no
    replacement; once the node catches up, recovery finds it landed."""
    clock = FakeClock()
    price = Price(Decimal("0.01"), "USDC")
    with gateway_app(clock) as (gateway, app):
        add_hostile_x402(app, gateway, price)
        server = serve(app)
        with server, LaggingRpc(server.rpc_url, gateway.ledger, lag=LAG) as node:
            wallet = Keypair()
            gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(1)})
            payee = gateway.balance(gateway.treasury, "USDC")
            journal = tmp_path / "journal.sqlite3"
            agent = AutoAgent(wallet, rpc_url=node.url, journal_path=journal)
            with pytest.raises(PaymentError) as caught:
                agent.get(f"{server.url}/x402-hostile")
            assert caught.value.reason == "payment_refused"
            assert gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.99")
            assert gateway.balance(gateway.treasury, "USDC") - payee == Decimal("0.01")
            assert "isBlockhashValid" not in node.calls
            (row,) = rows(journal)
            assert (row["state"], row["landed"], row["replaces"]) == ("refused", None, None)
            assert row["last_valid_block_height"] is None  # the server chose the blockhash
            assert agent.budget["USDC"].spent == Decimal("0.01")

            clock.now += (LAG + 2) * 0.4  # the node catches up
            (recovered,) = agent.recover_payments()
            assert (recovered.state, recovered.landed) == ("refused", True)
            (row,) = rows(journal)
            assert (row["state"], row["landed"]) == ("refused", 1)
            assert agent.budget["USDC"].spent == Decimal("0.01")
            assert gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.99")
            agent.close()


def test_fresh_blockhash_lagging_checks_pay_once(tmp_path: Path) -> None:
    """getLatestBlockhash from an up-to-date node, every check from one 3 slots late, and a
    HumanRPC server keeping the payment and answering 402 after 0.5 s: 0.001 SOL paid once,
    the row open (refused, landed unknown), no replacement."""
    clock = FakeClock()
    price = Price(Decimal("0.001"), "SOL")
    with gateway_app(clock) as (gateway, app):
        add_keeping_humanrpc(app, gateway, price)
        server = serve(app)
        with (
            server,
            LaggingRpc(server.rpc_url, gateway.ledger, lag=LAG, fresh_blockhash=True) as node,
        ):
            wallet = Keypair()
            gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
            treasury = gateway.balance(gateway.treasury)
            journal = tmp_path / "journal.sqlite3"
            agent = AutoAgent(wallet, rpc_url=node.url, journal_path=journal)
            with pytest.raises(PaymentError) as caught:
                agent.get(f"{server.url}/keeps")
            assert caught.value.reason == "payment_refused"
            assert gateway.balance(wallet.pubkey()) == 1 - Decimal("0.001") - FEE
            assert gateway.balance(gateway.treasury) - treasury == Decimal("0.001")
            (row,) = rows(journal)
            assert (row["state"], row["landed"], row["replaces"]) == ("refused", None, None)
            assert row["last_valid_block_height"] is not None
            assert row["blockhash_slot"] is not None
            assert agent.budget["SOL"].spent == Decimal("0.001") + FEE

            clock.now += (LAG + 2) * 0.4
            (recovered,) = agent.recover_payments()
            assert (recovered.state, recovered.landed) == ("refused", True)
            assert gateway.balance(wallet.pubkey()) == 1 - Decimal("0.001") - FEE
            agent.close()


# -- a proven expiry is still replaced, once ----------------------------------------------------


def test_proven_expiry_is_replaced_once_with_other_bytes(tmp_path: Path) -> None:
    """A blockhash 150 blocks past, proven by a node that has seen it: exactly one
    replacement, signed over a fresh blockhash; it lands once, the first never did."""
    clock = FakeClock()
    with gateway_app(clock) as (gateway, app), serve(app) as server:
        wallet = Keypair()
        gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
        treasury = gateway.balance(gateway.treasury)
        journal = tmp_path / "journal.sqlite3"
        agent = AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=journal)
        assert agent.get(f"{server.url}/api/v1/premium/sol").status_code == 200
        clock.now += 61  # > 150 slots: the agent's cached blockhash can no longer land
        assert agent.get(f"{server.url}/api/v1/premium/sol").status_code == 200
        assert gateway.balance(wallet.pubkey()) == 1 - 2 * (Decimal("0.001") + FEE)
        assert gateway.balance(gateway.treasury) - treasury == Decimal("0.002")
        first, expired, replacement = rows(journal)
        assert (first["state"], expired["state"], replacement["state"]) == (
            "accepted",
            "failed",
            "accepted",
        )
        assert expired["landed"] == 0
        assert "past the blockhash's last valid block height" in expired["landed_proof"]
        assert replacement["replaces"] == expired["id"]
        assert replacement["transaction_b64"] != expired["transaction_b64"]
        assert replacement["blockhash"] != expired["blockhash"]
        assert agent.budget["SOL"].spent == 2 * (Decimal("0.001") + FEE)
        agent.close()


def test_wrongly_failed_payment_that_landed_is_recovered(tmp_path: Path) -> None:
    """A row an older SDK marked failed (landed=0, no proof) although it landed:
    recover_payments() marks it landed and counts it against the budget again."""
    clock = FakeClock()
    price = Price(Decimal("0.001"), "SOL")
    with gateway_app(clock) as (gateway, app):
        add_keeping_humanrpc(app, gateway, price)
        with serve(app) as server:
            wallet = Keypair()
            gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
            journal = tmp_path / "journal.sqlite3"
            agent = AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=journal)
            with pytest.raises(PaymentError):
                agent.get(f"{server.url}/keeps")
            (row,) = rows(journal)
            agent._journal.mark(  # what the old isBlockhashValid rule wrote
                row["id"],
                "failed",
                {"landed": False, "error": "replaced: its blockhash expired before it landed"},
            )
            assert agent.budget["SOL"].spent == 0
            (recovered,) = agent.recover_payments()
            assert (recovered.state, recovered.landed) == ("refused", True)
            (row,) = rows(journal)
            assert (row["state"], row["landed"]) == ("refused", 1)
            assert agent.budget["SOL"].spent == Decimal("0.001") + FEE
            assert gateway.balance(wallet.pubkey()) == 1 - Decimal("0.001") - FEE
            assert agent.recover_payments() == []
            agent.close()


def test_stub_rpc_block_height_and_min_context_slot(tmp_path: Path) -> None:
    """getEpochInfo and getBlockHeight count blocks, in lastValidBlockHeight's units; a
    minContextSlot beyond the ledger's slot is refused with -32016."""
    import requests

    clock = FakeClock()
    with gateway_app(clock) as (_gateway, app), serve(app) as server:

        def call(method: str, *params: Any) -> Any:
            body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
            return requests.post(server.rpc_url, json=body, timeout=10).json()

        latest = call("getLatestBlockhash")["result"]
        epoch = call("getEpochInfo")["result"]
        assert set(epoch) == {
            "absoluteSlot",
            "blockHeight",
            "epoch",
            "slotIndex",
            "slotsInEpoch",
            "transactionCount",
        }
        assert epoch["absoluteSlot"] == latest["context"]["slot"]
        assert epoch["blockHeight"] < epoch["absoluteSlot"]  # heights are not slots
        assert latest["value"]["lastValidBlockHeight"] == epoch["blockHeight"] + 150
        assert call("getBlockHeight")["result"] == epoch["blockHeight"]
        ahead = {"minContextSlot": epoch["absoluteSlot"] + 1}
        for method, params in (
            ("getEpochInfo", [ahead]),
            ("getBlockHeight", [ahead]),
            ("getLatestBlockhash", [ahead]),
            ("getSignaturesForAddress", [str(Keypair().pubkey()), ahead]),
        ):
            error = call(method, *params)["error"]
            assert error["code"] == -32016
            assert error["message"] == "Minimum context slot has not been reached"
        reached = {"minContextSlot": epoch["absoluteSlot"]}
        assert call("getEpochInfo", reached)["result"]["blockHeight"] == epoch["blockHeight"]


def test_stub_rpc_history_begins_at_the_ledgers_first_slot() -> None:
    """minimumLedgerSlot and getFirstAvailableBlock: the ledger keeps its whole history, from
    its first slot (before any blockhash it issued); a lagging node passes them through."""
    import requests

    clock = FakeClock()
    with gateway_app(clock) as (gateway, app), serve(app) as server:
        assert gateway.ledger.slot() > GENESIS_SLOT
        with LaggingRpc(server.rpc_url, gateway.ledger, lag=LAG) as node:
            for url in (server.rpc_url, node.url):
                for method in ("minimumLedgerSlot", "getFirstAvailableBlock"):
                    body = {"jsonrpc": "2.0", "id": 1, "method": method}
                    answer = requests.post(url, json=body, timeout=10).json()
                    assert answer["result"] == GENESIS_SLOT


# -- the proof, driven by hand (the pure core) ------------------------------------------------

LAST_VALID = 2_000
ISSUED_AT = 1_500


def signed_entry(*, signature: bool = True, facts: bool = True, **receipt: Any) -> JournalEntry:
    """A journaled, signed SOL payment over a blockhash fetched at slot ``ISSUED_AT``."""
    payer = Keypair()
    message = MessageV0.try_compile(
        payer.pubkey(),
        [transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=PAYEE, lamports=1))],
        [],
        Hash.new_unique(),
    )
    transaction = VersionedTransaction(message, [payer])
    fields: dict[str, Any] = {
        "url": "http://shop/item",
        "amount": Decimal("0.001"),
        "currency": "SOL",
        "mint": None,
        "recipient": str(PAYEE),
        "reference": None,
        "network": "devnet",
        "signature": str(transaction.signatures[0]) if signature else "",
        "time": datetime(2026, 11, 26, tzinfo=UTC),
        "atomic_amount": 1,
        "payer": str(payer.pubkey()),
        "destination": str(PAYEE),
        "fee_lamports": 5000,
        "id": 7,
        "state": "refused",
        "http_status": 402,
    }
    fields.update(receipt)
    return JournalEntry(
        receipt=PaymentReceipt(**fields),
        invoice_key="devnet|humanrpc|x",
        transaction=base64.b64encode(bytes(transaction)).decode(),
        blockhash=str(message.recent_blockhash),
        last_valid_block_height=LAST_VALID if facts else None,
        blockhash_slot=ISSUED_AT if facts else None,
        fee_payer=str(payer.pubkey()),
    )


PAYEE = Keypair().pubkey()


def epoch(slot: int, height: int) -> GetEpochInfoResp:
    return GetEpochInfoResp(EpochInfo(0, slot, 432_000, slot, height, 0))


def statuses(found: bool, slot: int) -> GetSignatureStatusesResp:
    status = TransactionStatus(slot, None, None, None, TransactionConfirmationStatus.Finalized)
    return GetSignatureStatusesResp([status if found else None], RpcResponseContext(slot))


def first_slot(slot: int) -> MinimumLedgerSlotResp:
    """``minimumLedgerSlot``: the node's history begins at ``slot``."""
    return MinimumLedgerSlotResp(slot)


WHOLE_HISTORY = first_slot(1_000)
"""A node that has every slot since the blockhash's (ISSUED_AT)."""


def drive(flow: Generator[Any, Any, Any], *answers: Any) -> tuple[Any, list[RpcCall]]:
    """Run ``flow``, answering each RpcCall with the next answer (an exception is thrown in;
    a list answers a batch)."""
    asked: list[RpcCall] = []
    effect = next(flow)
    pending = list(answers)
    try:
        while True:
            asked.append(effect)
            answer = pending.pop(0)
            if isinstance(answer, BaseException):
                effect = flow.throw(answer)
            else:
                effect = flow.send(answer if isinstance(answer, list) else [answer])
    except StopIteration as stop:
        return stop.value, asked


def params(call: RpcCall) -> list[Any]:
    document: list[Any] = json.loads(call.requests[0].body.to_json())["params"]
    return document


BEHIND = SolanaRPCError("behind", method="getEpochInfo", code=-32016)


@pytest.mark.parametrize(
    ("epoch_answer", "lookup"),
    [
        (BEHIND, statuses(False, 2_300)),  # the node has not reached the blockhash's slot
        (epoch(1_600, LAST_VALID), statuses(False, 2_300)),  # not past the last valid height
        # the lookup came from a node behind the proof
        (epoch(2_200, LAST_VALID + 1), [statuses(False, 2_199), WHOLE_HISTORY]),
        # the lookup came from a node whose history begins after the blockhash's slot
        (epoch(2_200, LAST_VALID + 1), [statuses(False, 2_200), first_slot(ISSUED_AT + 1)]),
    ],
)
def test_without_the_whole_proof_the_landing_is_unknown(epoch_answer: Any, lookup: Any) -> None:
    """No replacement-worthy "never landed" unless every part of the proof holds."""
    entry = signed_entry()
    chain, asked = drive(landing(entry), epoch_answer, lookup)
    assert chain == Landing(None)
    assert params(asked[0])[0]["minContextSlot"] == ISSUED_AT
    assert [c.requests[0].method for c in asked] == ["getEpochInfo", "getSignatureStatuses"]


def test_a_proven_expiry_is_never_landed_with_its_proof() -> None:
    """Past the last valid block height at slot A, not found by a node at A: never landed."""
    chain, asked = drive(
        landing(signed_entry()),
        epoch(2_200, LAST_VALID + 1),
        [statuses(False, 2_200), first_slot(ISSUED_AT)],
    )
    assert chain.landed is False
    assert f"last valid block height {LAST_VALID}" in chain.proof
    assert f"history begins at slot {ISSUED_AT}" in chain.proof
    # the node's first slot is asked in the batch of the lookup: the node that says "not found"
    assert [r.method for r in asked[1].requests] == ["getSignatureStatuses", "minimumLedgerSlot"]


def test_found_is_landed_whatever_the_blockhash() -> None:
    """A transaction the node has is landed, even from a node behind the blockhash's slot."""
    entry = signed_entry()
    chain, _ = drive(landing(entry), BEHIND, statuses(True, 2_300))
    assert chain == Landing(True, entry.receipt.signature)


def test_a_server_chosen_blockhash_is_never_proven_expired() -> None:
    """No recorded last valid block height: the chain is only asked whether it landed."""
    chain, asked = drive(landing(signed_entry(facts=False)), statuses(False, 9_999_999))
    assert chain == Landing(None)
    assert [c.requests[0].method for c in asked] == ["getSignatureStatuses"]


def test_x402_history_search_for_a_proof_asks_a_node_that_far() -> None:
    """Without a signature, the payer's history is searched with minContextSlot = slot A."""
    history = GetSignaturesForAddressResp([])
    chain, asked = drive(
        landing(signed_entry(signature=False)),
        epoch(2_200, LAST_VALID + 1),
        [history, WHOLE_HISTORY],
    )
    assert chain.landed is False
    assert params(asked[1])[1]["minContextSlot"] == 2_200
    assert [r.method for r in asked[1].requests] == [
        "getSignaturesForAddress",
        "minimumLedgerSlot",
    ]


def test_a_history_search_of_a_node_pruned_after_the_blockhash_proves_nothing() -> None:
    """The payer's history from a node whose ledger begins after the blockhash's slot: an
    empty page is no proof."""
    history = GetSignaturesForAddressResp([])
    chain, _ = drive(
        landing(signed_entry(signature=False)),
        epoch(2_200, LAST_VALID + 1),
        [history, first_slot(ISSUED_AT + 1)],
    )
    assert chain == Landing(None)


NO_FIRST_SLOT = SolanaRPCError("Method not found", method="minimumLedgerSlot", code=-32601)


def test_a_node_that_cannot_say_where_its_history_begins_proves_nothing() -> None:
    """minimumLedgerSlot refused: the lookup is asked alone; "not found" stays unknown, and a
    transaction found is landed all the same."""
    entry = signed_entry()
    expired = epoch(2_200, LAST_VALID + 1)
    chain, asked = drive(landing(entry), expired, NO_FIRST_SLOT, statuses(False, 2_200))
    assert chain == Landing(None)
    assert [r.method for r in asked[2].requests] == ["getSignatureStatuses"]
    chain, _ = drive(landing(entry), expired, NO_FIRST_SLOT, statuses(True, 2_200))
    assert chain == Landing(True, entry.receipt.signature)


def test_recovery_re_examines_every_row_that_could_have_landed() -> None:
    """Unproven failed and refused rows are open for recovery; proven or unsigned ones not."""
    assert needs_recovery(signed_entry(state="failed", landed=False))
    assert needs_recovery(signed_entry(state="refused", landed=False))
    assert needs_recovery(signed_entry(state="refused"))
    assert not needs_recovery(signed_entry(state="refused", landed=True))
    proven = replace(signed_entry(state="failed", landed=False), landed_proof="past it")
    assert not needs_recovery(proven)
    assert not needs_recovery(replace(signed_entry(state="failed"), transaction=None))


def test_a_revived_row_leaves_its_invoice_to_the_live_replacement() -> None:
    """A failed row that landed comes back as refused; the invoice's live row keeps the key."""
    entry = signed_entry(state="failed", landed=False)
    flow = recover([entry], alive=lambda e: True, stale_after=60)
    effect = next(flow)  # which chain the node serves
    effect = flow.send([GetGenesisHashResp(Hash.new_unique())])
    effect = flow.send([epoch(1_600, LAST_VALID)])
    effect = flow.send([statuses(True, 1_600)])
    assert isinstance(effect, FindPayment)
    record = flow.send(signed_entry(state="accepted"))
    assert isinstance(record, Record)
    assert (record.state, record.expect) == ("refused", ("failed",))
    assert record.fields["landed"] is True
    assert record.fields["invoice_key"] is None


def test_a_replacement_is_never_signed_over_the_expired_blockhash() -> None:
    """A node still offering the expired blockhash as the latest: no replacement is signed."""
    from human_rpc_sdk._flow import _read, pay_new

    from .test_flow import SOL, accounts_reply, challenge, context, latest, wallet

    ctx = context()
    expired = Hash.new_unique()
    payable = _read(challenge(currency="SOL", amount="0.001"), ctx)
    flow = pay_new(payable, ctx, replaces=7, expired_blockhash=str(expired))
    assert isinstance(next(flow), RpcCall)
    with pytest.raises(PaymentError) as caught:
        flow.send([accounts_reply(wallet(SOL), wallet(1)), *latest(expired)])
    assert caught.value.reason == "no_fresh_blockhash"
