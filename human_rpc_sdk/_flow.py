"""The 402 payment flow as a sans-I/O generator.

:func:`pay` decides everything about paying one 402 answer and performs no I/O. It *yields
effects* (see :mod:`._effects`) and is resumed with their results; a driver (``AutoAgent``
over ``requests``) runs it. Time and randomness arrive through :class:`PaymentContext`.

The order of a payment, every step journaled before the next:

1. Read the 402: x402 v2 (``PAYMENT-REQUIRED``), x402 v1 (body with ``accepts``) or a HumanRPC
   invoice; the body's size is bounded, the network pinned.
2. An invoice already in the journal is never paid again: that same signed payment is sent
   again (see :func:`_pay_again`).
3. Price it against the chain (``_quote``, ``_exact``): balance, ``max_payment``,
   ``trusted_recipients``, accepted assets.
4. Ask the owner's ``approve`` callback.
5. Reserve: in one journal transaction, check the invoice is unpaid and the budget allows it.
6. Sign (a :class:`Sign` effect: the driver's signer, local, remote or async; the signature
   is verified before it is attached), and journal the signed payment (``signed``) *before*
   it leaves the process.
7. Deliver it (:mod:`._delivery`): re-sending the very same payment after a timeout, a reset
   or a 5xx; then judge the answer, and journal the outcome.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol

from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from ._budgets import line_label, when
from ._delivery import PaymentOutcome, deliver, judge
from ._effects import (
    Approve,
    BlockhashFacts,
    ChainCache,
    Debit,
    FindPayment,
    FindResumable,
    Flow,
    HttpReply,
    PaymentContext,
    Record,
    Resend,
    Reserve,
    RpcCall,
    Sign,
    perform,
)
from ._exact import quote_exact
from ._headers import PAYMENT_HEADER, encode_payment_header
from ._limits import currency_key
from ._money import format_amount
from ._offer import PaymentOffer
from ._quote import quote
from ._records import Existing, JournalEntry, OverBudget
from ._resume import ABANDONED_AFTER, resume_key
from ._x402 import (
    COMPUTE_UNIT_LIMIT,
    COMPUTE_UNIT_PRICE,
    PAYMENT_IDENTIFIER,
    PaymentRequired,
    encode_payment,
    new_payment_id,
    read_payment_required,
)
from .exceptions import InvoiceValidationError, PaymentError, PaymentPolicyError, ServerResponse
from .invoices import FORMAT_LEGACY, Invoice
from .solana_utils import (
    add_signature,
    build_exact_transfer,
    build_transfer,
    message_to_sign,
    place_signature,
)
from .wallet import OwnSignature

__all__ = [
    "MAX_402_BODY_BYTES",
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

SOL: Final = "SOL"
MAX_402_BODY_BYTES: Final = 64 * 1024
"""A 402 body larger than this is refused unread: no real invoice comes close."""


@dataclass(frozen=True)
class Signed:
    """A signed payment and what the journal keeps of it."""

    headers: Mapping[str, str] = field(repr=False)  # the signed payment: never in a repr
    signature: str
    transaction: VersionedTransaction = field(repr=False)
    blockhash: str
    fee_payer: str
    fee_lamports: int = 0
    rent_lamports: int = 0
    facts: BlockhashFacts | None = None
    """What the agent's node said with the blockhash (None: the server chose it)."""
    debits: tuple[Debit, ...] = ()
    """What it takes from the payer's accounts: taken from the chain cache once journaled."""
    payment_id: str | None = None
    """The x402 payment id it carries (journaled with it, so every re-send carries it too)."""
    resume_key: str | None = None
    """What a later request must match to re-send it rather than pay anew (see :mod:`._resume`)."""

    def fields(self) -> dict[str, Any]:
        facts = self.facts
        return {
            "payment_id": self.payment_id,
            "resume_key": self.resume_key,
            "last_valid_block_height": None if facts is None else facts.last_valid_block_height,
            "blockhash_slot": None if facts is None else facts.slot,
            "headers": dict(self.headers),
            "signature": self.signature or None,
            "transaction_b64": base64.b64encode(bytes(self.transaction)).decode("ascii"),
            "blockhash": self.blockhash,
            "fee_payer": self.fee_payer,
            "fee_lamports": self.fee_lamports,
            "rent_lamports": self.rent_lamports,
        }


