"""``--state FILE``: the gateway's chain, invoices and tasks survive a restart."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.token.state import Mint

from human_rpc_sdk import AutoAgent
from human_rpc_sdk._headers import decode_payment_header
from stub_gateway import Gateway, GatewayServer, Price, create_app
from stub_gateway.state import (
    FORMAT,
    StateError,
    StateKeeper,
    read_state,
    restore,
    save_state,
    snapshot,
)

from .conftest import FakeClock, PaymentCapture

ROOT = Path(__file__).resolve().parent.parent
FEE = Decimal("0.000005")
SEED = "state-test"


def restarted(path: Path) -> Gateway:
    """A new gateway built from the state file, as the command line does."""
    saved = read_state(path)
    gateway = Gateway(network=saved.network, seed=saved.seed, genesis_hash=saved.genesis_hash)
    restore(gateway, saved)
    return gateway


def supply(gateway: Gateway, symbol: str) -> int:
    account = gateway.ledger.account(gateway.genesis.token(symbol).mint)
    assert account is not None
    return Mint.from_bytes(bytes(account.data)[:82]).supply


def rpc(url: str, method: str, *params: Any) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    return requests.post(url, json=body, timeout=10).json()


def test_restored_ledger_holds_the_same_accounts_supplies_and_chain(tmp_path: Path) -> None:
    """Balances, token accounts, mint supplies, the genesis hash, the slot and the
    transaction statuses are the same after the restart; a gateway built without the file
    has none of it."""
    clock = FakeClock()
    before = Gateway(seed=SEED, clock=clock)
    clock.now += 100  # 250 slots on
    wallets = [Keypair() for _ in range(3)]
    signatures = []
    for index, wallet in enumerate(wallets):
        amounts = {"SOL": Decimal(index + 1), "USDC": Decimal(7 * index), "PYUSD": Decimal(index)}
        signatures += before.fund(wallet.pubkey(), amounts)
    path = tmp_path / "chain.json"
    save_state(before, path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    document = json.loads(path.read_text())
    assert (document["format"], document["version"]) == (FORMAT, 1)

    after = restarted(path)
    assert after.genesis_hash == before.genesis_hash
    known = [Pubkey.from_string(a["address"]) for a in document["ledger"]["accounts"]]
    mints = [t.mint for t in before.genesis.tokens.values()]
    assert set(mints) <= set(known)
    for address in known:
        assert after.ledger.account(address) == before.ledger.account(address), address
    for wallet in wallets:
        for currency in ("SOL", "USDC", "PYUSD"):
            assert after.balance(wallet.pubkey(), currency) == before.balance(
                wallet.pubkey(), currency
            )
    for symbol in ("USDC", "PYUSD"):
        assert supply(after, symbol) == supply(before, symbol) > 0
    assert after.ledger.slot() >= before.ledger.slot() == 1_250  # the chain goes on
    for signature in signatures:
        kept = after.ledger.status(before.ledger.status(_sig(signature)).signature)  # type: ignore[union-attr]
        assert kept is not None
        assert kept.ok
    history = after.ledger.history(wallets[2].pubkey(), limit=10)
    assert [str(e.signature) for e in history] == list(reversed(signatures[-3:]))
    # Without the state file the same seed builds an empty chain: the test above means it.
    fresh = Gateway(network=before.network, seed=SEED, genesis_hash=before.genesis_hash)
    assert supply(fresh, "USDC") == 0
    assert fresh.balance(wallets[2].pubkey()) == 0


def _sig(text: str) -> Any:
    from solders.signature import Signature

    return Signature.from_string(text)


class Restarter(PaymentCapture):
    """A transport adapter that, before the first paid request goes out, saves the gateway,
    stops it and starts a new one from the file on the same port."""

    def __init__(self, restart: Callable[[], None]) -> None:
        super().__init__()
        self.restart = restart
        self.restarts = 0

    def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if "X-PAYMENT" in request.headers and self.restarts == 0:
            self.restarts += 1
            self.restart()
        return super().send(request, **kwargs)


class Running:
    """A gateway served on a fixed port that can be restarted from its state file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.clock = FakeClock(1_000.0)  # the first gateway's; its slots move when a test says
        self.server = GatewayServer(
            create_app(Gateway(seed=SEED, clock=self.clock)), port=0
        ).start()
        self.port = self.server.port
        self.url = self.server.url

    @property
    def gateway(self) -> Gateway:
        return self.server.gateway

    def restart(self) -> None:
        save_state(self.gateway, self.path)
        self.server.stop()
        self.server = GatewayServer(create_app(restarted(self.path)), port=self.port).start()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    made = Running(tmp_path / "gateway.json")
    yield made
    made.server.stop()


