"""The gateway's one paywall, for both payment kinds: HumanRPC invoices and standard x402.

The skeleton (:func:`paywall`) is the same for every kind, so the in-flight and replay
behaviour is too:

1. the kind may refuse the request outright (HumanRPC: a legacy body in a currency it lacks);
2. no usable payment: 402, or a malformed/huge one when such a fault is armed;
3. the kind may refuse the payment before settling it (x402 v2: ``accepted`` is not our offer;
   its payment id is malformed, or missing where required: 400, see
   :meth:`X402Payment._check_payment_id`);
4. ``redirect_payment`` may send the request elsewhere, unsettled;
5. the very same paid request is served once (:mod:`.replies`): the first copy settles and
   runs the view, copies in flight wait for its answer, re-sends get it again (an x402
   payment with a payment id: any request carrying that id and payload, for as long as the
   id is bound). Settling binds an x402 payment id to the payload that settled, and only
   then: an id bound to another payload is 409, see :meth:`X402Payment.settle`;
6. the after-payment faults spoil the answer (:func:`.fault_routes.after_payment`).

Each kind (a :class:`PaymentKind`) plugs in how to read, verify and settle its payment, how to
receipt the answer, and how to answer 402.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar

from flask import Response, g, jsonify, make_response, request

from human_rpc_sdk._headers import (
    PAYMENT_HEADER,
    PAYMENT_RESPONSE_HEADER,
    b64json,
    encode_payment_response,
    unb64json,
)
from human_rpc_sdk._money import to_base_units
from human_rpc_sdk._x402 import PAYMENT_IDENTIFIER, is_payment_id

from ._http import json_error, jsonable
from .fault_routes import after_payment, challenge_fault, redirect_fault
from .payments import Price, Refusal
from .replies import id_key
from .x402 import ID_BUSY_REASON, ID_CONFLICT_REASON, IdClaim

if TYPE_CHECKING:
    from .gateway import Gateway

__all__ = [
    "HumanRpcPayment",
    "PaymentKind",
    "X402Payment",
    "paywall",
    "require_payment",
    "require_x402",
    "requirements_for",
]

F = TypeVar("F", bound=Callable[..., Any])

MAX_TIMEOUT_SECONDS: Final = 300
_LEGACY_CURRENCIES: Final = ("SOL", "USDC")
_IGNORED_EXTRA: Final = ("recentBlockhash", "lastValidBlockHeight")


class PaymentKind:
    """One request's payment of one kind; made afresh for every request the paywall sees."""

    fault_version: int | None = None
    """Which malformed 402 ``malformed_invoice`` sends: None (HumanRPC), 1 or 2 (x402)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def refuse_request(self) -> Response | None:
        """An answer for a request this kind cannot serve at all, paid or not."""
        return None

    def payment(self) -> str | None:
        """The payment header when the request carries a usable payment, else None."""
        raise NotImplementedError

    def refuse_payment(self) -> Response | None:
        """An answer refusing the payment before anything settles (it does not fit)."""
        return None

    def reply_key(self) -> str | None:
        """What identifies this paid request among kept answers, when not the request and its
        payment header (:meth:`.replies.PaidReplies.key`): an x402 payment id's."""
        return None

    def settle(self) -> Response | None:
        """Verify and settle the payment: None when it settled, else the answer refusing it."""
        raise NotImplementedError

    def receipt(self, response: Response) -> None:
        """Mark the paid view's answer with the settlement."""
        raise NotImplementedError

    def challenge(self) -> Response:
        """The 402 asking for payment."""
        raise NotImplementedError


def paywall(gateway: Gateway, kind: Callable[[], PaymentKind]) -> Callable[[F], F]:
    """Paywall a Flask view with the payments ``kind()`` reads (see the module docstring)."""

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            paying = kind()
            refused = paying.refuse_request()
            if refused is not None:
                return refused
            header = paying.payment()
            if header is None:
                fault = challenge_fault(gateway, x402_version=paying.fault_version)
                return fault or paying.challenge()
            refused = paying.refuse_payment()
            if refused is not None:
                return refused
            moved = redirect_fault(gateway)
            if moved is not None:
                return moved
            key = paying.reply_key() or gateway.replies.key(header)
            with gateway.replies.serving(key) as serving:
                if serving.reply is None:
                    refused = paying.settle()
                    if refused is not None:
                        return refused
                    response = make_response(view(*args, **kwargs))
                    paying.receipt(response)
                    serving.keep(response)
            # The answer kept, or given: another copy's (also when, with --workers, the ledger
            # process says so only as this copy settles: see workers.RemoteReplies).
            answer = serving.answer
            if answer is None:
                raise RuntimeError("a paid request was served without an answer")
            return after_payment(gateway, answer, paying.challenge)

        return wrapped  # type: ignore[return-value]

    return decorator