@dataclass(frozen=True)
class Prepared:
    """A priced payment: what the rules and ``approve`` see, and how to sign it."""

    offer: PaymentOffer
    sign: Callable[[], Flow[Signed]]
    """The flow that signs it (yielding :class:`Sign`) and returns the signed payment."""
    blockhash: str = ""
    """The blockhash it will be signed over."""
    genesis_hash: str | None = None
    """The chain it can land on: the one that blockhash came from, journaled with it."""
    invoice_key: str | None = None
    """What identifies this very payment when nothing else in it varies (an x402 offer with a
    fixed memo): the same key, the same transaction bytes, which are never paid twice."""


class Payable(Protocol):
    """One 402 answer's payment request, in whichever format it came."""

    @property
    def invoice_key(self) -> str | None:
        """What identifies the invoice across requests (None: nothing does)."""

    @property
    def invoice(self) -> Mapping[str, Any]:
        """The request as received, for error reports."""

    def prepare(self, ctx: PaymentContext, fresh: bool) -> Flow[Prepared]:
        """Price the payment on the chain; ``fresh``: with a new blockhash (a replacement)."""


def pay(reply: HttpReply, ctx: PaymentContext) -> Flow[PaymentOutcome]:
    """Pay the 402 answer ``reply`` (x402 v2, x402 v1, HumanRPC) and judge the server's answer.

    An :class:`InvoiceValidationError` (nothing signed) carries ``reply`` as its ``response``.
    """
    try:
        payable = _read(reply, ctx)
        if isinstance(payable, ExactPayable):
            keys = _resume_keys(payable, ctx)
            find = FindResumable(keys, ABANDONED_AFTER)
            unknown = (yield from perform(find)) if keys else None
            if unknown is not None:
                return (yield from _resume(unknown, payable, ctx))
        if payable.invoice_key is not None:
            existing = yield from perform(FindPayment(payable.invoice_key))
            if existing is not None:
                return (yield from _pay_again(existing, payable, ctx))
        return (yield from pay_new(payable, ctx, replaces=None))
    except InvoiceValidationError as exc:
        if exc.response is None:
            exc.response = _response_of(reply)
        raise


def _response_of(reply: HttpReply) -> ServerResponse:
    return ServerResponse.of(reply.status, reply.headers, reply.body, reply.url)


def _read(reply: HttpReply, ctx: PaymentContext) -> Payable:
    if len(reply.body) > MAX_402_BODY_BYTES:
        raise InvoiceValidationError(
            f"the 402 answer from {reply.url} has a body of more than "
            f"{MAX_402_BODY_BYTES // 1024} KiB, far larger than any invoice; it was not read. "
            "Nothing was signed or paid",
            reason="invoice_too_large",
        )
    challenge = read_payment_required(reply.headers, reply.body)
    if challenge is not None:
        return ExactPayable(challenge, reply.url, request=reply.request)
    invoice = _invoice_of(reply)
    invoice.validate(network=ctx.network)
    _refuse_paying_itself(invoice, str(ctx.signer.pubkey()))
    return InvoicePayable(invoice, reply.url)


def _invoice_of(reply: HttpReply) -> Invoice:
    """The 402 body's invoice; an answer that holds none is refused saying what it holds."""
    try:
        invoice = Invoice.from_body(reply.body, url=reply.url)
        invoice.format  # noqa: B018 - parses it: is there an invoice at all?
    except InvoiceValidationError as exc:
        if exc.reason not in ("no_invoice", "x402_challenge"):
            raise
        error = exc
    else:
        return invoice
    raise _not_an_invoice(reply, error) from None


def _not_an_invoice(reply: HttpReply, error: InvoiceValidationError) -> InvoiceValidationError:
    response = _response_of(reply)
    what = "not JSON"
    if error.reason == "x402_challenge":
        what = "JSON with x402's 'accepts' but not x402Version 1, so no x402 challenge"
    elif error.invoice is not None:
        what = "a JSON object with no invoice in it"
    kind = response.content_type.split(";", 1)[0].strip() or "no content type"
    said = response.summary()
    said = f"The server said: {said!r}" if said else "Its body was empty"
    return InvoiceValidationError(
        f"the 402 answer from {reply.url} is not a payable invoice: its body is {what} "
        f"(HTTP {reply.status}, {kind}). {said}. Nothing was signed or paid; "
        "the whole answer is on this error's .response. Check that the URL is a paid endpoint "
        "(HumanRPC or x402) and what the server's message asks for",
        reason="no_invoice",
        invoice=error.invoice,
        response=response,
    )


