"""The stub gateway settles only payments that pay the invoice exactly; all else is refused.

Each test fetches a fresh invoice, crafts a payment that deviates in one way, presents it, and
checks the refusal reason and that no balance changed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
import requests
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from human_rpc_sdk._headers import encode_payment_header
from human_rpc_sdk._io.rpc import RpcClient
from human_rpc_sdk.solana_utils import (
    MintInfo,
    TransferPlan,
    associated_token_address,
    build_transfer,
    sign_transaction,
    transfer_instructions,
)
from human_rpc_sdk.wallet import load_signer
from stub_gateway import Gateway, GatewayServer, serve_in_thread

from .conftest import FakeClock, Funder

Mutate = Callable[[TransferPlan], TransferPlan]


def fetch_invoice(server: GatewayServer, path: str) -> dict[str, Any]:
    reply = requests.get(f"{server.url}{path}", timeout=10)
    assert reply.status_code == 402
    invoice: dict[str, Any] = reply.json()["invoice"]
    return invoice


def plan_for(gateway: Gateway, payer: Keypair, invoice: dict[str, Any]) -> TransferPlan:
    recipient = Pubkey.from_string(invoice["recipient"])
    reference = Pubkey.from_string(invoice["reference"])
    if invoice["currency"] == "SOL":
        lamports = int(Decimal(str(invoice["amount"])) * 10**9)
        return TransferPlan(payer.pubkey(), recipient, lamports, recipient, reference=reference)
    token = gateway.genesis.token(invoice["currency"])
    units = int(Decimal(str(invoice["amount"])) * 10**token.decimals)
    return TransferPlan(
        payer=payer.pubkey(),
        recipient=recipient,
        amount=units,
        destination=associated_token_address(recipient, token.mint, token.program_id),
        mint=MintInfo(token.mint, token.program_id, token.decimals),
        source=associated_token_address(payer.pubkey(), token.mint, token.program_id),
        reference=reference,
    )


def present(
    server: GatewayServer, path: str, transaction: VersionedTransaction, network: str = "devnet"
) -> requests.Response:
    header = encode_payment_header(transaction, network)
    return requests.get(f"{server.url}{path}", headers={"X-PAYMENT": header}, timeout=10)


def signed(server: GatewayServer, plan: TransferPlan, payer: Keypair) -> VersionedTransaction:
    blockhash = RpcClient(server.rpc_url).latest_blockhash()
    return sign_transaction(build_transfer(plan, blockhash), load_signer(payer))


def snapshot(gateway: Gateway, *owners: Pubkey) -> list[Decimal]:
    return [gateway.balance(o, c) for o in owners for c in ("SOL", "USDC", "PYUSD")]


@pytest.fixture
def payer(funded_wallet: Funder) -> Keypair:
    return funded_wallet(sol="5", usdc="5", pyusd="5")


def refused(
    server: GatewayServer,
    gateway: Gateway,
    payer: Keypair,
    path: str,
    tx: VersionedTransaction,
    reason: str,
    **kw: Any,
) -> None:
    before = snapshot(gateway, payer.pubkey(), gateway.treasury)
    reply = present(server, path, tx, **kw)
    assert reply.status_code == 402, reply.text
    assert reply.json()["reason"] == reason, reply.json()
    assert snapshot(gateway, payer.pubkey(), gateway.treasury) == before


def test_the_exact_payment_is_settled(
    server: GatewayServer, gateway: Gateway, payer: Keypair
) -> None:
    """Control: the unmodified payment is accepted (so each refusal below is due to its change)."""
    invoice = fetch_invoice(server, "/api/v1/premium/usdc")
    reply = present(
        server, "/api/v1/premium/usdc", signed(server, plan_for(gateway, payer, invoice), payer)
    )
    assert reply.status_code == 200


@pytest.mark.parametrize(
    ("path", "mutate", "reason"),
    [
        ("/api/v1/premium/sol", lambda p: replace(p, amount=p.amount - 1), "wrong_amount"),
        ("/api/v1/premium/sol", lambda p: replace(p, amount=p.amount + 1), "wrong_amount"),
        ("/api/v1/premium/usdc", lambda p: replace(p, amount=p.amount - 1), "wrong_amount"),
        (
            "/api/v1/premium/sol",
            lambda p: replace(p, destination=Keypair().pubkey()),
            "wrong_recipient",
        ),
        (
            "/api/v1/premium/usdc",
            lambda p: replace(p, destination=Keypair().pubkey()),
            "wrong_recipient",
        ),
        ("/api/v1/premium/usdc", lambda p: replace(p, checked=False), "not_transfer_checked"),
        (
            "/api/v1/premium/usdc",
            lambda p: replace(p, mint=replace(p.mint, decimals=2)),
            "wrong_decimals",
        ),
        ("/api/v1/premium/sol", lambda p: replace(p, reference=None), "unknown_invoice"),
        (
            "/api/v1/premium/sol",
            lambda p: replace(p, reference=Keypair().pubkey()),
            "unknown_invoice",
        ),
        (
            "/api/v1/premium/sol",
            lambda p: replace(p, reference=None, memo="not-a-reference"),
            "unknown_invoice",
        ),
    ],
    ids=[
        "sol-under",
        "sol-over",
        "usdc-under",
        "sol-elsewhere",
        "usdc-elsewhere",
        "plain-transfer",
        "decimals",
        "no-ref",
        "unknown-ref",
        "memo-not-ref",
    ],
)
def test_deviating_payments_are_refused(
    server: GatewayServer, gateway: Gateway, payer: Keypair, path: str, mutate: Mutate, reason: str
) -> None:
    """One deviation from the invoice: refused with its reason, nothing moves."""
    invoice = fetch_invoice(server, path)
    tx = signed(server, mutate(plan_for(gateway, payer, invoice)), payer)
    refused(server, gateway, payer, path, tx, reason)


def test_payment_in_another_token_is_refused(
    server: GatewayServer, gateway: Gateway, payer: Keypair
) -> None:
    """PYUSD presented for a USDC invoice: wrong mint."""
    invoice = fetch_invoice(server, "/api/v1/premium/usdc")
    pyusd = gateway.genesis.token("PYUSD")
    plan = plan_for(gateway, payer, invoice)
    plan = replace(
        plan,
        mint=MintInfo(pyusd.mint, pyusd.program_id, 6),
        source=associated_token_address(payer.pubkey(), pyusd.mint, pyusd.program_id),
        destination=associated_token_address(gateway.treasury, pyusd.mint, pyusd.program_id),
    )
    refused(
        server, gateway, payer, "/api/v1/premium/usdc", signed(server, plan, payer), "wrong_mint"
    )


def test_writable_reference_is_refused(
    server: GatewayServer, gateway: Gateway, payer: Keypair
) -> None:
    """The reference must be read-only: a writable one does not bind the payment."""
    invoice = fetch_invoice(server, "/api/v1/premium/sol")
    plan = plan_for(gateway, payer, invoice)
    ixs = transfer_instructions(plan)
    last = ixs[-1]
    ixs[-1] = Instruction(
        last.program_id,
        last.data,
        [*last.accounts[:-1], AccountMeta(last.accounts[-1].pubkey, False, True)],
    )
    tx = compile_and_sign(server, payer, ixs)
    refused(server, gateway, payer, "/api/v1/premium/sol", tx, "reference_not_bound")


def compile_and_sign(
    server: GatewayServer, payer: Keypair, ixs: list[Instruction]
) -> VersionedTransaction:
    blockhash = RpcClient(server.rpc_url).latest_blockhash()
    return VersionedTransaction(MessageV0.try_compile(payer.pubkey(), ixs, [], blockhash), [payer])


def test_extra_transfer_is_refused(server: GatewayServer, gateway: Gateway, payer: Keypair) -> None:
    """A second transfer riding along (to anyone) is refused."""
    invoice = fetch_invoice(server, "/api/v1/premium/sol")
    plan = plan_for(gateway, payer, invoice)
    extra = transfer_instructions(replace(plan, destination=Keypair().pubkey(), reference=None))
    tx = compile_and_sign(server, payer, [*extra, *transfer_instructions(plan)])
    refused(server, gateway, payer, "/api/v1/premium/sol", tx, "no_single_transfer")


def test_unknown_program_is_refused(
    server: GatewayServer, gateway: Gateway, payer: Keypair
) -> None:
    """An instruction of a program a payment does not need is refused."""
    invoice = fetch_invoice(server, "/api/v1/premium/sol")
    stray = Instruction(Keypair().pubkey(), b"\x00", [])
    tx = compile_and_sign(
        server, payer, [stray, *transfer_instructions(plan_for(gateway, payer, invoice))]
    )
    refused(server, gateway, payer, "/api/v1/premium/sol", tx, "unexpected_instruction")


def test_creating_someone_elses_account_is_refused(
    server: GatewayServer, gateway: Gateway, payer: Keypair
) -> None:
    """The only account a payment may create is the payee's token account."""
    invoice = fetch_invoice(server, "/api/v1/premium/usdc")
    plan = plan_for(gateway, payer, invoice)
    from spl.token.instructions import create_idempotent_associated_token_account

    assert plan.mint is not None
    other = create_idempotent_associated_token_account(
        payer.pubkey(), Keypair().pubkey(), plan.mint.address, plan.mint.program_id
    )
    tx = compile_and_sign(server, payer, [other, *transfer_instructions(plan)])
    refused(server, gateway, payer, "/api/v1/premium/usdc", tx, "unexpected_instruction")


