"""The synchronous driver: runs the sans-I/O flows over ``requests``, the RPC and the journal.

:class:`Driver` performs each effect a flow yields and resumes the flow with the result; an
SDK error raised while performing one is thrown *into* the flow, so the flow decides what it
means (a failed chain check after a refusal, say, is not worth losing the refusal for).

The HTTP side is here too: reading a 402 body with a bound, sending the paid request again,
and following redirects so that a payment header is only ever sent to the origin that asked
for the payment.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any, Final, TypeVar

import requests
import urllib3
from requests.cookies import extract_cookies_to_jar, merge_cookies
from requests.utils import rewind_body

from .._driving import Stepper
from .._effects import (
    Approve,
    Effect,
    FindPayment,
    FindResumable,
    HttpReply,
    NoAnswer,
    PaidBefore,
    Pause,
    Record,
    Resend,
    Reserve,
    RpcCall,
    Sign,
)
from .._flow import MAX_402_BODY_BYTES
from .._http import (
    PAYMENT_HEADERS,
    BoundedBody,
    Failure,
    body_not_replayable,
    failure_in,
    headers_to_strip,
    invoice_too_slow,
    invoice_unreadable,
    no_answer,
    unreached,
)
from .._http import read_deadline as _read_deadline
from .._offer import PaymentOffer
from .._resume import request_fingerprint
from ..exceptions import (
    ConnectionFailedError,
    ConnectTimeoutError,
    HumanRPCError,
    PaymentPolicyError,
    ProxyConnectionError,
    SSLConnectionError,
)
from ..wallet import OwnSignature, Signer, own_key, signature_of, signer_failed
from .rpc import RpcClient
from .store import JournalStore

__all__ = [
    "PAYMENT_HEADERS",
    "Driver",
    "NotSent",
    "PaidRequest",
    "WholeReadTimeout",
    "deadline_of",
    "read_bounded",
    "reply_of",
    "send_unpaid",
]

logger = logging.getLogger("human_rpc_sdk")

T = TypeVar("T")

_FAILURES: Final[tuple[tuple[type[requests.RequestException], Failure], ...]] = (
    (requests.Timeout, "timeout"),
    (requests.ConnectionError, "connect"),
    (requests.exceptions.ChunkedEncodingError, "broken"),
    (requests.TooManyRedirects, "redirects"),
)
"""How ``requests`` names each failure of the exchange :mod:`.._http` classifies."""


def failure_of(exc: BaseException) -> Failure | None:
    """The kind of ``exc`` as :func:`.._http.no_answer` knows it, or None."""
    return failure_in(exc, _FAILURES)


_CHUNK_BYTES: Final = 16_384


class Driver:
    """Performs effects: JSON-RPC, pauses, the ``approve`` callback and the journal."""

    def __init__(
        self,
        *,
        rpc: RpcClient | None,
        journal: JournalStore,
        approve: Callable[[PaymentOffer], object] | None,
        sleep: Callable[[float], None],
        signer: Signer | None = None,
    ) -> None:
        self.rpc = rpc
        self.signer = signer
        self.journal = journal
        self.approve = approve
        self.sleep = sleep

    def run(
        self,
        flow: Generator[Effect[Any], Any, T],
        resend: Callable[[Resend], HttpReply | NoAnswer] | None = None,
    ) -> T:
        """Run ``flow`` to its end; ``resend`` performs :class:`Resend` effects."""
        steps = Stepper(flow)
        effect = steps.start()
        while effect is not None:
            effect = self.advance(steps, effect, resend)
        return steps.value

    def advance(
        self,
        steps: Stepper[Any],
        effect: Effect[Any],
        resend: Callable[[Resend], HttpReply | NoAnswer] | None = None,
    ) -> Effect[Any] | None:
        """Perform ``effect`` and resume the flow with its result, or with what was raised
        (an SDK error, or a ``KeyboardInterrupt``) thrown into it: the flow decides what it
        means and releases what it holds. The flow's next effect (None: it ended)."""
        try:
            result = self._perform(effect, resend)
        except BaseException as exc:  # noqa: BLE001 - the flow re-raises what it does not handle
            return steps.throw(exc)
        return steps.send(result)

    def perform(self, effect: Effect[Any]) -> Any:
        """Perform any effect but :class:`Resend` (which needs the request to send again)."""
        return self._perform(effect, None)

    def _perform(
        self, effect: Effect[Any], resend: Callable[[Resend], HttpReply | NoAnswer] | None
    ) -> Any:
        if isinstance(effect, RpcCall):
            if self.rpc is None:
                raise TypeError("this driver has no RPC client")
            return self.rpc.call(effect.requests)
        if isinstance(effect, Resend):
            if resend is None:
                raise TypeError("this flow cannot send HTTP requests")
            return resend(effect)
        if isinstance(effect, Sign):
            if self.signer is None:
                raise TypeError("this driver has no signer")
            if own_key(self.signer, effect.pubkey):
                return OwnSignature(self.signer.sign_message(effect.message))
            try:
                return signature_of(self.signer.sign_message(effect.message))
            except HumanRPCError:
                raise
            except Exception as exc:
                raise signer_failed(exc, effect.pubkey) from exc
        return self.keep_books(effect)

    def keep_books(self, effect: Effect[Any]) -> Any:
        """Perform a bookkeeping effect: a pause, the approve callback, or the journal."""
        if isinstance(effect, Pause):
            self.sleep(effect.seconds)
            return None
        if isinstance(effect, Approve):
            return self._ask(effect.offer)
        return keep_journal(self.journal, effect)

    def _ask(self, offer: PaymentOffer) -> bool:
        if self.approve is None:
            return True
        try:
            answer = self.approve(offer)
        except Exception as exc:
            raise approve_failed(offer, exc) from exc
        return answer is True


