"""Idempotent paid requests: the answer to a settled payment, kept for two minutes.

A client whose paid request got no answer (a timeout, a dropped connection, a 5xx) sends the
very same request with the very same payment again. The payment already settled, so settling
it again must fail; instead the gateway answers with exactly what it answered the first time.
Only the *same* request matches (method, path with query, body, and payment header): the same
payment on another request, or after the window, is refused as the replay it is.

The first copy may still be running when the re-send arrives (a view slower than the client's
read deadline). The re-send then *joins* it: it waits for the first copy's answer and gets that
same answer, up to ``join_timeout`` seconds; it is never settled, nor refused as a replay,
while the first runs. If the first copy fails after settling (the view raised), whoever joined
it gets an HTTP 500 saying so; if it settled nothing (the payment was refused), the next copy
is judged afresh, so it is refused for the same reason. A copy that waited ``join_timeout``
seconds in vain is answered 503 with ``Retry-After``: send it again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:  # Flask is imported on use, so the Flask-free Gateway can hold a registry
    from flask import Response

__all__ = [
    "ID_WINDOW",
    "JOIN_TIMEOUT",
    "REPLAY_WINDOW",
    "PaidReplies",
    "PaymentIds",
    "Serving",
    "Turn",
]

REPLAY_WINDOW: Final = 120.0
Turn = Literal["lead", "answer", "timeout"]
JOIN_TIMEOUT: Final = 60.0
"""Seconds a re-send waits for the first copy of its paid request to be answered."""


@dataclass(frozen=True)
class _Reply:
    at: float
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @classmethod
    def of(cls, at: float, response: Response) -> _Reply:
        return cls(at, response.status_code, list(response.headers.items()), response.get_data())

    def response(self) -> Response:
        from flask import Response

        return Response(self.body, status=self.status, headers=self.headers)


@dataclass
class _Flight:
    """A paid request being served: whoever joins it waits for ``done``."""

    done: threading.Event = field(default_factory=threading.Event)
    reply: _Reply | None = None
    """The answer for those who joined: the paid answer, or a 500 when the view failed."""


@dataclass
class Serving:
    """What :meth:`PaidReplies.serving` hands the paywall.

    ``reply`` is an answer to give as it is (the first copy's answer, or a 503 after waiting
    in vain); when None, this copy is the one to serve: settle, run the view, then
    :meth:`keep` the answer.
    """

    reply: Response | None
    _keep: Callable[[Response], None]
    kept: Response | None = None

    def keep(self, response: Response) -> None:
        """Remember the paid answer for re-sends (and hand it to those who joined)."""
        self.kept = response
        self._keep(response)

    @property
    def answer(self) -> Response | None:
        """Once served: the answer to give (the reply given, else the answer kept)."""
        return self.reply if self.reply is not None else self.kept


class PaidReplies:
    """Answers to paid requests, by request and payment, for ``window`` seconds."""

    def __init__(
        self,
        clock: Callable[[], float],
        window: float = REPLAY_WINDOW,
        *,
        join_timeout: float = JOIN_TIMEOUT,
    ) -> None:
        self._clock = clock
        self._window = window
        self.join_timeout = join_timeout
        self._changed = threading.Condition()
        self._replies: OrderedDict[str, _Reply] = OrderedDict()
        self._flights: dict[str, _Flight] = {}
        self.joins = 0
        """How many re-sends joined a paid request in flight (for tests and diagnostics)."""

    @staticmethod
    def key(payment_header: str) -> str:
        """This request (method, path, query, body) paid with ``payment_header``."""
        from flask import request

        environ = request.environ  # as sent: cheaper than Request's decoded full_path
        digest = hashlib.sha256()
        for part in (
            environ.get("REQUEST_METHOD", ""),
            environ.get("PATH_INFO", ""),
            environ.get("QUERY_STRING", ""),
            payment_header,
        ):
            digest.update(part.encode("utf-8", "replace") + b"\0")
        digest.update(request.get_data())
        return digest.hexdigest()

    def get(self, key: str) -> Response | None:
        """The answer given to this very request, if it was paid within the window."""
        with self._changed:
            reply = self._kept(key)
        return None if reply is None else reply.response()

    def put(self, key: str, response: Response) -> None:
        """Remember ``response`` as the answer to the paid request ``key``."""
        self._keep(key, response)

    @contextlib.contextmanager
    def serving(self, key: str) -> Iterator[Serving]:
        """Serve the paid request ``key`` once, however many copies of it arrive.

        The first copy gets ``Serving(reply=None)`` and serves the request; copies that
        arrive while it runs wait for its answer (see the module docstring).
        """
        turn, reply = self.turn(key)
        if turn != "lead":
            yield Serving(self.answer_for(reply), _ignore)
            return
        kept: list[_Reply] = []
        failure = None
        try:
            yield Serving(None, lambda response: kept.append(_Reply.of(0.0, response)))
        except BaseException:
            failure = _Reply.of(0.0, _failed())
            raise
        finally:
            self.land(key, kept[0] if kept else failure, keep=bool(kept))

    def answer_for(self, reply: _Reply | None) -> Response:
        """The answer to a copy that did not lead: ``reply``, or (None) a 503 saying its
        first copy is still being served."""
        return _still_running(self.join_timeout) if reply is None else reply.response()

    def turn(self, key: str) -> tuple[Turn, _Reply | None]:
        """This copy's turn: ``("lead", None)`` serves the request (then :meth:`land` it);
        ``("answer", reply)`` gives the answer kept or landed for it; ``("timeout", None)``
        waited ``join_timeout`` seconds in vain."""
        while True:
            with self._changed:
                kept = self._kept(key)
                if kept is not None:
                    return "answer", kept
                flight = self._flights.get(key)
                if flight is None:
                    self._flights[key] = _Flight()
                    return "lead", None
                self.joins += 1
                self._changed.notify_all()
            if not flight.done.wait(self.join_timeout):
                return "timeout", None
            if flight.reply is not None:
                return "answer", flight.reply
            # The first copy settled nothing (its payment was refused): judge this one afresh.

    def land(self, key: str, reply: _Reply | None, *, keep: bool) -> None:
        """End the flight :meth:`turn` led: hand ``reply`` to whoever joined it (None: it
        settled nothing), and with ``keep`` remember it for re-sends."""
        with self._changed:
            if reply is not None:
                reply = dataclasses.replace(reply, at=self._clock())
                if keep:
                    self._replies[key] = reply
                    self._replies.move_to_end(key)
            flight = self._flights.pop(key)
            flight.reply = reply
            flight.done.set()

    def wait_for_joins(self, count: int, timeout: float) -> bool:
        """Wait until :attr:`joins` reaches ``count`` (tests synchronise on it); False if not."""
        with self._changed:
            return self._changed.wait_for(lambda: self.joins >= count, timeout)

    # -- plumbing --------------------------------------------------------------------------

    def _keep(self, key: str, response: Response) -> _Reply:
        reply = _Reply.of(self._clock(), response)
        with self._changed:
            self._replies[key] = reply
            self._replies.move_to_end(key)
        return reply

    def _kept(self, key: str) -> _Reply | None:
        """The kept answer to ``key``; drops expired answers, oldest first (lock held)."""
        now = self._clock()
        while self._replies:
            oldest = next(iter(self._replies.values()))
            if now - oldest.at < self._window:
                break
            self._replies.popitem(last=False)
        return self._replies.get(key)


def _ignore(response: Response) -> None:
    """A copy that was answered without serving keeps nothing."""


def _failed() -> Response:
    from ._http import json_error

    return json_error(
        500,
        "paid_request_failed",
        "the payment settled, then serving the paid request failed; it is not charged again",
    )


def _still_running(seconds: float) -> Response:
    from ._http import json_error

    response = json_error(
        503,
        "paid_request_in_progress",
        f"this paid request is still being served after {seconds:g} s; send the very same "
        "request again later to get its answer (it will not be charged twice)",
    )
    response.headers["Retry-After"] = "1"
    return response


# -- x402 payment ids ------------------------------------------------------------------------

ID_WINDOW: Final = 3600.0
"""Seconds a payment id stays bound to the payment first seen with it (the reference example
keeps its ids for an hour)."""
MAX_IDS: Final = 100_000
"""Payment ids kept at most (the oldest are forgotten first)."""


class PaymentIds:
    """Which payment each x402 payment id (``payment-identifier``) was first seen with.

    An id is bound, per route (the spec: scope ids by route where one server has several), to
    a digest of the exact payment payload it first came with. The same id with the same
    payload is a re-send (answered from :class:`PaidReplies`); the same id with any other
    payload is the spec's conflict (409). Ids are bound as they arrive, before verifying.
    """

    def __init__(
        self, clock: Callable[[], float], window: float = ID_WINDOW, limit: int = MAX_IDS
    ) -> None:
        self._clock = clock
        self._window = window
        self._limit = limit
        self._lock = threading.Lock()
        self._bound: OrderedDict[tuple[str, str], tuple[float, str]] = OrderedDict()

    def bind(self, scope: str, payment_id: str, digest: str) -> bool:
        """Bind ``payment_id`` (within ``scope``) to ``digest`` if it is new; whether the
        payment ``digest`` may proceed (False: the id is bound to another payment)."""
        now = self._clock()
        with self._lock:
            while self._bound:
                at, _ = next(iter(self._bound.values()))
                if now - at < self._window and len(self._bound) < self._limit:
                    break
                self._bound.popitem(last=False)
            bound = self._bound.get((scope, payment_id))
            if bound is None:
                self._bound[(scope, payment_id)] = (now, digest)
                return True
            return bound[1] == digest
