"""Exceptions raised by human_rpc_sdk.

Every error the SDK raises derives from :class:`HumanRPCError`::

    HumanRPCError
    ├── SDKConfigurationError           local: bad argument, missing or malformed key
    │   └── ReiteratorConfigurationError
    ├── InvoiceValidationError          remote: the 402 answer is malformed or not payable here
    │                                   (``.response``: what the server said, a ServerResponse)
    ├── TransactionBuildError           local: the transfer could not be built or signed
    │   └── NetworkMismatchError        the invoice is for another network (also a policy refusal)
    ├── PaymentError                    the payment could not be made, or was not accepted
    │   ├── PaymentPolicyError          local: a spending rule of this agent refused it
    │   │   └── NetworkMismatchError    (the network is pinned; see above)
    │   └── SolanaRPCError              the Solana RPC node failed or answered with an error
    ├── HumanVerificationError          the HumanRPC task API failed or timed out
    ├── ReiteratorMaxAttemptsError      the humans kept rejecting until max_attempts
    ├── ReiteratorRateLimitError        rate limiting would push a retry past its limits
    └── ConnectionFailedError           the unpaid request could not connect; it is also a
        │                               requests.ConnectionError (nothing was paid)
        ├── ConnectTimeoutError         ... and a requests.ConnectTimeout (so a Timeout too)
        ├── SSLConnectionError          ... and a requests.exceptions.SSLError
        └── ProxyConnectionError        ... and a requests.exceptions.ProxyError

Only connection failures of the first, unpaid request are wrapped, each in the class that is
also the very ``requests`` exception raised, so ``except requests.ConnectionError`` (or
``requests.Timeout`` for a connect timeout) keeps working. Other transport errors of that
request (a read timeout, too many redirects) are ``requests``' own, as with ``requests``.

Messages say what went wrong and what to do about it. Structured fields are attributes
(``reason`` is a stable machine-readable code). No exception ever carries key material: the
SDK builds every message itself and never formats a key, a seed or a signed payload into one.
Exceptions survive a pickle round trip (``args`` is always ``(message,)`` and the fields live
in ``__dict__``; :meth:`HumanRPCError.__reduce__` rebuilds them without calling ``__init__``),
so they can cross process boundaries.

One warning category is not an error: :class:`PendingPaymentsWarning` (a ``UserWarning``)
tells the owner of a restarted agent that its journal holds payments of unknown outcome.
"""

from __future__ import annotations

import codecs
import html
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final
from urllib.parse import urlsplit

from ._reasons import Reason, Rule

if TYPE_CHECKING:
    from ._io.errors import (
        ConnectionFailedError,
        ConnectTimeoutError,
        ProxyConnectionError,
        SSLConnectionError,
    )

__all__ = [
    "ConnectTimeoutError",
    "ConnectionFailedError",
    "HumanRPCError",
    "HumanVerificationError",
    "InvoiceValidationError",
    "NetworkMismatchError",
    "PaymentError",
    "PaymentPolicyError",
    "PendingPaymentsWarning",
    "ProxyConnectionError",
    "ReiteratorConfigurationError",
    "ReiteratorMaxAttemptsError",
    "ReiteratorRateLimitError",
    "SDKConfigurationError",
    "SSLConnectionError",
    "ServerResponse",
    "SolanaRPCError",
    "TransactionBuildError",
]


class HumanRPCError(Exception):
    """Root of every exception raised by human_rpc_sdk.

    :param message: what went wrong and what to do about it.
    :param reason: a stable, machine-readable code such as ``"insufficient_funds"`` (every
        code and its meaning: ``human_rpc_sdk._reasons.REASONS``).
    :param details: extra structured context (never secrets).
    """

    default_reason: ClassVar[Reason] = "error"

    def __init__(
        self,
        message: str,
        *,
        reason: Reason | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason: Reason = reason or self.default_reason
        self.details: dict[str, Any] = dict(details or {})

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's own reduce calls cls(*args), which fails for required keyword fields.
        return (_rebuild, (type(self), self.message), dict(self.__dict__))


def _rebuild(cls: type[HumanRPCError], message: str) -> HumanRPCError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    return error


class SDKConfigurationError(HumanRPCError):
    """The SDK was configured wrongly: a bad argument, a missing or malformed key."""

    default_reason: ClassVar[Reason] = "bad_configuration"

    def __init__(
        self,
        message: str,
        *,
        parameter: str | None = None,
        reason: Reason | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, details=details)
        self.parameter = parameter


class ReiteratorConfigurationError(SDKConfigurationError):
    """The reiterator's configuration (attempts, strategy, delays) is invalid."""

    default_reason: ClassVar[Reason] = "bad_reiterator_configuration"


EXCERPT_BYTES: Final = 2048
"""How much of a 402 body a :class:`ServerResponse` keeps."""
_SUMMARY_CHARS: Final = 160
_MAX_HEADERS: Final = 64
_HEADER_CHARS: Final = 2048
_CHARSET: Final = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9._:-]+)", re.IGNORECASE)
_INVISIBLE: Final = re.compile(
    r"<(script|style)\b.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL
)
_TAG: Final = re.compile(r"<[^>]*>")


