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

An x402 payment carrying a payment id (``payment-identifier``) is kept by its id and payload
instead (:func:`id_key`), for as long as the id stays bound (:data:`ID_WINDOW`, an hour), so
the same payload re-sent at any time within the binding's life gets the same answer and settles
nothing more. At most :data:`MAX_ID_REPLIES` such answers are kept; past that, the oldest is
forgotten first (its payload re-sent is then refused as the replay it is, as after the hour).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
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
    "MAX_IDS",
    "MAX_ID_REPLIES",
    "REPLAY_WINDOW",
    "Claim",
    "PaidReplies",
    "PaymentIds",
    "Serving",
    "Turn",
    "id_key",
]

REPLAY_WINDOW: Final = 120.0
Turn = Literal["lead", "answer", "timeout"]
JOIN_TIMEOUT: Final = 60.0
"""Seconds a re-send waits for the first copy of its paid request to be answered."""
ID_WINDOW: Final = 3600.0
"""Seconds a payment id stays bound to the payment that settled with it, and its answer kept
(the reference example keeps its ids for an hour)."""
MAX_IDS: Final = 100_000
"""Payment ids kept at most (the oldest are forgotten first)."""
MAX_ID_REPLIES: Final = 10_000
"""Answers kept by payment id at most (the oldest are forgotten first): an answer is a few
hundred bytes to a few KiB, so a few tens of MiB at worst."""
_ID_KEY: Final = "id:"


def id_key(scope: str, payment_id: str, digest: str) -> str:
    """The reply key of a payment carrying ``payment_id`` within ``scope`` (its route), whose
    payload has ``digest``: kept as long as an id's binding (see the module docstring)."""
    return _ID_KEY + hashlib.sha256(f"{scope}\0{payment_id}\0{digest}".encode()).hexdigest()


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
    """Answers to paid requests, by request and payment, for ``window`` seconds; by payment
    id (keys made by :func:`id_key`) for ``id_window`` seconds, ``id_limit`` at most."""

    def __init__(
        self,
        clock: Callable[[], float],
        window: float = REPLAY_WINDOW,
        *,
        join_timeout: float = JOIN_TIMEOUT,
        id_window: float = ID_WINDOW,
        id_limit: int = MAX_ID_REPLIES,
    ) -> None:
        self._clock = clock
        self._window = window
        self._id_window = id_window
        self._id_limit = id_limit
        self.join_timeout = join_timeout
        self._changed = threading.Condition()
        self._replies: OrderedDict[str, _Reply] = OrderedDict()
        self._by_id: OrderedDict[str, _Reply] = OrderedDict()
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
                    self._store(key, reply)
            flight = self._flights.pop(key)
            flight.reply = reply
            flight.done.set()

    def wait_for_joins(self, count: int, timeout: float) -> bool:
        """Wait until :attr:`joins` reaches ``count`` (tests synchronise on it); False if not."""
        with self._changed:
            return self._changed.wait_for(lambda: self.joins >= count, timeout)

    # -- plumbing --------------------------------------------------------------------------

    @property
    def kept_by_id(self) -> int:
        """How many answers are kept by payment id now (for tests and diagnostics)."""
        with self._changed:
            return len(self._by_id)

    def _keep(self, key: str, response: Response) -> _Reply:
        reply = _Reply.of(self._clock(), response)
        with self._changed:
            self._store(key, reply)
        return reply

    def _store(self, key: str, reply: _Reply) -> None:
        """Keep ``reply`` for ``key``, the oldest answer by id forgotten past the cap (lock
        held)."""
        replies = self._by_id if key.startswith(_ID_KEY) else self._replies
        replies[key] = reply
        replies.move_to_end(key)
        while len(self._by_id) > self._id_limit:
            self._by_id.popitem(last=False)

    def _kept(self, key: str) -> _Reply | None:
        """The kept answer to ``key``; drops expired answers, oldest first (lock held)."""
        now = self._clock()
        for replies, window in ((self._replies, self._window), (self._by_id, self._id_window)):
            while replies:
                oldest = next(iter(replies.values()))
                if now - oldest.at < window:
                    break
                replies.popitem(last=False)
        return (self._by_id if key.startswith(_ID_KEY) else self._replies).get(key)


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

Claim = Literal["claimed", "conflict", "busy"]