def test_an_invoice_issued_before_a_restart_is_paid_after_it(running: Running) -> None:
    """AutoAgent gets the 402 from the first gateway, signs over its blockhash, and the
    payment lands on the restarted one: the payer loses price + fee, the treasury gains it."""
    wallet = Keypair()
    running.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(2)})
    treasury = running.gateway.balance(running.gateway.treasury, "USDC")
    running.clock.now += 60  # the blockhash the agent signs over is no genesis one
    restarter = Restarter(running.restart)
    agent = AutoAgent(wallet, rpc_url=f"{running.url}/rpc")
    agent.session.mount("http://", restarter)
    try:
        first = running.gateway
        response = agent.get(f"{running.url}/api/v1/premium/usdc")
        assert restarter.restarts == 1
        assert running.gateway is not first
        assert response.status_code == 200, response.text
        (receipt,) = agent.payments
    finally:
        agent.close()
    after = running.gateway
    assert after.balance(wallet.pubkey(), "USDC") == Decimal("1.95")
    assert after.balance(wallet.pubkey()) == 1 - FEE
    assert after.balance(after.treasury, "USDC") - treasury == Decimal("0.05")
    assert receipt.accepted
    assert receipt.signature == response.json()["paid"]["signature"]
    reference = response.json()["paid"]["reference"]
    assert first.desk.invoice(reference) is not None  # issued by the first gateway
    invoice = after.desk.invoice(reference)
    assert invoice is not None
    assert invoice.paid_by == receipt.signature


def test_a_payment_settled_before_a_restart_cannot_be_replayed_after_it(running: Running) -> None:
    """The same X-PAYMENT sent again, and the same transaction sent over /rpc, move nothing
    after the restart: the invoice stays paid, the signature stays processed."""
    wallet = Keypair()
    running.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    capture = PaymentCapture()
    agent = AutoAgent(wallet, rpc_url=f"{running.url}/rpc")
    agent.session.mount("http://", capture)
    try:
        assert agent.get(f"{running.url}/api/v1/premium/sol").status_code == 200
    finally:
        agent.close()
    (header,) = capture.headers
    running.restart()
    gateway = running.gateway
    balances = (gateway.balance(wallet.pubkey()), gateway.balance(gateway.treasury))
    again = requests.get(
        f"{running.url}/api/v1/premium/sol", headers={"X-PAYMENT": header}, timeout=10
    )
    assert again.status_code == 402
    assert again.json()["reason"] == "invoice_already_paid"
    raw = base64.b64encode(bytes(decode_payment_header(header).transaction)).decode()
    sent = rpc(f"{running.url}/rpc", "sendTransaction", raw, {"encoding": "base64"})
    assert "already" in json.dumps(sent.get("error")).lower(), sent
    assert (gateway.balance(wallet.pubkey()), gateway.balance(gateway.treasury)) == balances


