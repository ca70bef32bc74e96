"""Standard x402 in the stub gateway: paywalled routes (v1 and v2) and the facilitator API.

* ``GET /x402/v1/premium``: a v1 402 (JSON body with ``accepts``); pay with ``X-PAYMENT``.
* ``GET /x402/v2/premium``: a v2 402 (``PAYMENT-REQUIRED`` header, body ``{}``); pay with
  ``PAYMENT-SIGNATURE``.
* ``GET /facilitator/supported``, ``POST /facilitator/verify``, ``POST /facilitator/settle``:
  the facilitator HTTP interface, so a resource server built with any x402 SDK can use the
  gateway as its facilitator during local development.

Answers follow the reference resource server (``PROTOCOL.md`` sections 1-2): a refused payment
gets a fresh challenge whose ``error`` is the verify reason; a failed settlement gets 402 with a
settlement header saying ``success: false`` and the ``errorReason``. The very same paid request
sent again within two minutes (a client retrying after a lost answer) gets the same answer,
and one sent while the first is still being served waits for that answer (see
:mod:`.replies`); any other reuse of a payment is a ``duplicate_settlement``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar

from flask import Flask, Response, g, jsonify, make_response, request

from human_rpc_sdk._headers import b64json, unb64json
from human_rpc_sdk._money import format_amount, to_base_units

from ._http import json_error
from .fault_routes import after_payment, challenge_fault, redirect_fault
from .payments import Price

if TYPE_CHECKING:
    from .app import Gateway

__all__ = ["add_x402_routes", "require_x402"]

F = TypeVar("F", bound=Callable[..., Any])

MAX_TIMEOUT_SECONDS: Final = 300
_IGNORED_EXTRA: Final = ("recentBlockhash", "lastValidBlockHeight")


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


def require_x402(
    gateway: Gateway, price: Price, *, version: int = 2, description: str = ""
) -> Callable[[F], F]:
    """Paywall a Flask view with standard x402 ``exact`` (v1 or v2), settled by the gateway.

    The settlement response is available to the view as ``flask.g.x402_settlement``.
    """
    if version not in (1, 2):
        raise ValueError("version must be 1 or 2")

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            url = request.base_url
            wanted = requirements_for(gateway, price, version, url, description)
            resource = {"url": url, "description": description, "mimeType": "application/json"}
            payload = _payment(version)
            if payload is None:
                return challenge_fault(gateway, x402_version=version) or _challenge(
                    version, wanted, resource, "Payment required"
                )
            if version == 2 and not _matches(payload.get("accepted"), wanted):
                return _challenge(version, wanted, resource, "No matching payment requirements")
            moved = redirect_fault(gateway)
            if moved is not None:
                return moved
            key = gateway.replies.key(_payment_header(version) or "")
            with gateway.replies.serving(key) as serving:
                response = serving.reply
                if response is None:
                    facilitator = gateway.facilitator
                    if facilitator.already_settled(payload):
                        return _settle_failed(version, wanted, facilitator.settle(payload, wanted))
                    verification = facilitator.verify(payload, wanted)
                    if not verification.is_valid:
                        reason = verification.invalid_reason or "invalid_payment"
                        return _challenge(version, wanted, resource, reason)
                    settlement = facilitator.settle(payload, wanted)
                    if not settlement["success"]:
                        return _settle_failed(version, wanted, settlement)
                    g.x402_settlement = settlement
                    response = make_response(view(*args, **kwargs))
                    response.headers[_response_header(version)] = b64json(settlement)
                    response.headers["Cache-Control"] = "private"
                    serving.keep(response)
            return after_payment(
                gateway,
                response,
                lambda: _challenge(version, wanted, resource, "Payment required"),
            )

        return wrapped  # type: ignore[return-value]

    return decorator


def _payment_header(version: int) -> str | None:
    return request.headers.get("PAYMENT-SIGNATURE" if version == 2 else "X-PAYMENT")


def _payment(version: int) -> Mapping[str, Any] | None:
    """The payment payload sent with this request, or None (absent or undecodable)."""
    value = _payment_header(version)
    if not value or len(value) > 16_384:
        return None
    try:
        document = unb64json(value, "payment")
    except ValueError:
        return None
    return document if document.get("x402Version") == version else None


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


def _challenge(
    version: int, wanted: dict[str, Any], resource: dict[str, Any], error: str
) -> Response:
    if version == 2:
        document = {"x402Version": 2, "error": error, "resource": resource, "accepts": [wanted]}
        response = jsonify({})
        response.headers["PAYMENT-REQUIRED"] = b64json(document)
    else:
        response = jsonify({"x402Version": 1, "error": error, "accepts": [wanted]})
    response.status_code = 402
    response.headers["Cache-Control"] = "no-store"
    return response


def _settle_failed(version: int, wanted: dict[str, Any], settlement: dict[str, Any]) -> Response:
    body: dict[str, Any] = (
        {}
        if version == 2
        else {"x402Version": 1, "error": settlement["errorReason"], "accepts": [wanted]}
    )
    response = jsonify(body)
    response.status_code = 402
    response.headers[_response_header(version)] = b64json(settlement)
    return response


def _response_header(version: int) -> str:
    return "PAYMENT-RESPONSE" if version == 2 else "X-PAYMENT-RESPONSE"


def add_x402_routes(app: Flask, gateway: Gateway) -> None:
    """The premium x402 routes and the facilitator HTTP API."""
    price = gateway.x402_price

    def content(version: int) -> Response:
        settlement = g.x402_settlement
        return jsonify(
            {
                "resource": f"x402-v{version}",
                "content": f"premium x402 v{version} content, unlocked",
                "paid": {
                    "amount": format_amount(price.amount),
                    "currency": price.currency,
                    "transaction": settlement["transaction"],
                },
            }
        )

    @app.get("/x402/v1/premium")
    @require_x402(gateway, price, version=1, description="premium content (x402 v1)")
    def x402_v1() -> Response:
        return content(1)

    @app.get("/x402/v2/premium")
    @require_x402(gateway, price, version=2, description="premium content (x402 v2)")
    def x402_v2() -> Response:
        return content(2)

    @app.get("/facilitator/supported")
    def supported() -> Response:
        return jsonify(gateway.facilitator.supported())

    @app.post("/facilitator/verify")
    def verify() -> Response:
        parts = _facilitator_request()
        if isinstance(parts, Response):
            return parts
        return jsonify(gateway.facilitator.verify(*parts).to_json())

    @app.post("/facilitator/settle")
    def settle() -> Response:
        parts = _facilitator_request()
        if isinstance(parts, Response):
            return parts
        return jsonify(gateway.facilitator.settle(*parts))


def _facilitator_request() -> tuple[Mapping[str, Any], Mapping[str, Any]] | Response:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return json_error(
            400, "bad_request", 'send {"x402Version", "paymentPayload", "paymentRequirements"}'
        )
    payload, requirements = body.get("paymentPayload"), body.get("paymentRequirements")
    if not isinstance(payload, dict) or not isinstance(requirements, dict):
        return json_error(
            400, "bad_request", "paymentPayload and paymentRequirements must be objects"
        )
    for field in ("amount", "maxAmountRequired"):
        if field in requirements and not _is_base_units(requirements[field]):
            return json_error(
                400,
                "bad_requirements",
                f"paymentRequirements.{field} must be a whole number of base units written in "
                'ASCII digits, at most 2^64 - 1, such as "10000"',
            )
    return payload, requirements


def _is_base_units(value: Any) -> bool:
    """A u64 amount as x402 writes it: a string of ASCII digits (not "²", not 5,000 digits)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= 20
        and value.isascii()
        and value.isdigit()
        and int(value) < 2**64
    )
