"""PaymentAuth: pay 402 answers from a client the caller already has (``auth=``).

The payment flow is the agent's (:func:`human_rpc_sdk._flow.pay`), run by the agent's driver;
only the :class:`~human_rpc_sdk._effects.Resend` effect is answered by the caller's client: by
the ``requests`` adapter that got the 402, or by yielding the paid request to httpx.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any

import httpx
import requests
from requests.adapters import BaseAdapter

from .._driving import Stepper
from .._effects import HttpReply, NoAnswer, Resend
from .._flow import MAX_402_BODY_BYTES, PaymentOutcome
from .._http import (
    BoundedBody,
    Inflater,
    headers_to_strip,
    invoice_too_slow,
    invoice_unreadable,
    no_answer,
    read_deadline,
)
from .._siwx import SignedIn, pay_or_sign_in
from ..exceptions import HumanRPCError, SDKConfigurationError
from .agent import AutoAgent
from .aio import (
    WholeReadTimeout,
    ensure_replayable,
    failure_of,
    fingerprint_of,
    inflated,
    paid_request,
    paid_timeout_of,
    read_reply,
)
from .async_agent import AsyncAutoAgent
from .sync import deadline_of, reply_of

__all__ = ["PaymentAuth"]

logger = logging.getLogger("human_rpc_sdk")


class PaymentAuth(requests.auth.AuthBase, httpx.Auth):
    """Pays HTTP 402 answers for a client you already have, as its ``auth=``.

    >>> agent = AutoAgent(solana_private_key=key)                              # doctest: +SKIP
    >>> requests.get(url, auth=PaymentAuth(agent))                             # doctest: +SKIP
    >>> httpx.Client(auth=PaymentAuth(agent)).get(url)                         # doctest: +SKIP
    >>> async with httpx.AsyncClient(auth=PaymentAuth(async_agent)) as client:  # doctest: +SKIP
    ...     await client.get(url)

    ``agent`` is an :class:`~human_rpc_sdk.AutoAgent` (for ``requests`` and ``httpx.Client``)
    or an :class:`~human_rpc_sdk.AsyncAutoAgent` (for ``httpx.AsyncClient``). The agent pays:
    its wallet, spending rules, budget, ``approve`` and journal apply, and ``agent.payments``
    lists what was paid; the paid request goes out through your client (its transport,
    proxies, TLS settings), and the answer to it is what your call returns.

    **Which to choose.** Use the agent itself (``await agent.get(...)``, ``agent.get(...)``)
    unless you must keep a client you already have: the agent owns the whole exchange (bounded
    and deadline-limited reads, ``paid_timeout``, a paid request that gets no answer sent again
    with the same payment, redirects of the paid request followed by hand). ``PaymentAuth``
    lives inside your client's request cycle, so: a transport error on the paid request is
    raised to you as your client raises it (the payment is then journaled with no known
    outcome: :meth:`~human_rpc_sdk.AutoAgent.recover_payments` settles it) instead of being
    retried; and redirects of the paid request are your client's.

    **Payment headers stay on the origin that asked for the payment.** With ``requests`` the
    paid request is sent again through the adapter that got the 402, redirects followed hop by
    hop by the SDK (not by ``requests``, which keeps custom headers across origins), a hop to
    another origin losing the payment headers. httpx follows redirects *inside* an auth flow,
    for every request the flow yields, and strips only ``Authorization`` on a cross-origin hop;
    so the paid request carries a ``trace`` extension (which httpx copies to every redirect
    hop) whose callback, called by httpx's transport right before a hop's headers are written,
    removes the payment headers from any hop to another origin. A custom transport that ignores
    the ``trace`` extension cannot be guarded this way: with one, pass
    ``follow_redirects=False`` or use the agent itself.

    **No payments prepared ahead.** An agent's ``prepay`` serves only the agent's own
    requests: through ``PaymentAuth`` every 402 is paid when it comes (your client sends the
    unpaid request first), and nothing is prepared for the next one.
    """

    requires_response_body = False  # a 402 body is read here, with a bound

    def __init__(self, agent: AutoAgent | AsyncAutoAgent) -> None:
        if not isinstance(agent, AutoAgent | AsyncAutoAgent):
            raise SDKConfigurationError(
                f"PaymentAuth needs an AutoAgent or an AsyncAutoAgent (got a "
                f"{type(agent).__name__})",
                parameter="agent",
            )
        self.agent = agent
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"PaymentAuth({self.agent!r})"

    # -- requests ---------------------------------------------------------------------------

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.register_hook("response", self._answer_402)  # type: ignore[no-untyped-call]
        return request

    def _answer_402(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        """The response hook: a 402 is paid and its request sent again (as ``HTTPDigestAuth``
        answers a 401); any other answer, or one to a request this auth is sending, passes."""
        if response.status_code != 402 or getattr(self._local, "paying", False):
            return response
        agent = self._sync_agent("requests")
        clock = agent._clock
        send_kwargs = {**kwargs, "allow_redirects": True}
        reply = reply_of(
            response,
            consume=True,
            deadline=deadline_of(kwargs.get("timeout"), clock),
            clock=clock,
        )
        self._local.paying = True
        try:
            agent._local.receipt = None
            final = agent._pay(response, reply, send_kwargs, _AdapterSession(response.connection))
        finally:
            self._local.paying = False
        if final is not response:
            final.history = [response, *final.history]
        return final

    # -- httpx ------------------------------------------------------------------------------

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """httpx.Client: pay a 402 with an :class:`AutoAgent`, yielding the paid request."""
        response = yield request
        if response.status_code != 402:
            return
        agent = self._sync_agent("httpx.Client")
        clock = agent._clock
        timeout = _timeout_of(request)
        try:
            reply = _read_sync(response, MAX_402_BODY_BYTES, _deadline(timeout, clock), clock)
        except httpx.HTTPError as exc:
            raise _unreadable(response, exc) from exc
        asked = response.request  # after redirects, the request that got the 402
        ensure_replayable(asked)
        agent._local.receipt = None
        paid_timeout = paid_timeout_of(timeout, agent.paid_timeout)
        steps = Stepper(pay_or_sign_in(reply, agent._context()))
        effect = steps.start()
        while effect is not None:
            if not isinstance(effect, Resend):
                effect = agent._driver.advance(steps, effect)
                continue
            try:
                home = str(asked.url)
                guard = {"trace": _sync_guard(home, asked.extensions.get("trace"))}
                answer = yield paid_request(asked, response, effect.headers, paid_timeout, guard)
                result: Any = _paid_reply_sync(answer, paid_timeout, clock)
            except HumanRPCError as exc:
                effect = steps.throw(exc)
            else:
                effect = steps.send(result)
        _finish(agent, steps.value)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """httpx.AsyncClient: pay a 402 with an :class:`AsyncAutoAgent`, yielding the paid
        request."""
        response = yield request
        if response.status_code != 402:
            return
        agent = self.agent
        if not isinstance(agent, AsyncAutoAgent):
            raise SDKConfigurationError(
                "PaymentAuth on an httpx.AsyncClient needs an AsyncAutoAgent (got an "
                "AutoAgent); nothing was paid",
                parameter="agent",
            )
        agent._in_its_loop()
        clock = agent._clock
        timeout = _timeout_of(request)
        reply = await read_reply(response, deadline=_deadline(timeout, clock), clock=clock)
        asked = response.request  # after redirects, the request that got the 402
        ensure_replayable(asked)
        agent._receipt.set(None)
        paid_timeout = paid_timeout_of(timeout, agent.paid_timeout)
        steps = Stepper(pay_or_sign_in(reply, agent._context()))
        effect = steps.start()
        while effect is not None:
            if not isinstance(effect, Resend):
                effect = await agent._driver.advance(steps, effect)
                continue
            try:
                home = str(asked.url)
                guard = {"trace": _async_guard(home, asked.extensions.get("trace"))}
                answer = yield paid_request(asked, response, effect.headers, paid_timeout, guard)
                result: Any = await _paid_reply(answer, paid_timeout, clock)
            except HumanRPCError as exc:
                effect = steps.throw(exc)
            else:
                effect = steps.send(result)
        outcome: PaymentOutcome | SignedIn = steps.value
        agent._receipt.set(outcome.receipt)
        if outcome.error is not None:
            raise outcome.error

    def _sync_agent(self, client: str) -> AutoAgent:
        if isinstance(self.agent, AutoAgent):
            return self.agent
        raise SDKConfigurationError(
            f"PaymentAuth on {client} needs an AutoAgent (got an AsyncAutoAgent, which pays "
            "for httpx.AsyncClient); nothing was paid",
            parameter="agent",
        )


class _AdapterSession(requests.Session):
    """A session sending through one adapter: the one that got the 402 (the caller's)."""

    def __init__(self, adapter: BaseAdapter) -> None:
        super().__init__()
        self.adapters.clear()
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def close(self) -> None:  # the adapter is the caller's
        pass


def _finish(agent: AutoAgent, outcome: PaymentOutcome | SignedIn) -> None:
    agent._local.receipt = outcome.receipt
    if outcome.error is not None:
        raise outcome.error


def _timeout_of(request: httpx.Request) -> httpx.Timeout:
    parts = request.extensions.get("timeout") or {}
    return httpx.Timeout(
        parts.get("connect"),
        connect=parts.get("connect"),
        read=parts.get("read"),
        write=parts.get("write"),
        pool=parts.get("pool"),
    )


def _deadline(timeout: httpx.Timeout, clock: Callable[[], float]) -> float | None:
    return read_deadline((timeout.connect, timeout.read), clock)


def _unreadable(response: httpx.Response, exc: httpx.HTTPError) -> HumanRPCError:
    if isinstance(exc, WholeReadTimeout):
        return invoice_too_slow(response.url, exc.seconds)
    return invoice_unreadable(response.url, type(exc).__name__)


def _read_sync(
    response: httpx.Response, limit: int | None, deadline: float | None, clock: Callable[[], float]
) -> HttpReply:
    """The flow's view of ``response``, its body read with ``limit`` by ``deadline`` (it
    becomes ``response.content``)."""
    if not hasattr(response, "_content"):
        bounded = BoundedBody(limit, deadline, clock)
        encoding = response.headers.get("Content-Encoding")
        inflater = None if limit is None else Inflater.of(encoding)
        chunks = response.iter_bytes() if inflater is None else response.iter_raw()
        try:
            for chunk in chunks:
                overdue = bounded.overdue()
                if overdue is not None:
                    raise WholeReadTimeout(overdue)
                if bounded.feed(inflated(inflater, chunk, bounded, response)):
                    break
        finally:
            response.close()
        response._content = bounded.body()
    return HttpReply(
        status=response.status_code,
        headers=response.headers,
        body=response.content,
        url=str(response.url),
        request=fingerprint_of(response),
    )


def _paid_reply_sync(
    response: httpx.Response, timeout: httpx.Timeout, clock: Callable[[], float]
) -> HttpReply | NoAnswer:
    """The answer to a paid request; one that breaks off or comes too late is no answer."""
    limit = MAX_402_BODY_BYTES if response.status_code == 402 else None
    try:
        return _read_sync(response, limit, _deadline(timeout, clock), clock)
    except httpx.HTTPError as exc:
        answer = no_answer(failure_of(exc), type(exc).__name__)
        if answer is None:
            raise
        return answer


async def _paid_reply(
    response: httpx.Response, timeout: httpx.Timeout, clock: Callable[[], float]
) -> HttpReply | NoAnswer:
    """The answer to a paid request; one that breaks off or comes too late is no answer."""
    try:
        return await read_reply(
            response, deadline=_deadline(timeout, clock), clock=clock, paid=True
        )
    except httpx.HTTPError as exc:
        answer = no_answer(failure_of(exc), type(exc).__name__)
        if answer is None:
            raise
        return answer


def _origin_of(request: Any) -> str:
    """Where an httpcore request (what the trace callback is given) is meant to go: its
    ``scheme://host:port``; or, sent through a forward proxy (its URL then the proxy's), its
    absolute-form target, the server's URL (``GET http://host/path``)."""
    url = request.url
    target = bytes(url.target)
    if target.lower().startswith((b"http://", b"https://")):
        return target.decode("latin-1")
    scheme, host = url.scheme.decode("ascii"), url.host.decode("ascii")
    return f"{scheme}://{host}:{url.port}" if url.port else f"{scheme}://{host}"


def _strip(home: str, event: str, info: dict[str, Any]) -> None:
    """On a hop about to send its headers: drop the payment headers if it left ``home``."""
    if not event.endswith("send_request_headers.started"):
        return
    request = info.get("request")
    if request is None:
        return
    names = [name.decode("latin-1") for name, _ in request.headers]
    target = _origin_of(request)
    stripped = {name.lower().encode("latin-1") for name in headers_to_strip(home, target, names)}
    if stripped:
        request.headers[:] = [(k, v) for k, v in request.headers if k.lower() not in stripped]
        logger.warning(
            "the paid request to %s was redirected to %s, another origin; the payment was not "
            "sent there",
            home,
            target,
        )


def _sync_guard(home: str, inner: Any) -> Callable[[str, dict[str, Any]], None]:
    def trace(event: str, info: dict[str, Any]) -> None:
        _strip(home, event, info)
        if inner is not None:
            inner(event, info)

    return trace


def _async_guard(home: str, inner: Any) -> Callable[[str, dict[str, Any]], Any]:
    async def trace(event: str, info: dict[str, Any]) -> None:
        _strip(home, event, info)
        if inner is not None:
            await inner(event, info)

    return trace