def _refuse_paying_itself(invoice: Invoice, agent: str) -> None:
    if invoice.recipient != agent:
        return
    name = "payment.recipientWallet" if invoice.format == FORMAT_LEGACY else "invoice.recipient"
    raise InvoiceValidationError(
        f"{name} is this agent's own address {agent}: the agent would pay itself (only the fees "
        "would move). Nothing was signed or paid",
        field=name,
        invoice=invoice.to_dict(),
        reason="pays_itself",
    )


def pay_new(
    payable: Payable,
    ctx: PaymentContext,
    *,
    replaces: int | None,
    expired_blockhash: str | None = None,
) -> Flow[PaymentOutcome]:
    """Price, approve, reserve, sign, journal and deliver a new payment of ``payable``.

    A replacement (``replaces``) is never signed over ``expired_blockhash``, the blockhash of
    the payment it replaces: the same blockhash could make the very same transaction.
    """
    made = yield from sign_new(payable, ctx, replaces=replaces, expired_blockhash=expired_blockhash)
    if isinstance(made, Existing):
        return (yield from _pay_again(made.entry, payable, ctx))
    _log_paying(made)
    replay = replaces is None
    outcome = yield from deliver(made, payable, ctx, may_replace=replay, pay_new=pay_new)
    if outcome.error is not None:
        ctx.cache.forget_accounts()  # it may have been priced on stale state: read afresh
    return outcome


def sign_new(
    payable: Payable,
    ctx: PaymentContext,
    *,
    replaces: int | None,
    expired_blockhash: str | None = None,
    note: str | None = None,
) -> Flow[JournalEntry | Existing]:
    """Price, approve, reserve, sign and journal (``signed``, durably) a new payment of
    ``payable``; nothing is sent. The journaled payment, or :class:`Existing` when the
    invoice already has one (send that one again).

    The part of :func:`pay_new` that comes before sending: payments prepared ahead
    (:mod:`._prepay`) are made by it too. ``note`` is journaled as the row's ``error`` text
    while it waits (a payment prepared ahead says so).
    """
    prepared = yield from payable.prepare(ctx, replaces is not None)
    if expired_blockhash is not None and prepared.blockhash == expired_blockhash:
        raise PaymentError(
            f"payment #{replaces} expired without landing, but the RPC node still offers its "
            f"blockhash {expired_blockhash} as the latest one, so it was not replaced. Nothing "
            "more was paid; request the resource again in a few seconds",
            invoice=payable.invoice,
            reason="no_fresh_blockhash",
            details={"journal_id": replaces},
        )
    offer = replace(prepared.offer, replaces=replaces)
    approved = yield from perform(Approve(offer))
    if approved is not True:
        raise PaymentPolicyError(
            f"the approve callback declined to pay {_price(offer)} to {offer.recipient} for "
            f"{offer.url}. Nothing was signed or paid",
            rule="approve",
            invoice=payable.invoice,
            reason="not_approved",
        )
    key = currency_key(ctx.network, offer.currency, offer.mint)
    reserve = Reserve(
        offer,
        key,
        prepared.invoice_key or payable.invoice_key,
        ctx.rules.budget_for(key),
        sol_budget=ctx.rules.budget_for(SOL),
        genesis_hash=prepared.genesis_hash,
        periods=ctx.rules.periods,
        scope=ctx.rules.scope,
    )
    reservation = yield from perform(reserve)
    if isinstance(reservation, OverBudget):
        raise _over_budget(offer, reservation, payable)
    if isinstance(reservation, Existing):
        return reservation
    entry = reservation.entry
    try:
        signed = yield from prepared.sign()
    except BaseException as exc:  # a signer's error, or the caller's cancellation or Ctrl-C
        # Nothing was signed that left the process: release the reservation now (its process
        # lives on, so recovery would hold it, and its budget and invoice, for a long while).
        error = "could not be signed" if isinstance(exc, Exception) else "interrupted unsigned"
        released = Record(entry.id, "failed", {"error": error}, ("reserved",), durable=False)
        yield from perform(released)  # lost to a power cut: recovery releases it
        raise
    fields = signed.fields()
    if note is not None:
        fields["error"] = note
    marked = yield from perform(Record(entry.id, "signed", fields, ("reserved",)))
    if marked is None:
        raise PaymentError(
            f"payment #{entry.id}'s reservation was released before it was sent (a recovery "
            "judged its process gone). Nothing was sent; request the resource again",
            invoice=payable.invoice,
            reason="reservation_lost",
        )
    ctx.cache.debit(signed.debits, ctx.clock())
    return marked


