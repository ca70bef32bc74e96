"""Sign-in-with-x on Solana: back into what this wallet already paid for, without paying again.

An x402 v2 402 may offer the ``sign-in-with-x`` extension (x402 ``specs/extensions/
sign-in-with-x.md``): ``extensions["sign-in-with-x"]`` holds ``info`` (``domain``, ``uri``,
``version``, ``nonce``, ``issuedAt``, optional ``expirationTime``, ``notBefore``,
``statement``, ``requestId``, ``resources``) and ``supportedChains`` (``chainId``, ``type``).
A wallet signs the challenge as a Sign-In-With-Solana message (CAIP-122 text, ed25519) and
sends the proof, base64 JSON, in the ``SIGN-IN-WITH-X`` header of the same request; the server
checks the signature and whether that wallet paid for the resource, and serves it or answers
402 again.

:func:`pay_or_sign_in` is :func:`~._flow.pay` with one step before it (:func:`sign_in`):

1. the 402 offers sign-in on the agent's chain (``solana:<genesis prefix>``, ``ed25519``);
2. the journal shows this wallet paid for this URL on this network, and the server served that
   payment (:class:`~._effects.PaidBefore`; never paid: it pays as today, and no server learns
   the wallet's address from a signature it had no reason to ask for);
3. the challenge is the origin's own and current: its ``domain`` is the host asked, its
   ``uri`` on the origin asked, it is not expired (``expirationTime``, else five minutes after
   ``issuedAt``, as the spec's default), not before ``notBefore``, and not issued in the future
   (beyond an hour of clock skew); its text cannot be read
   as a transaction message (a signature over it could never move money);
4. the message is signed through the agent's signer (a :class:`~._effects.Sign` effect, so a
   KMS or an async signer works) and the signature verified before use (a signature that does
   not verify: ``bad_signature``, nothing sent; a signer that raises, as one that signs only
   transactions may: the 402 is paid as today);
5. the request is sent again with the proof (:class:`SignInResend`). Served: :class:`SignedIn`,
   nothing paid. Answered 402: the sign-in was refused, and the 402 is paid as today, once,
   through every spending rule. No answer or a 5xx: :class:`PaymentError`
   ``sign_in_unanswered``, nothing paid (the server may have served it: paying then could pay
   for what the wallet already has).

A challenge failing 3 is not signed: the agent pays as it would without the extension (with a
warning). Signing in is not a payment: no budget is touched and nothing is journaled; it is
logged (never the signature). A server (the stub gateway's members route) verifies proofs with
:func:`read_proof` and :func:`proof_problem`.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

from solders.message import Message, from_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature

from ._delivery import PaymentOutcome
from ._effects import (
    Flow,
    HttpReply,
    NoAnswer,
    PaidBefore,
    PaymentContext,
    Resend,
    Sign,
    perform,
)
from ._flow import pay
from ._headers import b64json, unb64json
from ._networks import x402_names
from ._records import JournalEntry
from ._x402 import MAX_HEADER_CHARS, PAYMENT_REQUIRED_HEADER
from .exceptions import PaymentError, TransactionBuildError
from .wallet import OwnSignature

__all__ = [
    "SIGN_IN_HEADER",
    "SIGN_IN_WITH_X",
    "SignInChallenge",
    "SignInProof",
    "SignInResend",
    "SignedIn",
    "challenge_for",
    "offered",
    "offers_sign_in",
    "pay_or_sign_in",
    "proof_problem",
    "read_proof",
    "refusal",
    "sign_in",
]

logger = logging.getLogger("human_rpc_sdk")

SIGN_IN_WITH_X: Final = "sign-in-with-x"
SIGN_IN_HEADER: Final = "SIGN-IN-WITH-X"
DEFAULT_LIFETIME: Final = timedelta(minutes=5)
"""How long a challenge without ``expirationTime`` is good for (the spec's default)."""
CLOCK_SKEW: Final = timedelta(hours=1)
"""How far ahead of the agent's clock a challenge's ``issuedAt`` may be (a server's clock may
run ahead); further, it is a sign-in for later, and is not signed."""
MAX_FIELD_CHARS: Final = 1024
MAX_RESOURCES: Final = 16
MAX_PROOF_CHARS: Final = 16_384


@dataclass(frozen=True)
class SignInChallenge:
    """One chain's sign-in challenge: the server's ``info`` with the chosen ``supportedChains``
    entry (``chain_id``, ``type`` and its optional ``signature_scheme``)."""

    domain: str
    uri: str
    version: str
    chain_id: str
    nonce: str
    issued_at: str
    statement: str | None = None
    expiration_time: str | None = None
    not_before: str | None = None
    request_id: str | None = None
    resources: tuple[str, ...] = ()
    signature_scheme: str | None = None

    def message(self, address: str) -> str:
        """The Sign-In-With-Solana text ``address`` signs (CAIP-122; the reference's lines)."""
        lines = [f"{self.domain} wants you to sign in with your Solana account:", address, ""]
        if self.statement:
            lines += [self.statement, ""]
        lines += [
            f"URI: {self.uri}",
            f"Version: {self.version}",
            f"Chain ID: {self.chain_id.split(':', 1)[1]}",
            f"Nonce: {self.nonce}",
            f"Issued At: {self.issued_at}",
        ]
        for label, value in (
            ("Expiration Time", self.expiration_time),
            ("Not Before", self.not_before),
            ("Request ID", self.request_id),
        ):
            if value:
                lines.append(f"{label}: {value}")
        if self.resources:
            lines += ["Resources:", *(f"- {resource}" for resource in self.resources)]
        return "\n".join(lines)

    def proof(self, address: str, signature: str) -> dict[str, Any]:
        """The ``SIGN-IN-WITH-X`` document: every field of the challenge, the address and the
        base58 signature."""
        document: dict[str, Any] = {
            "domain": self.domain,
            "address": address,
            "uri": self.uri,
            "version": self.version,
            "chainId": self.chain_id,
            "type": "ed25519",
            "nonce": self.nonce,
            "issuedAt": self.issued_at,
        }
        optional = {
            "statement": self.statement,
            "expirationTime": self.expiration_time,
            "notBefore": self.not_before,
            "requestId": self.request_id,
            "resources": list(self.resources) or None,
            "signatureScheme": self.signature_scheme,
        }
        document.update({k: v for k, v in optional.items() if v is not None})
        document["signature"] = signature
        return document


# -- reading the offer ----------------------------------------------------------------------


def offered(headers: Mapping[str, str]) -> Mapping[str, Any] | None:
    """The ``sign-in-with-x`` extension a v2 402's ``PAYMENT-REQUIRED`` header declares, or None.

    :raises ValueError: the header or the extension is not what x402 defines.
    """
    header = headers.get(PAYMENT_REQUIRED_HEADER)
    if not header:
        return None
    if len(header) > MAX_HEADER_CHARS:
        raise ValueError(f"the {PAYMENT_REQUIRED_HEADER} header is larger than 16 KiB")
    extensions = unb64json(header, PAYMENT_REQUIRED_HEADER).get("extensions")
    if extensions is None:
        return None
    if not isinstance(extensions, Mapping):
        raise ValueError("extensions is not an object")
    extension = extensions.get(SIGN_IN_WITH_X)
    if extension is None:
        return None
    if not isinstance(extension, Mapping):
        raise ValueError(f"extensions[{SIGN_IN_WITH_X!r}] is not an object")
    return extension


def challenge_for(extension: Mapping[str, Any], chain_id: str) -> SignInChallenge | None:
    """The challenge of ``extension`` for ``chain_id`` with ed25519 signatures; None when it
    offers none.

    :raises ValueError: a field is missing, not text, too long, or holds a line break.
    """
    chains = extension.get("supportedChains")
    if not isinstance(chains, list):
        raise ValueError("supportedChains is not a list")
    wanted = {"chainId": chain_id, "type": "ed25519"}
    chosen = next(
        (
            c
            for c in chains
            if isinstance(c, Mapping) and all(c.get(k) == v for k, v in wanted.items())
        ),
        None,
    )
    if chosen is None:
        return None
    info = extension.get("info")
    if not isinstance(info, Mapping):
        raise ValueError("info is not an object")
    return _challenge(info, chain_id, _text(chosen, "signatureScheme", required=False))


def _challenge(info: Mapping[str, Any], chain_id: str, scheme: str | None) -> SignInChallenge:
    resources = info.get("resources") or []
    if not isinstance(resources, list) or len(resources) > MAX_RESOURCES:
        raise ValueError(f"resources is not a list of at most {MAX_RESOURCES} URIs")
    return SignInChallenge(
        domain=_required(info, "domain"),
        uri=_required(info, "uri"),
        version=_required(info, "version"),
        chain_id=chain_id,
        nonce=_required(info, "nonce"),
        issued_at=_required(info, "issuedAt"),
        statement=_text(info, "statement", required=False),
        expiration_time=_text(info, "expirationTime", required=False),
        not_before=_text(info, "notBefore", required=False),
        request_id=_text(info, "requestId", required=False),
        resources=tuple(_line(r, "resources[]") for r in resources),
        signature_scheme=scheme,
    )


def _required(info: Mapping[str, Any], name: str) -> str:
    value = _text(info, name, required=True)
    assert value is not None  # noqa: S101 - required=True returns text or raises
    return value


def _text(info: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = info.get(name)
    if value is None or (value == "" and not required):
        if required:
            raise ValueError(f"{name} is missing")
        return None
    return _line(value, name)


def _line(value: object, name: str) -> str:
    """``value`` as one line of the message: text, short, no line break (which could forge the
    message's other lines)."""
    if not isinstance(value, str) or not value or len(value) > MAX_FIELD_CHARS:
        raise ValueError(f"{name} is not text of 1 to {MAX_FIELD_CHARS} characters")
    # Every character some reader takes for a line break (str.splitlines() splits at \v, \f
    # and \x1c-\x1e too), and any other control character: one line stays one line.
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value):
        raise ValueError(f"{name} holds a line break or a control character")
    return value


# -- deciding -------------------------------------------------------------------------------


def refusal(challenge: SignInChallenge, url: str, now: datetime, address: str) -> str | None:
    """Why ``address`` must not sign ``challenge`` received from ``url`` at ``now``; None if it
    may.

    Only the origin asked may have its sign-in signed, only while the challenge is valid, and
    never a text that reads as a Solana transaction message.
    """
    asked = urlsplit(url)
    uri = urlsplit(challenge.uri)
    if challenge.domain != asked.netloc:
        return f"its domain {challenge.domain!r} is not the host asked, {asked.netloc!r}"
    if (uri.scheme, uri.netloc) != (asked.scheme, asked.netloc):
        return f"its uri {challenge.uri!r} is not on the origin asked"
    if challenge.version != "1":
        return f"it is version {challenge.version!r}, not CAIP-122 version '1'"
    try:
        issued = parse_time(challenge.issued_at)
        expires = (
            parse_time(challenge.expiration_time)
            if challenge.expiration_time
            else issued + DEFAULT_LIFETIME
        )
        starts = parse_time(challenge.not_before) if challenge.not_before else None
    except ValueError as exc:
        return str(exc)
    if issued > now + CLOCK_SKEW:
        # A signature over a challenge issued later is a sign-in kept for later (a verifier
        # checking its age from issuedAt takes it then): never sign one ahead of time.
        return f"it was issued in the future, at {issued.isoformat()}"
    if expires <= now:
        return f"it expired at {expires.isoformat()}"
    if starts is not None and now < starts:
        return f"it is not valid before {starts.isoformat()}"
    if _reads_as_transaction(challenge.message(address).encode("utf-8")):
        return "its text reads as a Solana transaction message"
    return None


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (``Z`` or an offset; none: UTC) as an aware datetime.

    :raises ValueError: not such a time.
    """
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _reads_as_transaction(message: bytes) -> bool:
    for parse in (Message.from_bytes, from_bytes_versioned):
        try:
            parse(message)
        except Exception:  # noqa: BLE001, S112 - any parse failure means "not a message"
            continue
        return True
    return False


# -- the flow -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignInResend(Resend):
    """A :class:`Resend` carrying a sign-in, not a payment: no money moves. ``receipt`` is the
    earlier payment the sign-in stands on (drivers send it as any re-send)."""


@dataclass(frozen=True)
class SignedIn:
    """The request was served by signing in: nothing was paid (``receipt`` and ``error`` are
    None, as a :class:`PaymentOutcome`'s would be read)."""

    reply: HttpReply
    address: str
    paid_by: int
    """The journal id of the earlier payment that made the agent sign in."""
    receipt: None = None
    error: None = None


def pay_or_sign_in(reply: HttpReply, ctx: PaymentContext) -> Flow[PaymentOutcome | SignedIn]:
    """:func:`~._flow.pay`, but first sign in when the 402 allows it (see the module)."""
    answer = yield from sign_in(reply, ctx)
    if isinstance(answer, SignedIn):
        return answer
    return (yield from pay(answer, ctx))


def sign_in(reply: HttpReply, ctx: PaymentContext) -> Flow[SignedIn | HttpReply]:
    """Sign in to the 402 ``reply`` when the module's rules allow: :class:`SignedIn` when
    served, else the 402 to pay (``reply``, or the fresher one refusing the sign-in).

    :raises PaymentError: ``sign_in_unanswered``: no answer, or a 5xx; nothing was paid.
    :raises TransactionBuildError: the signer's signature does not verify (a signer that
        raises instead is taken as one that signs transactions only: the 402 is paid).
    """
    challenge = _challenge_of(reply, ctx.network)
    if challenge is None:
        return reply
    payer = ctx.signer.pubkey()
    paid = yield from perform(PaidBefore(reply.url, str(payer), ctx.network))
    if paid is None:
        return reply
    why = refusal(challenge, reply.url, ctx.now(), str(payer))
    if why is not None:
        logger.warning(
            "%s offers sign-in, but its challenge is not signed (%s); paying as usual",
            reply.url,
            why,
        )
        return reply
    try:
        header = yield from _signed_proof(challenge, payer)
    except TransactionBuildError as exc:
        if exc.reason != "signer_failed":
            raise
        # A wallet may sign transactions only (a KMS policy, a device): it can still pay.
        logger.warning(
            "the signer would not sign the sign-in to %s (%s); paying as usual", reply.url, exc
        )
        return reply
    answer = yield from perform(SignInResend({SIGN_IN_HEADER: header}, paid.receipt))
    return _judged(answer, reply, str(payer), paid)


def offers_sign_in(reply: HttpReply, network: str) -> bool:
    """Whether the 402 ``reply`` offers sign-in on ``network``'s chain (then no payment of it
    is prepared ahead: the next request can sign in for nothing)."""
    return _challenge_of(reply, network, quiet=True) is not None


def _challenge_of(reply: HttpReply, network: str, *, quiet: bool = False) -> SignInChallenge | None:
    """The sign-in challenge ``reply`` offers on ``network``'s chain, if any (a malformed
    offer is ignored with a warning: the 402 is then paid as any other)."""
    chain = x402_names(network)[1]
    if reply.status != 402 or chain is None:
        return None
    try:
        extension = offered(reply.headers)
        return None if extension is None else challenge_for(extension, chain)
    except ValueError as exc:
        if not quiet:
            logger.warning("%s offers a malformed sign-in (%s); paying as usual", reply.url, exc)
        return None


def _signed_proof(challenge: SignInChallenge, payer: Pubkey) -> Flow[str]:
    """The ``SIGN-IN-WITH-X`` header value: the message signed by the agent's signer, the
    signature verified first."""
    message = challenge.message(str(payer)).encode("utf-8")
    answer = yield from perform(Sign(message, payer))
    signature = answer.signature if isinstance(answer, OwnSignature) else answer
    if not isinstance(answer, OwnSignature) and not signature.verify(payer, message):
        raise TransactionBuildError(
            f"the signer for {payer} returned a sign-in signature that does not verify; check "
            "that the signer signs with the key it reports. Nothing was sent or paid",
            reason="bad_signature",
        )
    return b64json(challenge.proof(str(payer), str(signature)))


def _judged(
    answer: HttpReply | NoAnswer, asked: HttpReply, address: str, paid: JournalEntry
) -> SignedIn | HttpReply:
    if isinstance(answer, NoAnswer) or answer.status >= 500:
        problem = answer.problem if isinstance(answer, NoAnswer) else f"HTTP {answer.status}"
        raise PaymentError(
            f"signing in to {asked.url} got no answer ({problem}). Nothing was paid: the "
            "server may have served the sign-in, and paying again could pay for what this "
            "wallet already has; request the resource again",
            reason="sign_in_unanswered",
            details={"url": asked.url, "paid_by": paid.id},
        )
    if answer.status == 402:
        logger.info("%s refused the sign-in of %s; paying as usual", asked.url, address)
        fresh = answer.url == asked.url and PAYMENT_REQUIRED_HEADER in answer.headers
        return answer if fresh else asked
    logger.info(
        "signed in to %s as %s (paid before: journal #%s); nothing paid: HTTP %s",
        asked.url,
        address,
        paid.id,
        answer.status,
    )
    return SignedIn(answer, address, paid.id)


# -- checking a proof (the server side) -----------------------------------------------------


@dataclass(frozen=True)
class SignInProof:
    """A ``SIGN-IN-WITH-X`` header read: the challenge signed, by ``address``, ``signature``."""

    challenge: SignInChallenge
    address: str
    signature: str


def read_proof(value: str) -> SignInProof:
    """The proof a ``SIGN-IN-WITH-X`` header carries.

    :raises ValueError: it is not base64 JSON with every field the spec requires.
    """
    if len(value) > MAX_PROOF_CHARS:
        raise ValueError("the header is too large")
    document = unb64json(value, SIGN_IN_HEADER)
    chain = _required(document, "chainId")
    if _required(document, "type") != "ed25519":
        raise ValueError("type is not ed25519")
    challenge = _challenge(document, chain, _text(document, "signatureScheme", required=False))
    return SignInProof(challenge, _required(document, "address"), _required(document, "signature"))


def proof_problem(proof: SignInProof) -> str | None:
    """Why ``proof``'s signature is not ``address``'s ed25519 signature of the exact SIWS
    message of its fields (None: it is)."""
    if not proof.challenge.chain_id.startswith("solana:"):
        return "its chain is not a Solana chain"
    try:
        address = Pubkey.from_string(proof.address)
        signature = Signature.from_string(proof.signature)
    except ValueError:
        return "its address or signature is not base58 of the right length"
    message = proof.challenge.message(proof.address).encode("utf-8")
    if not signature.verify(address, message):
        return "its signature is not the address's signature of the message"
    return None
