"""Payments prepared ahead (``prepay=``): what is prepared, for which request, and until when.

Pure: the agents' drivers (:mod:`._io.prepay`, :mod:`._io.aprepay`) run the flows, keep the
state (:mod:`._prepayments`) under their lock, and do the waiting.

When an x402 payment for a request (method, URL, and the digest of its body and
``Authorization`` header: :func:`request_key`) was served (2xx), the 402 came to that very
URL, its origin is one ``prepay`` allows, and the offer paid carries no per-request binding
(no ``extra.memo``, no server-chosen ``extra.recentBlockhash``) and a ``maxTimeoutSeconds``,
that challenge is remembered for that request (:func:`to_remember`). The agent then keeps the
next payment of it built, approved, reserved, signed and journaled (``signed``, durably:
:func:`prepare_ahead`, the very steps a payment takes before it is sent), never sent until a
request with that key takes it (:meth:`._prepayments.Prepayments.take`). A
HumanRPC invoice is never prepared: each is issued for one request.

A prepared payment is usable while the challenge is within its ``maxTimeoutSeconds`` (counted
from the 402) and its blockhash is as fresh as one the agent would sign over now (the chain
cache's ``blockhash_ttl``), less :data:`SAFETY_MARGIN`. One never taken is released once it is
no longer usable, or when the agent closes (:func:`release`): it becomes ``failed`` with
``landed`` False. That is safe because this process knows it never left, and an x402
transaction cannot land without the facilitator's signature, which only the server gets. One
taken is never released here: it is delivered like any payment (:func:`._delivery.deliver`).

At most :data:`PREPARED_KEYS` requests have a payment prepared (the least recently used one
is released to make room), so a wide crawler does not reserve its whole budget. A prepared
payment the server refuses stops preparation for its request until a normal payment to it is
served again; the refusal itself follows the normal rule (no second payment while the first
could still land).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol, TypeVar
from urllib.parse import urlsplit

from solders.hash import Hash

from ._checks import show
from ._delivery import PaymentOutcome, deliver
from ._effects import Flow, HttpReply, PaymentContext, Record, perform
from ._flow import ExactPayable, pay_new, sign_new
from ._http import Origin, origin
from ._receipts import PaymentReceipt
from ._records import JournalEntry
from ._resume import resume_key
from ._x402 import EXACT, Offer, PaymentRequired, read_payment_required
from .exceptions import HumanRPCError, PaymentError, SDKConfigurationError

__all__ = [
    "PREPARED_KEYS",
    "SAFETY_MARGIN",
    "Key",
    "PrepayPolicy",
    "Ready",
    "Remembered",
    "conclude",
    "deliver_prepared",
    "prepare_ahead",
    "prepay_policy",
    "release",
    "request_key",
    "to_remember",
]

logger = logging.getLogger("human_rpc_sdk")

PREPARED_KEYS: Final = 8
"""The most requests (method, URL) an agent keeps a payment prepared for at once."""
SAFETY_MARGIN: Final = 3.0
"""Seconds before the end of its usable time after which a prepared payment is not used."""
WAITING_NOTE: Final = "prepared ahead: signed before a request used it; sent only with one"
"""The row's ``error`` text while a prepared payment waits (replaced by the outcome)."""
UNUSED_KEPT: Final = 2
"""Payments prepared in a row for one request and released unused, after which none is
prepared for it until its next served payment (an idle agent does not sign every few seconds)."""
FRESH_FOR: Final = 10.0
"""Seconds a cached blockhash must stay fresh for a payment prepared over it; else a newer one
is fetched first (in the background)."""
RELEASED: Final = "prepared ahead, never sent"
NEVER_SENT: Final = (
    "never sent: prepared ahead and released unsent by the process that made it (an x402 "
    "transaction cannot land without the facilitator's signature, which only the server adds)"
)

Key = tuple[str, str, str]
"""A request: its method (upper case), its URL as sent, and a digest of what else may set its
price or whom it serves (:func:`request_key`)."""


def request_key(
    method: str,
    url: str,
    body: bytes | str | None,
    authorization: str | bytes | None,
    content_type: str | None = None,
) -> Key | None:
    """The key of a request: a payment prepared after one is attached only to a request with
    the same method, URL, body and ``Authorization`` header (a price may depend on the body,
    as an API's priced per page or token does, and on the caller; a payment the server
    refuses is not followed by another, so it must not be sent with a request it may not
    fit). None for a multipart body: its boundary is random, so no two requests share a key
    and a payment prepared for one would never be used."""
    if content_type is not None and content_type.lower().lstrip().startswith("multipart/"):
        return None
    digest = hashlib.sha256()
    for part in (body, authorization):
        data = b"" if part is None else part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big") + data)
    return method, url, digest.hexdigest()


