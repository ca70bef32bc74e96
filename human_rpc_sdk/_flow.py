"""The 402 payment flow as a sans-I/O generator.

:func:`pay` decides everything about paying one 402 answer: parse and validate the invoice,
read the chain facts it needs, check the wallet can afford it, build and sign the transfer,
encode the ``X-PAYMENT`` header and judge the server's answer. It performs no I/O. Instead it
*yields effects* and is resumed with their results:

* :class:`RpcCall` - run these JSON-RPC requests (one batch); resume with the parsed results.
* :class:`Resend` - send the original HTTP request again with these extra headers; resume with
  the answer as an :class:`HttpReply`.

A driver (``AutoAgent`` over ``requests``; later an async one) runs the generator. Time and
randomness arrive through :class:`PaymentContext`, so tests drive the flow by hand.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Generator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from solders.transaction import VersionedTransaction

from ._effects import ChainCache, Effect, HttpReply, PaymentContext, Resend, RpcCall
from ._headers import (
    PAYMENT_HEADER,
    PAYMENT_RESPONSE_HEADER,
    decode_payment_response,
    encode_payment_header,
)
from ._money import format_amount
from ._quote import Quote, quote
from ._receipts import PaymentReceipt
from .exceptions import PaymentError
from .invoices import Invoice
from .solana_utils import build_transfer, sign_transaction

__all__ = [
    "ChainCache",
    "HttpReply",
    "PaymentContext",
    "PaymentOutcome",
    "Resend",
    "RpcCall",
    "judge",
    "pay",
]

logger = logging.getLogger("human_rpc_sdk")


@dataclass(frozen=True)
class PaymentOutcome:
    """How paying one 402 ended: the receipt, the server's answer, and the error to raise."""

    receipt: PaymentReceipt
    reply: HttpReply
    error: PaymentError | None = None


def pay(reply: HttpReply, ctx: PaymentContext) -> Generator[Effect, Any, PaymentOutcome]:
    """Pay the invoice in the 402 answer ``reply`` and judge the server's answer."""
    invoice = Invoice.from_body(reply.body, url=reply.url)
    invoice.validate(network=ctx.network)
    quote_ = yield from quote(invoice, ctx)
    transaction = sign_transaction(build_transfer(quote_.plan, quote_.blockhash), ctx.signer)
    receipt = _receipt(invoice, quote_, transaction, reply.url, ctx)
    logger.info(
        "paying %s %s to %s for %s (signature %s)",
        format_amount(receipt.amount),
        receipt.currency,
        receipt.recipient,
        reply.url,
        receipt.signature,
    )
    header = encode_payment_header(transaction, ctx.network)
    answer: HttpReply = yield Resend({PAYMENT_HEADER: header}, receipt)
    return judge(answer, replace(receipt, http_status=answer.status), invoice)


def judge(answer: HttpReply, receipt: PaymentReceipt, invoice: Invoice) -> PaymentOutcome:
    """Decide whether the server accepted the payment carried by ``receipt``."""
    settlement = decode_payment_response(answer.headers.get(PAYMENT_RESPONSE_HEADER))
    if settlement and settlement.get("transaction") not in (None, "", receipt.signature):
        logger.warning(
            "server at %s reports settling transaction %s, not the one sent (%s)",
            answer.url,
            settlement.get("transaction"),
            receipt.signature,
        )
    if answer.status != 402:
        logger.info("payment %s accepted: HTTP %s", receipt.signature, answer.status)
        return PaymentOutcome(receipt, answer)
    why = _refusal_reason(answer.body, settlement)
    error = PaymentError(
        f"the server at {answer.url} still answered 402 Payment Required after receiving "
        f"payment {receipt.signature} ({why}). The SDK does not pay twice: look the signature "
        "up on chain before retrying, and contact the service if the money moved",
        invoice=invoice.to_dict(),
        signature=receipt.signature,
        reason="payment_refused",
        details={"server_reason": why},
    )
    return PaymentOutcome(receipt, answer, error)


def _refusal_reason(body: bytes, settlement: Mapping[str, Any] | None) -> str:
    if settlement and isinstance(settlement.get("errorReason"), str):
        return str(settlement["errorReason"])[:200]
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "no reason given"
    if isinstance(document, dict):
        for key in ("reason", "error", "details"):
            value = document.get(key)
            if isinstance(value, dict):
                value = value.get("reason") or value.get("message")
            if isinstance(value, str) and value:
                return value[:200]
    return "no reason given"


def _receipt(
    invoice: Invoice,
    quote: Quote,
    transaction: VersionedTransaction,
    url: str,
    ctx: PaymentContext,
) -> PaymentReceipt:
    plan = quote.plan
    return PaymentReceipt(
        url=url,
        amount=quote.display_amount,
        currency=invoice.currency,
        mint=invoice.mint,
        recipient=invoice.recipient,
        reference=invoice.reference,
        network=invoice.network,
        signature=str(transaction.signatures[0]),
        time=ctx.now(),
        atomic_amount=plan.amount,
        payer=str(plan.payer),
        destination=str(plan.destination),
        fee_lamports=quote.fee_lamports,
        rent_lamports=quote.rent_lamports,
        format=invoice.format,
    )
