"""Argument checks shared by the SDK's public callables.

Each check refuses a hostile value (a huge int, inf, NaN, a bool, a string with a NUL, the
wrong type) with a :class:`HumanRPCError` subclass, never letting ``OverflowError``,
``ValueError`` or ``TypeError`` escape from deeper down.
"""

from __future__ import annotations

import math
from typing import Any, Final, TypeGuard
from urllib.parse import urlsplit

from solders.pubkey import Pubkey

from .exceptions import SDKConfigurationError

__all__ = [
    "MAX_SECONDS",
    "finite_number",
    "http_url",
    "is_duration",
    "is_pubkey",
    "positive_seconds",
    "request_timeout",
    "show",
]

MAX_SECONDS: Final = 1_000_000.0
"""The longest duration accepted anywhere (about 11.5 days): longer ones overflow timers."""


def finite_number(value: object) -> float | None:
    """``value`` as a finite float when it is a real number (not a bool), else None.

    For durations, thresholds and confidences only: money is parsed as ``Decimal`` and kept
    in integer base units (``_money``), never as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond 1.8e308
        return None
    return number if math.isfinite(number) else None


def is_duration(value: object) -> TypeGuard[float]:
    """A finite number of seconds between 0 and :data:`MAX_SECONDS` (not a bool)."""
    number = finite_number(value)
    return number is not None and 0 <= number <= MAX_SECONDS


def positive_seconds(seconds: Any, name: str) -> float:
    """``seconds`` as a positive, finite duration, or ``SDKConfigurationError`` naming ``name``."""
    if not is_duration(seconds) or seconds == 0:
        raise SDKConfigurationError(
            f"{name} must be a positive number of seconds, at most {MAX_SECONDS:.0f} "
            f"(got {show(seconds)})",
            parameter=name,
        )
    return float(seconds)


def request_timeout(timeout: Any) -> Any:
    """A ``requests`` timeout: None, seconds, or ``(connect, read)`` with None or seconds."""
    if timeout is None:
        return None
    if isinstance(timeout, tuple) and len(timeout) == 2:
        for part in timeout:
            if part is not None:
                positive_seconds(part, "timeout")
        return timeout
    return positive_seconds(timeout, "timeout")


def http_url(value: Any, name: str, example: str = "https://api.devnet.solana.com") -> str | None:
    """An http(s) URL with a host, or None for None/""; ``SDKConfigurationError`` otherwise
    (its message shows ``example``, a URL of the kind ``name`` expects)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise SDKConfigurationError(
            f"{name} must be an http(s) URL (got {type(value).__name__})", parameter=name
        )
    if _well_formed(value):
        return value
    raise SDKConfigurationError(
        f"{name} must be an http(s) URL such as {example!r} (got {show(value)})",
        parameter=name,
    )


def _well_formed(url: str) -> bool:
    if any(ord(c) < 0x20 or c in " \x7f" for c in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:  # 'http://[::1' and the like
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def is_pubkey(text: str) -> bool:
    """A base58 string of a 32-byte Solana address."""
    try:
        Pubkey.from_string(text)
    except (ValueError, TypeError):
        return False
    return True


def show(value: object, limit: int = 100) -> str:
    """A value for an error message: short, and safe for any type.

    Only plain values are shown (an object's ``repr`` may hold a secret: a Keypair's does);
    an int too long to print (Python refuses past 4300 digits) is described instead.
    """
    if not isinstance(value, str | int | float | bool | None):
        return f"a {type(value).__name__}"
    try:
        text = repr(value)
    except ValueError:
        return "an integer too long to print"
    return text if len(text) <= limit else text[: limit - 3] + "..."