class _Headers(Mapping[str, str]):
    """A read-only, case-insensitive copy of response headers (picklable, unlike a proxy)."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        # Bounded like the body: a hostile server's 100 headers of 64 KiB are not all kept.
        self._items = {
            str(k)[:_HEADER_CHARS].lower(): (str(k)[:_HEADER_CHARS], str(v)[:_HEADER_CHARS])
            for k, v in list(headers.items())[:_MAX_HEADERS]
        }

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (original for original, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset((k, v) for k, (_, v) in self._items.items()))

    def __repr__(self) -> str:
        return repr(dict(self.items()))


@dataclass(frozen=True, eq=True)
class ServerResponse:
    """What a server answered, kept on the error it caused: nothing the server said is lost.

    ``text`` is the start of the body (at most 2 KiB, decoded with the answer's charset, or
    UTF-8, undecodable bytes replaced); ``truncated`` says there was more. ``headers`` is a
    read-only, case-insensitive mapping. It holds only what the server sent, never anything
    of the agent's (no key, no payment header).
    """

    status: int
    url: str | None
    headers: Mapping[str, str] = field(repr=False)
    text: str = field(repr=False)
    truncated: bool = False

    @classmethod
    def of(
        cls, status: int, headers: Mapping[str, str], body: bytes, url: str | None
    ) -> ServerResponse:
        """Keep ``status``, ``headers``, ``url`` and the first 2 KiB of ``body``."""
        truncated = len(body) > EXCERPT_BYTES
        charset = _charset(headers.get("Content-Type") or headers.get("content-type") or "")
        try:
            decoder = codecs.getincrementaldecoder(charset)(errors="replace")
            # A character cut in two at the 2 KiB mark is dropped, not shown as a replacement.
            text: Any = decoder.decode(body[:EXCERPT_BYTES], final=not truncated)
        except Exception:  # noqa: BLE001 - a codec named by the server (rot13, base64, idna)
            text = None
        if not isinstance(text, str):
            text = body[:EXCERPT_BYTES].decode("utf-8", errors="replace")
        return cls(status, _without_userinfo(url), _Headers(headers), text, truncated)

    @property
    def content_type(self) -> str:
        """The ``Content-Type`` header, or ``""``."""
        return self.headers.get("Content-Type", "")

    def summary(self, limit: int = _SUMMARY_CHARS) -> str:
        """The body on one line, at most ``limit`` characters; an HTML page as its text."""
        text = self.text
        if "html" in self.content_type.lower() or text.lstrip()[:1] == "<":
            text = html.unescape(_TAG.sub(" ", _INVISIBLE.sub(" ", text)))
        text = " ".join(text.split())
        if len(text) > limit:
            return text[: limit - 3] + "..."
        return text + ("..." if self.truncated else "")

    def __repr__(self) -> str:
        return (
            f"ServerResponse(status={self.status}, url={self.url!r}, "
            f"content_type={self.content_type!r}, text={self.summary(60)!r})"
        )


def _without_userinfo(url: str | None) -> str | None:
    """``url`` without a ``user:password@`` part: that is the agent's, not what the server said."""
    if url is None or "@" not in url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


def _charset(content_type: str) -> str:
    match = _CHARSET.search(content_type)
    if match is not None:
        try:
            return codecs.lookup(match.group(1)).name
        except LookupError:
            pass
    return "utf-8"


class InvoiceValidationError(HumanRPCError):
    """A 402 answer could not be parsed, or its invoice cannot be paid by this agent.

    ``field`` names the offending field as a dotted path (``"invoice.amount"``); ``invoice``
    is the invoice as received (public data, never secret). ``response`` is the 402 answer
    itself (a :class:`ServerResponse`: status, headers, the start of the body, url) when the
    error came from an answer, so a page or a JSON error the server sent instead of an invoice
    ("quota exceeded") can be read. Nothing was signed.
    """

    default_reason: ClassVar[Reason] = "invalid_invoice"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        invoice: Mapping[str, Any] | None = None,
        reason: Reason | None = None,
        details: Mapping[str, Any] | None = None,
        response: ServerResponse | None = None,
    ) -> None:
        super().__init__(message, reason=reason, details=details)
        self.field = field
        self.invoice = dict(invoice) if invoice is not None else None
        self.response = response


