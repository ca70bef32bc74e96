"""Where the gateway's injected faults strike, and the HTTP API that arms them.

The paywalls (HumanRPC and x402) call :func:`challenge_fault` before answering 402,
:func:`redirect_fault` before settling a payment, and :func:`after_payment` once it settled.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, jsonify, redirect, request
from werkzeug.wrappers import Response as WerkzeugResponse

from ._http import SOCKET_ENVIRON_KEY, current_gateway, json_error
from .faults import MODES, describe

if TYPE_CHECKING:
    from .gateway import Gateway

__all__ = ["after_payment", "challenge_fault", "faults", "redirect_fault"]

_MALFORMED = {
    "status": "payment_required",
    "invoice": {"amount": "-1e999", "currency": 7, "recipient": "not a key", "network": ""},
}


def challenge_fault(gateway: Gateway, *, x402_version: int | None = None) -> Response | None:
    """A malformed or huge 402 instead of the real one, when such a fault is armed."""
    if gateway.faults.take("malformed_invoice") is not None:
        if x402_version == 2:
            response = jsonify({})
            response.headers["PAYMENT-REQUIRED"] = "not base64 at all!"
        elif x402_version == 1:
            response = jsonify({"x402Version": 1, "accepts": [{"scheme": "exact"}, 5]})
        else:
            response = jsonify(_MALFORMED)
        response.status_code = 402
        return response
    huge = gateway.faults.take("huge_invoice")
    if huge is not None:
        padding = "x" * huge.size
        body = json.dumps({**_MALFORMED, "message": padding})
        return Response(body, status=402, content_type="application/json")
    return None


def redirect_fault(gateway: Gateway) -> WerkzeugResponse | None:
    """Send the paid request elsewhere, unsettled, when ``redirect_payment`` is armed."""
    fault = gateway.faults.take("redirect_payment")
    if fault is None:
        return None
    return redirect(fault.location, code=fault.status)


def after_payment(
    gateway: Gateway, response: Response, still_unpaid: Callable[[], Response]
) -> Response:
    """The answer to a settled payment, spoilt by whichever after-payment fault is armed."""
    faults = gateway.faults
    fault = faults.take("error_after_payment")
    if fault is not None:
        return json_error(
            fault.status, "injected_fault", "the payment settled, then the server failed"
        )
    if faults.take("drop_after_payment") is not None:
        _drop_connection()
        return response
    slow = faults.take("slow_after_payment")
    if slow is not None:
        gateway.sleep(slow.seconds)
        return response
    if faults.take("repeat_402_after_payment") is not None:
        return still_unpaid()
    return response


def _drop_connection() -> None:
    """Close the client's connection without an answer (the settlement already happened)."""
    # waitress (GatewayServer) and werkzeug's development server each expose the socket.
    connection = request.environ.get(SOCKET_ENVIRON_KEY) or request.environ.get("werkzeug.socket")
    if isinstance(connection, socket.socket):
        with contextlib.suppress(OSError):
            connection.shutdown(socket.SHUT_RDWR)


faults = Blueprint("faults", __name__, url_prefix="/api/v1/faults")
"""``GET`` (the armed faults, and every mode's parameters), ``POST`` (arm one: ``{"mode":
"slow_rpc", "seconds": 2, "count": 1}``, the names of :class:`.faults.Faults`' methods) and
``DELETE /api/v1/faults`` (clear them all)."""


@faults.get("")
def list_faults() -> Response:
    gateway = current_gateway()
    return jsonify(
        {
            "armed": [f.to_json() for f in gateway.faults.armed()],
            "modes": list(MODES),
            "help": describe(),
        }
    )


@faults.post("")
def arm_fault() -> Any:
    gateway = current_gateway()
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("mode"), str):
        return json_error(
            400,
            "bad_request",
            f'send {{"mode": one of {", ".join(MODES)}, "count": 1, ...}}; '
            "GET /api/v1/faults lists each mode's parameters",
        )
    params = {k: v for k, v in body.items() if k != "mode"}
    try:
        fault = gateway.faults.arm(body["mode"], **params)
    except (TypeError, ValueError) as exc:
        return json_error(400, "bad_fault", str(exc))
    return jsonify(fault.to_json()), 201


@faults.delete("")
def clear_faults() -> Response:
    gateway = current_gateway()
    gateway.faults.clear()
    return jsonify({"armed": []})
