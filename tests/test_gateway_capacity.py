"""The gateway's cost per payment stays flat and its checks stay whole (issue 12).

Behaviour, not timing: the x402 duplicate check forgets expired settlements from the front
(its size stays bounded as traffic passes), a paid x402 request is simulated and executed
exactly once, the fee payer's key is derived once, and a payment replayed after every cache
has forgotten it is still refused by the ledger. ``benchmarks/bench_gateway.py`` measures the
CPU.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests
from solders.keypair import Keypair
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from human_rpc_sdk._headers import b64json, unb64json
from human_rpc_sdk.solana_utils import MintInfo, build_exact_transfer, sign_transaction
from human_rpc_sdk.wallet import load_signer
from stub_gateway.app import create_app
from stub_gateway.gateway import Gateway
from stub_gateway.replies import REPLAY_WINDOW
from stub_gateway.server import GatewayServer
from stub_gateway.x402 import SETTLEMENT_TTL

from .conftest import FakeClock

ROUTE = "/x402/v2/premium"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def gateway(clock: FakeClock) -> Gateway:
    return Gateway(seed="capacity-tests", clock=clock, sleep=clock.sleep)


@pytest.fixture
def served(gateway: Gateway) -> Iterator[GatewayServer]:
    with GatewayServer(create_app(gateway)).start() as server:
        yield server


@pytest.fixture
def payer(gateway: Gateway) -> Keypair:
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(10)})
    return wallet


def offer(server: GatewayServer) -> dict[str, Any]:
    challenge = requests.get(server.url + ROUTE, timeout=10)
    assert challenge.status_code == 402
    accepts: dict[str, Any] = unb64json(challenge.headers["PAYMENT-REQUIRED"], "x")["accepts"][0]
    return accepts


def payment(
    gateway: Gateway, payer: Keypair, wanted: dict[str, Any], fee_payer: Keypair | None = None
) -> dict[str, Any]:
    """A fresh exact payment (its own memo) of ``wanted`` from ``payer``, over a new blockhash."""
    token = gateway.genesis.token("USDC")
    unsigned = build_exact_transfer(
        payer=payer.pubkey(),
        fee_payer=(fee_payer or gateway.facilitator.fee_payer).pubkey(),
        pay_to=gateway.treasury,
        mint=MintInfo(token.mint, token.program_id, token.decimals),
        amount=int(wanted["amount"]),
        memo=secrets.token_hex(8),
        recent_blockhash=gateway.ledger.latest_blockhash()[0],
    )
    signed: VersionedTransaction = sign_transaction(unsigned, load_signer(payer))
    encoded = base64.b64encode(bytes(signed)).decode()
    return {"x402Version": 2, "accepted": wanted, "payload": {"transaction": encoded}}


def counting(monkeypatch: pytest.MonkeyPatch, gateway: Gateway) -> dict[str, int]:
    """Count the runs of LiteSVM's runtime (simulate, send) on ``gateway``'s ledger."""
    calls = {"simulate_transaction": 0, "send_transaction": 0}
    svm = gateway.ledger._svm
    for name in calls:
        real = getattr(svm, name)

        def counted(*args: Any, _name: str = name, _real: Any = real) -> Any:
            calls[_name] += 1
            return _real(*args)

        monkeypatch.setattr(svm, name, counted)
    return calls


def usdc(gateway: Gateway, owner: Keypair) -> Decimal:
    return gateway.balance(owner.pubkey(), "USDC")


def test_a_paid_x402_request_runs_the_runtime_once(
    served: GatewayServer, gateway: Gateway, payer: Keypair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The paywall verifies every rule, then one simulation is committed: no second
    verification, no second run of the runtime to execute."""
    wanted = offer(served)
    runs = counting(monkeypatch, gateway)
    header = b64json(payment(gateway, payer, wanted))

    answer = requests.get(served.url + ROUTE, headers={"PAYMENT-SIGNATURE": header}, timeout=10)

    assert answer.status_code == 200, answer.text
    assert runs == {"simulate_transaction": 1, "send_transaction": 0}
    assert gateway.ledger.status(_signature(answer)) is not None
    assert usdc(gateway, payer) == Decimal("9.99")


