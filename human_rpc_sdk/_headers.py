"""The ``X-PAYMENT`` request header and ``X-PAYMENT-RESPONSE`` answer header.

HumanRPC (design document "Payment Header Format") and the deployed HumanRPC service use::

    X-PAYMENT: base64({"x402Version": 1, "scheme": "solana", "network": "devnet",
                       "payload": {"serializedTransaction": "<base64 transaction>"}})

Servers answer a settled payment with ``X-PAYMENT-RESPONSE``: base64 of
``{"success": true, "transaction": "<signature>", "network": ..., "payer": ...}`` (the x402
settlement response). Both directions live here so the SDK and the stub gateway agree.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from solders.transaction import VersionedTransaction

from .exceptions import TransactionBuildError
from .solana_utils import decode_transaction

PAYMENT_HEADER: Final = "X-PAYMENT"
PAYMENT_RESPONSE_HEADER: Final = "X-PAYMENT-RESPONSE"
SCHEME: Final = "solana"
MAX_HEADER_CHARS: Final = 16_384


@dataclass(frozen=True)
class PaymentHeader:
    network: str
    transaction: VersionedTransaction = field(repr=False)  # signed: never in a repr


def encode_payment_header(transaction: VersionedTransaction | str, network: str) -> str:
    """The ``X-PAYMENT`` header value that pays a HumanRPC invoice with a signed transaction.

    :param transaction: the signed transfer: a ``VersionedTransaction``, or the base64 text
        :func:`~human_rpc_sdk.sign_and_serialize_transaction` returns.
    :param network: the invoice's network (``invoice.network``, e.g. ``"devnet"``).
    :raises TransactionBuildError: when ``transaction`` is not a base64 Solana transaction.
    """
    if isinstance(transaction, str):
        try:
            transaction = decode_transaction(transaction)
        except ValueError as exc:
            raise TransactionBuildError(
                f"transaction: {exc}; pass what sign_and_serialize_transaction returned"
            ) from None
    if not isinstance(transaction, VersionedTransaction):
        # bytes() of anything else is no payment, and of a Keypair it is the secret key
        raise TransactionBuildError(
            "transaction must be a signed solders VersionedTransaction or its base64 text "
            f"(got {type(transaction).__name__}); pass what sign_and_serialize_transaction "
            "returned"
        )
    if not isinstance(network, str) or not network:
        raise TransactionBuildError(
            "network must be the invoice's network name, e.g. 'devnet' "
            f"(got {type(network).__name__})"
        )
    document = {
        "x402Version": 1,
        "scheme": SCHEME,
        "network": network,
        "payload": {"serializedTransaction": base64.b64encode(bytes(transaction)).decode("ascii")},
    }
    return b64json(document)


def decode_payment_header(value: str) -> PaymentHeader:
    """Parse an ``X-PAYMENT`` value. Raises ``ValueError`` naming what is wrong."""
    if len(value) > MAX_HEADER_CHARS:
        raise ValueError("the X-PAYMENT header is too large")
    document = unb64json(value, "X-PAYMENT")
    if document.get("x402Version") != 1:
        raise ValueError("X-PAYMENT x402Version must be 1")
    if document.get("scheme") != SCHEME:
        raise ValueError(f"X-PAYMENT scheme must be {SCHEME!r}")
    network = document.get("network")
    if not isinstance(network, str):
        raise ValueError("X-PAYMENT network is missing")
    payload = document.get("payload")
    serialized = payload.get("serializedTransaction") if isinstance(payload, Mapping) else None
    if not isinstance(serialized, str):
        raise ValueError("X-PAYMENT payload.serializedTransaction is missing")
    return PaymentHeader(network=network, transaction=decode_transaction(serialized))


def encode_payment_response(
    *,
    success: bool,
    transaction: str,
    network: str,
    payer: str | None,
    error_reason: str | None = None,
) -> str:
    """The ``X-PAYMENT-RESPONSE`` value a server returns after settling (or refusing)."""
    document: dict[str, Any] = {"success": success, "transaction": transaction, "network": network}
    if payer is not None:
        document["payer"] = payer
    if error_reason is not None:
        document["errorReason"] = error_reason
    return b64json(document)


def decode_payment_response(value: str | None) -> dict[str, Any] | None:
    """Parse an ``X-PAYMENT-RESPONSE`` value; None when absent or malformed."""
    if not value or len(value) > MAX_HEADER_CHARS:
        return None
    try:
        return unb64json(value, "X-PAYMENT-RESPONSE")
    except ValueError:
        return None


def b64json(document: Mapping[str, Any]) -> str:
    """Compact JSON, standard base64 (as x402 headers are sent)."""
    text = json.dumps(document, separators=(",", ":"))
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def unb64json(value: str, name: str) -> dict[str, Any]:
    """A JSON object from base64 (standard or URL-safe alphabet, padding optional)."""
    text = value.strip()
    padded = text + "=" * (-len(text) % 4)
    document: Any = None
    for alphabet in (b"+/", b"-_"):
        try:
            document = json.loads(base64.b64decode(padded, altchars=alphabet, validate=True))
            break
        except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
            continue
    else:
        raise ValueError(f"the {name} header is not base64-encoded JSON")
    if not isinstance(document, dict):
        raise ValueError(f"the {name} header must hold a JSON object")
    return document
