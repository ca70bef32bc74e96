"""The gateway's domain objects, driven directly (no HTTP, no Flask).

The payments desk and the x402 facilitator settle real transactions on the gateway's LiteSVM
ledger; each refusal is checked to move nothing. The task board and the faults are driven
through their state transitions with a clock the test moves.
"""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction
from spl.token.constants import TOKEN_2022_PROGRAM_ID, TOKEN_PROGRAM_ID
from spl.token.instructions import decode_transfer_checked

from human_rpc_sdk._headers import encode_payment_header
from human_rpc_sdk.solana_utils import (
    MintInfo,
    TransferPlan,
    associated_token_address,
    build_exact_transfer,
    build_transfer,
    sign_transaction,
)
from human_rpc_sdk.wallet import load_signer
from stub_gateway.faults import Faults
from stub_gateway.gateway import Gateway
from stub_gateway.instructions import read_transfer
from stub_gateway.payments import Invoice, Price, Refusal, Settlement
from stub_gateway.tasks import ConsensusRule, ReviewPolicy, TaskBoard, VoteRejected
from stub_gateway.x402 import SETTLEMENT_TTL

from .conftest import FakeClock

ROOT = Path(__file__).resolve().parent.parent
SOL_PRICE = Price(Decimal("0.001"), "SOL")
USDC_PRICE = Price(Decimal("0.05"), "USDC")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def gateway(clock: FakeClock) -> Gateway:
    return Gateway(seed="domain-tests", clock=clock, invoice_ttl=60.0)


@pytest.fixture
def payer(gateway: Gateway) -> Keypair:
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(10)})
    return wallet


def balances(gateway: Gateway, *owners: Pubkey) -> list[Decimal]:
    return [gateway.balance(o, c) for o in owners for c in ("SOL", "USDC")]


# -- the payments desk ------------------------------------------------------------------------


def pay(gateway: Gateway, payer: Keypair, invoice: Invoice, amount: int | None = None) -> str:
    """An ``X-PAYMENT`` header paying ``invoice`` (``amount`` base units, else the invoice's)."""
    plan = TransferPlan(
        payer=payer.pubkey(),
        recipient=invoice.recipient,
        amount=invoice.atomic if amount is None else amount,
        destination=invoice.destination,
        reference=Pubkey.from_string(invoice.reference),
    )
    if invoice.token is not None:
        token = invoice.token
        plan = TransferPlan(
            payer=payer.pubkey(),
            recipient=invoice.recipient,
            amount=plan.amount,
            destination=invoice.destination,
            mint=MintInfo(token.mint, token.program_id, token.decimals),
            source=associated_token_address(payer.pubkey(), token.mint, token.program_id),
            reference=plan.reference,
        )
    blockhash = gateway.ledger.latest_blockhash()[0]
    signed = sign_transaction(build_transfer(plan, blockhash), load_signer(payer))
    return encode_payment_header(signed, gateway.network)


def test_the_desk_settles_an_exact_sol_payment_once(gateway: Gateway, payer: Keypair) -> None:
    """Issue, pay, settle: exactly the price moves (plus the fee), the invoice is marked paid,
    and the same payment presented again is refused and moves nothing."""
    desk, treasury = gateway.desk, gateway.treasury
    invoice = desk.issue(SOL_PRICE, "/thing")
    header = pay(gateway, payer, invoice)
    payer_sol, treasury_sol = gateway.balance(payer.pubkey()), gateway.balance(treasury)

    outcome = desk.settle(header, "/thing", SOL_PRICE)

    assert isinstance(outcome, Settlement), outcome
    assert outcome.payer == str(payer.pubkey())
    assert invoice.paid_by == outcome.signature
    assert desk.settlements == [outcome]
    assert gateway.balance(treasury) == treasury_sol + Decimal("0.001")
    assert gateway.balance(payer.pubkey()) == payer_sol - Decimal("0.001") - Decimal("0.000005")
    after = balances(gateway, payer.pubkey(), treasury)
    again = desk.settle(header, "/thing", SOL_PRICE)
    assert isinstance(again, Refusal)
    assert again.reason == "invoice_already_paid"
    assert balances(gateway, payer.pubkey(), treasury) == after
    assert desk.settlements == [outcome]


