"""Argument checks shared by the SDK's constructors."""

from __future__ import annotations

import math
from typing import Any, TypeGuard

from solders.pubkey import Pubkey

from .exceptions import SDKConfigurationError

__all__ = ["is_duration", "is_pubkey", "positive_seconds"]


def is_duration(value: object) -> TypeGuard[float]:
    """A finite, non-negative number of seconds (not a bool)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def positive_seconds(seconds: Any, name: str) -> float:
    """``seconds`` as a positive, finite duration, or ``SDKConfigurationError`` naming ``name``."""
    if not is_duration(seconds) or seconds == 0:
        raise SDKConfigurationError(
            f"{name} must be a positive number of seconds (got {seconds!r})", parameter=name
        )
    return float(seconds)


def is_pubkey(text: str) -> bool:
    """A base58 string of a 32-byte Solana address."""
    try:
        Pubkey.from_string(text)
    except ValueError:
        return False
    return True