def test_unsigned_payment_is_refused(
    server: GatewayServer, gateway: Gateway, payer: Keypair
) -> None:
    """A transaction without its fee payer's signature is refused."""
    invoice = fetch_invoice(server, "/api/v1/premium/sol")
    blockhash = RpcClient(server.rpc_url).latest_blockhash()
    unsigned = build_transfer(plan_for(gateway, payer, invoice), blockhash)
    refused(server, gateway, payer, "/api/v1/premium/sol", unsigned, "invalid_signature")


def test_tampered_payment_is_refused(
    server: GatewayServer, gateway: Gateway, payer: Keypair
) -> None:
    """A signature from another key in the payer's slot is refused."""
    invoice = fetch_invoice(server, "/api/v1/premium/sol")
    tx = signed(server, plan_for(gateway, payer, invoice), payer)
    forged = VersionedTransaction.populate(tx.message, [Keypair().sign_message(bytes(tx.message))])
    refused(server, gateway, payer, "/api/v1/premium/sol", forged, "invalid_signature")


def test_other_network_is_refused(server: GatewayServer, gateway: Gateway, payer: Keypair) -> None:
    """A header naming another network is refused."""
    invoice = fetch_invoice(server, "/api/v1/premium/sol")
    tx = signed(server, plan_for(gateway, payer, invoice), payer)
    refused(
        server,
        gateway,
        payer,
        "/api/v1/premium/sol",
        tx,
        "network_mismatch",
        network="mainnet-beta",
    )