def test_the_desk_settles_a_usdc_payment_to_the_treasury_token_account(
    gateway: Gateway, payer: Keypair
) -> None:
    invoice = gateway.desk.issue(USDC_PRICE, "/usdc")
    header = pay(gateway, payer, invoice)
    before = balances(gateway, payer.pubkey(), gateway.treasury)
    outcome = gateway.desk.settle(header, "/usdc", USDC_PRICE)
    assert isinstance(outcome, Settlement), outcome
    payer_sol, payer_usdc, treasury_sol, treasury_usdc = before
    assert balances(gateway, payer.pubkey(), gateway.treasury) == [
        payer_sol - Decimal("0.000005"),
        payer_usdc - Decimal("0.05"),
        treasury_sol,
        treasury_usdc + Decimal("0.05"),
    ]


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("other_resource", "wrong_resource"),
        ("other_price", "price_changed"),
        ("short", "wrong_amount"),
        ("over", "wrong_amount"),
        ("expired", "invoice_expired"),
        ("unknown_invoice", "unknown_invoice"),
        ("other_network", "network_mismatch"),
        ("garbage", "invalid_payment_header"),
    ],
)
def test_the_desk_refuses_and_moves_nothing(
    gateway: Gateway, payer: Keypair, clock: FakeClock, case: str, reason: str
) -> None:
    desk = gateway.desk
    invoice = desk.issue(SOL_PRICE, "/thing")
    resource, price = "/thing", SOL_PRICE
    header = pay(gateway, payer, invoice)
    if case == "other_resource":
        resource = "/other"
    elif case == "other_price":
        price = Price(Decimal("0.002"), "SOL")
    elif case in ("short", "over"):
        header = pay(gateway, payer, invoice, invoice.atomic + (-1 if case == "short" else 1))
    elif case == "expired":
        clock.now += 60.0
    elif case == "unknown_invoice":
        stranger = Invoice(**{**invoice.__dict__, "reference": str(Keypair().pubkey())})
        header = pay(gateway, payer, stranger)
    elif case == "other_network":
        blockhash = gateway.ledger.latest_blockhash()[0]
        plan = TransferPlan(
            payer.pubkey(),
            invoice.recipient,
            invoice.atomic,
            invoice.recipient,
            reference=Pubkey.from_string(invoice.reference),
        )
        signed = sign_transaction(build_transfer(plan, blockhash), load_signer(payer))
        header = encode_payment_header(signed, "mainnet-beta")
    elif case == "garbage":
        header = "not a payment"
    before = balances(gateway, payer.pubkey(), gateway.treasury)

    outcome = desk.settle(header, resource, price)

    assert isinstance(outcome, Refusal), outcome
    assert outcome.reason == reason, outcome
    assert outcome.message
    assert balances(gateway, payer.pubkey(), gateway.treasury) == before
    assert invoice.paid_by is None
    assert desk.settlements == []


def test_the_desk_refuses_a_payer_without_the_money(gateway: Gateway) -> None:
    """The payment checks out but cannot execute: refused after simulation, nothing moved."""
    poor = Keypair()
    gateway.fund(poor.pubkey(), {"SOL": Decimal("0.01")})
    invoice = gateway.desk.issue(USDC_PRICE, "/usdc")
    before = balances(gateway, poor.pubkey(), gateway.treasury)
    outcome = gateway.desk.settle(pay(gateway, poor, invoice), "/usdc", USDC_PRICE)
    assert isinstance(outcome, Refusal)
    assert outcome.reason == "transaction_failed", outcome
    assert outcome.payer == str(poor.pubkey())
    assert balances(gateway, poor.pubkey(), gateway.treasury) == before


# -- the x402 facilitator ---------------------------------------------------------------------


def requirements(gateway: Gateway, **extra: str) -> dict[str, Any]:
    token = gateway.genesis.token("USDC")
    return {
        "scheme": "exact",
        "network": gateway.facilitator.caip2,
        "asset": str(token.mint),
        "payTo": str(gateway.treasury),
        "maxTimeoutSeconds": 300,
        "extra": {"feePayer": gateway.facilitator.fee_payer_address, **extra},
        "amount": "10000",
    }


def exact_payload(
    gateway: Gateway, payer: Keypair, wanted: dict[str, Any], amount: int, tail: bytes = b""
) -> dict[str, Any]:
    token = gateway.genesis.token("USDC")
    transaction = build_exact_transfer(
        payer=payer.pubkey(),
        fee_payer=gateway.facilitator.fee_payer.pubkey(),
        pay_to=gateway.treasury,
        mint=MintInfo(token.mint, token.program_id, token.decimals),
        amount=amount,
        memo="domain-test",
        recent_blockhash=gateway.ledger.latest_blockhash()[0],
    )
    signed: VersionedTransaction = sign_transaction(transaction, load_signer(payer))
    encoded = base64.b64encode(bytes(signed) + tail).decode()
    return {"x402Version": 2, "accepted": wanted, "payload": {"transaction": encoded}}


