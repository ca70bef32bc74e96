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

from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from ._effects import ChainCache, Effect, HttpReply, PaymentContext, Resend, RpcCall
from ._exact import quote_exact
from ._headers import PAYMENT_HEADER, encode_payment_header
from ._money import format_amount
from ._quote import Quote, quote
from ._receipts import PaymentReceipt
from ._x402 import (
    COMPUTE_UNIT_LIMIT,
    COMPUTE_UNIT_PRICE,
    PaymentRequired,
    encode_payment,
    read_payment_required,
    read_settlement,
)
from .exceptions import HumanRPCError, PaymentError
from .invoices import Invoice
from .solana_utils import build_exact_transfer, build_transfer, sign_transaction

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
    """Pay the 402 answer ``reply`` (x402 v2, x402 v1, HumanRPC) and judge the server's answer."""
    challenge = read_payment_required(reply.headers, reply.body)
    if challenge is not None:
        return (yield from _pay_exact(challenge, reply, ctx))
    invoice = Invoice.from_body(reply.body, url=reply.url)
    invoice.validate(network=ctx.network)
    quote_ = yield from quote(invoice, ctx)
    transaction = sign_transaction(build_transfer(quote_.plan, quote_.blockhash), ctx.signer)
    receipt = _receipt(invoice, quote_, transaction, reply.url, ctx)
    _log_paying(receipt, reply.url)
    header = encode_payment_header(transaction, ctx.network)
    answer: HttpReply = yield Resend({PAYMENT_HEADER: header}, receipt)
    return judge(answer, receipt, invoice.to_dict())


def _pay_exact(
    challenge: PaymentRequired, reply: HttpReply, ctx: PaymentContext
) -> Generator[Effect, Any, PaymentOutcome]:
    exact = yield from quote_exact(challenge, ctx)
    offer = exact.offer
    payer = ctx.signer.pubkey()
    unsigned = build_exact_transfer(
        payer=payer,
        fee_payer=Pubkey.from_string(offer.fee_payer),
        pay_to=Pubkey.from_string(offer.pay_to),
        mint=exact.mint,
        amount=offer.amount,
        memo=offer.memo or ctx.nonce(),
        recent_blockhash=exact.blockhash,
        compute_unit_limit=COMPUTE_UNIT_LIMIT,
        compute_unit_price=COMPUTE_UNIT_PRICE,
    )
    transaction = sign_transaction(unsigned, ctx.signer)
    name, value = encode_payment(offer, transaction, challenge.resource)
    receipt = PaymentReceipt(
        url=reply.url,
        amount=exact.display_amount,
        currency=exact.symbol,
        mint=offer.asset,
        recipient=offer.pay_to,
        reference=None,
        network=ctx.network,
        signature="",
        time=ctx.now(),
        atomic_amount=offer.amount,
        payer=str(payer),
        destination=str(exact.destination),
        fee_lamports=0,
        format=f"x402-v{offer.version}",
    )
    _log_paying(receipt, reply.url)
    answer: HttpReply = yield Resend({name: value}, receipt)
    return judge(answer, receipt, dict(offer.raw))


def _log_paying(receipt: PaymentReceipt, url: str) -> None:
    logger.info(
        "paying %s %s to %s for %s (%s%s)",
        format_amount(receipt.amount),
        receipt.currency,
        receipt.recipient,
        url,
        receipt.format,
        f", signature {receipt.signature}" if receipt.signature else "",
    )


def judge(answer: HttpReply, receipt: PaymentReceipt, invoice: Mapping[str, Any]) -> PaymentOutcome:
    """Decide whether the server accepted the payment carried by ``receipt``."""
    settlement = read_settlement(answer.headers)
    receipt = _settled(replace(receipt, http_status=answer.status), settlement, answer.url)
    shown = receipt.signature or "(unsettled)"
    if answer.status != 402:
        logger.info("payment %s accepted: HTTP %s", shown, answer.status)
        return PaymentOutcome(receipt, answer)
    why = _refusal_reason(answer, settlement)
    error = PaymentError(
        f"the server at {answer.url} still answered 402 Payment Required after receiving "
        f"payment {shown} ({why}). The SDK does not pay twice: look the payment up on chain "
        "before retrying, and contact the service if the money moved",
        invoice=invoice,
        signature=receipt.signature or None,
        reason="payment_refused",
        details={"server_reason": why},
    )
    return PaymentOutcome(receipt, answer, error)


def _settled(
    receipt: PaymentReceipt, settlement: Mapping[str, Any] | None, url: str
) -> PaymentReceipt:
    """The receipt completed by the server's settlement response, when it sent one."""
    if settlement is None:
        return receipt
    transaction = settlement.get("transaction")
    signature = receipt.signature
    if isinstance(transaction, str) and transaction:
        if signature and transaction != signature:
            logger.warning(
                "server at %s reports settling transaction %s, not the one sent (%s)",
                url,
                transaction,
                signature,
            )
        signature = signature or transaction
    success = settlement.get("success")
    reason = settlement.get("errorReason")
    return replace(
        receipt,
        signature=signature,
        settled=success if isinstance(success, bool) else None,
        error_reason=reason[:200] if isinstance(reason, str) else None,
    )


def _refusal_reason(answer: HttpReply, settlement: Mapping[str, Any] | None) -> str:
    if settlement and isinstance(settlement.get("errorReason"), str):
        return str(settlement["errorReason"])[:200]
    try:
        fresh = read_payment_required(answer.headers, b"")
    except HumanRPCError:
        fresh = None
    if fresh is not None and fresh.error:
        return fresh.error[:200]
    try:
        document = json.loads(answer.body)
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