# -- the setting ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PrepayPolicy:
    """Whether payments are prepared ahead, and for which origins (None: any)."""

    enabled: bool = False
    origins: frozenset[Origin] | None = None

    def allows(self, url: str) -> bool:
        if not self.enabled:
            return False
        return self.origins is None or origin(url) in self.origins


_PREPAY_HELP: Final = (
    "prepay must be True, False, or a list of origins such as "
    "['https://api.example.com', 'http://localhost:8080'] (scheme, host and port only)"
)


def prepay_policy(value: Any) -> PrepayPolicy:
    """``prepay=`` checked: a bool, or an iterable of origins (``scheme://host[:port]``).

    :raises SDKConfigurationError: naming ``prepay``, for anything else.
    """
    if isinstance(value, bool):
        return PrepayPolicy(value)
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise _bad_prepay(f"got {show(value, 60)}")
    origins = frozenset(_origin_of(item) for item in value)
    return PrepayPolicy(True, origins) if origins else PrepayPolicy(False)


def _origin_of(text: Any) -> Origin:
    if not isinstance(text, str):
        raise _bad_prepay(f"one of them is {show(text, 60)}")
    try:
        parts = urlsplit(text.strip())
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise _bad_prepay(f"{text[:100]!r} is not a URL") from None
    if (
        parts.scheme.lower() not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
    ):
        raise _bad_prepay(f"{text[:100]!r} is not an origin")
    return origin(text.strip())


def _bad_prepay(problem: str) -> SDKConfigurationError:
    return SDKConfigurationError(f"{_PREPAY_HELP}; {problem}", parameter="prepay")


# -- what is remembered --------------------------------------------------------------------


@dataclass(frozen=True)
class Remembered:
    """A challenge to prepare payments for: the one offer paid, and until when it is current."""

    payable: ExactPayable
    stale_at: float
    """The clock time its ``maxTimeoutSeconds`` (counted from the 402) runs out."""


def to_remember(
    challenge: HttpReply,
    receipt: PaymentReceipt,
    *,
    asked: str,
    served: str | None,
    challenged_at: float,
) -> Remembered | None:
    """The challenge ``challenge`` (the 402 to the request for URL ``asked``) to prepare the
    next payment of, after its payment (``receipt``) was served at ``served``; None when it
    may not be prepared (see the module)."""
    if receipt.format not in ("x402-v1", "x402-v2") or receipt.http_status is None:
        return None
    if not 200 <= receipt.http_status < 300 or challenge.url != asked or served != asked:
        return None
    if "set-cookie" in challenge.headers:  # the 402 opened a session: bound to this request
        return None
    try:
        required = read_payment_required(challenge.headers, challenge.body)
    except HumanRPCError:
        return None
    if required is None:
        return None
    paid = _offer_paid(required, receipt)
    if paid is None or paid.memo or paid.recent_blockhash is not None or paid.max_timeout <= 0:
        return None
    only = PaymentRequired(
        required.version, (paid,), required.resource, None, required.payment_identifier
    )
    return Remembered(ExactPayable(only, asked), challenged_at + paid.max_timeout)


def _offer_paid(required: PaymentRequired, receipt: PaymentReceipt) -> Offer | None:
    """The offer the payment of ``receipt`` paid: the first of its terms (as the payment flow
    picks the first of equally cheap offers)."""
    for offer in required.offers:
        if (
            offer.problem is None
            and offer.scheme == EXACT
            and offer.pay_to == receipt.recipient
            and offer.asset == receipt.mint
            and offer.amount == receipt.atomic_amount
        ):
            return offer
    return None


# -- the flows -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    """A payment prepared ahead, journaled ``signed``, waiting for its request."""

    key: Key = field(repr=False)  # its digest covers the Authorization header
    entry: JournalEntry = field(repr=False)
    payable: ExactPayable = field(repr=False)
    usable_until: float


def prepare_ahead(key: Key, remembered: Remembered, ctx: PaymentContext) -> Flow[Ready | None]:
    """Price, approve, reserve, sign and journal the next payment of ``remembered`` (the very
    steps of a payment before it is sent); the payment ready, or None when it could not be
    made usable (it is then released at once). A refusal (a spending rule, ``approve``, the
    RPC) is raised as it is: nothing was signed."""
    now = ctx.clock()
    current = ctx.cache.blockhash(now)
    if current is None or (ctx.cache.usable_until(current) or now) - now < FRESH_FOR:
        ctx.cache.forget_blockhash()  # read a newer one with the accounts: it lasts longer
    made = yield from sign_new(remembered.payable, ctx, replaces=None, note=WAITING_NOTE)
    if not isinstance(made, JournalEntry):  # an invoice already paid: x402 offers here have none
        return None
    ready = Ready(key, made, remembered.payable, _usable_until(made, remembered, ctx))
    if ready.usable_until <= ctx.clock():
        yield from release(made)  # its blockhash is too old (or not the agent's): never used
        return None
    logger.debug("payment #%s prepared ahead for %s %s", made.id, key[0], key[1])
    return ready