def _resume_keys(payable: ExactPayable, ctx: PaymentContext) -> tuple[str, ...]:
    """The keys a payment of this request to any offer of ``payable`` would be journaled
    under, when the challenge declares payment ids (see :mod:`._resume`)."""
    if payable.challenge.payment_identifier is None:
        return ()
    payer = ctx.signer.pubkey()
    keys = (
        resume_key(payable.request, payable.url, offer, payer)
        for offer in payable.challenge.offers
        if offer.problem is None
    )
    return tuple(key for key in keys if key is not None)


def _resume(entry: JournalEntry, payable: Payable, ctx: PaymentContext) -> Flow[PaymentOutcome]:
    """This request's earlier identified payment has no known outcome: send it again, with
    its id, rather than paying anew (see :mod:`._resume`)."""
    logger.info(
        "request to %s resumes payment #%s (%s, payment id %s): sending that same payment again",
        entry.receipt.url,
        entry.id,
        entry.state,
        entry.payment_id,
    )
    if entry.state == "accepted":
        # Booked from the chain by a recovery, its answer still owed: open again until the
        # answer comes (``landed`` unknown again, so a recovery books it again if none does).
        reopen = Record(entry.id, "submitted", {"landed": None}, ("accepted",))
        entry = (yield from perform(reopen)) or entry
    return (yield from deliver(entry, payable, ctx, may_replace=True, pay_new=pay_new))


def _pay_again(
    existing: JournalEntry, payable: Payable, ctx: PaymentContext
) -> Flow[PaymentOutcome]:
    """The invoice is in the journal already: send that same signed payment again."""
    if existing.state == "reserved" or not existing.headers:
        raise PaymentError(
            f"this invoice is being paid right now (journal #{existing.id}, in another request "
            "or process); wait for that payment. If its process died, agent.recover_payments() "
            "releases it. Nothing more was paid",
            invoice=payable.invoice,
            reason="payment_in_progress",
            details={"journal_id": existing.id},
        )
    logger.info(
        "invoice already paid by journal #%s (%s, signature %s); sending that same payment again",
        existing.id,
        existing.state,
        existing.receipt.signature or "(unsettled)",
    )
    return (yield from deliver(existing, payable, ctx, may_replace=True, pay_new=pay_new))


# -- the formats ---------------------------------------------------------------------------


@dataclass(frozen=True)
class InvoicePayable:
    """A HumanRPC invoice (design document format, or the deployed service's ``payment``)."""

    source: Invoice
    url: str

    @property
    def invoice_key(self) -> str | None:
        invoice = self.source
        if invoice.format == FORMAT_LEGACY or not invoice.reference or invoice.amount is None:
            return None
        return "|".join(
            (
                invoice.network,
                invoice.format,
                invoice.recipient,
                invoice.mint or "SOL",
                format_amount(invoice.amount),
                invoice.reference,
            )
        )

    @property
    def invoice(self) -> Mapping[str, Any]:
        return self.source.to_dict()

    def prepare(self, ctx: PaymentContext, fresh: bool) -> Flow[Prepared]:
        if fresh:
            ctx.cache.forget_blockhash()
        priced = yield from quote(self.source, ctx)
        plan = priced.plan
        offer = PaymentOffer(
            url=self.url,
            amount=priced.display_amount,
            currency=self.source.currency,
            mint=self.source.mint,
            recipient=self.source.recipient,
            destination=str(plan.destination),
            network=ctx.network,
            payer=str(plan.payer),
            format=self.source.format,
            atomic_amount=plan.amount,
            fee_lamports=priced.fee_lamports + priced.rent_lamports,
            reference=self.source.reference,
            description=self.source.message or "",
        )

        facts = ctx.cache.fetched(priced.blockhash)

        def sign() -> Flow[Signed]:
            unsigned = build_transfer(plan, priced.blockhash)
            transaction = yield from signed_by(unsigned, plan.payer)
            return Signed(
                headers={PAYMENT_HEADER: encode_payment_header(transaction, ctx.network)},
                signature=str(transaction.signatures[0]),
                transaction=transaction,
                blockhash=str(priced.blockhash),
                fee_payer=str(plan.payer),
                fee_lamports=priced.fee_lamports,
                rent_lamports=priced.rent_lamports,
                facts=facts,
                debits=priced.debits,
            )

        genesis = None if facts is None else facts.genesis_hash
        return Prepared(offer, sign, str(priced.blockhash), genesis)


