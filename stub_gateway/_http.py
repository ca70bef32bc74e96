"""Small JSON helpers shared by the gateway's routes."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from flask import Response, current_app, jsonify
from flask.json.provider import DefaultJSONProvider

from human_rpc_sdk._money import format_amount

if TYPE_CHECKING:
    from .gateway import Gateway

__all__ = [
    "EXTENSION",
    "MAX_BODY",
    "SOCKET_ENVIRON_KEY",
    "JsonProvider",
    "current_gateway",
    "json_error",
    "jsonable",
]

MAX_BODY: Final = 1_048_576
"""The largest request body, in bytes: a JSON-RPC call or a task with its context is a few
kilobytes. Larger ones are refused with 413 (by waitress before they are read)."""

SOCKET_ENVIRON_KEY: Final = "stub_gateway.socket"
"""Where GatewayServer puts the client's socket in the WSGI environ (``drop_after_payment``)."""

EXTENSION: Final = "stub_gateway"
"""Where :func:`.app.create_app` keeps the :class:`.gateway.Gateway` in ``app.extensions``."""


def current_gateway() -> Gateway:
    """The gateway the app serving this request was created for."""
    gateway: Gateway = current_app.extensions[EXTENSION]
    return gateway


class JsonProvider(DefaultJSONProvider):
    """Flask's JSON, except that JSON nested too deep to parse is malformed input (a 400 from
    ``request.get_json``), not a ``RecursionError`` (a 500)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("the JSON is nested too deeply") from None


def json_error(status: int, reason: str, message: str) -> Response:
    response = jsonify({"error": {"reason": reason, "message": message}, "reason": reason})
    response.status_code = status
    return response


def jsonable(value: Any) -> Any:
    """Decimals become JSON numbers when that is exact, else decimal strings (both are valid)."""
    if isinstance(value, Decimal):
        if value == value.to_integral_value() and abs(value) < 2**53:
            return int(value)
        as_float = float(value)
        return as_float if Decimal(repr(as_float)) == value else format_amount(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value