@pytest.mark.parametrize(
    "header",
    [
        "",
        "!!!",
        base64.b64encode(b"[]").decode(),
        base64.b64encode(
            json.dumps(
                {
                    "x402Version": 1,
                    "scheme": "solana",
                    "network": "devnet",
                    "payload": {"serializedTransaction": "AAAA"},
                }
            ).encode()
        ).decode(),
        "A" * 20_000,
    ],
)
def test_malformed_headers_are_refused(server: GatewayServer, header: str) -> None:
    """Garbage in X-PAYMENT is refused with a reason, never a 500."""
    reply = requests.get(
        f"{server.url}/api/v1/premium/sol", headers={"X-PAYMENT": header}, timeout=10
    )
    assert reply.status_code == 402
    assert reply.json()["reason"] == "invalid_payment_header"


def test_payment_failing_on_chain_is_refused_without_a_fee(
    server: GatewayServer, gateway: Gateway, funded_wallet: Funder
) -> None:
    """A well-formed payment the payer cannot afford fails simulation: refused, no fee charged."""
    poor = funded_wallet(sol="0.01")
    invoice = fetch_invoice(server, "/api/v1/premium/usdc")
    tx = signed(server, plan_for(gateway, poor, invoice), poor)
    refused(server, gateway, poor, "/api/v1/premium/usdc", tx, "transaction_failed")


def test_expired_invoice_is_refused(funded_wallet: Funder) -> None:
    """After its time to live, an invoice cannot be paid."""
    clock = FakeClock()
    with serve_in_thread(clock=clock, invoice_ttl=30) as running:
        gateway = running.gateway
        payer = Keypair()
        gateway.fund(payer.pubkey(), {"SOL": Decimal(1)})
        invoice = fetch_invoice(running, "/api/v1/premium/sol")
        clock.now += 31
        tx = signed(running, plan_for(gateway, payer, invoice), payer)
        refused(running, gateway, payer, "/api/v1/premium/sol", tx, "invoice_expired")