# -- HumanRPC invoices ---------------------------------------------------------------------


class HumanRpcPayment(PaymentKind):
    """A HumanRPC invoice paid in ``X-PAYMENT`` (or the deployed service's legacy body)."""

    def __init__(self, gateway: Gateway, price: Price) -> None:
        super().__init__(gateway)
        self.price = price
        self.legacy = request.args.get("format") == "legacy"
        self.receipt_header = ""

    def refuse_request(self) -> Response | None:
        if self.legacy and self.price.currency.upper() not in _LEGACY_CURRENCIES:
            return json_error(
                400,
                "legacy_unsupported",
                "the deployed service's payment format supports SOL and USDC only",
            )
        return None

    def payment(self) -> str | None:
        return request.headers.get(PAYMENT_HEADER)

    def settle(self) -> Response | None:
        desk, header = self.gateway.desk, self.payment() or ""
        outcome = (
            desk.settle_legacy(header, self.price)
            if self.legacy
            else desk.settle(header, request.path, self.price)
        )
        if isinstance(outcome, Refusal):
            return self._refuse(outcome)
        g.settlement = outcome
        self.receipt_header = encode_payment_response(
            success=True,
            transaction=outcome.signature,
            network=self.gateway.network,
            payer=outcome.payer,
        )
        return None

    def receipt(self, response: Response) -> None:
        response.headers[PAYMENT_RESPONSE_HEADER] = self.receipt_header

    def challenge(self) -> Response:
        gateway, price = self.gateway, self.price
        if self.legacy:
            body = gateway.desk.legacy_body(price)
        else:
            overcharge = gateway.faults.take("overcharge")
            if overcharge is not None:
                price = Price(price.amount * overcharge.factor, price.currency, price.recipient)
            invoice = gateway.desk.issue(price, request.path, overcharged=overcharge is not None)
            body = invoice.body(gateway.network)
        response = jsonify(jsonable(body))
        response.status_code = 402
        return response

    def _refuse(self, refusal: Refusal) -> Response:
        gateway = self.gateway
        if self.legacy:
            body: dict[str, Any] = {
                "error": "Payment verification failed",
                "details": refusal.message,
            }
        else:
            invoice = gateway.desk.issue(self.price, request.path)
            body = invoice.body(gateway.network, message=refusal.message)
            body["error"] = {"reason": refusal.reason, "message": refusal.message}
        body["reason"] = refusal.reason
        response = jsonify(jsonable(body))
        response.status_code = 402
        response.headers[PAYMENT_RESPONSE_HEADER] = encode_payment_response(
            success=False,
            transaction="",
            network=gateway.network,
            payer=refusal.payer,
            error_reason=refusal.reason,
        )
        return response


def require_payment(gateway: Gateway, price: Price | Callable[[], Price]) -> Callable[[F], F]:
    """Paywall a Flask view with HumanRPC invoices; the view reads ``flask.g.settlement``."""
    return paywall(gateway, lambda: HumanRpcPayment(gateway, price() if callable(price) else price))


# -- standard x402 "exact" -----------------------------------------------------------------


def requirements_for(
    gateway: Gateway, price: Price, version: int, url: str, description: str
) -> dict[str, Any]:
    """The ``accepts`` entry for ``price`` (an SPL token; exact payments are token transfers)."""
    token = gateway.genesis.token(price.currency)
    facilitator = gateway.facilitator
    entry: dict[str, Any] = {
        "scheme": "exact",
        "network": facilitator.caip2 if version == 2 else facilitator.v1_network,
        "asset": str(token.mint),
        "payTo": str(price.recipient or gateway.treasury),
        "maxTimeoutSeconds": MAX_TIMEOUT_SECONDS,
        "extra": {"feePayer": facilitator.fee_payer_address},
    }
    amount = str(to_base_units(price.amount, token.decimals))
    if version == 2:
        entry["amount"] = amount
        return entry
    return {
        **entry,
        "maxAmountRequired": amount,
        "resource": url,
        "description": description,
        "mimeType": "application/json",
    }


