"""AsyncAutoAgent: the asyncio twin of :class:`~human_rpc_sdk.AutoAgent`, over ``httpx``.

The same constructor (validated by the same :class:`~human_rpc_sdk._settings.AgentSettings`),
the same payment flow (:func:`human_rpc_sdk._flow.pay`), the same journal; only the driver
differs (:mod:`._io.aio`). ``await agent.get(...)`` returns an :class:`httpx.Response`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from decimal import Decimal
from typing import Any

import httpx

from .._balance import balance as balance_flow
from .._checks import positive_seconds, request_timeout, show
from .._effects import HttpReply, NoAnswer, Resend
from .._flow import PaymentOutcome
from .._http import unreached
from .._offer import PaymentOffer
from .._prepay import (
    Key,
    Ready,
    Remembered,
    conclude,
    deliver_prepared,
    prepare_ahead,
    release,
    request_key,
    to_remember,
)
from .._prepayments import Prepayments
from .._receipts import PaymentReceipt
from .._records import Budget
from .._resume import request_fingerprint
from .._settings import DEFAULT_PAID_TIMEOUT, AgentSettings
from .._siwx import SignedIn, offers_sign_in, pay_or_sign_in
from .._tasks import Verdict
from .._types import Addresses, SecretKey, SignerLike
from ..exceptions import (
    ConnectionFailedError,
    ConnectTimeoutError,
    PaymentError,
    PaymentPolicyError,
    ProxyConnectionError,
    SDKConfigurationError,
)
from ..reiterator import BackoffStrategy
from .aio import AsyncDriver, AsyncPaidRequest, deadline_of, ensure_replayable, read_reply
from .aprepay import AsyncPrepayer
from .arefresh import AsyncRefresher
from .arpc import AsyncRpcClient
from .base import BaseAgent, method_of, payment_context, reiterator_of, text_of
from .clock import async_sleep, monotonic
from .clock import sleep as real_sleep
from .human import AsyncHumanClient
from .sync import NotSent

__all__ = ["AsyncAutoAgent"]

logger = logging.getLogger("human_rpc_sdk")


class AsyncAutoAgent(BaseAgent):
    """An asyncio HTTP client with a Solana wallet that pays 402 Payment Required answers.

    >>> async with AsyncAutoAgent(solana_private_key=key) as agent:   # doctest: +SKIP
    ...     response = await agent.get("https://api.example.com/premium")

    It takes :class:`~human_rpc_sdk.AutoAgent`'s arguments, with the same defaults and checks,
    except: ``session`` is an :class:`httpx.AsyncClient` (one is made when omitted), and
    ``sleep`` is an async function (``asyncio.sleep``); ``approve`` may be sync or async, and
    ``signer`` may be a signer whose ``sign_message`` is a coroutine function.

    The verbs (``get``, ``post``, ...) take httpx's arguments and return an
    :class:`httpx.Response` whose body has been read; redirects are followed unless
    ``follow_redirects=False`` (``head`` follows none unless told), as ``AutoAgent`` does.

    Concurrency: one agent serves many tasks at once; every payment is reserved atomically in
    the journal, so concurrent requests never spend past the budget nor pay an invoice twice.

    The journal is SQLite: calls that may wait on it (:meth:`pending_payments`,
    :meth:`recover_payments`, :meth:`pending_tasks`, :meth:`payments_since`,
    :meth:`raise_budget`, and every payment's bookkeeping) run in a worker thread and are
    awaited. The properties :attr:`payments` and :attr:`budget` (properties cannot be awaited)
    and the constructor read the journal directly: a short local read. With a PostgreSQL
    journal, ``journal_wait`` (as for ``AutoAgent``) bounds each of these waits; a database
    down fails the awaited call with ``PaymentError(reason="journal_unavailable")``.

    ``prepay`` prepares x402 payments ahead as ``AutoAgent`` does, in a task of the agent's
    event loop (``approve`` is awaited there); :meth:`aclose` releases the payments still
    prepared. An agent dropped without ``aclose()`` leaves them ``signed`` in the journal:
    ``recover_payments()`` releases them once their blockhash has expired. A request with its
    own ``auth=`` is never sent with a payment prepared ahead.
    """

    def __init__(
        self,
        solana_private_key: SecretKey | None = None,
        rpc_url: str | None = None,
        human_rpc_url: str | None = None,
        network: str = "devnet",
        timeout: float = 10,
        reiterator: bool = False,
        max_retry_attempts: int = 3,
        backoff_strategy: BackoffStrategy = "exponential",
        base_delay: float = 1.0,
        *,
        signer: SignerLike | None = None,
        session: httpx.AsyncClient | None = None,
        max_payment: Mapping[str, Any] | None = None,
        budget: Mapping[str, Any] | None = None,
        trusted_recipients: Addresses | None = None,
        approve: Callable[[PaymentOffer], object] | None = None,
        journal_path: str | os.PathLike[str] | None = None,
        journal_url: str | None = None,
        journal_wait: float | None = None,
        accept_assets: Addresses | None = None,
        paid_timeout: float = DEFAULT_PAID_TIMEOUT,
        create_token_accounts: bool = False,
        allow_token_extensions: Mapping[str, Any] | None = None,
        prepay: bool | Iterable[str] = False,
        budget_scope: str | None = None,
        clock: Callable[[], float] = monotonic,
        sleep: Callable[[float], Awaitable[Any]] = async_sleep,
        nonce: Callable[[], str] = lambda: secrets.token_hex(16),
    ) -> None:
        try:
            settings = AgentSettings.build(
                solana_private_key,
                rpc_url,
                human_rpc_url,
                network,
                timeout,
                reiterator,
                max_retry_attempts,
                backoff_strategy,
                base_delay,
                signer=signer,
                max_payment=max_payment,
                budget=budget,
                trusted_recipients=trusted_recipients,
                approve=approve,
                journal_path=journal_path,
                journal_url=journal_url,
                journal_wait=journal_wait,
                accept_assets=accept_assets,
                paid_timeout=paid_timeout,
                create_token_accounts=create_token_accounts,
                allow_token_extensions=allow_token_extensions,
                prepay=prepay,
                budget_scope=budget_scope,
                clock=clock,
                sleep=sleep,
                nonce=nonce,
            )
        finally:  # the key's text leaves this frame, whose locals a traceback may capture
            del solana_private_key
        if session is not None and not isinstance(session, httpx.AsyncClient):
            raise SDKConfigurationError(
                f"session must be an httpx.AsyncClient (got a {type(session).__name__})",
                parameter="session",
            )
        self._setup(settings)
        # The reiterator's sync loop is AutoAgent's; this agent drives its async loop.
        self._reiterator = reiterator_of(settings.reiterator, clock, real_sleep, async_sleep=sleep)
        self.session = session if session is not None else httpx.AsyncClient()
        self._rpc = AsyncRpcClient(self.rpc_url, timeout=self.timeout, sleep=sleep)
        self._refresher = AsyncRefresher(
            self._cache, self.network, self.rpc_url, timeout=self.timeout, clock=clock
        )
        self._driver = AsyncDriver(
            rpc=self._rpc, journal=self._journal, approve=approve, sleep=sleep, signer=self._signer
        )
        self._sleep = sleep
        self._receipt: ContextVar[PaymentReceipt | None] = ContextVar(
            f"human_rpc_sdk.receipt.{id(self)}", default=None
        )
        self._human: AsyncHumanClient | None = None
        self._loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self._prepayer = self._prepayer_of(settings)
        self._warn_of_open_payments(stacklevel=2)

    def _prepayer_of(self, settings: AgentSettings) -> AsyncPrepayer | None:
        """The task preparing payments ahead (None unless ``prepay``)."""
        if not settings.prepay.enabled:
            return None
        driver, cache, refresher = self._driver, self._cache, self._refresher

        async def make(key: Key, remembered: Remembered) -> Ready | None:
            ctx = payment_context(settings, cache, refresher)
            return await driver.run(prepare_ahead(key, remembered, ctx))

        async def released(entry: Any) -> object:
            return await driver.run(release(entry))

        return AsyncPrepayer(
            Prepayments(settings.prepay), make=make, release=released, clock=settings.clock
        )

    # -- identity and history ---------------------------------------------------------------

    async def payments_since(
        self, after: int = 0, *, limit: int | None = None
    ) -> list[PaymentReceipt]:
        """``AutoAgent.payments_since``, the journal read in a thread."""
        return await asyncio.to_thread(self._payments_since, after, limit)

    async def pending_payments(self) -> list[PaymentReceipt]:
        """Payments whose outcome is unknown (see ``AutoAgent.pending_payments``)."""
        return await asyncio.to_thread(self._pending_payments)

    async def recover_payments(self) -> list[PaymentReceipt]:
        """Look every open payment up on chain and journal what was learnt (see
        ``AutoAgent.recover_payments``)."""
        self._in_its_loop()
        held = contextlib.ExitStack()  # the recovery lock, taken and given back in a thread
        mine = await asyncio.to_thread(held.enter_context, self._journal.recovering())
        try:
            if not mine:
                logger.info("another process is recovering this journal's payments")
                return []
            entries = await asyncio.to_thread(self._open_payments)
            return await self._driver.run(self._recovery(entries))
        finally:
            await asyncio.to_thread(held.close)

    async def raise_budget(self, amounts: Mapping[str, Any], per: Any = None) -> dict[str, Budget]:
        """Add to the budget of each currency (see ``AutoAgent.raise_budget``)."""
        return await asyncio.to_thread(self._raise_budget, amounts, per)

    async def pending_tasks(self) -> list[PaymentReceipt]:
        """Tasks paid for but not decided yet (see ``AutoAgent.pending_tasks``)."""
        return await asyncio.to_thread(self._pending_tasks)

    async def balance(self, currency: str = "SOL", *, mint: str | None = None) -> Decimal:
        """The wallet's balance in display units, read from the chain (see
        ``AutoAgent.balance``)."""
        self._in_its_loop()
        return await self._driver.run(
            balance_flow(self._signer.pubkey(), self.network, currency, mint)
        )

    # -- the reiterator ---------------------------------------------------------------------

    # -- human verification (interface 3) ---------------------------------------------------

    def _human_client(self) -> AsyncHumanClient:
        """The :class:`AsyncHumanClient` of interface 2, built on first use."""
        if self._human is None:
            self._human = AsyncHumanClient(
                self.human_rpc_url,
                post=self.post,
                get=self.session.get,
                last_payment=self._receipt.get,
                journal=self._journal,
                timeout=self.timeout,
                clock=self._clock,
                sleep=self._sleep,
            )
        return self._human

    async def ask_human_rpc(
        self,
        text: str,
        *,
        answer: Any = None,
        confidence: float | None = None,
        context: Mapping[str, Any] | None = None,
        reward: Any = None,
        currency: str = "USDC",
        agent_id: str | None = None,
        task_type: str = "ai_verification",
        category: str | None = None,
        reasoning: str | None = None,
        timeout: float = 300.0,
    ) -> Verdict:
        """Ask humans to check ``answer`` to ``text`` (see ``AutoAgent.ask_human_rpc``)."""
        body, deadline = self._task(
            text,
            timeout,
            answer=answer,
            confidence=confidence,
            context=context,
            reward=reward,
            currency=currency,
            agent_id=agent_id,
            task_type=task_type,
            category=category,
            reasoning=reasoning,
        )
        return await self._human_client().ask(body, deadline, self._reiterator)

    async def wait_for_verdict(self, task_id: str, timeout: float = 300.0) -> Verdict:
        """Wait for the verdict of an existing task; nothing is paid (see
        ``AutoAgent.wait_for_verdict``)."""
        task_id = text_of(task_id, "task_id")
        self._in_its_loop()
        return await self._human_client().wait(task_id, positive_seconds(timeout, "timeout"))

    # -- httpx-style API ------------------------------------------------------------------

    async def request(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        params: Any = None,
        content: Any = None,
        data: Any = None,
        files: Any = None,
        json: Any = None,
        headers: Any = None,
        cookies: Any = None,
        auth: Any = None,
        follow_redirects: bool = True,
        timeout: Any = None,
        extensions: Any = None,
    ) -> httpx.Response:
        """Send a request like :meth:`httpx.AsyncClient.request`; pay a 402 answer and retry.

        :raises InvoiceValidationError: the 402 carried no payable invoice (nothing was paid).
        :raises ConnectionFailedError: the server could not be reached (nothing was paid).
        :raises PaymentPolicyError: a spending rule refused the payment (nothing was signed).
        :raises PaymentError: the payment could not be made, or the server refused it.
        """
        self._in_its_loop()
        self._receipt.set(None)
        limits = self._timeout(timeout)
        request = self._build(
            method,
            url,
            params=params,
            content=content,
            data=data,
            files=files,
            json=json,
            headers=headers,
            cookies=cookies,
            timeout=limits,
            extensions=extensions,
        )
        ready = await self._prepared_for(request, auth)
        if ready is not None and self._prepayer is not None:
            paid = await self._pay_prepared(
                self._prepayer, ready, request, limits, follow_redirects
            )
            if paid is not None:
                return paid
        deadline = deadline_of(limits, self._clock)
        response = await self._send_unpaid(request, auth, follow_redirects)
        # A 402 body is read with a bound (size, and the whole body within the timeout); a
        # broken one raises PaymentError. Any other body is read by the same deadline.
        reply = await read_reply(response, deadline=deadline, clock=self._clock)
        if response.status_code != 402:
            return response
        asked = (request, self._clock()) if auth is None else None
        return await self._pay(response, reply, limits, follow_redirects, asked=asked)

    def _in_its_loop(self) -> None:
        """Bind the agent to the event loop of its first use, and refuse any other: its
        ``httpx.AsyncClient`` keeps connections that belong to that loop (used from another,
        they fail half-way, with ``RuntimeError: Event loop is closed``)."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = weakref.ref(loop)
        elif self._loop() is not loop:
            raise SDKConfigurationError(
                "this AsyncAutoAgent was first used in another event loop (another "
                "asyncio.run()), and its HTTP connections belong to that loop. Nothing was "
                "sent; create one agent per event loop, inside it "
                "('async with AsyncAutoAgent(...) as agent:')",
                parameter="agent",
            )

    def _timeout(self, value: Any) -> httpx.Timeout:
        if isinstance(value, httpx.Timeout):
            return value
        checked = request_timeout(value)
        if checked is None:
            return httpx.Timeout(self.timeout)
        if isinstance(checked, tuple):
            connect, read = checked
            return httpx.Timeout(connect, connect=connect, read=read)
        return httpx.Timeout(checked)

    def _build(self, method: Any, url: Any, **kwargs: Any) -> httpx.Request:
        """The request built by the client, or ``SDKConfigurationError`` if it cannot be sent
        as given; nothing was sent."""
        method = method_of(method)
        if not isinstance(url, str | httpx.URL):
            raise SDKConfigurationError(
                f"url must be text such as 'https://api.example.com/premium' "
                f"(got a {type(url).__name__})",
                parameter="url",
            )
        cookies = kwargs.pop("cookies")
        try:
            request = self.session.build_request(method, url, **kwargs)
            if request.url.scheme not in ("http", "https"):  # as requests refuses it: never sent
                raise httpx.UnsupportedProtocol(
                    f"no transport for {request.url.scheme or 'a URL without'}:// (http and "
                    "https only)"
                )
            if cookies is not None:
                jar = httpx.Cookies(self.session.cookies)
                jar.update(httpx.Cookies(cookies))
                request.headers.pop("Cookie", None)
                jar.set_cookie_header(request)
        except (httpx.HTTPError, httpx.InvalidURL, ValueError, TypeError) as exc:
            raise SDKConfigurationError(
                f"the request to {show(str(url))} cannot be sent as given: "
                f"{type(exc).__name__}: {str(exc)[:200]}. Nothing was sent",
                parameter="url",
            ) from exc
        return request

    async def _send_unpaid(
        self, request: httpx.Request, auth: Any, follow_redirects: bool
    ) -> httpx.Response:
        try:
            return await self.session.send(
                request, auth=auth, follow_redirects=follow_redirects, stream=True
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.ProxyError) as exc:
            raise _unreached(exc, str(request.url)) from exc

    async def _pay(
        self,
        challenge: httpx.Response,
        reply: HttpReply,
        limits: httpx.Timeout,
        follow_redirects: bool,
        *,
        asked: tuple[httpx.Request, float] | None = None,
    ) -> httpx.Response:
        # The retry goes to the request that got the 402: after redirects, the last one.
        ensure_replayable(challenge.request)
        paid = AsyncPaidRequest(
            self.session,
            challenge,
            timeout=limits,
            follow_redirects=follow_redirects,
            paid_timeout=self.paid_timeout,
            clock=self._clock,
        )
        sent: list[Resend] = []

        async def send(effect: Resend) -> HttpReply | NoAnswer:
            sent.append(effect)
            return await paid(effect)

        try:
            outcome: PaymentOutcome | SignedIn = await self._driver.run(
                pay_or_sign_in(reply, self._context()), send
            )
        except PaymentPolicyError as exc:
            # Refused by the budget before anything was sent: again, with the budget the
            # payments prepared ahead held released (a prepared payment never costs a request).
            prepayer = self._prepayer
            if exc.rule != "budget" or sent or prepayer is None:
                raise
            if not await prepayer.yield_budget():
                raise
            outcome = await self._driver.run(pay_or_sign_in(reply, self._context()), send)
        self._receipt.set(outcome.receipt)
        if outcome.error is not None:
            raise outcome.error
        # Nothing to prepare ahead after a sign-in (nothing was paid), nor for a 402 offering
        # one (the next request signs in for nothing).
        if (
            asked is not None
            and paid.response is not None
            and not isinstance(outcome, SignedIn)
            and not offers_sign_in(reply, self.network)
        ):
            self._remember(reply, outcome, asked, str(paid.response.url))
        return challenge if paid.response is None else paid.response

    # -- payments prepared ahead -------------------------------------------------------------

    def _remember(
        self,
        reply: HttpReply,
        outcome: PaymentOutcome,
        asked: tuple[httpx.Request, float],
        served: str,
    ) -> None:
        """After a served payment: prepare the next one of its challenge, if it may be."""
        request, challenged_at = asked
        key = _key_of(request)
        if self._prepayer is None or key is None or not self._prepayer.allows(key):
            return
        remembered = to_remember(
            reply, outcome.receipt, asked=key[1], served=served, challenged_at=challenged_at
        )
        if remembered is not None:
            self._context()  # the chain refresh runs: the preparation finds its state fresh
            self._prepayer.remember(key, remembered)

    async def _prepared_for(self, request: httpx.Request, auth: Any) -> Ready | None:
        """The payment prepared ahead for ``request``'s method and URL, if one is usable."""
        prepayer = self._prepayer
        key = _key_of(request)
        if prepayer is None or auth is not None or key is None or not prepayer.allows(key):
            return None
        try:
            ensure_replayable(request)
        except PaymentError:  # a streamed body: sent once, unpaid, as without prepay
            return None
        return await prepayer.take(key)

    async def _pay_prepared(
        self,
        prepayer: AsyncPrepayer,
        ready: Ready,
        request: httpx.Request,
        limits: httpx.Timeout,
        follow_redirects: bool,
    ) -> httpx.Response | None:
        """Send ``request`` with the payment prepared for it, and judge the answer as any
        paid request's. Served (2xx): the next is prepared; otherwise none for now. None: the
        server could not be reached at all (the payment never left: released), send it the
        normal way."""
        paid = AsyncPaidRequest(
            self.session,
            None,
            timeout=limits,
            follow_redirects=follow_redirects,
            paid_timeout=self.paid_timeout,
            clock=self._clock,
            request=request,
        )
        try:
            prepared = deliver_prepared(ready, self._context(), request_fingerprint_of(request))
            outcome = await self._driver.run(prepared, paid)
        except NotSent:  # it never left: released, and the request goes the normal way
            prepayer.refused(ready.key)
            await self._driver.run(release(ready.entry))
            return None
        except BaseException:
            prepayer.refused(ready.key)
            raise
        self._receipt.set(outcome.receipt)
        response = paid.response
        status = None if response is None else response.status_code
        redirected = response is not None and response.url != request.url
        return conclude(prepayer, ready.key, outcome, response, status, redirected)

    def last_payment(self) -> PaymentReceipt | None:
        """The receipt of the payment the current task's last request made (None if none)."""
        return self._receipt.get()

    async def get(self, url: httpx.URL | str, **kwargs: Any) -> httpx.Response:
        """``GET url``, paying a 402 once (see :meth:`request`)."""
        return await self.request("GET", url, **kwargs)

    async def post(self, url: httpx.URL | str, **kwargs: Any) -> httpx.Response:
        """``POST url``, paying a 402 once (see :meth:`request`)."""
        return await self.request("POST", url, **kwargs)

    async def put(self, url: httpx.URL | str, **kwargs: Any) -> httpx.Response:
        """``PUT url``, paying a 402 once (see :meth:`request`)."""
        return await self.request("PUT", url, **kwargs)

    async def patch(self, url: httpx.URL | str, **kwargs: Any) -> httpx.Response:
        """``PATCH url``, paying a 402 once (see :meth:`request`)."""
        return await self.request("PATCH", url, **kwargs)

    async def delete(self, url: httpx.URL | str, **kwargs: Any) -> httpx.Response:
        """``DELETE url``, paying a 402 once (see :meth:`request`)."""
        return await self.request("DELETE", url, **kwargs)

    async def head(self, url: httpx.URL | str, **kwargs: Any) -> httpx.Response:
        """``HEAD url`` (no redirects followed unless ``follow_redirects=True``)."""
        kwargs.setdefault("follow_redirects", False)
        return await self.request("HEAD", url, **kwargs)

    async def options(self, url: httpx.URL | str, **kwargs: Any) -> httpx.Response:
        """``OPTIONS url``, paying a 402 once (see :meth:`request`)."""
        return await self.request("OPTIONS", url, **kwargs)

    async def aclose(self) -> None:
        """Release the payments prepared ahead (after one being prepared); stop the chain
        refresh; close the HTTP clients and the journal."""
        if self._prepayer is not None:
            await self._prepayer.aclose()
        await self._refresher.aclose()
        await self.session.aclose()
        await self._rpc.aclose()
        await asyncio.to_thread(self._journal.close)

    async def __aenter__(self) -> AsyncAutoAgent:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class HttpxConnectionFailedError(ConnectionFailedError, httpx.ConnectError):  # type: ignore[misc]
    """:class:`~human_rpc_sdk.ConnectionFailedError` that is also httpx's ``ConnectError``:
    code written for httpx (``except httpx.ConnectError``, ``except httpx.HTTPError``) keeps
    working with ``AsyncAutoAgent``, as ``requests`` code does with ``AutoAgent``.

    (Both libraries name an attribute ``request``, each its own type: httpx's is the one
    read here, a type checker cannot tell, hence the ``type: ignore``.)"""


