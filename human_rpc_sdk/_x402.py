"""x402 v1 and v2 on Solana, without I/O: offers, their validation, payment headers, receipts.

A 402 speaks x402 when it carries a ``PAYMENT-REQUIRED`` header (v2: base64 JSON) or a JSON
body with ``x402Version: 1`` and ``accepts`` (v1). Each ``accepts`` entry is an *offer*. An offer
this agent can pay is scheme ``exact``, on the agent's network, in an accepted asset, within the
agent's limits; :class:`Offer` holds one offer, checked field by field as the x402 conformance
suite does, with the reason when it cannot be paid. Facts: ``PROTOCOL.md`` sections 1-3 and 9.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from solders.hash import Hash
from solders.transaction import VersionedTransaction

from ._checks import is_pubkey
from ._headers import b64json, unb64json
from ._money import U64_MAX
from ._networks import cluster_of
from .exceptions import InvoiceValidationError

__all__ = [
    "PAYMENT_IDENTIFIER",
    "PAYMENT_REQUIRED_HEADER",
    "PAYMENT_RESPONSE_HEADER",
    "PAYMENT_SIGNATURE_HEADER",
    "V1_PAYMENT_HEADER",
    "V1_RESPONSE_HEADER",
    "IdDeclaration",
    "Offer",
    "PaymentRequired",
    "encode_payment",
    "is_payment_id",
    "new_payment_id",
    "read_payment_required",
    "read_settlement",
]

V1_PAYMENT_HEADER: Final = "X-PAYMENT"
V1_RESPONSE_HEADER: Final = "X-PAYMENT-RESPONSE"
PAYMENT_REQUIRED_HEADER: Final = "PAYMENT-REQUIRED"
PAYMENT_SIGNATURE_HEADER: Final = "PAYMENT-SIGNATURE"
PAYMENT_RESPONSE_HEADER: Final = "PAYMENT-RESPONSE"
EXACT: Final = "exact"
MAX_HEADER_CHARS: Final = 16_384
MAX_MEMO_BYTES: Final = 256
COMPUTE_UNIT_LIMIT: Final = 20_000
COMPUTE_UNIT_PRICE: Final = 1  # micro-lamports per compute unit, as the reference client
_DIGITS: Final = re.compile(r"[0-9]+")
PAYMENT_IDENTIFIER: Final = "payment-identifier"
"""The x402 extension that carries a client's idempotency key (``specs/extensions/
payment_identifier.md``): 16-128 characters of ``[A-Za-z0-9_-]``, ``pay_`` + 32 hex here."""
_PAYMENT_ID: Final = re.compile(r"[A-Za-z0-9_-]{16,128}")
MAX_OFFERS: Final = 64
"""Offers of one challenge that are considered; the rest are refused unread."""
_BEYOND_CAP: Final = (
    f"it comes after the first {MAX_OFFERS} offers, and this agent considers no more than "
    f"{MAX_OFFERS} offers of one 402 answer"
)


@dataclass(frozen=True)
class Offer:
    """One ``accepts`` entry. ``problem`` says why it cannot be paid at all (None if it can)."""

    version: int
    index: int
    raw: Mapping[str, Any]
    scheme: str
    network: str
    cluster: str | None
    amount: int
    asset: str
    pay_to: str
    max_timeout: int
    fee_payer: str
    memo: str | None
    recent_blockhash: Hash | None
    problem: str | None = None


@dataclass(frozen=True)
class IdDeclaration:
    """A v2 challenge's ``payment-identifier`` declaration: whether an id is ``required``, and
    the declaration as sent (echoed in the payment with the id added to its ``info``)."""

    required: bool
    raw: Mapping[str, Any]

    def with_id(self, payment_id: str) -> dict[str, Any]:
        """The extension as the payment carries it: the declaration, ``info.id`` added."""
        echoed = dict(self.raw)
        echoed["info"] = {**dict(self.raw["info"]), "id": payment_id}
        return echoed


@dataclass(frozen=True)
class PaymentRequired:
    """An x402 challenge: its version, offers, and (v2) the resource it protects and the
    ``payment-identifier`` extension, when it declares it."""

    version: int
    offers: tuple[Offer, ...]
    resource: Mapping[str, Any] | None
    error: str | None
    payment_identifier: IdDeclaration | None = None


def read_payment_required(headers: Mapping[str, str], body: bytes) -> PaymentRequired | None:
    """The x402 challenge of a 402 answer, v2 header first; None when there is none.

    :raises InvoiceValidationError: when an x402 challenge is present but malformed.
    """
    header = headers.get(PAYMENT_REQUIRED_HEADER)
    if header:
        if len(header) > MAX_HEADER_CHARS:
            raise _bad("the PAYMENT-REQUIRED header is larger than 16 KiB")
        try:
            document = unb64json(header, PAYMENT_REQUIRED_HEADER)
        except ValueError as exc:
            raise _bad(str(exc)) from None
        if document.get("x402Version") != 2:
            raise _bad("the PAYMENT-REQUIRED header must carry x402Version 2")
        return _challenge(document, 2)
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if isinstance(document, dict) and document.get("x402Version") == 1 and "accepts" in document:
        return _challenge(document, 1)
    if isinstance(document, dict) and "x402Version" in document:
        raise _bad(
            "the 402 body names x402Version "
            f"{document.get('x402Version')!r}; a body carries only version 1 (v2 uses the "
            "PAYMENT-REQUIRED header)"
        )
    return None


def _challenge(document: Mapping[str, Any], version: int) -> PaymentRequired:
    accepts = document.get("accepts")
    if not isinstance(accepts, list) or not accepts:
        raise _bad("accepts must be a non-empty list of payment offers")
    resource = document.get("resource")
    if version == 2 and not (
        isinstance(resource, Mapping) and isinstance(resource.get("url"), str)
    ):
        raise _bad("a v2 challenge must name its resource (resource.url)")
    error = document.get("error")
    declared = _id_declaration(document.get("extensions")) if version == 2 else None
    return PaymentRequired(
        version=version,
        offers=tuple(
            _offer(entry, index, version)
            if index < MAX_OFFERS
            else _unusable(index, version, {}, _BEYOND_CAP)
            for index, entry in enumerate(accepts)
        ),
        resource=resource if isinstance(resource, Mapping) else None,
        error=error if isinstance(error, str) else None,
        payment_identifier=declared,
    )


def _id_declaration(extensions: Any) -> IdDeclaration | None:
    """The ``payment-identifier`` declaration of a v2 challenge's ``extensions``, or None.

    A declaration the agent cannot read is refused rather than ignored: it may say an id is
    required, and a payment sent without one could be taken and not served.
    """
    if not isinstance(extensions, Mapping) or PAYMENT_IDENTIFIER not in extensions:
        return None
    declared = extensions[PAYMENT_IDENTIFIER]
    problem = _declaration_problem(declared)
    if problem is not None:
        raise InvoiceValidationError(
            f"the 402 answer's x402 challenge declares the {PAYMENT_IDENTIFIER} extension, but "
            f"{problem}. Nothing was signed or paid: the agent cannot tell whether the server "
            "requires a payment id, or in what form (specs/extensions/payment_identifier.md)",
            field=f"extensions.{PAYMENT_IDENTIFIER}",
            reason="malformed_payment_identifier",
        )
    return IdDeclaration(declared["info"]["required"], declared)


def _declaration_problem(declared: Any) -> str | None:
    if not isinstance(declared, Mapping):
        return "the declaration is not a JSON object"
    info = declared.get("info")
    if not isinstance(info, Mapping) or not isinstance(info.get("required"), bool):
        return "its info.required is not a boolean"
    schema = declared.get("schema")
    if schema is None:
        return None
    if not isinstance(schema, Mapping):
        return "its schema is not a JSON Schema object"
    properties = schema.get("properties", {})
    if not isinstance(properties, Mapping):
        return "its schema's properties is not an object"
    wanted = properties.get("id", {})
    if not isinstance(wanted, Mapping) or wanted.get("type", "string") != "string":
        return "its schema does not take the id as a string"
    return None


def is_payment_id(text: Any) -> bool:
    """Whether ``text`` is a payment id in the spec's format (16-128 of ``[A-Za-z0-9_-]``)."""
    return isinstance(text, str) and _PAYMENT_ID.fullmatch(text) is not None