def _bind_to_request(
    entry: JournalEntry, payable: ExactPayable, request: str, ctx: PaymentContext
) -> Flow[JournalEntry]:
    """``entry`` journaled with what resumes it for ``request`` (unchanged without one)."""
    (offer,) = payable.challenge.offers
    key = resume_key(request, payable.url, offer, ctx.signer.pubkey())
    if key is None:
        return entry
    bound = yield from perform(Record(entry.id, "signed", {"resume_key": key}, ("signed",)))
    return entry if bound is None else bound


def _usable_until(entry: JournalEntry, remembered: Remembered, ctx: PaymentContext) -> float:
    fresh_until = None
    if entry.blockhash is not None and entry.last_valid_block_height is not None:
        fresh_until = ctx.cache.usable_until(Hash.from_string(entry.blockhash))
    if fresh_until is None:  # no facts of its blockhash: it could never be proven expired
        return float("-inf")
    return min(remembered.stale_at, fresh_until) - SAFETY_MARGIN


def release(entry: JournalEntry) -> Flow[JournalEntry | None]:
    """Release a prepared payment this process never sent: ``failed``, ``landed`` False, its
    budget back. Only from ``signed`` (a row another process settled is left as it is)."""
    fields = {"error": RELEASED, "landed": False, "landed_proof": NEVER_SENT}
    try:
        released = yield from perform(
            Record(entry.id, "failed", fields, ("signed",), durable=False)
        )
    except PaymentError as exc:  # the journal is unavailable: recovery settles it later
        logger.warning(
            "payment #%s, prepared ahead and never sent, could not be released (%s); "
            "agent.recover_payments() releases it once its blockhash has expired",
            entry.id,
            exc.reason,
        )
        return None
    if released is not None:
        logger.debug("payment #%s, prepared ahead and never sent, released", entry.id)
    return released


R = TypeVar("R")


class Marks(Protocol):
    """What a driver's prepayer learns of a prepared payment once it was delivered."""

    def served(self, key: Key) -> None: ...

    def refused(self, key: Key) -> None: ...


def conclude(
    marks: Marks,
    key: Key,
    outcome: PaymentOutcome,
    response: R | None,
    status: int | None,
    redirected: bool,
) -> R:
    """The answer to a request sent with a payment prepared ahead (``response``, its HTTP
    ``status``), after telling ``marks`` whether the next may be prepared: only when it was
    served (2xx, no error) where it was asked (not ``redirected``). Raises the outcome's
    error, as any paid request's."""
    served = outcome.error is None and status is not None and 200 <= status < 300
    if served and not redirected:
        marks.served(key)
    else:
        marks.refused(key)
    if outcome.error is not None:
        raise outcome.error
    if response is None:  # deliver ends without an error only after an answer came
        raise RuntimeError("a prepared payment was delivered without an answer")
    return response


def deliver_prepared(ready: Ready, ctx: PaymentContext, request: str = "") -> Flow[PaymentOutcome]:
    """Send the prepared payment ``ready`` with its request (the driver's :class:`Resend`),
    and judge and journal the answer as any payment's: the same re-sends on no answer, the
    same rule on a refusal (paid again only once the chain proves it never landed).

    A prepared payment with a payment id learns its request only now (``request``, as
    :func:`._resume.request_fingerprint` identifies it): what resumes it is journaled before
    it is sent, so a later same request re-sends it rather than paying anew.
    """
    entry = ready.entry
    if entry.payment_id is not None:
        entry = yield from _bind_to_request(entry, ready.payable, request, ctx)
    receipt = replace(entry.receipt, error_reason=None)  # no longer waiting
    logger.info(
        "paying %s %s to %s for %s (%s, journal #%s, prepared ahead)",
        receipt.amount,
        receipt.currency,
        receipt.recipient,
        receipt.url,
        receipt.format,
        entry.id,
    )
    sent = replace(entry, receipt=receipt)
    outcome = yield from deliver(sent, ready.payable, ctx, may_replace=True, pay_new=pay_new)
    if outcome.error is not None:
        ctx.cache.forget_accounts()  # it may have been priced on stale state: read afresh
    return outcome