@pytest.mark.parametrize(("age", "reason"), [(59.0, None), (60.5, "blockhash_expired")])
def test_blockhash_is_valid_for_150_slots(
    funded_wallet: Funder, age: float, reason: str | None
) -> None:
    """A blockhash under 150 slots (60 s) old still pays; an older one is refused."""
    clock = FakeClock()
    with serve_in_thread(clock=clock) as running:
        gateway = running.gateway
        payer = Keypair()
        gateway.fund(payer.pubkey(), {"SOL": Decimal(1)})
        old: Hash = RpcClient(running.rpc_url).latest_blockhash()
        clock.now += age
        invoice = fetch_invoice(running, "/api/v1/premium/sol")
        plan = plan_for(gateway, payer, invoice)
        tx = sign_transaction(build_transfer(plan, old), load_signer(payer))
        if reason is None:
            assert present(running, "/api/v1/premium/sol", tx).status_code == 200
        else:
            refused(running, gateway, payer, "/api/v1/premium/sol", tx, reason)


# -- the deployed service's format -------------------------------------------------------------


def legacy_plan(gateway: Gateway, payer: Keypair, currency: str) -> TransferPlan:
    treasury = gateway.treasury
    if currency == "SOL":
        return TransferPlan(
            payer.pubkey(), treasury, 1_000_000, treasury, memo="nonce", legacy=True
        )
    usdc = gateway.genesis.token("USDC")
    return TransferPlan(
        payer=payer.pubkey(),
        recipient=treasury,
        amount=50_000,
        destination=associated_token_address(treasury, usdc.mint, usdc.program_id),
        mint=MintInfo(usdc.mint, usdc.program_id, 6),
        source=associated_token_address(payer.pubkey(), usdc.mint, usdc.program_id),
        memo="nonce",
        legacy=True,
        checked=False,
    )


@pytest.mark.parametrize(
    ("currency", "mutate", "reason"),
    [
        ("SOL", lambda p: replace(p, legacy=False), "not_legacy_transaction"),
        ("SOL", lambda p: replace(p, amount=p.amount + 1_001), "payment_verification_failed"),
        ("SOL", lambda p: replace(p, amount=p.amount - 1), "payment_verification_failed"),
        (
            "SOL",
            lambda p: replace(p, destination=Keypair().pubkey()),
            "payment_verification_failed",
        ),
        ("USDC", lambda p: replace(p, checked=True), "payment_verification_failed"),
        ("USDC", lambda p: replace(p, amount=p.amount - 1), "payment_verification_failed"),
    ],
    ids=[
        "v0",
        "sol-over-tolerance",
        "sol-under",
        "sol-elsewhere",
        "transfer-checked",
        "usdc-under",
    ],
)
def test_legacy_format_is_verified_like_the_deployed_service(
    server: GatewayServer,
    gateway: Gateway,
    payer: Keypair,
    currency: str,
    mutate: Mutate,
    reason: str,
) -> None:
    """The deployed service finds only a System transfer / plain SPL Transfer to its treasury."""
    path = f"/api/v1/premium/{currency.lower()}?format=legacy"
    tx = signed(server, mutate(legacy_plan(gateway, payer, currency)), payer)
    refused(server, gateway, payer, path, tx, reason)


def test_legacy_overpayment_within_tolerance_is_accepted(
    server: GatewayServer, gateway: Gateway, payer: Keypair
) -> None:
    """The deployed service tolerates up to 1000 extra lamports; so does the stub."""
    plan = replace(legacy_plan(gateway, payer, "SOL"), amount=1_000_000 + 1_000)
    reply = present(server, "/api/v1/premium/sol?format=legacy", signed(server, plan, payer))
    assert reply.status_code == 200


def test_legacy_replay_is_refused(server: GatewayServer, gateway: Gateway, payer: Keypair) -> None:
    """A legacy payment settles once; presented on another request it is refused by the
    ledger (the very same request gets its cached answer, nothing executes)."""
    tx = signed(server, legacy_plan(gateway, payer, "SOL"), payer)
    assert present(server, "/api/v1/premium/sol?format=legacy", tx).status_code == 200
    balances = snapshot(gateway, payer.pubkey(), gateway.treasury)
    assert present(server, "/api/v1/premium/sol?format=legacy", tx).status_code == 200
    assert snapshot(gateway, payer.pubkey(), gateway.treasury) == balances
    refused(
        server,
        gateway,
        payer,
        "/api/v1/premium/sol?format=legacy&again=1",
        tx,
        "duplicate_transaction",
    )