class X402Payment(PaymentKind):
    """A standard x402 ``exact`` payment: v1 in ``X-PAYMENT``, v2 in ``PAYMENT-SIGNATURE``.

    Answers follow the reference resource server (``PROTOCOL.md`` sections 1-2): a refused
    payment gets a fresh challenge whose ``error`` is the verify reason; a failed settlement
    gets 402 with a settlement header saying ``success: false`` and the ``errorReason``.
    """

    def __init__(self, gateway: Gateway, price: Price, version: int, description: str) -> None:
        super().__init__(gateway)
        self.fault_version = self.version = version
        url = _base_url()
        self.wanted = requirements_for(gateway, price, version, url, description)
        self.resource = {"url": url, "description": description, "mimeType": "application/json"}
        self.header = request.headers.get("PAYMENT-SIGNATURE" if version == 2 else "X-PAYMENT")
        self.payload = _x402_payload(self.header, version)
        self.settlement: dict[str, Any] = {}
        self.identified: str | None = None
        """The reply key of a payment that carries a payment id (see :meth:`reply_key`)."""
        self.claim: IdClaim | None = None
        """That payment's claim of its id, bound as it settles (see :meth:`settle`)."""

    def payment(self) -> str | None:
        return None if self.payload is None else self.header

    def refuse_payment(self) -> Response | None:
        accepted = (self.payload or {}).get("accepted")
        if self.version == 2 and not _matches(accepted, self.wanted):
            return self._challenge("No matching payment requirements")
        if self.version == 2:
            return self._check_payment_id(self.payload or {})
        return None

    def reply_key(self) -> str | None:
        return self.identified

    def _check_payment_id(self, payload: Mapping[str, Any]) -> Response | None:
        """The spec's idempotency table: an invalid id or a missing required one is 400; else
        the payment's answers are kept by its id and payload (:func:`.replies.id_key`: looked
        up before verifying, as the spec says), and its id claimed as it settles."""
        found = payment_id_of(payload)
        if isinstance(found, Refusal):
            return _id_error(400, [found.message])
        if found is None:
            if self.gateway.payment_id_required:
                return _id_error(400, [ID_REQUIRED])
            return None
        digest = hashlib.sha256(_canonical(payload)).hexdigest()
        self.claim = (request.path, found, digest)
        self.identified = id_key(*self.claim)
        return None

    def settle(self) -> Response | None:
        """Verify and settle; a payment id is bound to this payload only if it settles (so a
        payload that fails verification or settlement, a stranger's garbage under a client's
        id, never blocks the payload that settles): another payload that settled under it
        gets 409; one still settling under it after the wait, 503 (send it again)."""
        outcome = self.gateway.facilitator.process(self.payload or {}, self.wanted, self.claim)
        verification, settlement = outcome.verification, outcome.settlement
        reason = settlement.get("errorReason")
        if reason == ID_CONFLICT_REASON and self.claim is not None:
            response = jsonify({"error": ID_CONFLICT, "paymentId": self.claim[1]})
            response.status_code = 409
            return response
        if reason == ID_BUSY_REASON:
            return _id_busy(self.gateway.payment_ids.wait)
        if verification is not None and not verification.is_valid:
            return self._challenge(verification.invalid_reason or "invalid_payment")
        if not settlement["success"]:
            return self._settle_failed(settlement)
        g.x402_settlement = self.settlement = settlement
        return None

    def receipt(self, response: Response) -> None:
        response.headers[self._response_header()] = b64json(self.settlement)
        response.headers["Cache-Control"] = "private"

    def challenge(self) -> Response:
        return self._challenge("Payment required")

    def _challenge(self, error: str) -> Response:
        if self.version == 2:
            document = {
                "x402Version": 2,
                "error": error,
                "resource": self.resource,
                "accepts": [self.wanted],
                "extensions": {
                    PAYMENT_IDENTIFIER: payment_id_declaration(self.gateway.payment_id_required)
                },
            }
            response = jsonify({})
            response.headers["PAYMENT-REQUIRED"] = b64json(document)
        else:
            response = jsonify({"x402Version": 1, "error": error, "accepts": [self.wanted]})
        response.status_code = 402
        response.headers["Cache-Control"] = "no-store"
        return response

    def _settle_failed(self, settlement: dict[str, Any]) -> Response:
        body: dict[str, Any] = (
            {}
            if self.version == 2
            else {"x402Version": 1, "error": settlement["errorReason"], "accepts": [self.wanted]}
        )
        response = jsonify(body)
        response.status_code = 402
        response.headers[self._response_header()] = b64json(settlement)
        return response

    def _response_header(self) -> str:
        return "PAYMENT-RESPONSE" if self.version == 2 else "X-PAYMENT-RESPONSE"


