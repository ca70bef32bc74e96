"""Delivering a journaled payment and judging the answer (pure; part of the payment flow).

A paid request that gets no definite answer (a timeout, a reset connection, a 5xx) is sent
again with *the same* signed payment, a few times with growing pauses: the payment's
transaction can land at most once, so re-sending it never pays twice. A 402 after payment is
a refusal; the chain is then asked whether the payment landed anyway. If it provably never
landed and never can (its blockhash expired), the invoice is paid once more with a fresh
blockhash, journaled as the replacement of the first payment.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol

from ._effects import Effect, HttpReply, NoAnswer, Pause, PaymentContext, Record, Resend
from ._landing import landing
from ._receipts import PaymentReceipt
from ._records import JournalEntry
from ._x402 import read_payment_required, read_settlement
from .exceptions import HumanRPCError, PaymentError, SolanaRPCError

__all__ = ["REDELIVERY_PAUSES", "PaymentOutcome", "deliver", "judge"]

logger = logging.getLogger("human_rpc_sdk")

REDELIVERY_PAUSES: Final = (0.25, 0.5, 1.0)
"""Seconds to wait before each re-send of a payment that got no definite answer."""
_OPEN: Final = ("signed", "submitted", "refused")


@dataclass(frozen=True)
class PaymentOutcome:
    """How paying one 402 ended: the receipt, the server's answer, and the error to raise."""

    receipt: PaymentReceipt
    reply: HttpReply
    error: PaymentError | None = None


class _Payable(Protocol):
    @property
    def invoice(self) -> Mapping[str, Any]: ...


PayNew = Callable[..., Generator[Effect, Any, PaymentOutcome]]


def deliver(
    entry: JournalEntry,
    payable: Any,
    ctx: PaymentContext,
    *,
    may_replace: bool,
    pay_new: PayNew,
) -> Generator[Effect, Any, PaymentOutcome]:
    """Send ``entry``'s payment until a definite answer comes, then judge and journal it."""
    answer: HttpReply | None = None
    problem = ""
    for pause in (0.0, *REDELIVERY_PAUSES):
        if pause:
            logger.warning(
                "payment #%s got no definite answer (%s); sending the same payment again in %.2g s",
                entry.id,
                problem,
                pause,
            )
            yield Pause(pause)
        result = yield Resend(entry.headers, entry.receipt)
        if isinstance(result, NoAnswer):
            answer, problem = None, result.problem
        elif result.status >= 500:
            answer, problem = result, f"HTTP {result.status}"
        else:
            answer = result
            break
    else:
        raise (yield from _unanswered(entry, payable, problem, answer))
    outcome = judge(answer, entry.receipt, payable.invoice, entry.id)
    fields = _answer_fields(outcome.receipt)
    if outcome.error is None:
        state = "accepted" if answer.status < 400 else "refused"
        recorded = yield Record(entry.id, state, fields, _OPEN)
        return _with_receipt(outcome, recorded)
    landed, signature = yield from _landed(entry)
    if landed is not None:
        fields["landed"] = landed
    if signature and not fields.get("signature"):
        fields["signature"] = signature
    recorded = yield Record(entry.id, "refused", fields, _OPEN)
    if landed is False and may_replace:
        logger.warning(
            "payment #%s was refused and its blockhash expired before it landed; paying the "
            "same invoice once more with a fresh blockhash",
            entry.id,
        )
        return (yield from pay_new(payable, ctx, replaces=entry.id))
    return _with_receipt(outcome, recorded)


def _landed(entry: JournalEntry) -> Generator[Effect, Any, tuple[bool | None, str]]:
    try:
        return (yield from landing(entry))
    except SolanaRPCError as exc:
        logger.warning("could not check payment #%s on chain: %s", entry.id, exc.reason)
        return None, ""


def _unanswered(
    entry: JournalEntry, payable: _Payable, problem: str, answer: HttpReply | None
) -> Generator[Effect, Any, PaymentError]:
    fields: dict[str, Any] = {"error": f"no definite answer: {problem}"[:200]}
    if answer is not None:
        fields["http_status"] = answer.status
    yield Record(entry.id, "submitted", fields, ("signed", "submitted"))
    shown = entry.receipt.signature or "(signed by the facilitator on settlement)"
    sends = 1 + len(REDELIVERY_PAUSES)
    return PaymentError(
        f"payment #{entry.id} ({shown}) was sent to {entry.receipt.url} {sends} times but no "
        f"definite answer came back (last: {problem}). The SDK does not pay twice: call "
        "agent.recover_payments() to learn from the chain whether the money moved, and "
        "request the resource again later (an invoice already paid is re-sent, not re-paid)",
        invoice=payable.invoice,
        signature=entry.receipt.signature or None,
        reason="no_answer_after_payment",
        details={"journal_id": entry.id, "problem": problem},
    )


def _answer_fields(receipt: PaymentReceipt) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "http_status": receipt.http_status,
        "settled": receipt.settled,
        "error": receipt.error_reason,
    }
    if receipt.signature:
        fields["signature"] = receipt.signature
    if receipt.settled:
        fields["landed"] = True
    return fields


def _with_receipt(outcome: PaymentOutcome, recorded: JournalEntry | None) -> PaymentOutcome:
    return outcome if recorded is None else replace(outcome, receipt=recorded.receipt)


def judge(
    answer: HttpReply,
    receipt: PaymentReceipt,
    invoice: Mapping[str, Any],
    journal_id: int | None = None,
) -> PaymentOutcome:
    """Decide whether the server accepted the payment carried by ``receipt``."""
    settlement = read_settlement(answer.headers)
    receipt = _settled(replace(receipt, http_status=answer.status), settlement, answer.url)
    shown = receipt.signature or "(unsettled)"
    if answer.status != 402:
        logger.info("payment %s answered: HTTP %s", shown, answer.status)
        return PaymentOutcome(receipt, answer)
    why = _refusal_reason(answer, settlement)
    number = f"#{journal_id} " if journal_id is not None else ""
    error = PaymentError(
        f"the server at {answer.url} still answered 402 Payment Required after receiving "
        f"payment {number}{shown} ({why}). The SDK does not pay twice: call "
        "agent.recover_payments() to learn from the chain whether the money moved, and contact "
        "the service if it did",
        invoice=invoice,
        signature=receipt.signature or None,
        reason="payment_refused",
        details={"server_reason": why, "journal_id": journal_id},
    )
    return PaymentOutcome(replace(receipt, error_reason=receipt.error_reason or why), answer, error)


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
        signature = signature or transaction[:100]
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
    except (ValueError, UnicodeDecodeError, RecursionError):
        return "no reason given"
    if isinstance(document, dict):
        for key in ("reason", "error", "details"):
            value = document.get(key)
            if isinstance(value, dict):
                value = value.get("reason") or value.get("message")
            if isinstance(value, str) and value:
                return value[:200]
    return "no reason given"