@dataclass(frozen=True)
class ExactPayable:
    """A standard x402 challenge (v1 or v2); the cheapest offer the agent can pay is paid."""

    challenge: PaymentRequired
    url: str
    invoice_key: None = None
    request: str = ""
    """What identifies the request that got the 402 (method and body: ``HttpReply.request``)."""

    @property
    def invoice(self) -> Mapping[str, Any]:
        return {
            "x402Version": self.challenge.version,
            "accepts": [dict(o.raw) for o in self.challenge.offers],
        }

    def prepare(self, ctx: PaymentContext, fresh: bool) -> Flow[Prepared]:
        if fresh:
            ctx.cache.forget_blockhash()
        exact = yield from quote_exact(self.challenge, ctx, fresh_blockhash=fresh)
        chosen = exact.offer
        payer = ctx.signer.pubkey()
        offer = PaymentOffer(
            url=self.url,
            amount=exact.display_amount,
            currency=exact.symbol,
            mint=chosen.asset,
            recipient=chosen.pay_to,
            destination=str(exact.destination),
            network=ctx.network,
            payer=str(payer),
            format="x402-v1" if chosen.version == 1 else "x402-v2",
            atomic_amount=chosen.amount,
            fee_lamports=exact.fee_lamports,
            description=_description(self.challenge, chosen.raw),
        )
        # A blockhash the server chose comes with no lastValidBlockHeight the agent observed:
        # such a payment can never be proven expired, so it is never replaced.
        server_chosen = not fresh and exact.blockhash == chosen.recent_blockhash
        facts = None if server_chosen else ctx.cache.fetched(exact.blockhash)
        # Such a payment can land only on the chain of its blockhash: for the server's, the
        # chain the accounts were read on (asked in that batch); else the one it was fetched on.
        genesis = exact.genesis_hash if facts is None else facts.genesis_hash
        # One id per purchase, made now (a payment prepared ahead gets it when prepared) and
        # journaled with the signed payment: every re-send of it carries the same id.
        declared = self.challenge.payment_identifier if chosen.version == 2 else None
        payment_id: str | None = None
        extensions: dict[str, Any] | None = None
        resumable: str | None = None
        if declared is not None:
            payment_id = new_payment_id(ctx.nonce())
            extensions = {PAYMENT_IDENTIFIER: declared.with_id(payment_id)}
            resumable = resume_key(self.request, self.url, chosen, payer)

        def sign() -> Flow[Signed]:
            unsigned = build_exact_transfer(
                payer=payer,
                fee_payer=Pubkey.from_string(chosen.fee_payer),
                pay_to=Pubkey.from_string(chosen.pay_to),
                mint=exact.mint,
                amount=chosen.amount,
                memo=chosen.memo or ctx.nonce(),
                recent_blockhash=exact.blockhash,
                compute_unit_limit=COMPUTE_UNIT_LIMIT,
                compute_unit_price=COMPUTE_UNIT_PRICE,
            )
            transaction = yield from signed_by(unsigned, payer)
            name, value = encode_payment(chosen, transaction, self.challenge.resource, extensions)
            return Signed(
                headers={name: value},
                signature="",  # the facilitator signs last: known from the settlement
                transaction=transaction,
                blockhash=str(exact.blockhash),
                fee_payer=chosen.fee_payer,
                fee_lamports=exact.fee_lamports,
                facts=facts,
                debits=exact.debits,
                payment_id=payment_id,
                resume_key=resumable,
            )

        # A fixed memo leaves nothing random in the transaction: the same offer paid over the
        # same blockhash is byte for byte the same transaction, which can land only once. It
        # is then the same payment, re-sent, never a second one counted against the budget.
        same_bytes = (
            None
            if not chosen.memo
            else "|".join(
                (
                    "x402",
                    ctx.network,
                    str(payer),
                    chosen.fee_payer,
                    chosen.pay_to,
                    chosen.asset,
                    str(chosen.amount),
                    chosen.memo,
                    str(exact.blockhash),
                )
            )
        )
        return Prepared(offer, sign, str(exact.blockhash), genesis, same_bytes)