def approve_failed(offer: PaymentOffer, exc: BaseException) -> PaymentPolicyError:
    """The refusal an ``approve`` callback that raised ``exc`` amounts to."""
    return PaymentPolicyError(
        f"the approve callback raised {type(exc).__name__} while judging a payment of "
        f"{offer.amount} {offer.currency} to {offer.recipient}; treated as a refusal. "
        "Nothing was signed or paid",
        rule="approve",
        reason="approve_failed",
    )


def keep_journal(journal: JournalStore, effect: Effect[Any]) -> Any:
    """Perform a journal effect (:class:`FindPayment`, :class:`Reserve`, :class:`Record`) on
    ``journal``: the one place both drivers keep the books (the async one in a thread)."""
    if isinstance(effect, FindPayment):
        return journal.find(effect.invoice_key)
    if isinstance(effect, FindResumable):
        return journal.resumable(effect.resume_keys, effect.abandoned_after)
    if isinstance(effect, Reserve):
        return journal.reserve(
            effect.offer,
            currency_key=effect.currency_key,
            invoice_key=effect.invoice_key,
            budget=effect.budget,
            sol_budget=effect.sol_budget,
            genesis_hash=effect.genesis_hash,
            periods=effect.periods,
            scope=effect.scope,
        )
    if isinstance(effect, PaidBefore):
        return journal.paid_for(effect.url, effect.payer, effect.network)
    if isinstance(effect, Record):
        return journal.mark(
            effect.entry_id,
            effect.state,
            effect.fields,
            expect=effect.expect,
            busy_seconds=effect.busy_seconds,
            keep=effect.keep,
            durable=effect.durable,
        )
    raise TypeError(f"unknown effect {effect!r}")


