"""Idempotent paid requests: the answer to a settled payment, kept for two minutes.

A client whose paid request got no answer (a timeout, a dropped connection, a 5xx) sends the
very same request with the very same payment again. The payment already settled, so settling
it again must fail; instead the gateway answers with exactly what it answered the first time.
Only the *same* request matches (method, path with query, body, and payment header): the same
payment on another request, or after the window, is refused as the replay it is.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from flask import Response, request

__all__ = ["REPLAY_WINDOW", "PaidReplies"]

REPLAY_WINDOW: Final = 120.0


@dataclass(frozen=True)
class _Reply:
    at: float
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class PaidReplies:
    """Answers to paid requests, by request and payment, for ``window`` seconds."""

    def __init__(self, clock: Callable[[], float], window: float = REPLAY_WINDOW) -> None:
        self._clock = clock
        self._window = window
        self._lock = threading.Lock()
        self._replies: dict[str, _Reply] = {}

    @staticmethod
    def key(payment_header: str) -> str:
        """This request (method, path, query, body) paid with ``payment_header``."""
        digest = hashlib.sha256()
        for part in (request.method, request.full_path, payment_header):
            digest.update(part.encode("utf-8", "replace") + b"\0")
        digest.update(request.get_data())
        return digest.hexdigest()

    def get(self, key: str) -> Response | None:
        """The answer given to this very request, if it was paid within the window."""
        now = self._clock()
        with self._lock:
            self._replies = {k: r for k, r in self._replies.items() if now - r.at < self._window}
            reply = self._replies.get(key)
        if reply is None:
            return None
        return Response(reply.body, status=reply.status, headers=reply.headers)

    def put(self, key: str, response: Response) -> None:
        reply = _Reply(
            self._clock(), response.status_code, list(response.headers.items()), response.get_data()
        )
        with self._lock:
            self._replies[key] = reply
