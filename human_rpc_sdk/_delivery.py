"""Delivering a journaled payment and judging the answer (pure; part of the payment flow).

A paid request that gets no definite answer (a timeout, a reset connection, a 5xx) is sent
again with *the same* signed payment, a few times with growing pauses: the payment's
transaction can land at most once, so re-sending it never pays twice. A 402 after payment is
a refusal; the chain is then asked whether the payment landed anyway. Only if it provably
never landed and never can (see :mod:`._landing`: a node that has seen the blockhash reports a
block height past its ``lastValidBlockHeight``) is the invoice paid once more, with a fresh
blockhash, journaled as the replacement of the first payment; otherwise the payment stays open
for ``recover_payments()``.

A 402 that refuses the payment as *already paid* (``invoice_already_paid``,
``duplicate_settlement``) while the chain shows it landed is not a refusal to believe: the
server has the money and may still be serving the first copy, so the same payment is sent
again on the same schedule; if the request is still not served, the error says the payment
landed and was not delivered (``paid_not_delivered``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol

from ._effects import (
    Flow,
    HttpReply,
    NoAnswer,
    Pause,
    PaymentContext,
    Record,
    Resend,
    RpcCall,
    perform,
)
from ._jsonrpc import genesis_hash_request
from ._landing import Landing, landing, signed_by_fee_payer
from ._networks import chain_name
from ._receipts import PaymentReceipt, State
from ._records import JournalEntry
from ._x402 import read_payment_required, read_settlement
from .exceptions import HumanRPCError, PaymentError, SolanaRPCError

__all__ = ["REDELIVERY_PAUSES", "PaymentOutcome", "deliver", "judge", "record_outcome"]

logger = logging.getLogger("human_rpc_sdk")

REDELIVERY_PAUSES: Final = (0.25, 0.5, 1.0)
"""Seconds to wait before each re-send of a payment that got no definite answer."""
OUTCOME_WRITE_PAUSES: Final = (0.25, 1.0)
"""Seconds to wait before writing a payment's outcome to the journal again."""
OUTCOME_BUSY_SECONDS: Final = 2.0
"""How long each outcome write waits for a journal another process holds locked."""
_OPEN: Final[tuple[State, ...]] = ("signed", "submitted", "refused")
ALREADY_PAID: Final = ("already", "duplicate", "replay")
"""Words of a server's reason for refusing a payment it has seen before (``invoice_already_paid``,
x402's ``duplicate_settlement``, ``duplicate_transaction``, ``payment_replayed``, ...)."""


@dataclass(frozen=True)
class PaymentOutcome:
    """How paying one 402 ended: the receipt, the server's answer, and the error to raise."""

    receipt: PaymentReceipt
    reply: HttpReply
    error: PaymentError | None = None


class _Payable(Protocol):
    @property
    def invoice(self) -> Mapping[str, Any]: ...


PayNew = Callable[..., Flow[PaymentOutcome]]