def new_payment_id(nonce: str) -> str:
    """A payment id made of the random ``nonce``: ``pay_`` + 32 hex characters, as the spec
    recommends (the nonce itself when it is 32 hex characters, else a digest of it)."""
    text = nonce if re.fullmatch(r"[0-9a-f]{32}", nonce) else hashlib.sha256(nonce.encode())
    return f"pay_{text if isinstance(text, str) else text.hexdigest()[:32]}"


def _offer(entry: Any, index: int, version: int) -> Offer:
    if not isinstance(entry, Mapping):
        return _unusable(index, version, {}, "it is not a JSON object")
    raw = entry
    problems = []
    scheme, network, asset, pay_to = (raw.get(k) for k in ("scheme", "network", "asset", "payTo"))
    for name, value in (
        ("scheme", scheme),
        ("network", network),
        ("asset", asset),
        ("payTo", pay_to),
    ):
        if not isinstance(value, str) or not value:
            problems.append(f"{name} is missing")
    amount_key = "amount" if version == 2 else "maxAmountRequired"
    amount_text = raw.get(amount_key)
    amount = 0
    if isinstance(amount_text, str) and _DIGITS.fullmatch(amount_text) and len(amount_text) <= 20:
        amount = int(amount_text)
    if not 0 < amount <= U64_MAX:
        problems.append(f"{amount_key} must be a positive whole number of base units as a string")
    timeout = raw.get("maxTimeoutSeconds")
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
        problems.append("maxTimeoutSeconds must be a positive integer")
        timeout = 0
    extra = raw.get("extra", {})
    if not isinstance(extra, Mapping):
        problems.append("extra must be an object")
        extra = {}
    for name, value in (
        ("asset", asset),
        ("payTo", pay_to),
        ("extra.feePayer", extra.get("feePayer")),
    ):
        if isinstance(value, str) and value and not is_pubkey(value):
            problems.append(f"{name} is not a Solana address")
    fee_payer = extra.get("feePayer")
    if scheme == EXACT and not (isinstance(fee_payer, str) and is_pubkey(fee_payer)):
        problems.append("extra.feePayer (the facilitator's fee payer) is missing or invalid")
    memo = extra.get("memo")
    if memo is not None and (not isinstance(memo, str) or len(memo.encode()) > MAX_MEMO_BYTES):
        problems.append(f"extra.memo must be text of at most {MAX_MEMO_BYTES} bytes")
        memo = None
    return Offer(
        version=version,
        index=index,
        raw=raw,
        scheme=scheme if isinstance(scheme, str) else "",
        network=network if isinstance(network, str) else "",
        cluster=cluster_of(network) if isinstance(network, str) else None,
        amount=amount,
        asset=asset if isinstance(asset, str) else "",
        pay_to=pay_to if isinstance(pay_to, str) else "",
        max_timeout=timeout,
        fee_payer=fee_payer if isinstance(fee_payer, str) else "",
        memo=memo or None,
        recent_blockhash=_hash(extra.get("recentBlockhash")) if version == 2 else None,
        problem="; ".join(problems) or None,
    )


