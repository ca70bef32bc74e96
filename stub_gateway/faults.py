"""Failures the stub gateway injects on purpose, so clients can be tested against them offline.

Each fault is armed for its next ``count`` occasions (1 by default) and then disarms itself.
The modes have the same names in Python (``gateway.faults.fail_rpc(...)``) and over HTTP
(``POST /api/v1/faults {"mode": "fail_rpc", ...}``):

============================  =============================================================
``fail_rpc``                  the next RPC requests answer HTTP ``status`` (503) unexecuted
``slow_rpc``                  the next RPC requests wait ``seconds`` (required) first
``error_after_payment``       a paid request is settled, then answered HTTP ``status`` (500)
``drop_after_payment``        a paid request is settled, then its connection is dropped
``slow_after_payment``        a paid request is settled, then answered after ``seconds``
                              (required)
``repeat_402_after_payment``  a paid request is settled, then answered 402 all the same
``redirect_payment``          a paid request is answered ``status`` (307) to ``location``
                              (required), unsettled
``malformed_invoice``         a 402 carries an invoice that is not a valid invoice
``huge_invoice``              a 402 carries a body of ``size`` bytes (1 MB)
``overcharge``                a HumanRPC invoice asks ``factor`` (1000) times the price
============================  =============================================================

``rpc_error`` and ``rpc_slow``, the modes' former names, still arm ``fail_rpc`` and
``slow_rpc``. A mode refuses a parameter it does not take, a missing required one and a value
of the wrong type (``ValueError``; a 400 over HTTP). ``GET /api/v1/faults`` lists the armed
faults and documents every mode's parameters; ``DELETE`` clears them all.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

__all__ = ["ALIASES", "MODES", "PARAMETERS", "Fault", "Faults", "describe"]

PARAMETERS: Final = {
    "count": "how many occasions the fault strikes before it disarms: 1 to 10000 (default 1)",
    "status": "the HTTP status answered",
    "seconds": "how long to wait: 0 to 600 seconds",
    "location": "where to redirect: an absolute http(s) URL",
    "size": "the 402 body's size: 1 to 100000000 bytes (default 1000000)",
    "factor": "how many times the price to ask: a whole number from 1 to 1000000 (default 1000)",
}


@dataclass(frozen=True)
class _Mode:
    does: str
    takes: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()


_MODES: Final = {
    "fail_rpc": _Mode("the RPC answers HTTP status (400-599, default 503) unexecuted", ("status",)),
    "slow_rpc": _Mode("the RPC answers after seconds", ("seconds",), ("seconds",)),
    "error_after_payment": _Mode(
        "a paid request is settled, then answered HTTP status (400-599, default 500)",
        ("status",),
    ),
    "drop_after_payment": _Mode("a paid request is settled, then its connection is dropped"),
    "slow_after_payment": _Mode(
        "a paid request is settled, then answered after seconds", ("seconds",), ("seconds",)
    ),
    "repeat_402_after_payment": _Mode("a paid request is settled, then answered 402 all the same"),
    "redirect_payment": _Mode(
        "a paid request is redirected, unsettled, with status (300-399, default 307)",
        ("location", "status"),
        ("location",),
    ),
    "malformed_invoice": _Mode("a 402 carries an invoice that is not a valid invoice"),
    "huge_invoice": _Mode("a 402 carries a body of size bytes", ("size",)),
    "overcharge": _Mode("a HumanRPC invoice asks factor times the price", ("factor",)),
}
MODES: Final = tuple(_MODES)
ALIASES: Final = {"rpc_error": "fail_rpc", "rpc_slow": "slow_rpc"}
"""The modes' former HTTP names, still accepted."""
_STATUS_RANGE: Final = {
    "fail_rpc": (503, 400, 599),
    "error_after_payment": (500, 400, 599),
    "redirect_payment": (307, 300, 399),
}