def deliver(
    entry: JournalEntry,
    payable: _Payable,
    ctx: PaymentContext,
    *,
    may_replace: bool,
    pay_new: PayNew,
) -> Flow[PaymentOutcome]:
    """Send ``entry``'s payment until a definite answer comes, then judge and journal it."""
    answer: HttpReply | None = None
    problem = ""
    already = _AlreadyPaid(entry)
    for pause in (0.0, *REDELIVERY_PAUSES):
        if pause:
            logger.warning(
                "payment #%s got no definite answer (%s); sending the same payment again in %.2g s",
                entry.id,
                problem,
                pause,
            )
            yield from perform(Pause(pause))
        result = yield from perform(Resend(entry.headers, entry.receipt))
        if isinstance(result, NoAnswer):
            answer, problem = None, result.problem
        elif result.status >= 500:
            answer, problem = result, f"HTTP {result.status}"
        elif (yield from already.paid_not_served(result)):
            answer, problem = result, f"HTTP 402, {_server_reason(result)}"
        else:
            answer = result
            break
    else:
        if already.refusal is not None:
            return (
                yield from _undelivered(entry, payable, already.refusal, already.found, problem)
            )
        raise (yield from _unanswered(entry, payable, problem))
    outcome = judge(answer, entry.receipt, payable.invoice, entry.id, entry=entry)
    fields = _answer_fields(outcome.receipt)
    if outcome.error is None:
        state: State = "accepted" if answer.status < 400 else "refused"
        recorded = yield from record_outcome(Record(entry.id, state, fields, _OPEN))
        return _with_receipt(outcome, recorded)
    chain = already.landing or (yield from _landed(entry))
    if chain.landed is not None:
        fields["landed"] = chain.landed
    if chain.proof:
        fields["landed_proof"] = chain.proof
    if chain.signature:  # found on chain: truer than what a settlement header claims
        fields["signature"] = chain.signature
    recorded = yield from record_outcome(Record(entry.id, "refused", fields, _OPEN))
    conflict = outcome.error.reason == "payment_id_conflict"  # a new payment would be refused too
    if chain.landed is False and chain.proof and may_replace and not conflict:
        logger.warning(
            "payment #%s was refused and provably never landed (%s); paying the same invoice "
            "once more with a fresh blockhash",
            entry.id,
            chain.proof,
        )
        return (
            yield from pay_new(payable, ctx, replaces=entry.id, expired_blockhash=entry.blockhash)
        )
    if chain.landed is None:
        logger.warning(
            "payment #%s was refused, and the chain does not prove yet whether it landed; it is "
            "not paid again: agent.recover_payments() settles it once the chain can tell",
            entry.id,
        )
    return _with_receipt(outcome, recorded)


class _AlreadyPaid:
    """What the chain says of a payment a server refused as already paid (asked once)."""

    def __init__(self, entry: JournalEntry) -> None:
        self.entry = entry
        self.landing: Landing | None = None
        self.refusal: HttpReply | None = None
        """The last "already paid" refusal of the payment, once the chain showed it landed."""

    @property
    def found(self) -> str:
        """The signature the chain check found ("" if none)."""
        return "" if self.landing is None else self.landing.signature

    def paid_not_served(self, answer: HttpReply) -> Flow[bool]:
        """``answer`` refuses the payment as already paid, and it did land: send it again.

        The server has the money and (a gateway still serving the first copy, or one that
        lost its answer) may yet deliver: the same payment is re-sent, never a new one.
        """
        if answer.status != 402 or not _already_paid(answer):
            return False
        if self.landing is None:
            self.landing = yield from _landed(self.entry)
        if self.landing.landed is not True:
            return False
        logger.warning(
            "payment #%s landed on chain, but %s refused it as already paid without serving it",
            self.entry.id,
            answer.url,
        )
        self.refusal = answer
        return True


def _already_paid(answer: HttpReply) -> bool:
    reason = _server_reason(answer).lower()
    return any(word in reason for word in ALREADY_PAID)


def _server_reason(answer: HttpReply) -> str:
    return _refusal_reason(answer, read_settlement(answer.headers))