class PaidRequest:
    """Sends one request again with a payment attached, as many times as the flow asks.

    ``request`` is the request that got the 402 (the last one of a redirect chain), or, for a
    payment prepared ahead (``challenge`` None), the caller's request. The payment goes to
    that request's origin only. ``paid_timeout``, when given, is the read
    deadline of each paid send (a paid view may take longer than an unpaid answer); the
    connect deadline stays the caller's.
    """

    def __init__(
        self,
        session: requests.Session,
        request: requests.PreparedRequest,
        challenge: requests.Response | None,
        send_kwargs: dict[str, Any],
        *,
        paid_timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = session
        self.request = request
        self.challenge = challenge
        self.send_kwargs = send_kwargs
        if paid_timeout is not None:
            timeout = (_connect_timeout(send_kwargs.get("timeout"), paid_timeout), paid_timeout)
            self.send_kwargs = {**send_kwargs, "timeout": timeout}
        self.clock = clock
        self.response: requests.Response | None = None
        self.sends = 0
        self.reached = False
        """Whether a send reached the server (an answer came, if only a redirect)."""

    def __call__(self, effect: Resend) -> HttpReply | NoAnswer:
        retry = self.request.copy()
        retry.headers.update(effect.headers)
        # Cookies the 402 set (a server may bind its invoice to a session) go with the retry,
        # as requests does when it follows a redirect.
        retry.headers.pop("Cookie", None)
        jar = retry._cookies  # type: ignore[attr-defined]
        if self.challenge is not None:
            extract_cookies_to_jar(jar, self.challenge.request, self.challenge.raw)  # type: ignore[no-untyped-call]
        merge_cookies(jar, self.session.cookies)  # type: ignore[no-untyped-call]
        retry.prepare_cookies(jar)
        if getattr(retry, "_body_position", None) is not None:
            rewind_body(retry)
        # The whole answer must arrive within the timeout: a trickle is no answer either.
        deadline = deadline_of(self.send_kwargs.get("timeout"), self.clock)
        consume = not self.send_kwargs.get("stream", False)
        try:
            response = self._send(retry)
            reply = reply_of(
                response, consume=consume, deadline=deadline, clock=self.clock, paid=True
            )
        except requests.RequestException as exc:
            if (
                self.challenge is None
                and self.sends == 0
                and not self.reached
                and _unconnected(exc)
                and _one_attempt(self.session, retry.url)
            ):
                raise NotSent(str(retry.url)) from exc
            answer = no_answer(failure_of(exc), type(exc).__name__)
            if answer is None:
                raise
            logger.debug("paid request to %s: no answer (%s)", retry.url, answer.problem)
            return answer
        finally:
            self.sends += 1
        self.response = response
        return reply

    def _send(self, request: requests.PreparedRequest) -> requests.Response:
        """Send, following redirects the caller allows; payment headers stay on the origin."""
        kwargs = {**self.send_kwargs, "allow_redirects": False, "stream": True}
        home = request.url
        response = self.session.send(request, **kwargs)
        self.reached = True  # the payment left: a later hop failing to connect changes nothing
        hops = 0
        while response.is_redirect and self.send_kwargs.get("allow_redirects", True):
            hops += 1
            if hops > self.session.max_redirects:
                raise requests.TooManyRedirects(
                    f"Exceeded {self.session.max_redirects} redirects.", response=response
                )
            read_bounded(response, MAX_402_BODY_BYTES)
            follow = next(
                self.session.resolve_redirects(
                    response, request, yield_requests=True, **_adapter_kwargs(kwargs)
                )
            )
            stripped = headers_to_strip(home, follow.url, list(follow.headers))
            for name in stripped:
                follow.headers.pop(name, None)
            if stripped:
                logger.warning(
                    "the paid request to %s was redirected to %s, another origin; the "
                    "payment was not sent there",
                    request.url,
                    follow.url,
                )
            request = follow
            response = self.session.send(request, **kwargs)
        return response


class NotSent(Exception):
    """A payment prepared ahead was not sent: its first send could not even connect. The
    agent releases it and sends the request the normal way."""


def _unconnected(exc: requests.RequestException) -> bool:
    """Whether ``exc`` failed to open the connection, so no byte of the request left."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0] if exc.args else None, "reason", None)
    return isinstance(exc, requests.ConnectionError) and isinstance(
        reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError
    )


def _one_attempt(session: requests.Session, url: str | None) -> bool:
    """Whether the adapter sending to ``url`` is requests' own making one attempt only (its
    default). One that retries (``HTTPAdapter(max_retries=3)``, or a subclass retrying in its
    ``send``) may have sent the request, lost its answer, and then failed to connect again:
    its last error says nothing of the first attempt."""
    try:
        adapter = session.get_adapter(url or "")
    except requests.RequestException:
        return False
    if type(adapter) is not requests.adapters.HTTPAdapter:
        return False
    retries = adapter.max_retries
    return retries.total is not False and retries.total == 0


def send_unpaid(
    session: requests.Session, request: requests.PreparedRequest, kwargs: dict[str, Any]
) -> requests.Response:
    """Send the first, unpaid request.

    :raises ConnectionFailedError: (a subclass that is also the ``requests`` exception raised)
        when it failed before any answer came; a ``requests`` subclass this SDK does not know
        (from a custom adapter) is raised as it is.
    """
    try:
        return session.send(request, **kwargs)
    except requests.ConnectionError as exc:
        wrapper = _CONNECTION_ERRORS.get(type(exc))
        if wrapper is None:
            raise
        url = getattr(exc.request, "url", None) or request.url
        raise wrapper(
            unreached(url, _why(exc)),
            url=url,
            request=exc.request if isinstance(exc.request, requests.PreparedRequest) else request,
        ) from exc


_CONNECTION_ERRORS: Final[dict[type[requests.ConnectionError], type[ConnectionFailedError]]] = {
    requests.ConnectionError: ConnectionFailedError,
    requests.ConnectTimeout: ConnectTimeoutError,
    requests.exceptions.SSLError: SSLConnectionError,
    requests.exceptions.ProxyError: ProxyConnectionError,
}
_OBJECT_PREFIX: Final = re.compile(r"^(?:<[^>]*>|\w+\([^)]*\)): ")


def _why(exc: requests.ConnectionError) -> str:
    """The underlying reason, short: ``NewConnectionError: Connection refused``."""
    cause: Any = exc.args[0] if exc.args else exc
    reason = getattr(cause, "reason", None) or cause
    root: BaseException | None = reason if isinstance(reason, BaseException) else None
    seen = 0
    while root is not None and seen < 10:
        if isinstance(root, OSError) and isinstance(root.strerror, str) and root.strerror:
            return f"{type(reason).__name__}: {root.strerror}"
        root, seen = root.__cause__ or root.__context__, seen + 1
    texts = [arg for arg in getattr(reason, "args", ()) if isinstance(arg, str)]
    text = _OBJECT_PREFIX.sub("", texts[-1] if texts else str(reason))
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(reason).__name__}: {text}"


def reply_of(
    response: requests.Response,
    *,
    consume: bool,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    paid: bool = False,
) -> HttpReply:
    """The flow's view of ``response``: a 402 body is read with a bound, others as asked.

    ``deadline`` (a ``clock()`` time) bounds the whole read of a 402 body and, with ``paid``, of
    any body: past it the read stops and the connection is closed. With ``paid`` a body that
    breaks off or comes too late raises the ``requests`` error (the caller treats it as no
    answer: the payment is sent again); otherwise a 402 body that does raises ``PaymentError``.
    """
    if response.status_code == 402:
        if paid:
            body = _read(response, MAX_402_BODY_BYTES, deadline, clock)
        else:
            body = read_bounded(response, MAX_402_BODY_BYTES, deadline=deadline, clock=clock)
    elif consume and paid and deadline is not None:
        body = _read(response, None, deadline, clock)
    elif consume:
        body = response.content or b""
    else:
        body = b""
    request = response.request
    return HttpReply(
        status=response.status_code,
        headers=response.headers,
        body=body,
        url=response.url,
        request="" if request is None else request_fingerprint(request.method or "", request.body),
    )


def read_bounded(
    response: requests.Response,
    limit: int,
    *,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> bytes:
    """At most ``limit + 1`` bytes of the body (more means too large); the rest is not read.

    :raises PaymentError: when the body breaks off, or is not all there by ``deadline`` (a
        ``clock()`` time); nothing was paid.
    """
    try:
        return _read(response, limit, deadline, clock)
    except WholeReadTimeout as exc:
        raise invoice_too_slow(response.url, exc.seconds) from None
    except requests.RequestException as exc:
        raise invoice_unreadable(response.url, type(exc).__name__) from exc


class WholeReadTimeout(requests.exceptions.ReadTimeout):
    """The body was still arriving when the request's whole-read deadline passed.

    ``seconds``: how long the body had been read when the agent stopped.
    """

    def __init__(self, seconds: float, *args: Any, **kwargs: Any) -> None:
        super().__init__(
            f"the body was still arriving after {seconds:.3g} s of reading, past the deadline",
            *args,
            **kwargs,
        )
        self.seconds = seconds


def deadline_of(timeout: Any, clock: Callable[[], float]) -> float | None:
    """The ``clock()`` time by which an answer sent with ``timeout`` must be read in full.

    A number bounds the whole exchange; ``(connect, read)`` (or urllib3's ``Timeout``) the sum
    of its parts, a ``None`` part counting nothing; no number at all sets no deadline.
    """
    if isinstance(timeout, urllib3.Timeout):
        parts: tuple[Any, ...] = (timeout.total,)
        if timeout.total is None:
            parts = (timeout.connect_timeout, timeout.read_timeout)
    else:
        parts = tuple(timeout) if isinstance(timeout, tuple | list) else (timeout,)
    return _read_deadline(parts, clock)


def _read(
    response: requests.Response,
    limit: int | None,
    deadline: float | None,
    clock: Callable[[], float],
) -> bytes:
    """The body (at most ``limit + 1`` bytes, the rest unread), read by ``deadline``."""
    if response._content_consumed:  # type: ignore[attr-defined]
        return response.content or b""
    bounded = BoundedBody(limit, deadline, clock)
    complete = False
    try:
        for chunk in _chunks(response, bounded):
            if bounded.feed(chunk):
                break
        else:
            complete = True
    finally:
        if not complete or limit is not None:
            response.close()
    body = bounded.body()
    response._content = body
    response._content_consumed = True  # type: ignore[attr-defined]
    return body


def _chunks(response: requests.Response, bounded: BoundedBody) -> Iterator[bytes]:
    """The body in pieces as they arrive; past ``deadline``, :class:`WholeReadTimeout`.

    ``iter_content`` blocks until a whole chunk has arrived, however slowly; ``read1`` returns
    what has come, so the deadline is checked between every few bytes of a trickle.
    """
    raw = response.raw
    if bounded.deadline is None or not callable(getattr(raw, "read1", None)):
        yield from response.iter_content(_CHUNK_BYTES)
        return
    while True:
        overdue = bounded.overdue()
        if overdue is not None:
            raise WholeReadTimeout(overdue, response=response)
        try:
            chunk = raw.read1(_CHUNK_BYTES, decode_content=True)
        except urllib3.exceptions.ProtocolError as exc:
            raise requests.exceptions.ChunkedEncodingError(exc) from exc
        except urllib3.exceptions.DecodeError as exc:
            raise requests.exceptions.ContentDecodingError(exc) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise requests.ConnectionError(exc) from exc
        if not chunk:
            return
        yield chunk


def ensure_replayable(prepared: requests.PreparedRequest) -> None:
    body = prepared.body
    if body is None or isinstance(body, bytes | str):
        return
    if getattr(prepared, "_body_position", None) is not None:
        return
    raise body_not_replayable(prepared.url)


def _connect_timeout(timeout: Any, fallback: float) -> float | None:
    """The connect part of a ``requests`` timeout (a number, a pair, or urllib3's Timeout)."""
    if isinstance(timeout, tuple | list) and len(timeout) == 2:
        connect: Any = timeout[0]
    elif isinstance(timeout, urllib3.Timeout):
        connect = timeout.connect_timeout
    else:
        connect = timeout
    if connect is None or isinstance(connect, int | float):
        return connect
    return fallback


def _adapter_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k not in ("allow_redirects",)}