def require_x402(
    gateway: Gateway, price: Price, *, version: int = 2, description: str = ""
) -> Callable[[F], F]:
    """Paywall a Flask view with standard x402 ``exact`` (v1 or v2), settled by the gateway.

    The settlement response is available to the view as ``flask.g.x402_settlement``.
    """
    if version not in (1, 2):
        raise ValueError("version must be 1 or 2")
    return paywall(gateway, lambda: X402Payment(gateway, price, version, description))


_URL_PARTS: Final = ("wsgi.url_scheme", "HTTP_HOST", "SERVER_NAME", "SERVER_PORT")
_URL_PATHS: Final = ("SCRIPT_NAME", "PATH_INFO")
_BASE_URLS: dict[tuple[Any, ...], str] = {}
_MAX_BASE_URLS: Final = 1024


def _base_url() -> str:
    """``request.base_url``, computed once for each scheme, host and path it depends on
    (werkzeug's IRI conversion costs more than the rest of an x402 challenge)."""
    environ = request.environ
    key = tuple(environ.get(name) for name in (*_URL_PARTS, *_URL_PATHS))
    url = _BASE_URLS.get(key)
    if url is None:
        url = request.base_url
        if len(_BASE_URLS) < _MAX_BASE_URLS:  # a handful in practice: routes times hosts
            _BASE_URLS[key] = url
    return url


def _x402_payload(value: str | None, version: int) -> Mapping[str, Any] | None:
    """The payment payload sent with this request, or None (absent or undecodable)."""
    if not value or len(value) > 16_384:
        return None
    try:
        document = unb64json(value, "payment")
    except ValueError:
        return None
    return document if document.get("x402Version") == version else None


# -- x402 payment ids (specs/extensions/payment_identifier.md) ------------------------------

PAYMENT_ID_SCHEMA: Final = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "required": {"type": "boolean"},
        "id": {"type": "string", "minLength": 16, "maxLength": 128, "pattern": "^[a-zA-Z0-9_-]+$"},
    },
    "required": ["required"],
}
"""The schema the reference package declares (``payment_identifier_schema``)."""
ID_REQUIRED: Final = "Server requires a payment identifier but none was provided"
ID_FORMAT: Final = (
    "Invalid payment ID format. ID must be 16-128 characters and contain only alphanumeric "
    "characters, hyphens, and underscores."
)
ID_CONFLICT: Final = "payment identifier already used with different payload"


def payment_id_declaration(required: bool) -> dict[str, Any]:
    """The ``payment-identifier`` entry of a v2 challenge's ``extensions``."""
    return {"info": {"required": required}, "schema": PAYMENT_ID_SCHEMA}


def payment_id_of(payload: Mapping[str, Any]) -> str | Refusal | None:
    """The payment id a v2 payload carries; None without one; a :class:`Refusal` saying
    what is wrong with an extension that is there but invalid (the reference's checks)."""
    extensions = payload.get("extensions")
    if not isinstance(extensions, Mapping) or extensions.get(PAYMENT_IDENTIFIER) is None:
        return None
    extension = extensions[PAYMENT_IDENTIFIER]
    info = extension.get("info") if isinstance(extension, Mapping) else None
    if not isinstance(info, Mapping):
        return Refusal("invalid_payment_identifier", "Extension must have an 'info' property")
    found = info.get("id")
    if found is None:
        return None
    if not is_payment_id(found):
        return Refusal("invalid_payment_identifier", ID_FORMAT)
    return str(found)


def _id_busy(seconds: float) -> Response:
    response = json_error(
        503,
        "payment_identifier_busy",
        f"another payment under this payment identifier was still being settled after "
        f"{seconds:g} s; send this payment again later (it is settled at most once)",
    )
    response.headers["Retry-After"] = "1"
    return response


def _id_error(status: int, errors: list[str]) -> Response:
    response = jsonify({"error": errors})
    response.status_code = status
    return response


def _canonical(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _matches(accepted: Any, wanted: Mapping[str, Any]) -> bool:
    """The client's ``accepted`` echoes our offer (extra: ours must be a subset of theirs)."""
    if not isinstance(accepted, Mapping):
        return False
    for key in ("scheme", "network", "amount", "asset", "payTo", "maxTimeoutSeconds"):
        if accepted.get(key) != wanted.get(key):
            return False
    theirs = accepted.get("extra") or {}
    if not isinstance(theirs, Mapping):
        return False
    return all(theirs.get(k) == v for k, v in wanted["extra"].items() if k not in _IGNORED_EXTRA)