def _undelivered(
    entry: JournalEntry, payable: _Payable, refusal: HttpReply, found: str, problem: str
) -> Flow[PaymentOutcome]:
    """The payment landed, the server kept refusing it as already paid: not delivered.

    The row becomes ``refused`` with ``landed=1`` and the error ``paid_not_delivered``: the
    server did not serve what was paid for (``refused``, as for any refusal of money it took),
    the chain shows the money moved (``landed``, so the budget counts it and recovery, which
    only asks about payments whose landing is unknown, leaves the row as the truth it is).
    ``submitted`` would be wrong: an answer did come, and recovery would turn the row into
    ``accepted``, as if the paid request had been served. The invoice stays taken, so a later
    402 for the same invoice re-sends this payment instead of paying again.
    """
    refused = judge(refusal, entry.receipt, payable.invoice, entry.id, entry=entry)
    why = refused.error.details["server_reason"] if refused.error else "already paid"
    fields = _answer_fields(refused.receipt)
    fields.update(landed=True, error=f"paid_not_delivered: {why}"[:200])
    signature = found or refused.receipt.signature  # the chain's, over the server's claim
    if signature:
        fields["signature"] = signature
    recorded = yield from record_outcome(Record(entry.id, "refused", fields, _OPEN))
    receipt = entry.receipt if recorded is None else recorded.receipt
    sends = 1 + len(REDELIVERY_PAUSES)
    error = PaymentError(
        f"payment #{entry.id} ({signature or 'signature unknown'}) landed on chain, but "
        f"{entry.receipt.url} did not deliver what it paid for: {sends} sends of that same "
        f"payment were refused as already paid or went unanswered (last: {problem}). The money "
        "moved once; nothing was paid twice. The journal keeps the payment as landed and not "
        f"delivered (journal #{entry.id} in agent.payments; agent.recover_payments() has "
        "nothing more to learn from the chain): contact the service with this signature to "
        "get what was paid for",
        invoice=payable.invoice,
        signature=signature or None,
        reason="paid_not_delivered",
        details={"journal_id": entry.id, "server_reason": why, "receipt": receipt},
    )
    return PaymentOutcome(receipt, refusal, error)


def _landed(entry: JournalEntry) -> Flow[Landing]:
    """What the chain says of ``entry``; unknown when it cannot be asked, or when the node
    serves another chain than the payment's (one that never saw it proves nothing)."""
    try:
        if entry.genesis_hash:
            (genesis,) = yield from perform(RpcCall((genesis_hash_request(),)))
            if str(genesis.value) != entry.genesis_hash:
                logger.warning(
                    "payment #%s was made on %s, but the RPC node now serves %s: it is not "
                    "judged there (agent.recover_payments() with an rpc_url of its chain does)",
                    entry.id,
                    chain_name(entry.genesis_hash),
                    chain_name(str(genesis.value)),
                )
                return Landing(None)
        return (yield from landing(entry))
    except SolanaRPCError as exc:
        logger.warning("could not check payment #%s on chain: %s", entry.id, exc.reason)
        return Landing(None)


def _unanswered(entry: JournalEntry, payable: _Payable, problem: str) -> Flow[PaymentError]:
    # No status: a 5xx is no answer (the error says which came last). A row with a status is
    # one the server answered, and a recovery that finds it landed would book it served, so
    # the same request would pay again instead of resuming it for the answer still owed.
    fields: dict[str, Any] = {"error": f"no definite answer: {problem}"[:200], "http_status": None}
    yield from record_outcome(Record(entry.id, "submitted", fields, ("signed", "submitted")))
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


def record_outcome(record: Record) -> Flow[JournalEntry | None]:
    """Journal what the server answered; the answer is never lost to a journal failure.

    Once the server has answered, money may have moved: the caller gets the answer whatever
    happens to the journal. The write is tried a few times (each waiting a bounded time for a
    journal another process holds locked); if it still fails, the journal keeps it in this
    process and writes it before its next write (``recover_payments()`` included), so what
    the server said is not lost; a warning says so. Only if the process ends first does
    ``recover_payments()`` have the chain alone to go by.
    """
    problem = ""
    for pause in (0.0, *OUTCOME_WRITE_PAUSES):
        if pause:
            yield from perform(Pause(pause))
        try:
            # Not fully synced: a lost outcome leaves a `signed` row recovery settles.
            patient = replace(record, busy_seconds=OUTCOME_BUSY_SECONDS, keep=True, durable=False)
            recorded = yield from perform(patient)
        except PaymentError as exc:
            if exc.reason != "journal_unavailable":
                raise
            problem = str(exc)
            continue
        return recorded
    logger.warning(
        "the outcome of payment #%s (%s) could not be journaled, after %d tries: %s. The "
        "server's answer is returned all the same; the outcome is written with the journal's "
        "next write (agent.recover_payments() writes it, and settles the row from the chain)",
        record.entry_id,
        record.state,
        1 + len(OUTCOME_WRITE_PAUSES),
        problem,
    )
    return None


