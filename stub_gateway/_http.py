"""Small JSON helpers shared by the gateway's routes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from flask import Response, jsonify

from human_rpc_sdk._money import format_amount

__all__ = ["json_error", "jsonable"]


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
