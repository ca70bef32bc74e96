"""The gateway's facilitator and payment desk read payments as strictly as the x402 v2 spec and
the official TypeScript facilitator: the exact amount, and the transaction's exact bytes."""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

import pytest
import requests

from human_rpc_sdk._headers import b64json
from stub_gateway import Gateway, GatewayServer

from .test_gateway_desk import fetch_invoice, plan_for, signed
from .test_x402 import (
    DEVNET,
    challenge,
    context,
    drive,
    error_of,
    offer,
    present,
    tampered,
    transaction_of,
    wallet_on,
)

AMOUNT_MISMATCH = "invalid_exact_svm_payload_amount_mismatch"
UNDECODABLE = "invalid_exact_svm_payload_transaction_could_not_be_decoded"


def usdc(gateway: Gateway, *owners: Any) -> list[Decimal]:
    return [gateway.balance(owner, "USDC") for owner in owners]


def with_trailing_bytes(document: dict[str, Any], junk: bytes = b"\x00") -> dict[str, Any]:
    """``document`` whose transaction has ``junk`` after its end (it still parses in solders)."""
    raw = base64.b64decode(document["payload"]["transaction"]) + junk
    changed = {**document, "payload": {**document["payload"]}}
    changed["payload"]["transaction"] = base64.b64encode(raw).decode("ascii")
    return changed


def facilitator(server: GatewayServer, action: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = requests.post(f"{server.url}/facilitator/{action}", json=body, timeout=10)
    assert reply.status_code == 200, reply.text
    answer: dict[str, Any] = reply.json()
    return answer


# -- the exact amount ------------------------------------------------------------------------


def test_an_overpayment_is_refused_on_the_paywall(server: GatewayServer, gateway: Gateway) -> None:
    """One base unit more than the offer: refused with the TypeScript facilitator's reason
    (the v2 spec: the amount MUST equal); nothing moves."""
    header = tampered(server, gateway, offer(gateway, amount="10001"))
    before = usdc(gateway, gateway.treasury)
    response = present(server, 2, header)
    assert response.status_code == 402
    assert error_of(response) == AMOUNT_MISMATCH
    assert usdc(gateway, gateway.treasury) == before


def test_an_overpayment_is_refused_by_verify_and_settle(
    server: GatewayServer, gateway: Gateway
) -> None:
    """/facilitator/verify and /settle refuse an overpayment, naming the payer; the exact
    amount (control) settles."""
    wallet = wallet_on(gateway)
    dear = offer(gateway, amount="10001")
    document, _ = transaction_of(drive(server, challenge(2, [dear]), context(wallet)))
    required = offer(gateway)
    document["accepted"] = required
    body = {"x402Version": 2, "paymentPayload": document, "paymentRequirements": required}
    before = usdc(gateway, wallet.pubkey(), gateway.treasury)
    verified = facilitator(server, "verify", body)
    assert (verified["isValid"], verified["invalidReason"], verified["payer"]) == (
        False,
        AMOUNT_MISMATCH,
        str(wallet.pubkey()),
    )
    settled = facilitator(server, "settle", body)
    assert (settled["success"], settled["errorReason"]) == (False, AMOUNT_MISMATCH)
    assert usdc(gateway, wallet.pubkey(), gateway.treasury) == before
    exact, _ = transaction_of(drive(server, challenge(2, [required]), context(wallet)))
    body["paymentPayload"] = exact
    assert facilitator(server, "settle", body)["success"] is True
    assert usdc(gateway, wallet.pubkey(), gateway.treasury) == [
        before[0] - Decimal("0.01"),
        before[1] + Decimal("0.01"),
    ]


# -- bytes after the transaction -------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("junk", [b"\x00", b"more bytes"])
def test_a_payment_with_trailing_bytes_is_refused_on_the_paywall(
    server: GatewayServer, gateway: Gateway, version: int, junk: bytes
) -> None:
    """X-PAYMENT (v1) and PAYMENT-SIGNATURE (v2) whose transaction has bytes after its end:
    not a transaction; nothing moves; the payment as signed (control) is then accepted."""
    wallet = wallet_on(gateway)
    resend = drive(server, challenge(version, [offer(gateway, version=version)]), context(wallet))
    document, _ = transaction_of(resend)
    before = usdc(gateway, wallet.pubkey(), gateway.treasury)
    response = present(server, version, b64json(with_trailing_bytes(document, junk)))
    assert response.status_code == 402
    assert error_of(response) == UNDECODABLE
    assert usdc(gateway, wallet.pubkey(), gateway.treasury) == before
    assert present(server, version, b64json(document)).status_code == 200
    assert usdc(gateway, wallet.pubkey(), gateway.treasury) == [
        before[0] - Decimal("0.01"),
        before[1] + Decimal("0.01"),
    ]


def test_a_payment_with_trailing_bytes_is_refused_by_verify_and_settle(
    server: GatewayServer, gateway: Gateway
) -> None:
    """/facilitator/verify and /settle: the padded transaction is undecodable."""
    wallet = wallet_on(gateway)
    document, _ = transaction_of(drive(server, challenge(2, [offer(gateway)]), context(wallet)))
    body = {
        "x402Version": 2,
        "paymentPayload": with_trailing_bytes(document),
        "paymentRequirements": offer(gateway),
    }
    before = usdc(gateway, wallet.pubkey(), gateway.treasury)
    assert facilitator(server, "verify", body) == {"isValid": False, "invalidReason": UNDECODABLE}
    settled = facilitator(server, "settle", body)
    assert (settled["success"], settled["errorReason"], settled["network"]) == (
        False,
        UNDECODABLE,
        DEVNET,
    )
    assert usdc(gateway, wallet.pubkey(), gateway.treasury) == before


@pytest.mark.parametrize("junk", [b"\x00", b"more bytes"])
def test_a_humanrpc_payment_with_trailing_bytes_is_refused_by_the_desk(
    server: GatewayServer, gateway: Gateway, junk: bytes
) -> None:
    """The HumanRPC desk's X-PAYMENT: the padded transaction is an invalid header; nothing
    moves, the invoice stays open, and the payment as signed (control) then settles it."""
    wallet = wallet_on(gateway)
    path = "/api/v1/premium/usdc"
    invoice = fetch_invoice(server, path)
    transaction = signed(server, plan_for(gateway, wallet, invoice), wallet)
    document: dict[str, Any] = {
        "x402Version": 1,
        "scheme": "solana",
        "network": "devnet",
        "payload": {
            "serializedTransaction": base64.b64encode(bytes(transaction) + junk).decode("ascii")
        },
    }
    before = usdc(gateway, wallet.pubkey(), gateway.treasury)
    reply = requests.get(
        f"{server.url}{path}", headers={"X-PAYMENT": b64json(document)}, timeout=10
    )
    assert reply.status_code == 402, reply.text
    assert reply.json()["reason"] == "invalid_payment_header"
    assert usdc(gateway, wallet.pubkey(), gateway.treasury) == before
    document["payload"]["serializedTransaction"] = base64.b64encode(bytes(transaction)).decode()
    paid = requests.get(f"{server.url}{path}", headers={"X-PAYMENT": b64json(document)}, timeout=10)
    assert paid.status_code == 200, paid.text
    assert usdc(gateway, wallet.pubkey(), gateway.treasury) == [
        before[0] - Decimal(str(invoice["amount"])),
        before[1] + Decimal(str(invoice["amount"])),
    ]
