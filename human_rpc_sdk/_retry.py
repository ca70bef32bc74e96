"""The Solana RPC retry policy, as data: which failures are retried, how often, how long apart.

Each transport applies it with its own machinery: the synchronous one builds urllib3's
``Retry`` from it (:mod:`human_rpc_sdk._io.rpc`), the asynchronous one drives tenacity with it
(:mod:`human_rpc_sdk._io.arpc`). JSON-RPC reads are safe to repeat, so transient failures
(connection errors, read timeouts, HTTP 429 and 5xx) are retried a few times with a short
exponential backoff, and a ``Retry-After`` is honoured up to a cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final, Literal

__all__ = ["RPC_RETRY_POLICY", "FailureKind", "RetryPolicy"]

FailureKind = Literal["connect", "read", "status"]
"""What went wrong with one try: no connection, no (whole) answer, or a retryable status."""


@dataclass(frozen=True)
class RetryPolicy:
    """How a transport retries a JSON-RPC round trip.

    ``total`` tries more at most in all; ``connect``, ``read`` and ``status`` tries more at most
    per kind of failure. Before the n-th retry it waits ``backoff_factor * 2 ** (n - 1)``
    seconds (nothing before the first), at most ``backoff_max``, or what ``Retry-After`` asks,
    at most ``max_retry_after``.
    """

    statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})
    total: int = 4
    connect: int = 3
    read: int = 2
    status: int = 3
    backoff_factor: float = 0.1
    backoff_max: float = 2.0
    max_retry_after: float = 5.0

    def allows(self, failures: list[FailureKind]) -> bool:
        """Whether another try may follow the failures so far (oldest first)."""
        if len(failures) > self.total:
            return False
        limits: dict[FailureKind, int] = {
            "connect": self.connect,
            "read": self.read,
            "status": self.status,
        }
        return all(failures.count(kind) <= limit for kind, limit in limits.items())

    def backoff(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failed tries (urllib3's formula)."""
        if failures <= 1:
            return 0.0
        return float(max(0.0, min(self.backoff_max, self.backoff_factor * 2 ** (failures - 1))))

    def retry_after(self, header: str | None, now: datetime | None = None) -> float | None:
        """The seconds a ``Retry-After`` header asks for, capped; None when absent or malformed.

        ``now`` (aware, UTC) is needed only for the HTTP-date form.
        """
        seconds = parse_retry_after(header, now)
        return None if seconds is None else min(seconds, self.max_retry_after)

    def delay(self, failures: int, retry_after: str | None, now: datetime | None = None) -> float:
        """Seconds to wait before the next try: ``Retry-After`` (capped) when it says, else
        the backoff."""
        return self.retry_after(retry_after, now) or self.backoff(failures)


def parse_retry_after(header: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP-date); None when malformed."""
    if header is None:
        return None
    text = header.strip()
    if text.isdigit() and text.isascii():
        return float(text)  # any length (int() refuses past 4300 digits); absurd ones: inf
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    reference = now or datetime.now(UTC)
    return max(0.0, (when - reference).total_seconds())


RPC_RETRY_POLICY: Final = RetryPolicy()
"""How the RPC transports retry: at most 3 more tries per failure kind, 4 in all."""