def describe() -> dict[str, Any]:
    """Every mode: what it does, the parameters it takes and which of them it requires."""
    return {
        name: {
            "does": mode.does,
            "parameters": {p: PARAMETERS[p] for p in ("count", *mode.takes)},
            "required": list(mode.requires),
        }
        for name, mode in _MODES.items()
    }


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
        self.watchers: list[Callable[[bool], None]] = []
        """Called with ``any_armed`` whenever a fault is armed, used up or cleared (under the
        lock, so in order): worker processes are told through it (``--workers``)."""

    def _changed(self) -> None:
        for callback in self.watchers:
            callback(bool(self._armed))

    def arm(self, mode: str, count: int = 1, **params: Any) -> Fault:
        """Arm ``mode`` for its next ``count`` occasions. Raises ``ValueError`` on bad input."""
        fault = _checked(mode, count, params)
        with self._lock:
            self._armed[fault.mode] = fault
            self._changed()
        return fault

    def take(self, mode: str) -> Fault | None:
        """The fault armed for ``mode``, using up one occasion; None when none is armed."""
        with self._lock:
            fault = self._armed.get(mode)
            if fault is None:
                return None
            if fault.count <= 1:
                del self._armed[mode]
                self._changed()
            else:
                self._armed[mode] = Fault(**{**asdict(fault), "count": fault.count - 1})
            self.triggered.append(mode)
            return fault

    def armed(self) -> list[Fault]:
        """The faults armed now, each with the occasions it has left."""
        with self._lock:
            return list(self._armed.values())

    def clear(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._armed.clear()
            self._changed()

    # -- one helper per mode, named as the mode ----------------------------------------------

    def fail_rpc(self, count: int = 1, status: int = 503) -> Fault:
        """The RPC answers HTTP ``status`` (503) instead of serving the call."""
        return self.arm("fail_rpc", count, status=status)

    def slow_rpc(self, seconds: float, count: int = 1) -> Fault:
        """The RPC answers ``seconds`` late."""
        return self.arm("slow_rpc", count, seconds=seconds)

    def error_after_payment(self, count: int = 1, status: int = 500) -> Fault:
        """Settle the payment, then answer HTTP ``status`` (500) instead of the resource."""
        return self.arm("error_after_payment", count, status=status)

    def drop_after_payment(self, count: int = 1) -> Fault:
        """Settle the payment, then drop the connection without an answer."""
        return self.arm("drop_after_payment", count)

    def slow_after_payment(self, seconds: float, count: int = 1) -> Fault:
        """Settle the payment, then answer ``seconds`` late."""
        return self.arm("slow_after_payment", count, seconds=seconds)

    def repeat_402_after_payment(self, count: int = 1) -> Fault:
        """Settle the payment, then answer 402 all the same."""
        return self.arm("repeat_402_after_payment", count)

    def redirect_payment(self, location: str, count: int = 1, status: int = 307) -> Fault:
        """Redirect the paid request to ``location`` (HTTP ``status``, 307), unsettled."""
        return self.arm("redirect_payment", count, location=location, status=status)

    def malformed_invoice(self, count: int = 1) -> Fault:
        """Answer 402 with a body that is not a valid invoice of any format."""
        return self.arm("malformed_invoice", count)

    def huge_invoice(self, count: int = 1, size: int = 1_000_000) -> Fault:
        """Answer 402 with a body of ``size`` bytes."""
        return self.arm("huge_invoice", count, size=size)

    def overcharge(self, factor: Decimal | int | str = 1000, count: int = 1) -> Fault:
        """Issue HumanRPC invoices for ``factor`` times the price."""
        return self.arm("overcharge", count, factor=factor)


def _checked(name: Any, count: Any, params: dict[str, Any]) -> Fault:
    """The fault ``name`` with ``params``, each checked for its type and range."""
    if not isinstance(name, str) or ALIASES.get(name, name) not in _MODES:
        raise ValueError(f"unknown fault {name!r}; modes: {', '.join(MODES)}")
    name = ALIASES.get(name, name)
    mode = _MODES[name]
    takes = ", ".join(("count", *mode.takes))
    unknown = sorted(set(params) - set(mode.takes))
    if unknown:
        raise ValueError(f"{name} takes {takes}; not {', '.join(map(str, unknown))}")
    missing = [p for p in mode.requires if params.get(p) is None]
    if missing:
        raise ValueError(f"{name} needs {' and '.join(f'{p} ({PARAMETERS[p]})' for p in missing)}")
    default_status, low, high = _STATUS_RANGE.get(name, (0, 0, 0))
    status = params.get("status", default_status)
    return Fault(
        name,
        _whole(count, "count", 1, 10_000),
        status=_whole(status, "status", low, high) if "status" in mode.takes else 0,
        seconds=_seconds(params["seconds"]) if "seconds" in mode.takes else 0.0,
        location=_location(params["location"]) if "location" in mode.takes else "",
        size=_whole(params.get("size", Fault.size), "size", 1, 100_000_000),
        factor=_factor(params.get("factor", Fault.factor)),
    )


def _whole(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high} (got {value!r:.40})")
    return value


def _seconds(value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= 600
    ):
        raise ValueError(f"seconds must be a number from 0 to 600 (got {value!r:.40})")
    return float(value)


def _location(value: Any) -> str:
    if (
        not isinstance(value, str)
        or not value.startswith(("http://", "https://"))
        or len(value) > 2048
        or not value.isprintable()
    ):
        raise ValueError(f"location must be an absolute http(s) URL (got {value!r:.60})")
    return value


def _factor(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise ValueError(f"factor must be a whole number from 1 to 1000000 (got {value!r:.40})")
    try:
        factor = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        factor = Decimal("NaN")
    if not factor.is_finite() or factor != factor.to_integral_value() or not 1 <= factor <= 10**6:
        raise ValueError(f"factor must be a whole number from 1 to 1000000 (got {value!r:.40})")
    return factor