def _unusable(index: int, version: int, raw: Mapping[str, Any], problem: str) -> Offer:
    return Offer(version, index, raw, "", "", None, 0, "", "", 0, "", None, None, problem)


def _hash(value: Any) -> Hash | None:
    if not isinstance(value, str):
        return None
    try:
        return Hash.from_string(value)
    except ValueError:
        return None


def refusal(offer: Offer, cluster: str) -> str | None:
    """Why this agent cannot pay ``offer`` at all (before looking at the chain), or None."""
    wrong_network = network_refusal(offer, cluster)
    if wrong_network is not None:
        return wrong_network
    if offer.problem:
        return f"malformed: {offer.problem}"
    if offer.scheme != EXACT:
        return f"scheme {offer.scheme!r} is not supported (only 'exact')"
    return None


def network_refusal(offer: Offer, cluster: str) -> str | None:
    """Why ``offer`` is for another network than ``cluster``, or None.

    An offer for another chain (``base-sepolia``, ``eip155:84532``) is a valid offer this
    agent cannot pay, not a malformed one: its addresses are that chain's, not Solana's.
    """
    if not offer.network:
        return None  # no network at all: a malformed offer
    if offer.cluster is None:
        return (
            f"for network {offer.network}, this agent pays on solana {cluster}; "
            f"{offer.network} is not a Solana network"
        )
    if offer.cluster != cluster:
        return (
            f"for network {offer.network} (solana {offer.cluster}), this agent pays on "
            f"solana {cluster}"
        )
    return None


def self_refusal(offer: Offer, agent: str) -> str | None:
    """Why ``offer`` would make the agent ``agent`` pay itself or its own fees, or None."""
    if offer.fee_payer == agent:
        return (
            f"extra.feePayer is this agent's own address {agent}: the agent would sign as the "
            "fee payer, paying network fees no limit counts, with no facilitator involved"
        )
    if offer.pay_to == agent:
        return f"payTo is this agent's own address {agent}: the agent would pay itself"
    return None


# -- payment headers ---------------------------------------------------------------------------


def encode_payment(
    offer: Offer,
    transaction: VersionedTransaction,
    resource: Mapping[str, Any] | None,
    extensions: Mapping[str, Any] | None = None,
) -> tuple[str, str]:
    """The header name and value that carry ``transaction`` for ``offer`` (v2: with
    ``extensions``, such as the payment id, when given)."""
    wire = base64.b64encode(bytes(transaction)).decode("ascii")
    if offer.version == 1:
        document: dict[str, Any] = {
            "x402Version": 1,
            "scheme": EXACT,
            "network": offer.network,
            "payload": {"transaction": wire},
        }
        return V1_PAYMENT_HEADER, b64json(document)
    document = {"x402Version": 2, "payload": {"transaction": wire}, "accepted": dict(offer.raw)}
    if resource is not None:
        document["resource"] = dict(resource)
    if extensions:
        document["extensions"] = dict(extensions)
    return PAYMENT_SIGNATURE_HEADER, b64json(document)


def read_settlement(headers: Mapping[str, str]) -> dict[str, Any] | None:
    """The settlement (``PAYMENT-RESPONSE``, else ``X-PAYMENT-RESPONSE``); None if absent."""
    for name in (PAYMENT_RESPONSE_HEADER, V1_RESPONSE_HEADER):
        value = headers.get(name)
        if value and len(value) <= MAX_HEADER_CHARS:
            try:
                return unb64json(value, name)
            except ValueError:
                continue
    return None


def _bad(problem: str) -> InvoiceValidationError:
    return InvoiceValidationError(
        f"the 402 answer's x402 payment requirements are malformed: {problem}. Nothing was "
        "signed or paid; the service sent a challenge this agent cannot read",
        reason="malformed_x402",
    )