def _description(challenge: PaymentRequired, raw: Mapping[str, Any]) -> str:
    text = raw.get("description")
    if not isinstance(text, str) and challenge.resource is not None:
        text = challenge.resource.get("description")
    return text[:500] if isinstance(text, str) else ""


# -- helpers -------------------------------------------------------------------------------


def signed_by(unsigned: VersionedTransaction, payer: Pubkey) -> Flow[VersionedTransaction]:
    """``unsigned`` with ``payer``'s signature, asked of the driver (:class:`Sign`) and
    verified against ``payer`` before it is attached: a bad one raises, nothing is sent. A
    driver's own keypair signer's signature (:class:`OwnSignature`) is right by construction
    and attached as it is."""
    answer = yield from perform(Sign(message_to_sign(unsigned, payer), payer))
    if isinstance(answer, OwnSignature):
        return place_signature(unsigned, payer, answer.signature)
    return add_signature(unsigned, payer, answer)


def _over_budget(offer: PaymentOffer, over: OverBudget, payable: Payable) -> PaymentPolicyError:
    key = over.currency_key
    own = currency_key(offer.network, offer.currency, offer.mint)
    label = offer.currency if key == own else key
    what = _price(offer)
    if label != offer.currency:
        what += f" (and {format_amount(over.cost)} {label} in network fees and rent)"
    if over.per is not None:
        return _over_period(offer, over, payable, label, what)
    return PaymentPolicyError(
        f"refused by this agent's spending rules: paying {what} would bring what its "
        f"journal counts as spent in {label} from {format_amount(over.spent)} to "
        f"{format_amount(over.spent + over.cost)}, over the budget of "
        f"{format_amount(over.limit)}. Nothing was signed or paid; if you mean to spend more, "
        f"agent.raise_budget({{{key!r}: '<amount to add>'}}) adds to the budget (kept in "
        "the journal)",
        rule="budget",
        invoice=payable.invoice,
        details={"spent": over.spent, "limit": over.limit, "currency": key},
    )


def _over_period(
    offer: PaymentOffer, over: OverBudget, payable: Payable, label: str, what: str
) -> PaymentPolicyError:
    """The refusal of a budget line per period: the line, what it counts now, its reset."""
    assert over.per is not None  # noqa: S101 - a period line's refusal
    key = over.currency_key
    waits = over.resets is not None and over.cost <= over.limit  # else waiting never helps
    reset = (
        f"resets {when(over.resets)}"
        if waits and over.resets is not None
        else "more than the line allows at all"
    )
    wait = "wait or " if waits else ""
    return PaymentPolicyError(
        f"refused by this agent's spending rules: {line_label(over.limit, label, over.per)}: "
        f"{format_amount(over.spent)} spent {over.per.current()}, {reset}; paying {what} "
        f"would bring it to {format_amount(over.spent + over.cost)}. Nothing was signed or "
        + (
            f"paid; {wait}raise_budget({{{key!r}: '<amount to add>'}}, per={over.per.name!r})"
            if over.per.name != "rolling"
            else f"paid; {wait}give the line a larger limit"
        ),
        rule="budget",
        invoice=payable.invoice,
        details={
            "spent": over.spent,
            "limit": over.limit,
            "currency": key,
            "per": over.per.key,
            "resets": over.resets,
        },
    )


def _price(offer: PaymentOffer) -> str:
    return f"{format_amount(offer.amount)} {offer.currency}"


def _log_paying(entry: JournalEntry) -> None:
    receipt = entry.receipt
    logger.info(
        "paying %s %s to %s for %s (%s, journal #%s%s)",
        format_amount(receipt.amount),
        receipt.currency,
        receipt.recipient,
        receipt.url,
        receipt.format,
        entry.id,
        f", signature {receipt.signature}" if receipt.signature else "",
    )