def test_a_refused_x402_payment_is_simulated_once_and_commits_nothing(
    served: GatewayServer, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A payer without the funds: one simulation says no, nothing executes, nothing moves."""
    poor = Keypair()
    gateway.fund(poor.pubkey(), {"SOL": Decimal(1), "USDC": Decimal("0.001")})
    wanted = offer(served)
    runs = counting(monkeypatch, gateway)
    header = b64json(payment(gateway, poor, wanted))

    answer = requests.get(served.url + ROUTE, headers={"PAYMENT-SIGNATURE": header}, timeout=10)

    assert answer.status_code == 402
    required = unb64json(answer.headers["PAYMENT-REQUIRED"], "x")
    assert required["error"] == "transaction_simulation_failed"
    assert runs == {"simulate_transaction": 1, "send_transaction": 0}
    assert usdc(gateway, poor) == Decimal("0.001")


def test_the_settled_cache_drops_expired_entries_as_traffic_passes(
    gateway: Gateway, payer: Keypair, clock: FakeClock
) -> None:
    """Settling at one a minute, the duplicate check never holds more than two minutes' worth."""
    wanted = _requirements(gateway)
    sizes = []
    for _ in range(8):
        settled = gateway.facilitator.settle(payment(gateway, payer, wanted), wanted)
        assert settled["success"] is True, settled
        sizes.append(gateway.facilitator.remembered)
        clock.now += 60.0
    assert sizes == [1, 2, 2, 2, 2, 2, 2, 2]


def test_the_settled_cache_keeps_what_is_young_when_the_old_expire(
    gateway: Gateway, payer: Keypair, clock: FakeClock
) -> None:
    """Expiry drops exactly the entries older than the window; younger ones still refuse."""
    wanted = _requirements(gateway)
    old = payment(gateway, payer, wanted)
    assert gateway.facilitator.settle(old, wanted)["success"] is True
    clock.now += SETTLEMENT_TTL / 2
    young = payment(gateway, payer, wanted)
    assert gateway.facilitator.settle(young, wanted)["success"] is True
    clock.now += SETTLEMENT_TTL / 2

    assert not gateway.facilitator.already_settled(old)
    assert gateway.facilitator.already_settled(young)
    assert gateway.facilitator.remembered == 1
    again = gateway.facilitator.settle(young, wanted)
    assert again["errorReason"] == "duplicate_settlement"


def test_a_payment_replayed_after_every_cache_forgot_it_is_still_refused(
    served: GatewayServer, gateway: Gateway, payer: Keypair, clock: FakeClock
) -> None:
    """Past the replay and settlement windows the ledger still knows the transaction: the
    same payment is refused and moves nothing."""
    wanted = offer(served)
    header = {"PAYMENT-SIGNATURE": b64json(payment(gateway, payer, wanted))}
    first = requests.get(served.url + ROUTE, headers=header, timeout=10)
    assert first.status_code == 200, first.text
    paid = usdc(gateway, payer)

    clock.now += max(REPLAY_WINDOW, SETTLEMENT_TTL) + 1
    assert gateway.facilitator.remembered == 1  # nothing checked yet: nothing dropped yet
    again = requests.get(served.url + ROUTE, headers=header, timeout=10)

    assert again.status_code == 402
    assert gateway.facilitator.remembered == 0
    required = unb64json(again.headers["PAYMENT-REQUIRED"], "x")
    assert required["error"] == "transaction_simulation_failed"
    assert usdc(gateway, payer) == paid


def test_the_fee_payer_key_is_derived_once(
    served: GatewayServer, gateway: Gateway, payer: Keypair
) -> None:
    """Serving challenges and payments never derives the fee payer's public key again."""
    wanted = offer(served)
    real = gateway.facilitator.fee_payer
    gateway.facilitator.fee_payer = _NoPubkey(real)  # type: ignore[assignment]
    header = b64json(payment(gateway, payer, wanted, real))
    answer = requests.get(served.url + ROUTE, headers={"PAYMENT-SIGNATURE": header}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert offer(served) == wanted


class _NoPubkey:
    """A fee payer that signs but refuses to derive its public key."""

    def __init__(self, keypair: Keypair) -> None:
        self._keypair = keypair

    def pubkey(self) -> Any:
        raise AssertionError("the fee payer's public key was derived again")

    def sign_message(self, message: bytes) -> Any:
        return self._keypair.sign_message(message)


def _requirements(gateway: Gateway) -> dict[str, Any]:
    token = gateway.genesis.token("USDC")
    return {
        "scheme": "exact",
        "network": gateway.facilitator.caip2,
        "asset": str(token.mint),
        "payTo": str(gateway.treasury),
        "maxTimeoutSeconds": 300,
        "extra": {"feePayer": gateway.facilitator.fee_payer_address},
        "amount": "10000",
    }


def _signature(answer: requests.Response) -> Signature:
    settlement = unb64json(answer.headers["PAYMENT-RESPONSE"], "x")
    return Signature.from_string(settlement["transaction"])
