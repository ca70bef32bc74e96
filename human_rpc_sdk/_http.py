"""Pure HTTP decisions both drivers (``requests`` and ``httpx``) make the same way.

* Payment headers stay home: :func:`headers_to_strip` names the payment headers a redirect
  hop must drop because it leaves the origin that asked for the payment.
* A whole answer must arrive within the timeout: :func:`read_deadline` turns a timeout into
  the ``clock()`` time by which a body must be read in full, and :class:`BoundedBody`
  accumulates a body chunk by chunk, stopping past its size limit or its deadline.
* A compressed body is inflated with the same bound (:class:`Inflater`): a 402 body that is a
  gzip bomb is refused after its limit, not inflated whole in memory first.
* "No definite answer": :func:`no_answer` classifies the failures of a paid request after
  which the payment may or may not have reached the server (the flow then sends it again).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Final, Literal
from urllib.parse import urlsplit

from ._effects import NoAnswer
from .exceptions import PaymentError

__all__ = [
    "NO_DEFINITE_ANSWER",
    "PAYMENT_HEADERS",
    "BoundedBody",
    "Failure",
    "Inflater",
    "headers_to_strip",
    "no_answer",
    "origin",
    "read_deadline",
    "same_origin",
]

PAYMENT_HEADERS: Final = ("X-PAYMENT", "PAYMENT-SIGNATURE", "SIGN-IN-WITH-X")
"""Request headers that carry a payment (or a sign-in, a credential as good as one): never
sent to another origin."""

Origin = tuple[str, str, int | None]


def origin(url: str | None) -> Origin:
    """``(scheme, host, port)`` of ``url``, the host lowercased and the port made explicit."""
    parts = urlsplit(url or "")
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.scheme.lower(), (parts.hostname or "").lower(), port or default


def same_origin(first: str | None, second: str | None) -> bool:
    """Whether the two URLs share scheme, host and port."""
    return origin(first) == origin(second)


def headers_to_strip(home: str | None, target: str | None, headers: Iterable[str]) -> list[str]:
    """The names among ``headers`` to drop before a request for ``home``'s payment goes to
    ``target``: every payment header, when ``target`` is another origin; none otherwise."""
    if same_origin(home, target):
        return []
    payment = {name.lower() for name in PAYMENT_HEADERS}
    return [name for name in headers if name.lower() in payment]


def read_deadline(parts: Iterable[object], clock: Callable[[], float]) -> float | None:
    """The ``clock()`` time by which an answer sent with a timeout of ``parts`` must be read
    in full: the sum of the parts that are numbers (a ``None`` part counts nothing); no number
    at all sets no deadline."""
    numbers = [p for p in parts if isinstance(p, int | float) and not isinstance(p, bool)]
    if not numbers:
        return None
    return clock() + float(sum(numbers))


class BoundedBody:
    """A body read chunk by chunk, at most ``limit + 1`` bytes (more means too large), and by
    ``deadline`` (a ``clock()`` time).

    Feed each chunk to :meth:`feed` (``True``: the limit is passed, stop reading); before each
    read ask :meth:`overdue` (the seconds spent reading, once the deadline has passed).
    """

    def __init__(
        self, limit: int | None, deadline: float | None, clock: Callable[[], float]
    ) -> None:
        self.limit = limit
        self.deadline = deadline
        self.clock = clock
        self.start = clock()
        self._chunks: list[bytes] = []
        self.size = 0

    def overdue(self) -> float | None:
        """Seconds read so far when the deadline has passed, else None."""
        if self.deadline is None:
            return None
        now = self.clock()
        return now - self.start if now > self.deadline else None

    def feed(self, chunk: bytes) -> bool:
        """Add ``chunk``; whether the body is now over its limit (stop reading)."""
        self._chunks.append(chunk)
        self.size += len(chunk)
        return self.limit is not None and self.size > self.limit

    def body(self) -> bytes:
        """What was read, cut at ``limit + 1`` bytes."""
        body = b"".join(self._chunks)
        return body if self.limit is None else body[: self.limit + 1]

    def room(self) -> int | None:
        """How many bytes more may be fed before the body is over its limit (None: any)."""
        return None if self.limit is None else max(0, self.limit + 1 - self.size)


class Inflater:
    """Inflates a body sent gzip- or deflate-encoded, chunk by chunk, never more than it is
    asked for: a small compressed body that inflates to gigabytes (a "zip bomb") costs no
    more memory than the limit it is read with. Build one with :meth:`of`."""

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        gzip = encoding != "deflate"
        self._inflate = zlib.decompressobj(zlib.MAX_WBITS | 16) if gzip else None
        self._tail = b""

    @classmethod
    def of(cls, content_encoding: str | None) -> Inflater | None:
        """The inflater of a body sent with ``content_encoding``; None when there is nothing
        to inflate or an encoding this does not know (the HTTP client decodes it)."""
        encoding = (content_encoding or "").strip().lower()
        return cls(encoding) if encoding in ("gzip", "x-gzip", "deflate") else None

    def inflate(self, raw: bytes, room: int | None) -> bytes:
        """The bytes ``raw`` (the next piece of the encoded body) inflates to, at most ``room``
        of them (None: all); what is left stays for the next call.

        :raises ValueError: the body is not validly encoded.
        """
        data = self._tail + raw
        if self._inflate is None:  # "deflate" is sent with or without the zlib wrapper
            if len(data) < 2:
                self._tail = data
                return b""
            self._inflate = zlib.decompressobj(zlib.MAX_WBITS if _zlib_header(data) else -15)
        if room == 0:
            self._tail = data
            return b""
        try:
            out = self._inflate.decompress(data, room or 0)  # 0: no bound
        except zlib.error as exc:
            raise ValueError(f"the body is not valid {self._encoding}: {exc}") from None
        self._tail = self._inflate.unconsumed_tail
        return out


def _zlib_header(data: bytes) -> bool:
    """Whether ``data`` starts with a zlib header (RFC 1950: deflate, a checksum of 31)."""
    return data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


Failure = Literal["connect", "timeout", "broken", "redirects", "protocol"]
"""How a paid request failed without an HTTP answer: no connection, no answer in time, a body
that broke off, too many redirects, or a malformed answer."""

NO_DEFINITE_ANSWER: Final[frozenset[Failure]] = frozenset(
    {"connect", "timeout", "broken", "redirects", "protocol"}
)
"""Failures after which a paid request may or may not have reached the server: the payment's
fate is unknown, so the flow decides (it sends the same payment again, then checks the chain).
A connection refused before sending counts too: the transport cannot always tell."""


def no_answer(failure: Failure | None, name: str) -> NoAnswer | None:
    """The :class:`NoAnswer` a failure of kind ``failure`` (raised as ``name``) means, or None
    when it is not a failure of the exchange (the caller re-raises it)."""
    if failure is None or failure not in NO_DEFINITE_ANSWER:
        return None
    return NoAnswer(name)


def failure_in(
    exc: BaseException, names: Sequence[tuple[type[BaseException], Failure]]
) -> Failure | None:
    """The kind of ``exc`` per a transport's ``names`` (its exception classes, most specific
    first, each with the :data:`Failure` it is), or None when it is none of them."""
    for kind, failure in names:
        if isinstance(exc, kind):
            return failure
    return None


def invoice_too_slow(url: object, seconds: float) -> PaymentError:
    """The error for a 402 body still trickling in when its read deadline passed."""
    return PaymentError(
        f"the 402 answer from {url} did not arrive in full within the request's "
        f"timeout (the agent stopped reading its trickling body after {seconds:.3g} s). "
        "Nothing was paid; retry, or raise timeout= if the service is that slow",
        reason="invoice_too_slow",
    )


def invoice_unreadable(url: object, problem: str) -> PaymentError:
    """The error for a 402 body that broke off while being read (``problem``: the failure)."""
    return PaymentError(
        f"the 402 answer from {url} broke off while being read ({problem}). Nothing was paid",
        reason="invoice_unreadable",
    )


def body_not_replayable(url: object) -> PaymentError:
    """The error for a 402 to a request whose body was a stream, already consumed."""
    return PaymentError(
        f"{url} asks for payment, but the request body was a stream that is already "
        "consumed, so the request cannot be sent again with the payment. Nothing was paid; pass "
        "the body as bytes or a seekable file",
        reason="body_not_replayable",
    )


def unreached(url: str | None, why: str) -> str:
    """The message for a first, unpaid request that got no answer (``why``: the cause)."""
    return (
        f"the request to {without_userinfo(url)} failed before any answer came: "
        f"{why}. Nothing was paid (a payment is only made in answer to a 402); "
        "check the URL, the network and that the server is up, then try again"
    )


def without_userinfo(url: str | None) -> str:
    """``url`` for a message: a password in it (``user:pass@host``) is not repeated."""
    parts = urlsplit(url or "")
    if "@" not in parts.netloc:
        return url or ""
    return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()