class HttpxConnectTimeoutError(ConnectTimeoutError, httpx.ConnectTimeout):  # type: ignore[misc]
    """:class:`~human_rpc_sdk.exceptions.ConnectTimeoutError` that is also httpx's
    ``ConnectTimeout``."""


class HttpxProxyConnectionError(ProxyConnectionError, httpx.ProxyError):  # type: ignore[misc]
    """:class:`~human_rpc_sdk.exceptions.ProxyConnectionError` that is also httpx's
    ``ProxyError``."""


def _key_of(request: httpx.Request) -> Key | None:
    """The key a payment prepared ahead for ``request`` is kept under (None: a streamed body,
    not read here, or a multipart one: nothing is prepared for it)."""
    try:
        body = request.content
    except httpx.RequestNotRead:
        return None
    headers = request.headers
    return request_key(
        request.method,
        str(request.url),
        body,
        headers.get("Authorization"),
        headers.get("Content-Type"),
    )


def _unreached(exc: httpx.HTTPError, url: str) -> ConnectionFailedError:
    """The SDK error for a first request that got no answer: also the httpx error it wraps
    (``__cause__``), with httpx's ``request``."""
    kind: type[ConnectionFailedError] = HttpxConnectionFailedError
    if isinstance(exc, httpx.ConnectTimeout):
        kind = HttpxConnectTimeoutError
    elif isinstance(exc, httpx.ProxyError):
        kind = HttpxProxyConnectionError
    error = kind(unreached(url, f"{type(exc).__name__}: {str(exc)[:200]}"), url=url)
    if isinstance(exc, httpx.RequestError):
        error.__dict__["_request"] = exc._request  # what httpx's `request` property reads
    return error


def request_fingerprint_of(request: httpx.Request) -> str:
    """``request`` identified (see :func:`.._resume.request_fingerprint`); "" for a stream."""
    try:
        return request_fingerprint(request.method, request.content)
    except httpx.RequestNotRead:
        return ""
