"""Failures the stub gateway injects on purpose, so clients can be tested against them offline.

Each fault is armed for its next ``count`` occasions and then disarms itself:

==========================  ================================================================
``rpc_error``               the next RPC requests answer HTTP ``status`` (503) unexecuted
``rpc_slow``                the next RPC requests wait ``seconds`` before answering
``error_after_payment``     a paid request is settled, then answered HTTP ``status`` (500)
``drop_after_payment``      a paid request is settled, then its connection is dropped
``slow_after_payment``      a paid request is settled, then answered after ``seconds``
``repeat_402_after_payment`` a paid request is settled, then answered 402 all the same
``redirect_payment``        a paid request is answered ``status`` (307) to ``location``,
                            unsettled
``malformed_invoice``       a 402 carries an invoice that is not a valid invoice
``huge_invoice``            a 402 carries a body of ``size`` bytes (1 MB)
``overcharge``              a HumanRPC invoice asks ``factor`` (1000) times the price
==========================  ================================================================

Arm them from Python (``gateway.faults.arm("drop_after_payment")``, or the helper methods),
or over HTTP: ``POST /api/v1/faults {"mode": ..., "count": ..., ...}``, ``GET`` lists the
armed ones, ``DELETE`` clears them all.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any, Final

__all__ = ["MODES", "Fault", "Faults"]

MODES: Final = (
    "rpc_error",
    "rpc_slow",
    "error_after_payment",
    "drop_after_payment",
    "slow_after_payment",
    "repeat_402_after_payment",
    "redirect_payment",
    "malformed_invoice",
    "huge_invoice",
    "overcharge",
)
_DEFAULT_STATUS: Final = {"rpc_error": 503, "error_after_payment": 500, "redirect_payment": 307}


@dataclass(frozen=True)
class Fault:
    """One armed fault and its parameters."""

    mode: str
    count: int = 1
    status: int = 0
    seconds: float = 0.0
    location: str = ""
    size: int = 1_000_000
    factor: Decimal = Decimal(1000)

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["factor"] = str(self.factor)
        return document


class Faults:
    """The gateway's armed faults (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: dict[str, Fault] = {}
        self.triggered: list[str] = []
        """Every fault that fired, in order."""

    def arm(self, mode: str, count: int = 1, **params: Any) -> Fault:
        """Arm ``mode`` for its next ``count`` occasions. Raises ``ValueError`` on bad input."""
        if mode not in MODES:
            raise ValueError(f"unknown fault {mode!r}; modes: {', '.join(MODES)}")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 10_000:
            raise ValueError("count must be a whole number from 1 to 10000")
        fault = _checked(Fault(mode, count, **params))
        with self._lock:
            self._armed[mode] = fault
        return fault

    def take(self, mode: str) -> Fault | None:
        """The fault armed for ``mode``, using up one occasion; None when none is armed."""
        with self._lock:
            fault = self._armed.get(mode)
            if fault is None:
                return None
            if fault.count <= 1:
                del self._armed[mode]
            else:
                self._armed[mode] = Fault(**{**asdict(fault), "count": fault.count - 1})
            self.triggered.append(mode)
            return fault

    def armed(self) -> list[Fault]:
        with self._lock:
            return list(self._armed.values())

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()

    # -- one helper per mode ---------------------------------------------------------------

    def fail_rpc(self, count: int = 1, status: int = 503) -> Fault:
        return self.arm("rpc_error", count, status=status)

    def slow_rpc(self, seconds: float, count: int = 1) -> Fault:
        return self.arm("rpc_slow", count, seconds=seconds)

    def error_after_payment(self, count: int = 1, status: int = 500) -> Fault:
        return self.arm("error_after_payment", count, status=status)

    def drop_after_payment(self, count: int = 1) -> Fault:
        return self.arm("drop_after_payment", count)

    def slow_after_payment(self, seconds: float, count: int = 1) -> Fault:
        return self.arm("slow_after_payment", count, seconds=seconds)

    def repeat_402_after_payment(self, count: int = 1) -> Fault:
        return self.arm("repeat_402_after_payment", count)

    def redirect_payment(self, location: str, count: int = 1, status: int = 307) -> Fault:
        return self.arm("redirect_payment", count, location=location, status=status)

    def malformed_invoice(self, count: int = 1) -> Fault:
        return self.arm("malformed_invoice", count)

    def huge_invoice(self, count: int = 1, size: int = 1_000_000) -> Fault:
        return self.arm("huge_invoice", count, size=size)

    def overcharge(self, factor: Decimal | int | str = 1000, count: int = 1) -> Fault:
        return self.arm("overcharge", count, factor=Decimal(str(factor)))


def _checked(fault: Fault) -> Fault:
    status = fault.status or _DEFAULT_STATUS.get(fault.mode, 0)
    if fault.mode in _DEFAULT_STATUS:
        low, high = (300, 399) if fault.mode == "redirect_payment" else (400, 599)
        if isinstance(status, bool) or not isinstance(status, int) or not low <= status <= high:
            raise ValueError(f"status for {fault.mode} must be from {low} to {high}")
    if not 0 <= float(fault.seconds) <= 600:
        raise ValueError("seconds must be from 0 to 600")
    if fault.mode == "redirect_payment" and not fault.location.startswith(("http://", "https://")):
        raise ValueError("redirect_payment needs an absolute http(s) location")
    if not 1 <= fault.size <= 100_000_000:
        raise ValueError("size must be from 1 to 100000000 bytes")
    factor = Decimal(str(fault.factor))
    if not factor.is_finite() or factor <= 0:
        raise ValueError("factor must be a positive number")
    return Fault(
        fault.mode,
        fault.count,
        status,
        float(fault.seconds),
        fault.location,
        int(fault.size),
        factor,
    )
