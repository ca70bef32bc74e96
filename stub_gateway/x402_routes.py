"""Standard x402 in the stub gateway: paywalled routes (v1 and v2) and the facilitator API.

* ``GET /x402/v1/premium``: a v1 402 (JSON body with ``accepts``); pay with ``X-PAYMENT``.
* ``GET /x402/v2/premium``: a v2 402 (``PAYMENT-REQUIRED`` header, body ``{}``); pay with
  ``PAYMENT-SIGNATURE``.
* ``GET /facilitator/supported``, ``POST /facilitator/verify``, ``POST /facilitator/settle``:
  the facilitator HTTP interface, so a resource server built with any x402 SDK can use the
  gateway as its facilitator during local development.

The paywall itself (:func:`require_x402`, :func:`requirements_for`) is the gateway's one
paywall, :mod:`.paywall`, shared with HumanRPC invoices: a refused payment gets a fresh
challenge whose ``error`` is the verify reason; a failed settlement gets 402 with a settlement
header saying ``success: false`` and the ``errorReason``. The very same paid request sent again
within two minutes gets the same answer, and one sent while the first is still being served
waits for that answer (see :mod:`.replies`); any other reuse of a payment is a
``duplicate_settlement``.

Payment ids (the ``payment-identifier`` extension, ``specs/extensions/payment_identifier.md``):
every v2 challenge declares it, optional unless the gateway was made with
``payment_id_required=True`` (``--payment-id-required``). An id is bound, per route, to the
exact payload that settled with it, for an hour: that payload again (on any request, within
the hour) gets the answer kept for it, with its ``PAYMENT-RESPONSE``, and settles nothing more;
another payload under the id gets 409 ``{"error": "payment identifier already used with
different payload", "paymentId"}``; a malformed id, or none where one is required, gets 400
``{"error": [<reason>]}`` (the reference package's messages). A payload that fails
verification or settles nothing binds nothing, so whoever sees a client's id cannot block its
payment; one arriving while another payload under its id is being settled waits for that
outcome (503 with ``Retry-After`` if it waited a minute in vain).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from human_rpc_sdk._money import format_amount

from ._http import current_gateway, json_error
from .paywall import require_x402, requirements_for

__all__ = ["facilitator", "require_x402", "requirements_for", "x402"]

x402 = Blueprint("x402", __name__, url_prefix="/x402")
facilitator = Blueprint("facilitator", __name__, url_prefix="/facilitator")


@x402.get("/v1/premium")
def premium_v1() -> Any:
    return _premium(1)


@x402.get("/v2/premium")
def premium_v2() -> Any:
    return _premium(2)


def _premium(version: int) -> Any:
    gateway = current_gateway()
    price = gateway.x402_price

    @require_x402(gateway, price, version=version, description=f"premium content (x402 v{version})")
    def content() -> Response:
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

    return content()


@facilitator.get("/supported")
def supported() -> Response:
    return jsonify(current_gateway().facilitator.supported())


@facilitator.post("/verify")
def verify() -> Response:
    parts = _facilitator_request()
    if isinstance(parts, Response):
        return parts
    return jsonify(current_gateway().facilitator.verify(*parts).to_json())


@facilitator.post("/settle")
def settle() -> Response:
    parts = _facilitator_request()
    if isinstance(parts, Response):
        return parts
    return jsonify(current_gateway().facilitator.settle(*parts))


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