def test_tasks_survive_a_restart(tmp_path: Path) -> None:
    """A task created before the restart is found after it, with its result."""
    before = Gateway(seed=SEED, review_policy="manual")
    task = before.tasks.create({"text": "is it?", "agentName": "a"}, 0.9, None, "agent")
    before.tasks.vote(task.id, "yes", "u1", "looks right")
    path = tmp_path / "tasks.json"
    save_state(before, path)
    after = restarted(path).tasks.get(task.id)
    assert after is not None
    assert after.to_json() == before.tasks.get(task.id).to_json()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("{not json", "not valid JSON"),
        ('{"format": "something-else"}', "not a stub gateway state file"),
        (json.dumps({"format": FORMAT, "version": 99}), "version 99"),
        (json.dumps({"format": FORMAT, "version": 1, "network": "devnet"}), "damaged"),
    ],
)
def test_a_bad_state_file_is_a_clear_error(tmp_path: Path, content: str, says: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(StateError, match=says):
        read_state(path)


def test_a_damaged_body_is_refused_before_anything_is_restored(tmp_path: Path) -> None:
    gateway = Gateway(seed=SEED)
    gateway.fund(Keypair().pubkey(), {"USDC": Decimal(1)})
    document = snapshot(gateway)
    document["ledger"]["accounts"][0]["lamports"] = "many"
    path = tmp_path / "damaged.json"
    path.write_text(json.dumps(document))
    saved = read_state(path)
    fresh = Gateway(network=saved.network, seed=saved.seed, genesis_hash=saved.genesis_hash)
    with pytest.raises(StateError, match="damaged"):
        restore(fresh, saved)
    assert supply(fresh, "USDC") == 0  # nothing restored
    assert len(fresh.ledger.snapshot().executions) == len(
        Gateway(seed=SEED).ledger.snapshot().executions
    )
    with pytest.raises(StateError, match="genesis hash"):
        restore(Gateway(seed="another"), saved)  # another chain


# -- the command line ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _start(path: Path, port: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stub_gateway",
            "--port",
            str(port),
            "--state",
            str(path),
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    while True:  # the socket listens before the banner is printed: reading it is the wait
        line = process.stdout.readline()
        if not line or "try" in line:
            break
    return process


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    _, errors = process.communicate(timeout=20)
    assert process.returncode == 0, errors
    return errors


def test_the_command_line_keeps_the_chain_across_a_restart(tmp_path: Path) -> None:
    """Funded through the faucet, stopped with SIGTERM, started again: the balance, the
    genesis hash and the faucet transaction are still there, read over /rpc."""
    path = tmp_path / "cli.json"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    wallet = str(Keypair().pubkey())
    process = _start(path, port)
    try:
        funded = requests.post(
            f"{url}/api/v1/faucet", json={"address": wallet, "sol": "3", "usdc": "4"}, timeout=10
        ).json()
        genesis = rpc(f"{url}/rpc", "getGenesisHash")["result"]
    finally:
        _stop(process)
    assert os.stat(path).st_mode & 0o777 == 0o600
    process = _start(path, port)
    try:
        balance = rpc(f"{url}/rpc", "getBalance", wallet)["result"]["value"]
        assert rpc(f"{url}/rpc", "getGenesisHash")["result"] == genesis
        statuses = rpc(f"{url}/rpc", "getSignatureStatuses", funded["signatures"])["result"]
        info = requests.get(f"{url}/api/v1/info", timeout=10).json()
        usdc = rpc(
            f"{url}/rpc",
            "getTokenAccountsByOwner",
            wallet,
            {"mint": info["mints"]["USDC"]["mint"]},
            {"encoding": "jsonParsed"},
        )["result"]["value"]
    finally:
        _stop(process)
    assert balance == 3 * 10**9
    assert all(s is not None and s["err"] is None for s in statuses["value"])
    assert usdc[0]["account"]["data"]["parsed"]["info"]["tokenAmount"]["uiAmountString"] == "4"


def test_the_command_line_refuses_a_corrupt_state_file(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.json"
    path.write_text('{"format": "human-rpc-stub-gateway-state", "version": 1, "ledg')
    done = subprocess.run(
        [sys.executable, "-m", "stub_gateway", "--port", "0", "--state", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert "not valid JSON" in done.stderr
    assert "Traceback" not in done.stderr
    assert path.read_text().endswith('"ledg')  # left as it was


def test_the_command_line_refuses_a_state_file_of_another_seed(tmp_path: Path) -> None:
    path = tmp_path / "seeded.json"
    save_state(Gateway(seed=SEED), path)
    done = subprocess.run(
        [sys.executable, "-m", "stub_gateway", "--seed", "other", "--state", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert "seed 'state-test'" in done.stderr


def test_price_is_kept_exactly(tmp_path: Path) -> None:
    """An invoice's price and expiry come back as they were (Decimal, not float)."""
    before = Gateway(seed=SEED)
    invoice = before.desk.issue(Price(Decimal("0.000123"), "PYUSD"), "/thing")
    path = tmp_path / "price.json"
    save_state(before, path)
    kept = restarted(path).desk.invoice(invoice.reference)
    assert kept is not None
    assert (kept.price, kept.atomic, kept.token, kept.destination) == (
        invoice.price,
        invoice.atomic,
        invoice.token,
        invoice.destination,
    )


class DiesAfterPaying(PaymentCapture):
    """The paid request reaches the gateway and settles; then the gateway is restarted and
    its answer is lost, as when a gateway is killed after executing a payment."""

    def __init__(self, restart: Callable[[], None]) -> None:
        super().__init__()
        self.restart = restart
        self.restarts = 0

    def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        response = super().send(request, **kwargs)
        if "X-PAYMENT" in request.headers:
            if self.restarts == 0:
                self.restarts += 1
                self.restart()
            raise requests.ConnectionError("the gateway went away before answering")
        return response


def test_a_client_recovers_a_payment_made_before_a_restart(running: Running) -> None:
    """The answer to a paid request is lost to the restart: the agent's journal holds the
    payment as pending, and recover_payments() finds it on the restarted chain."""
    wallet = Keypair()
    running.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    agent = AutoAgent(wallet, rpc_url=f"{running.url}/rpc")
    agent.session.mount("http://", DiesAfterPaying(running.restart))
    try:
        with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the SDK makes of it
            agent.get(f"{running.url}/api/v1/premium/sol")
        (pending,) = agent.pending_payments()
        (recovered,) = agent.recover_payments()
        journal = agent.payments
    finally:
        agent.close()
    assert recovered.signature == pending.signature
    assert recovered.accepted
    assert [r.accepted for r in journal] == [True]
    gateway = running.gateway
    assert gateway.balance(wallet.pubkey()) == 1 - Decimal("0.001") - FEE


def test_the_keeper_saves_changes_in_the_background_and_only_changes(tmp_path: Path) -> None:
    """Without a clean shutdown (kill -9), the file still holds what happened up to the last
    round; passing time alone (new slots, nearer deadlines) writes nothing."""
    clock = FakeClock()
    gateway = Gateway(seed=SEED, clock=clock)
    gateway.desk.issue(Price(Decimal("0.001"), "SOL"), "/x")
    path = tmp_path / "kept.json"
    keeper = StateKeeper(gateway, path, interval=0.05).start()
    try:
        clock.now += 30
        assert not keeper.save()  # only time passed
        wallet = Keypair()
        gateway.fund(wallet.pubkey(), {"SOL": Decimal(2)})
        deadline = time.monotonic() + 20
        while str(wallet.pubkey()) not in path.read_text() and time.monotonic() < deadline:
            threading.Event().wait(0.05)
        assert restarted(path).balance(wallet.pubkey()) == 2  # close() was never called
    finally:
        keeper.close()