def test_the_facilitator_verifies_without_moving_then_settles_once(
    gateway: Gateway, payer: Keypair
) -> None:
    """verify moves nothing; settle moves exactly the amount, the facilitator pays the fee;
    the same payment settled again is a duplicate_settlement until the window has passed."""
    facilitator, fee_payer = gateway.facilitator, gateway.facilitator.fee_payer.pubkey()
    wanted = requirements(gateway)
    payload = exact_payload(gateway, payer, wanted, 10_000)
    before = balances(gateway, payer.pubkey(), gateway.treasury, fee_payer)

    verification = facilitator.verify(payload, wanted)

    assert verification.is_valid, verification
    assert verification.payer == str(payer.pubkey())
    assert balances(gateway, payer.pubkey(), gateway.treasury, fee_payer) == before
    assert not facilitator.already_settled(payload)

    settled = facilitator.settle(payload, wanted)

    assert settled["success"] is True, settled
    assert settled["payer"] == str(payer.pubkey())
    payer_sol, payer_usdc, treasury_sol, treasury_usdc, fee_sol, fee_usdc = before
    assert balances(gateway, payer.pubkey(), gateway.treasury, fee_payer) == [
        payer_sol,  # the facilitator pays the fee
        payer_usdc - Decimal("0.01"),
        treasury_sol,
        treasury_usdc + Decimal("0.01"),
        fee_sol - Decimal("0.000010001"),  # 2 signatures, 1 lamport of priority fee
        fee_usdc,
    ]
    assert facilitator.already_settled(payload)
    after = balances(gateway, payer.pubkey(), gateway.treasury, fee_payer)
    again = facilitator.settle(payload, wanted)
    assert again["success"] is False
    assert again["errorReason"] == "duplicate_settlement"
    assert balances(gateway, payer.pubkey(), gateway.treasury, fee_payer) == after


def test_the_facilitator_forgets_settlements_after_the_window(
    gateway: Gateway, payer: Keypair, clock: FakeClock
) -> None:
    wanted = requirements(gateway)
    payload = exact_payload(gateway, payer, wanted, 10_000)
    assert gateway.facilitator.settle(payload, wanted)["success"] is True
    clock.now += SETTLEMENT_TTL
    assert not gateway.facilitator.already_settled(payload)


@pytest.mark.parametrize(
    ("paid", "tail", "extra", "reason"),
    [
        (9_999, b"", {}, "invalid_exact_svm_payload_amount_insufficient"),
        (10_001, b"", {}, "invalid_exact_svm_payload_amount_mismatch"),
        (10_000, b"\0", {}, "invalid_exact_svm_payload_transaction_could_not_be_decoded"),
        (10_000, b"", {"memo": "another"}, "invalid_exact_svm_payload_memo_mismatch"),
    ],
)
def test_the_facilitator_refuses_and_moves_nothing(
    gateway: Gateway,
    payer: Keypair,
    paid: int,
    tail: bytes,
    extra: dict[str, str],
    reason: str,
) -> None:
    facilitator, fee_payer = gateway.facilitator, gateway.facilitator.fee_payer.pubkey()
    wanted = requirements(gateway, **extra)
    payload = exact_payload(gateway, payer, wanted, paid, tail)
    before = balances(gateway, payer.pubkey(), gateway.treasury, fee_payer)
    verification = facilitator.verify(payload, wanted)
    assert not verification.is_valid
    assert verification.invalid_reason == reason
    settled = facilitator.settle(payload, wanted)
    assert settled["success"] is False
    assert settled["errorReason"] == reason
    assert balances(gateway, payer.pubkey(), gateway.treasury, fee_payer) == before
    assert not facilitator.already_settled(payload)


def test_the_facilitator_refuses_requirements_it_does_not_serve(
    gateway: Gateway, payer: Keypair
) -> None:
    wanted = requirements(gateway)
    payload = exact_payload(gateway, payer, wanted, 10_000)
    stranger = {**wanted, "extra": {"feePayer": str(Keypair().pubkey())}}
    other_chain = {**wanted, "network": "eip155:8453"}
    facilitator = gateway.facilitator
    assert facilitator.verify(payload, stranger).invalid_reason == (
        "fee_payer_not_managed_by_facilitator"
    )
    assert facilitator.verify({**payload, "accepted": other_chain}, other_chain).invalid_reason == (
        "unsupported_network"
    )
    assert facilitator.verify(payload, {**wanted, "network": "x"}).invalid_reason == (
        "network_mismatch"
    )