@dataclass
class _Binding:
    at: float
    digest: str
    settled: bool
    """False while the payment that claimed the id is being settled (it may yet fail)."""


class PaymentIds:
    """Which payment each x402 payment id (``payment-identifier``) is bound to.

    An id is bound, per route (the spec: scope ids by route where one server has several), to
    a digest of the exact payment payload that *settled* with it, for ``window`` seconds. The
    same id with that payload is a re-send (answered from :class:`PaidReplies`); the same id
    with any other payload is the spec's conflict (409).

    Binding happens at settlement, not on sight: anyone who sees a client's id could otherwise
    bind it to garbage first and get the real payment a 409 for the binding's life. A payment
    that passed every check but the ledger's claims its id (:meth:`claim`) just before it is
    settled; the claim becomes the binding once it settles (:meth:`confirm`) and is dropped
    when it settles nothing (:meth:`release`). One payment at a time settles under an id:
    another payload claiming it meanwhile waits (``wait`` seconds at most, then "busy") for the
    first's outcome, so two payloads can never both settle under one id.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        window: float = ID_WINDOW,
        limit: int = MAX_IDS,
        *,
        wait: float = JOIN_TIMEOUT,
    ) -> None:
        self._clock = clock
        self._window = window
        self._limit = limit
        self.wait = wait
        self._changed = threading.Condition()
        self._bound: OrderedDict[tuple[str, str], _Binding] = OrderedDict()
        self.waits = 0
        """How many claims waited for another payment's outcome (tests synchronise on it)."""

    def claim(self, scope: str, payment_id: str, digest: str) -> Claim:
        """Claim ``payment_id`` (within ``scope``) for the payment ``digest`` about to settle:
        "claimed" (settle it, then :meth:`confirm` or :meth:`release`; also when ``digest``
        already settled with it), "conflict" (bound to another payment that settled) or
        "busy" (another payment under the id was still settling after ``wait`` seconds)."""
        key = (scope, payment_id)
        with self._changed:
            while True:
                self._forget_old()
                bound = self._bound.get(key)
                if bound is None:
                    self._bound[key] = _Binding(self._clock(), digest, settled=False)
                    return "claimed"
                if bound.settled:
                    return "claimed" if bound.digest == digest else "conflict"
                self.waits += 1
                self._changed.notify_all()
                decided = functools.partial(self._decided, key, bound)
                if not self._changed.wait_for(decided, self.wait):
                    return "busy"

    def conflicts(self, scope: str, payment_id: str, digest: str) -> bool:
        """Whether ``payment_id`` is bound to another payment than ``digest`` (one that
        settled: a claim still settling binds nothing yet)."""
        with self._changed:
            self._forget_old()
            bound = self._bound.get((scope, payment_id))
        return bound is not None and bound.settled and bound.digest != digest

    def confirm(self, scope: str, payment_id: str, digest: str) -> None:
        """The payment ``digest`` settled: ``payment_id`` is bound to it for ``window`` s."""
        key = (scope, payment_id)
        with self._changed:
            bound = self._bound.get(key)
            if bound is None or bound.digest == digest:
                self._bound[key] = _Binding(self._clock(), digest, settled=True)
                self._bound.move_to_end(key)
            self._changed.notify_all()

    def release(self, scope: str, payment_id: str, digest: str) -> None:
        """The payment ``digest`` settled nothing: its claim of ``payment_id`` is dropped."""
        key = (scope, payment_id)
        with self._changed:
            bound = self._bound.get(key)
            if bound is not None and bound.digest == digest and not bound.settled:
                del self._bound[key]
            self._changed.notify_all()

    def _decided(self, key: tuple[str, str], claimed: _Binding) -> bool:
        """Whether the payment that made the claim ``claimed`` settled or was released."""
        return claimed.settled or self._bound.get(key) is not claimed

    def wait_for_waits(self, count: int, timeout: float) -> bool:
        """Wait until :attr:`waits` reaches ``count``; False if it did not in ``timeout`` s."""
        with self._changed:
            return self._changed.wait_for(lambda: self.waits >= count, timeout)

    def _forget_old(self) -> None:
        """Drop bindings past ``window`` or ``limit``, oldest first (lock held)."""
        now = self._clock()
        while self._bound:
            oldest = next(iter(self._bound.values()))
            if now - oldest.at < self._window and len(self._bound) < self._limit:
                break
            self._bound.popitem(last=False)
