"""``python -m stub_gateway --workers 2``: the same gateway, its HTTP work in worker processes.

The gateway runs as a real process tree (the ledger process and two workers on one socket);
every test talks to it over loopback only and reads balances through its JSON-RPC, so what
one worker settled, any other sees. Connections are new for each request (no keep-alive), so
the requests of one test land on both workers.
"""

from __future__ import annotations

import base64
import os
import secrets
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from human_rpc_sdk import AutoAgent
from human_rpc_sdk._headers import b64json, encode_payment_header, unb64json
from human_rpc_sdk.solana_utils import (
    MintInfo,
    associated_token_address,
    build_exact_transfer,
    build_sol_transfer,
    build_spl_transfer,
    sign_transaction,
)
from stub_gateway.app import create_app
from stub_gateway.workers import LedgerHost, Link, NotLeading

WORKERS = 2


@dataclass(frozen=True)
class Running:
    url: str
    process: subprocess.Popen[str]
    info: dict[str, Any]

    @property
    def rpc_url(self) -> str:
        return f"{self.url}/rpc"

    @property
    def usdc(self) -> MintInfo:
        usdc = self.info["mints"]["USDC"]
        return MintInfo(
            Pubkey.from_string(usdc["mint"]),
            Pubkey.from_string(usdc["program"]),
            int(usdc["decimals"]),
        )

    @property
    def treasury(self) -> Pubkey:
        return Pubkey.from_string(self.info["recipient"])


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as file:
            found += [int(child) for child in file.read().split()]
    return found


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    command = [sys.executable, "-m", "stub_gateway", "--port", "0", "--quiet"]
    command += ["--workers", str(WORKERS), "--threads", "4"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            first = process.stdout.readline()  # "stub HumanRPC gateway on http://... (devnet)"
            url = first.split(" on ", 1)[1].split()[0]
            info = requests.get(f"{url}/api/v1/info", timeout=30).json()
            yield Running(url, process, info)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def _rpc(running: Running, method: str, *params: Any) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    answer = requests.post(running.rpc_url, json=body, timeout=30).json()
    assert "error" not in answer, answer
    return answer["result"]


def sol_balance(running: Running, owner: Pubkey) -> int:
    return int(_rpc(running, "getBalance", str(owner))["value"])


def usdc_balance(running: Running, owner: Pubkey) -> int:
    usdc = running.usdc
    account = associated_token_address(owner, usdc.address, usdc.program_id)
    return int(_rpc(running, "getTokenAccountBalance", str(account))["value"]["amount"])


def blockhash(running: Running) -> Hash:
    return Hash.from_string(_rpc(running, "getLatestBlockhash")["value"]["blockhash"])


def funded(running: Running) -> Keypair:
    wallet = Keypair()
    requests.post(
        f"{running.url}/api/v1/faucet",
        json={"address": str(wallet.pubkey()), "sol": "2", "usdc": "100"},
        timeout=30,
    ).raise_for_status()
    return wallet


def invoice_for(running: Running, path: str) -> dict[str, Any]:
    challenge = requests.get(f"{running.url}{path}", timeout=30)
    assert challenge.status_code == 402
    invoice: dict[str, Any] = challenge.json()["invoice"]
    return invoice


def usdc_payment(
    running: Running, wallet: Keypair, invoice: dict[str, Any], to: Pubkey | None = None
) -> str:
    usdc = running.usdc
    units = int(Decimal(str(invoice["amount"])) * 10**usdc.decimals)
    unsigned = build_spl_transfer(
        wallet,
        to or running.treasury,
        usdc.address,
        units,
        decimals=usdc.decimals,
        token_program=usdc.program_id,
        recent_blockhash=blockhash(running),
        create_recipient_account=to is not None,
        reference=invoice["reference"],
    )
    return encode_payment_header(sign_transaction(unsigned, wallet), running.info["network"])


def x402_payment(running: Running, wallet: Keypair) -> str:
    challenge = requests.get(f"{running.url}/x402/v2/premium", timeout=30)
    assert challenge.status_code == 402
    offer = unb64json(challenge.headers["PAYMENT-REQUIRED"], "challenge")["accepts"][0]
    unsigned = build_exact_transfer(
        payer=wallet.pubkey(),
        fee_payer=Pubkey.from_string(offer["extra"]["feePayer"]),
        pay_to=Pubkey.from_string(offer["payTo"]),
        mint=running.usdc,
        amount=int(offer["amount"]),
        memo=secrets.token_hex(16),
        recent_blockhash=blockhash(running),
    )
    transaction = base64.b64encode(bytes(sign_transaction(unsigned, wallet))).decode()
    return b64json(
        {
            "x402Version": 2,
            "resource": {"url": f"{running.url}/x402/v2/premium"},
            "accepted": offer,
            "payload": {"transaction": transaction},
        }
    )


def test_workers_serve_on_one_port_beside_the_ledger_process(running: Running) -> None:
    """The gateway process has the asked-for worker processes, all answering on one URL."""
    assert len(_children(running.process.pid)) == WORKERS
    for _ in range(6):
        assert requests.get(f"{running.url}/api/v1/info", timeout=30).json() == running.info


def test_a_paid_x402_request_settles_once_on_the_ledger(running: Running) -> None:
    """An x402 v2 payment is served 200 and moves exactly the price to the payee."""
    wallet = funded(running)
    payee_before = usdc_balance(running, running.treasury)
    header = x402_payment(running, wallet)
    answer = requests.get(
        f"{running.url}/x402/v2/premium", headers={"PAYMENT-SIGNATURE": header}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    receipt = unb64json(answer.headers["PAYMENT-RESPONSE"], "receipt")
    assert receipt["success"] is True
    assert usdc_balance(running, wallet.pubkey()) == 100_000_000 - 10_000
    assert usdc_balance(running, running.treasury) == payee_before + 10_000
    status = _rpc(running, "getSignatureStatuses", [receipt["transaction"]])["value"][0]
    assert status is not None
    assert status["err"] is None


def test_an_x402_payment_replayed_on_another_request_is_a_duplicate(running: Running) -> None:
    """The same x402 payment on another request is refused; the same request gets its answer."""
    wallet = funded(running)
    header = x402_payment(running, wallet)
    url = f"{running.url}/x402/v2/premium"
    first = requests.get(url, headers={"PAYMENT-SIGNATURE": header}, timeout=30)
    assert first.status_code == 200
    again = [requests.get(url, headers={"PAYMENT-SIGNATURE": header}, timeout=30) for _ in range(4)]
    assert {(r.status_code, r.content) for r in again} == {(200, first.content)}
    other = requests.get(url + "?again=1", headers={"PAYMENT-SIGNATURE": header}, timeout=30)
    assert other.status_code == 402
    refusal = unb64json(other.headers["PAYMENT-RESPONSE"], "receipt")
    assert refusal["errorReason"] == "duplicate_settlement"
    assert usdc_balance(running, wallet.pubkey()) == 100_000_000 - 10_000


def test_a_humanrpc_invoice_paid_in_usdc_is_served(running: Running) -> None:
    """The 402 from one worker is paid through another: 200, the exact price moved."""
    wallet = funded(running)
    payee_before = usdc_balance(running, running.treasury)
    invoice = invoice_for(running, "/api/v1/premium/usdc")
    header = usdc_payment(running, wallet, invoice)
    answer = requests.get(
        f"{running.url}/api/v1/premium/usdc", headers={"X-PAYMENT": header}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["paid"]["reference"] == invoice["reference"]
    assert usdc_balance(running, wallet.pubkey()) == 100_000_000 - 50_000
    assert usdc_balance(running, running.treasury) == payee_before + 50_000


def test_a_paid_invoice_cannot_pay_another_request(running: Running) -> None:
    """Re-sent as it was, a paid request gets its answer again; reused elsewhere, refused."""
    wallet = funded(running)
    invoice = invoice_for(running, "/api/v1/premium/usdc")
    header = usdc_payment(running, wallet, invoice)
    url = f"{running.url}/api/v1/premium/usdc"
    first = requests.get(url, headers={"X-PAYMENT": header}, timeout=30)
    assert first.status_code == 200
    again = [requests.get(url, headers={"X-PAYMENT": header}, timeout=30) for _ in range(4)]
    assert {(r.status_code, r.content) for r in again} == {(200, first.content)}
    other = requests.get(url + "?other=1", headers={"X-PAYMENT": header}, timeout=30)
    assert other.status_code == 402
    assert other.json()["reason"] == "invoice_already_paid"
    assert usdc_balance(running, wallet.pubkey()) == 100_000_000 - 50_000


def test_a_payment_to_the_wrong_party_is_refused_and_moves_nothing(running: Running) -> None:
    """A transfer of the invoice's amount to someone else is refused; no balance changes."""
    wallet, stranger = funded(running), Keypair().pubkey()
    invoice = invoice_for(running, "/api/v1/premium/usdc")
    header = usdc_payment(running, wallet, invoice, to=stranger)
    sol_before = sol_balance(running, wallet.pubkey())
    answer = requests.get(
        f"{running.url}/api/v1/premium/usdc", headers={"X-PAYMENT": header}, timeout=30
    )
    assert answer.status_code == 402
    assert answer.json()["reason"] == "wrong_recipient"
    assert usdc_balance(running, wallet.pubkey()) == 100_000_000
    assert sol_balance(running, wallet.pubkey()) == sol_before
    assert _rpc(running, "getBalance", str(stranger))["value"] == 0


def test_a_sol_invoice_is_paid_by_the_sdk(running: Running) -> None:
    """AutoAgent pays a SOL invoice of the workers gateway end to end."""
    wallet = funded(running)
    before = sol_balance(running, wallet.pubkey())
    with AutoAgent(wallet, rpc_url=running.rpc_url) as agent:
        answer = agent.get(f"{running.url}/api/v1/premium/sol")
    assert answer.status_code == 200, answer.text
    spent = before - sol_balance(running, wallet.pubkey())
    assert spent >= 1_000_000  # the price (0.001 SOL), plus the network fee
    assert spent <= 1_000_000 + 10_000


def test_a_fault_armed_through_one_worker_strikes_on_another(running: Running) -> None:
    """Faults live in the ledger process: armed once, each fires exactly once, anywhere."""
    armed = requests.post(
        f"{running.url}/api/v1/faults", json={"mode": "malformed_invoice", "count": 2}, timeout=30
    )
    assert armed.status_code == 201
    bodies = [requests.get(f"{running.url}/api/v1/premium/usdc", timeout=30) for _ in range(3)]
    assert [b.json().get("status") for b in bodies] == ["payment_required"] * 3
    assert [b.json()["invoice"]["currency"] for b in bodies] == [7, 7, "USDC"]
    assert requests.get(f"{running.url}/api/v1/faults", timeout=30).json()["armed"] == []


def test_stopping_the_gateway_stops_its_workers() -> None:
    """SIGTERM to the gateway process ends it and every worker process."""
    command = [sys.executable, "-m", "stub_gateway", "--port", "0", "--quiet", "--workers", "2"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        url = process.stdout.readline().split(" on ", 1)[1].split()[0]
        assert requests.get(f"{url}/api/v1/info", timeout=30).status_code == 200
        workers = _children(process.pid)
        assert len(workers) == 2
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}") or _zombie(pid)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/api/v1/info", timeout=5)


def _zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat", encoding="ascii") as file:
        return file.read().rsplit(")", 1)[1].split()[0] == "Z"


def test_a_sol_invoice_paid_by_hand_is_served(running: Running) -> None:
    """A SOL invoice paid by a hand-built transfer is served (the HumanRPC SOL path)."""
    wallet = funded(running)
    invoice = invoice_for(running, "/api/v1/premium/sol")
    lamports = int(Decimal(str(invoice["amount"])) * 10**9)
    unsigned = build_sol_transfer(
        wallet, running.treasury, lamports, blockhash(running), reference=invoice["reference"]
    )
    header = encode_payment_header(sign_transaction(unsigned, wallet), running.info["network"])
    answer = requests.get(
        f"{running.url}/api/v1/premium/sol", headers={"X-PAYMENT": header}, timeout=30
    )
    assert answer.status_code == 200, answer.text


def test_an_x402_payment_with_a_forged_signature_is_refused_and_moves_nothing(
    running: Running,
) -> None:
    """A payer signature that does not verify is refused by the ledger process's runtime."""
    wallet = funded(running)
    header = x402_payment(running, wallet)
    document = unb64json(header, "payment")
    transaction = VersionedTransaction.from_bytes(
        base64.b64decode(document["payload"]["transaction"])
    )
    signatures = list(transaction.signatures)
    signatures[1] = Keypair().sign_message(b"something else")
    forged = VersionedTransaction.populate(transaction.message, signatures)
    document["payload"]["transaction"] = base64.b64encode(bytes(forged)).decode()
    answer = requests.get(
        f"{running.url}/x402/v2/premium",
        headers={"PAYMENT-SIGNATURE": b64json(document)},
        timeout=30,
    )
    assert answer.status_code == 402
    challenge = unb64json(answer.headers["PAYMENT-REQUIRED"], "challenge")
    assert challenge["error"] == "transaction_simulation_failed"
    assert usdc_balance(running, wallet.pubkey()) == 100_000_000


def test_a_worker_that_dies_while_leading_a_paid_request_leaves_no_waiting_copy(
    tmp_path: Path,
) -> None:
    """A worker thread gone mid-request: the copy waiting for it gets a 500, not a 503 forever,
    and a later copy is judged afresh (as when a view fails after settling, in one process)."""
    app = create_app()
    host = LedgerHost(app, tmp_path).start()
    replies = host.gateway.replies
    turns: list[Any] = []

    def join() -> None:
        other = Link(host.address, host.authkey)
        other.defer_turn("a paid request")
        try:
            other.call("take", "no_such_fault")
        except NotLeading as waited:
            turns.append(waited.turn)
        finally:
            other.close()

    try:
        dying = Link(host.address, host.authkey)
        dying.defer_turn("a paid request")
        dying.call("take", "no_such_fault")  # carries the turn: this thread leads
        joining = threading.Thread(target=join)
        joining.start()
        assert replies.wait_for_joins(1, timeout=30)
        dying.close()
        joining.join(timeout=30)
        [(turn, reply)] = turns
        assert turn == "answer"
        assert reply is not None
        assert reply.status == 500
        later = Link(host.address, host.authkey)
        later.defer_turn("a paid request")
        assert later.call("take", "no_such_fault") is None  # it leads: no NotLeading
        later.close()
    finally:
        host.close()


def _start(workers: int = 2) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "stub_gateway", "--port", "0", "--quiet"]
    process = subprocess.Popen(
        [*command, "--workers", str(workers)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    url = process.stdout.readline().split(" on ", 1)[1].split()[0]
    assert requests.get(f"{url}/api/v1/info", timeout=30).status_code == 200
    return process, url


def _gone(pid: int, seconds: float = 20.0) -> bool:
    """Whether process ``pid`` (not a child of this one) ends within ``seconds``: its pidfd
    becomes readable when it exits, so this waits on the kernel, not a polling loop."""
    try:
        descriptor = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([descriptor], [], [], seconds)
    finally:
        os.close(descriptor)
    return bool(ready)


def test_workers_stop_when_the_ledger_process_is_killed() -> None:
    """kill -9 of the ledger process: its workers exit and the port stops answering."""
    process, url = _start()
    with process:
        workers = _children(process.pid)
        process.kill()
        process.wait(timeout=30)
        assert all(_gone(pid) for pid in workers)
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/api/v1/info", timeout=5)


def test_the_gateway_stops_with_status_1_when_a_worker_dies() -> None:
    """kill -9 of a worker: the gateway stops the others and exits 1 (not half-served)."""
    process, url = _start()
    with process:
        first, second = _children(process.pid)
        os.kill(first, signal.SIGKILL)
        assert process.wait(timeout=30) == 1
        assert _gone(second)
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/api/v1/info", timeout=5)


@pytest.mark.parametrize("kind", ["x402", "invoice"])
def test_copies_of_one_paid_request_sent_at_once_settle_once(running: Running, kind: str) -> None:
    """Eight copies at once, over both workers: one settlement, and all get its answer."""
    wallet = funded(running)
    if kind == "x402":
        url, name = f"{running.url}/x402/v2/premium", "PAYMENT-SIGNATURE"
        header, price = x402_payment(running, wallet), 10_000
    else:
        url, name = f"{running.url}/api/v1/premium/usdc", "X-PAYMENT"
        header = usdc_payment(running, wallet, invoice_for(running, "/api/v1/premium/usdc"))
        price = 50_000
    answers: list[requests.Response] = []
    start = threading.Barrier(8)

    def send() -> None:
        start.wait(timeout=30)
        answers.append(requests.get(url, headers={name: header}, timeout=60))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert {(a.status_code, a.content) for a in answers} == {(200, answers[0].content)}
    assert len(answers) == 8
    assert usdc_balance(running, wallet.pubkey()) == 100_000_000 - price