# -- the task board ---------------------------------------------------------------------------


def board(
    clock: FakeClock,
    policy: str = "manual",
    delay: float = 0.0,
    voters: int | None = 3,
    threshold: float | None = 0.6,
    rate_limit: tuple[int, float] | None = None,
) -> TaskBoard:
    return TaskBoard(
        policy=ReviewPolicy.parse(policy, delay),
        rule=ConsensusRule(voters, threshold),
        task_ttl=100.0,
        rate_limit=rate_limit,
        clock=clock,
    )


def test_a_manual_task_completes_when_the_votes_agree(clock: FakeClock) -> None:
    tasks = board(clock)
    task = tasks.create({"text": "Is it right?"}, 0.5, None, "agent")
    assert (task.status, task.required_voters, task.threshold) == ("pending", 3, 0.6)
    assert tasks.vote(task.id, "yes", "u1")["consensus"]["reached"] is False
    assert tasks.vote(task.id, "no", "u2")["status"] == "Vote submitted"
    answer = tasks.vote(task.id, "yes", "u3", "looks fine")
    assert answer["status"] == "Vote submitted - Consensus reached"
    assert answer["result"]["decision"] == "yes"
    read = tasks.get(task.id)
    assert read is not None
    assert read.status == "completed"
    assert read.result is not None
    assert read.result["comments"] == ["looks fine"]


@pytest.mark.parametrize(
    ("decision", "user", "task_id", "status", "message"),
    [
        ("maybe", "u9", None, 400, "Decision must be 'yes' or 'no'"),
        ("yes", "u9", "task_missing", 404, "Task not found"),
        ("yes", "u1", None, 409, "User has already voted on this task"),
    ],
)
def test_the_task_board_refuses_bad_votes(
    clock: FakeClock, decision: str, user: str, task_id: str | None, status: int, message: str
) -> None:
    tasks = board(clock)
    task = tasks.create({"text": "Is it right?"}, 0.5, None, "agent")
    tasks.vote(task.id, "yes", "u1")
    with pytest.raises(VoteRejected) as caught:
        tasks.vote(task_id or task.id, decision, user)
    assert (caught.value.status, caught.value.message) == (status, message)
    assert [v.user_id for v in task.votes] == ["u1"]


def test_a_split_vote_moves_to_the_next_phase_and_ends_without_consensus(
    clock: FakeClock,
) -> None:
    tasks = board(clock, voters=2, threshold=1.0)
    task = tasks.create({"text": "Is it right?"}, 0.5, None, "agent")
    for phase in (1, 2, 3):
        assert (task.status, task.phase) == ("pending", phase)
        tasks.vote(task.id, "yes")
        tasks.vote(task.id, "no")
    assert task.status == "completed"
    assert task.result is not None
    assert task.result["decision"] is None
    with pytest.raises(VoteRejected) as caught:
        tasks.vote(task.id, "yes")
    assert caught.value.status == 409


def test_simulated_reviewers_vote_when_their_delay_is_over(clock: FakeClock) -> None:
    tasks = board(clock, policy="script:reject,approve", delay=5.0, voters=None, threshold=None)
    rejected = tasks.create({"text": "first"}, 0.9, None, "agent")
    tasks.create({"text": "second"}, 0.9, None, "agent")
    assert tasks.get(rejected.id) is not None
    assert rejected.status == "pending"
    assert rejected.votes == []
    clock.now += 5.0
    assert [t.result and t.result["decision"] for t in tasks.all()] == ["no", "yes"]


def test_an_unanswered_task_expires_and_refuses_votes(clock: FakeClock) -> None:
    tasks = board(clock)
    task = tasks.create({"text": "Is it right?"}, 0.5, None, "agent")
    clock.now += 100.0
    read = tasks.get(task.id)
    assert read is not None
    assert read.status == "expired"
    with pytest.raises(VoteRejected) as caught:
        tasks.vote(task.id, "yes")
    assert (caught.value.status, caught.value.message) == (409, "Task is already expired")