def _answer_fields(receipt: PaymentReceipt) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "http_status": receipt.http_status,
        "settled": receipt.settled,
        "error": receipt.error_reason,
    }
    if receipt.signature:
        fields["signature"] = receipt.signature
    if receipt.settled and receipt.signature:  # a claim of success about no transaction is none
        fields["landed"] = True
    return fields


def _with_receipt(outcome: PaymentOutcome, recorded: JournalEntry | None) -> PaymentOutcome:
    return outcome if recorded is None else replace(outcome, receipt=recorded.receipt)


def judge(
    answer: HttpReply,
    receipt: PaymentReceipt,
    invoice: Mapping[str, Any],
    journal_id: int | None = None,
    *,
    entry: JournalEntry | None = None,
) -> PaymentOutcome:
    """Decide whether the server accepted the payment carried by ``receipt`` (journaled as
    ``entry``: a settlement naming another transaction than its own is then not believed)."""
    settlement = read_settlement(answer.headers)
    receipt = replace(receipt, http_status=answer.status)
    receipt = _settled(receipt, settlement, answer.url, entry)
    shown = receipt.signature or "(unsettled)"
    if answer.status == 409 and entry is not None and entry.payment_id:
        return _conflict(answer, receipt, invoice, entry)
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


def _conflict(
    answer: HttpReply, receipt: PaymentReceipt, invoice: Mapping[str, Any], entry: JournalEntry
) -> PaymentOutcome:
    """409 to an identified payment: the server holds another payment under its id (the
    spec's "same id, different payload"). Neither this payment nor a new one is served."""
    why = _refusal_reason(answer, None)
    error = PaymentError(
        f"the server at {answer.url} answered 409 Conflict to payment #{entry.id}: it holds "
        f"another payment under this payment's id {entry.payment_id} ({why}). Nothing new was "
        "signed, and the SDK does not pay twice; if the server took this payment anyway, "
        "agent.recover_payments() learns it from the chain. Contact the service with the "
        "payment id",
        invoice=invoice,
        signature=receipt.signature or None,
        reason="payment_id_conflict",
        details={"server_reason": why, "journal_id": entry.id, "payment_id": entry.payment_id},
    )
    return PaymentOutcome(replace(receipt, error_reason=f"409: {why}"[:200]), answer, error)


def _settled(
    receipt: PaymentReceipt,
    settlement: Mapping[str, Any] | None,
    url: str,
    entry: JournalEntry | None = None,
) -> PaymentReceipt:
    """The receipt completed by the server's settlement response, when it sent one.

    An x402 payment's signature is learnt from the settlement; one that is not the fee
    payer's signature over the message the agent signed (``entry``'s) is a false claim:
    neither it nor the settlement's ``success`` is kept (the chain is asked instead).
    """
    if settlement is None:
        return receipt
    transaction = settlement.get("transaction")
    signature = receipt.signature
    success = settlement.get("success")
    if isinstance(transaction, str) and transaction:
        if signature and transaction != signature:
            logger.warning(
                "server at %s reports settling transaction %s, not the one sent (%s); its "
                "claim of success is not the payment's",
                url,
                transaction[:100],
                signature,
            )
            success = None
        elif not signature and entry is not None and not signed_by_fee_payer(entry, transaction):
            logger.warning(
                "server at %s names transaction %s as the settlement of payment #%s, but it is "
                "not the transaction the agent signed; the claim is ignored",
                url,
                transaction[:100],
                entry.id,
            )
            transaction, success = "", None
        signature = signature or transaction[:100]
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