class TransactionBuildError(HumanRPCError):
    """The payment transaction could not be built or signed. Nothing was sent."""

    default_reason: ClassVar[Reason] = "build_failed"


class PaymentError(HumanRPCError):
    """The payment could not be made, or the server did not accept it.

    ``signature`` is set when a signed transaction left the process: use it to look the
    payment up on chain before trying again. ``invoice`` is the invoice being paid.
    """

    default_reason: ClassVar[Reason] = "payment_failed"

    def __init__(
        self,
        message: str,
        *,
        invoice: Mapping[str, Any] | None = None,
        signature: str | None = None,
        reason: Reason | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, details=details)
        self.invoice = dict(invoice) if invoice is not None else None
        self.signature = signature


class PaymentPolicyError(PaymentError):
    """One of the agent's spending rules refused the payment. Nothing was signed.

    ``rule`` names the rule (``"max_payment"``, ``"accept_assets"``, ...).
    """

    default_reason: ClassVar[Reason] = "refused_by_policy"

    def __init__(
        self,
        message: str,
        *,
        rule: Rule,
        invoice: Mapping[str, Any] | None = None,
        reason: Reason | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, invoice=invoice, reason=reason, details=details)
        self.rule: Rule = rule


class NetworkMismatchError(InvoiceValidationError, PaymentPolicyError):
    """The invoice or offer is for another Solana network than the agent's: never paid.

    Both an :class:`InvoiceValidationError` (``field`` names the network field) and a
    :class:`PaymentPolicyError` (``rule == "network"``): the agent's network is pinned. (Its
    bases' initialisers chain through each other, so it sets its fields itself.)
    """

    default_reason: ClassVar[Reason] = "wrong_network"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        invoice: Mapping[str, Any] | None = None,
        reason: Reason | None = None,
        details: Mapping[str, Any] | None = None,
        response: ServerResponse | None = None,
    ) -> None:
        HumanRPCError.__init__(self, message, reason=reason, details=details)
        self.field = field
        self.invoice = dict(invoice) if invoice is not None else None
        self.response = response
        self.signature = None
        self.rule = "network"


class SolanaRPCError(PaymentError):
    """The Solana JSON-RPC node could not be reached, failed, or answered with an error.

    ``method`` is the RPC method, ``code`` the JSON-RPC error code when the node sent one.
    """

    default_reason: ClassVar[Reason] = "rpc_error"

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        code: int | None = None,
        reason: Reason | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, details=details)
        self.method = method
        self.code = code


class HumanVerificationError(HumanRPCError):
    """The HumanRPC task API failed, answered something malformed, or timed out.

    ``task_id`` is set when a task exists, so the caller can resume waiting on it.
    """

    default_reason: ClassVar[Reason] = "human_verification_failed"

    def __init__(
        self,
        message: str,
        *,
        task_id: str | None = None,
        reason: Reason | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, details=details)
        self.task_id = task_id


class ReiteratorMaxAttemptsError(HumanRPCError):
    """The humans did not approve within ``max_attempts`` submissions."""

    default_reason: ClassVar[Reason] = "max_attempts_reached"

    def __init__(
        self,
        message: str,
        *,
        attempts: int = 0,
        last_result: Mapping[str, Any] | None = None,
        reason: Reason | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, details=details)
        self.attempts = attempts
        self.last_result = dict(last_result) if last_result is not None else None


class ReiteratorRateLimitError(HumanRPCError):
    """The service rate-limited us and waiting would pass the reiterator's limits."""

    default_reason: ClassVar[Reason] = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        reason: Reason | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, details=details)
        self.retry_after = retry_after


class PendingPaymentsWarning(UserWarning):
    """The payment journal holds payments whose outcome is unknown (signed or reserved, never
    answered): a process stopped while paying. Issued when an agent is built on such a journal,
    with no logging set up; ``agent.recover_payments()`` settles them against the chain.

    Silence it, once you handle pending payments yourself, with
    ``warnings.simplefilter("ignore", PendingPaymentsWarning)``.
    """


_CONNECTION_ERRORS: Final = frozenset(
    {"ConnectionFailedError", "ConnectTimeoutError", "ProxyConnectionError", "SSLConnectionError"}
)


def __getattr__(name: str) -> Any:
    """The connection errors, which are ``requests`` exceptions too, on first use: importing
    ``requests`` takes longer than the rest of this package."""
    if name not in _CONNECTION_ERRORS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from ._io import errors

    value = getattr(errors, name)
    globals()[name] = value
    return value