def test_the_task_board_rate_limits_each_agent(clock: FakeClock) -> None:
    tasks = board(clock, rate_limit=(2, 10.0))
    for _ in range(2):
        assert tasks.retry_after("a") is None
        tasks.create({"text": "t"}, 0.5, None, "a")
    assert tasks.retry_after("a") == 10.0
    assert tasks.retry_after("b") is None
    clock.now += 4.0
    assert tasks.retry_after("a") == 6.0
    clock.now += 6.0
    assert tasks.retry_after("a") is None


# -- the faults -------------------------------------------------------------------------------


def test_an_armed_fault_fires_count_times() -> None:
    faults = Faults()
    faults.fail_rpc(count=2, status=502)
    first, second = faults.take("fail_rpc"), faults.take("fail_rpc")
    assert first is not None
    assert (first.count, first.status) == (2, 502)
    assert second is not None
    assert second.count == 1
    assert faults.take("fail_rpc") is None
    assert faults.triggered == ["fail_rpc", "fail_rpc"]
    assert faults.armed() == []


def test_faults_take_their_former_names_and_clear() -> None:
    faults = Faults()
    assert faults.arm("rpc_slow", seconds=2).mode == "slow_rpc"
    faults.overcharge(factor="10")
    assert sorted(f.mode for f in faults.armed()) == ["overcharge", "slow_rpc"]
    faults.clear()
    assert faults.armed() == []
    assert faults.take("slow_rpc") is None
    assert faults.triggered == []


@pytest.mark.parametrize(
    ("mode", "params", "says"),
    [
        ("explode", {}, "unknown fault 'explode'"),
        ("slow_rpc", {}, "slow_rpc needs seconds"),
        ("slow_rpc", {"seconds": "2"}, "seconds must be a number from 0 to 600"),
        ("slow_rpc", {"seconds": 1, "status": 500}, "slow_rpc takes count, seconds; not status"),
        ("fail_rpc", {"count": 0}, "count must be a whole number from 1 to 10000"),
        ("fail_rpc", {"status": 200}, "status must be a whole number from 400 to 599"),
        ("redirect_payment", {"location": "ftp://x"}, "location must be an absolute http(s)"),
        ("overcharge", {"factor": "1.5"}, "factor must be a whole number from 1 to 1000000"),
    ],
)
def test_faults_refuse_bad_parameters_and_arm_nothing(
    mode: str, params: dict[str, Any], says: str
) -> None:
    faults = Faults()
    with pytest.raises(ValueError, match=re.escape(says)):
        faults.arm(mode, **params)
    assert faults.armed() == []


# -- the Gateway module itself ----------------------------------------------------------------

WITHOUT_FLASK = """
import sys
from decimal import Decimal
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("flask", "werkzeug", "waitress"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Hide())
from solders.keypair import Keypair
from stub_gateway.gateway import Gateway
gateway = Gateway(seed="no-flask")
wallet = Keypair().pubkey()
gateway.fund(wallet, {"SOL": Decimal(2), "USDC": Decimal(3)})
print(gateway.balance(wallet), gateway.balance(wallet, "USDC"), "flask" in sys.modules)
"""


def test_the_gateway_runs_without_flask() -> None:
    """The network (ledger, desk, facilitator, tasks, faults) needs no Flask or waitress."""
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_FLASK],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "3", "False"]


@given(
    data=st.binary(max_size=24),
    accounts=st.integers(min_value=0, max_value=6),
    program=st.sampled_from([TOKEN_PROGRAM_ID, TOKEN_2022_PROGRAM_ID]),
)
def test_transfer_checked_is_read_as_the_spl_decoder_reads_it(
    data: bytes, accounts: int, program: Pubkey
) -> None:
    """The gateway's own TransferChecked reader agrees with spl's decoder on any bytes."""
    metas = [AccountMeta(Pubkey(bytes([i + 1]) * 32), i == 3, i == 0) for i in range(accounts)]
    ix = Instruction(program, b"\x0c" + data, metas)
    try:
        wanted = decode_transfer_checked(ix)
    except Exception:  # noqa: BLE001 - any refusal of spl's is "not a transfer"
        assert read_transfer(ix) is None
        return
    transfer = read_transfer(ix)
    assert transfer is not None
    assert (transfer.kind, transfer.source_owner, transfer.destination) == (
        "checked",
        wanted.owner,
        wanted.dest,
    )
    assert (transfer.amount, transfer.mint, transfer.decimals) == (
        wanted.amount,
        wanted.mint,
        wanted.decimals,
    )
    assert [m.pubkey for m in transfer.extras] == wanted.signers
