"""The asynchronous driver: runs the sans-I/O flows over ``httpx.AsyncClient``.

:class:`AsyncDriver` performs each effect a flow yields and resumes the flow with the result,
as the synchronous :class:`~human_rpc_sdk._io.sync.Driver` does: JSON-RPC through
:class:`~human_rpc_sdk._io.arpc.AsyncRpcClient`, pauses with the injected async sleep, the
``approve`` callback (sync or async), signing (awaited for an async signer), and the journal in
a worker thread (:func:`~human_rpc_sdk._io.sync.keep_journal`, the same bookkeeping as the sync
driver's). No decision is made here: the redirect policy, read bounds and "no definite answer"
come from :mod:`human_rpc_sdk._http`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Generator
from contextvars import ContextVar
from typing import Any, Final, TypeVar

import httpx
from solders.signature import Signature

from .._driving import Stepper
from .._effects import Approve, Effect, HttpReply, NoAnswer, Pause, Resend, RpcCall, Sign
from .._flow import MAX_402_BODY_BYTES
from .._http import (
    BoundedBody,
    Failure,
    Inflater,
    body_not_replayable,
    failure_in,
    headers_to_strip,
    invoice_too_slow,
    invoice_unreadable,
    no_answer,
    read_deadline,
)
from .._offer import PaymentOffer
from .._resume import request_fingerprint
from ..exceptions import HumanRPCError
from ..wallet import OwnSignature, Signer, own_key, sign_async, signer_failed
from .arpc import AsyncRpcClient
from .store import JournalStore
from .sync import NotSent, approve_failed, keep_journal

__all__ = [
    "BODY_LIMIT",
    "AsyncDriver",
    "AsyncPaidRequest",
    "AsyncResend",
    "WholeReadTimeout",
    "deadline_of",
    "ensure_replayable",
    "read_reply",
]

logger = logging.getLogger("human_rpc_sdk")

T = TypeVar("T")
AsyncResend = Callable[[Resend], Awaitable[HttpReply | NoAnswer]]


class AsyncDriver:
    """Performs effects asynchronously: JSON-RPC, pauses, ``approve``, signing, the journal."""

    def __init__(
        self,
        *,
        rpc: AsyncRpcClient | None,
        journal: JournalStore,
        approve: Callable[[PaymentOffer], object] | None,
        sleep: Callable[[float], Awaitable[Any]],
        signer: Signer | None = None,
    ) -> None:
        self.rpc = rpc
        self.journal = journal
        self.approve = approve
        self.sleep = sleep
        self.signer = signer

    async def run(
        self, flow: Generator[Effect[Any], Any, T], resend: AsyncResend | None = None
    ) -> T:
        """Run ``flow`` to its end; ``resend`` performs :class:`Resend` effects."""
        steps = Stepper(flow)
        effect = steps.start()
        while effect is not None:
            effect = await self.advance(steps, effect, resend)
        return steps.value

    async def advance(
        self, steps: Stepper[Any], effect: Effect[Any], resend: AsyncResend | None = None
    ) -> Effect[Any] | None:
        """Perform ``effect`` and resume the flow with its result, or with what was raised (an
        SDK error, or the task's cancellation) thrown into it: the flow decides what it means
        and releases what it holds. The flow's next effect (None: it ended)."""
        try:
            result = await self._perform(effect, resend)
        except _Written as written:  # cancelled while the journal wrote: the write stands
            try:
                following = steps.send(written.result)
            except HumanRPCError:  # it refused at once (over budget): the cancel comes first
                raise written.cancel from None
            if following is None:
                raise written.cancel from None
            return steps.throw(written.cancel)
        except BaseException as exc:  # noqa: BLE001 - the flow re-raises what it does not handle
            return steps.throw(exc)
        return steps.send(result)

    async def perform(self, effect: Effect[Any]) -> Any:
        """Perform any effect but :class:`Resend` (which needs the request to send again)."""
        return await self._perform(effect, None)

    async def _perform(self, effect: Effect[Any], resend: AsyncResend | None) -> Any:
        if isinstance(effect, RpcCall):
            if self.rpc is None:
                raise TypeError("this driver has no RPC client")
            return await self.rpc.call(effect.requests)
        if isinstance(effect, Resend):
            if resend is None:
                raise TypeError("this flow cannot send HTTP requests")
            return await resend(effect)
        if isinstance(effect, Pause):
            await self.sleep(effect.seconds)
            return None
        if isinstance(effect, Approve):
            return await self._ask(effect.offer)
        if isinstance(effect, Sign):
            return await self._sign(effect)
        return await self._keep(effect)

    async def _keep(self, effect: Effect[Any]) -> Any:
        """Perform a journal effect in a thread. A cancellation does not stop the thread (the
        row is written or not, whatever the task does): the write is waited for, and its
        result goes to the flow with the cancellation (:class:`_Written`), so a reservation
        the flow never heard of cannot be left behind."""
        work = asyncio.ensure_future(asyncio.to_thread(keep_journal, self.journal, effect))
        cancel: asyncio.CancelledError | None = None
        while True:
            try:
                result = await asyncio.shield(work)
            except asyncio.CancelledError as exc:
                if work.cancelled():
                    raise
                cancel = exc
                continue
            except BaseException:
                if cancel is not None:
                    raise cancel from None
                raise
            if cancel is not None:
                raise _Written(result, cancel)
            return result

    async def _ask(self, offer: PaymentOffer) -> bool:
        if self.approve is None:
            return True
        approve = self.approve
        try:
            if inspect.iscoroutinefunction(approve):
                answer = await approve(offer)
            else:  # a plain function may block (a prompt, a policy service): not on the loop
                answer = await asyncio.to_thread(approve, offer)
            if inspect.isawaitable(answer):
                answer = await answer
        except Exception as exc:
            raise approve_failed(offer, exc) from exc
        return answer is True

    async def _sign(self, effect: Sign) -> Signature | OwnSignature:
        """Sign ``effect.message``: awaited when the signer is async. A signer failing with
        something other than an SDK error is told to the flow as ``signer_failed``."""
        if self.signer is None:
            raise TypeError("this driver has no signer")
        if own_key(self.signer, effect.pubkey):  # a local key signs in microseconds
            return OwnSignature(self.signer.sign_message(effect.message))
        try:
            return await sign_async(self.signer, effect.message)
        except HumanRPCError:
            raise
        except Exception as exc:
            raise signer_failed(exc, effect.pubkey) from exc


class _Written(Exception):
    """A journal write finished although the task was cancelled while it ran."""

    def __init__(self, result: Any, cancel: asyncio.CancelledError) -> None:
        super().__init__("a journal write finished after a cancellation")
        self.result = result
        self.cancel = cancel


class WholeReadTimeout(httpx.ReadTimeout):
    """The body was still arriving when the whole-read deadline passed (``seconds``: how long
    it had been read)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"the body was still arriving after {seconds:.3g} s of reading, past the deadline"
        )
        self.seconds = seconds


_FAILURES: Final[tuple[tuple[type[Exception], Failure], ...]] = (
    (httpx.TimeoutException, "timeout"),
    (httpx.ConnectError, "connect"),
    (httpx.RemoteProtocolError, "protocol"),
    (httpx.ReadError, "broken"),
    (httpx.WriteError, "broken"),
    (httpx.NetworkError, "connect"),
    (httpx.TooManyRedirects, "redirects"),
)
"""How ``httpx`` names each failure of the exchange :mod:`.._http` classifies."""


def failure_of(exc: BaseException) -> Failure | None:
    """The kind of ``exc`` as :func:`.._http.no_answer` knows it, or None."""
    return failure_in(exc, _FAILURES)


def deadline_of(timeout: httpx.Timeout, clock: Callable[[], float]) -> float | None:
    """The ``clock()`` time by which an answer sent with ``timeout`` must be read in full:
    connecting and reading (as the sync driver counts a ``(connect, read)`` pair)."""
    return read_deadline((timeout.connect, timeout.read), clock)


async def read_body(
    response: httpx.Response, limit: int | None, deadline: float | None, clock: Callable[[], float]
) -> bytes:
    """The body (at most ``limit + 1`` bytes, the rest unread), read by ``deadline``; it
    becomes ``response.content``. Raises :class:`WholeReadTimeout` past the deadline."""
    if hasattr(response, "_content"):
        return response.content
    bounded = BoundedBody(limit, deadline, clock)
    inflater = None if limit is None else Inflater.of(response.headers.get("Content-Encoding"))
    chunks = response.aiter_bytes() if inflater is None else response.aiter_raw()
    try:
        async for chunk in chunks:
            overdue = bounded.overdue()
            if overdue is not None:
                raise WholeReadTimeout(overdue)
            if bounded.feed(inflated(inflater, chunk, bounded, response)):
                break
    finally:
        await response.aclose()
    body = bounded.body()
    response._content = body
    return body


def inflated(
    inflater: Inflater | None, chunk: bytes, bounded: BoundedBody, response: httpx.Response
) -> bytes:
    """``chunk`` of ``response``'s body, inflated (when ``inflater``) no further than the
    room ``bounded`` has left.

    :raises httpx.DecodingError: the body is not validly encoded.
    """
    if inflater is None:
        return chunk
    try:
        return inflater.inflate(chunk, bounded.room())
    except ValueError as exc:
        raise httpx.DecodingError(str(exc), request=response.request) from None


BODY_LIMIT: ContextVar[int | None] = ContextVar("human_rpc_sdk_body_limit", default=None)
"""The most bytes of an answer other than a 402 that are read (one more says there was more;
the rest is left unread, the connection closed); None: the whole body. Set around a request by
a caller that returns only part of an answer (the agent's MCP server), so an endless body
cannot fill its memory."""


async def read_reply(
    response: httpx.Response,
    *,
    deadline: float | None,
    clock: Callable[[], float],
    paid: bool = False,
) -> HttpReply:
    """The flow's view of ``response``, its body read: a 402 body with a bound, any body by
    ``deadline``. Unpaid, a 402 body that breaks off or comes too late raises
    ``PaymentError``; paid, the ``httpx`` error (the caller's "no answer")."""
    if response.status_code == 402:
        if paid:
            body = await read_body(response, MAX_402_BODY_BYTES, deadline, clock)
        else:
            try:
                body = await read_body(response, MAX_402_BODY_BYTES, deadline, clock)
            except WholeReadTimeout as exc:
                raise invoice_too_slow(response.url, exc.seconds) from None
            except httpx.HTTPError as exc:
                raise invoice_unreadable(response.url, type(exc).__name__) from exc
    else:
        body = await read_body(response, BODY_LIMIT.get(), deadline, clock)
    return HttpReply(
        status=response.status_code,
        headers=response.headers,
        body=body,
        url=str(response.url),
        request=fingerprint_of(response),
    )


def fingerprint_of(response: httpx.Response) -> str:
    """The request that got ``response``, identified (see :func:`.._resume.request_fingerprint`);
    "" when it is unknown or its body a stream."""
    try:
        request = response.request
        return request_fingerprint(request.method, request.content)
    except (RuntimeError, httpx.RequestNotRead):
        return ""


def ensure_replayable(request: httpx.Request) -> None:
    """Refuse to pay for a request whose body cannot be sent again (a consumed stream)."""
    replayable_body(request)


def replayable_body(request: httpx.Request) -> bytes:
    """The body ``request`` was sent with, to send it again.

    A body in memory is kept by httpx as a ``ByteStream`` (a request httpx built to follow a
    redirect has no ``content`` read, only that stream): it is read again. Any other stream
    (a generator) was consumed by the first send.

    :raises PaymentError: ``body_not_replayable``.
    """
    try:
        return request.content
    except httpx.RequestNotRead:
        if isinstance(request.stream, httpx.ByteStream):
            return b"".join(request.stream)
        raise body_not_replayable(request.url) from None


class AsyncPaidRequest:
    """Sends one request again with a payment attached, as many times as the flow asks.

    ``request`` is the request that got the 402 (the last of a redirect chain); the payment
    goes to its origin only: redirects are followed here, hop by hop, and a hop to another
    origin loses the payment headers (:func:`~human_rpc_sdk._http.headers_to_strip`). Cookies
    the 402 set go with the retry. ``paid_timeout`` is the read deadline of each paid send.
    A payment prepared ahead has no 402 (``challenge`` None): ``request`` is the caller's.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        challenge: httpx.Response | None,
        *,
        timeout: httpx.Timeout,
        follow_redirects: bool,
        paid_timeout: float,
        clock: Callable[[], float],
        request: httpx.Request | None = None,
    ) -> None:
        self.client = client
        if request is None:
            if challenge is None:
                raise TypeError("a paid request needs the 402 answer or the request")
            request = challenge.request
        self.request = request
        self.challenge = challenge
        self.timeout = paid_timeout_of(timeout, paid_timeout)
        self.follow_redirects = follow_redirects
        self.clock = clock
        self.response: httpx.Response | None = None
        self.sends = 0
        self.reached = False
        """Whether a send reached the server (an answer came, if only a redirect)."""

    def _retry(self, headers: Any) -> httpx.Request:
        return paid_request(self.request, self.challenge, headers, self.timeout)

    async def __call__(self, effect: Resend) -> HttpReply | NoAnswer:
        retry = self._retry(effect.headers)
        deadline = deadline_of(self.timeout, self.clock)
        try:
            response = await self._send(retry)
            reply = await read_reply(response, deadline=deadline, clock=self.clock, paid=True)
        except httpx.HTTPError as exc:
            unconnected = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
            if (
                self.challenge is None
                and self.sends == 0
                and not self.reached
                and unconnected
                and _one_attempt(self.client, retry.url)
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

    async def _send(self, request: httpx.Request) -> httpx.Response:
        """Send, following redirects the caller allows; payment headers stay on the origin."""
        home = str(request.url)
        response = await self.client.send(request, follow_redirects=False, stream=True)
        self.reached = True  # the payment left: a later hop failing to connect changes nothing
        hops = 0
        while response.is_redirect and self.follow_redirects:
            hops += 1
            if hops > self.client.max_redirects:
                await response.aclose()
                raise httpx.TooManyRedirects(
                    f"Exceeded {self.client.max_redirects} redirects.", request=request
                )
            follow = response.next_request
            await read_body(response, MAX_402_BODY_BYTES, None, self.clock)
            if follow is None:
                break
            stripped = headers_to_strip(home, str(follow.url), list(follow.headers.keys()))
            for name in stripped:
                del follow.headers[name]
            if stripped:
                logger.warning(
                    "the paid request to %s was redirected to %s, another origin; the "
                    "payment was not sent there",
                    request.url,
                    follow.url,
                )
            request = follow
            response = await self.client.send(request, follow_redirects=False, stream=True)
        return response


def paid_request(
    original: httpx.Request,
    challenge: httpx.Response | None,
    headers: Any,
    timeout: httpx.Timeout,
    extensions: dict[str, Any] | None = None,
) -> httpx.Request:
    """``original`` again, with the payment ``headers``, the cookies the 402 ``challenge``
    set (a server may bind its invoice to a session; they win over those of the same name the
    request carried) and ``timeout``."""
    retry = httpx.Request(
        original.method,
        original.url,
        headers=original.headers,
        content=replayable_body(original),
        extensions={**original.extensions, **(extensions or {}), "timeout": timeout.as_dict()},
    )
    retry.headers.update(headers)
    if challenge is None:  # a payment prepared ahead: the request's own cookies
        return retry
    jar = httpx.Cookies()
    jar.extract_cookies(challenge)
    probe = httpx.Request(original.method, original.url)
    jar.set_cookie_header(probe)
    fresh = _cookie_pairs(probe.headers.get("Cookie"))
    if fresh:
        merged = {**_cookie_pairs(retry.headers.get("Cookie")), **fresh}
        retry.headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in merged.items())
    return retry


def paid_timeout_of(timeout: httpx.Timeout, paid_timeout: float) -> httpx.Timeout:
    """``timeout`` with ``paid_timeout`` as its read deadline (a paid view may work longer)."""
    return httpx.Timeout(
        timeout.connect,
        read=paid_timeout,
        write=timeout.write,
        pool=timeout.pool,
        connect=timeout.connect,
    )


def _cookie_pairs(header: str | None) -> dict[str, str]:
    """``name=value`` pairs of a ``Cookie`` header, in order."""
    pairs: dict[str, str] = {}
    for part in (header or "").split(";"):
        name, sep, value = part.strip().partition("=")
        if name and sep:
            pairs[name] = value
    return pairs


def _one_attempt(client: httpx.AsyncClient, url: httpx.URL) -> bool:
    """Whether the transport sending to ``url`` is httpx's own, whose retries only connect
    again: a connect error then means no byte of the request left. Another transport may
    retry a request whose answer was lost, and end on a refused connection."""
    transport_for = getattr(client, "_transport_for_url", None)
    if transport_for is None:
        return False
    try:
        transport = transport_for(url)
    except Exception:  # noqa: BLE001 - an unknown client: assume the request may have left
        return False
    return type(transport) is httpx.AsyncHTTPTransport
