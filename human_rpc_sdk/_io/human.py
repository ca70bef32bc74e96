"""Runners of the human-verification flows: sync (``requests``) and async (``httpx``).

Every decision lives in :mod:`.._human` (what to send, how to read each answer, when to poll
again, what to journal); these two classes perform the effects the flows yield: the agent's
paying POST, a plain GET, the journal, and the pause, with the clock and sleep they are given.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Generator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import requests

from .._driving import adrive, drive
from .._effects import Effect, HttpReply, NoAnswer, Pause, Record
from .._human import (
    HumanAnswer,
    HumanHttp,
    OpenTasks,
    TaskApi,
    ask_once,
    endpoint_of,
    wait_for_verdict,
)
from .._human import retry_after_seconds as _retry_after
from .._receipts import PaymentReceipt
from .._tasks import Verdict
from ..exceptions import ConnectionFailedError
from .store import JournalStore

if TYPE_CHECKING:
    from ..reiterator import ReiteratorManager

__all__ = ["AsyncHumanClient", "HumanClient", "retry_after_seconds"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class _Response(Protocol):
    """What the runners read of a ``requests`` or ``httpx`` response."""

    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> Any: ...  # case-insensitive in both libraries
    @property
    def content(self) -> bytes: ...
    @property
    def url(self) -> Any: ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


def retry_after_seconds(header: str | None, default: float = 1.0) -> float:
    """A ``Retry-After`` header in seconds, an HTTP date read against the real clock."""
    return _retry_after(header, _utc_now, default)


def _reply(response: _Response) -> HttpReply:
    return HttpReply(
        status=response.status_code,
        headers=response.headers,
        body=response.content,
        url=str(response.url),
    )


class _Runner:
    """What both runners share: the settings and the journal's part of each effect."""

    def __init__(
        self,
        url: str | None,
        *,
        last_payment: Callable[[], PaymentReceipt | None],
        journal: JournalStore,
        timeout: float,
        clock: Callable[[], float],
        now: Callable[[], datetime],
    ) -> None:
        self.url = url
        self._last_payment = last_payment
        self._journal = journal
        self._timeout = timeout
        self._clock = clock
        self._now = now

    def endpoint(self) -> str:
        return endpoint_of(self.url)

    def _api(self) -> TaskApi:
        return TaskApi(self.endpoint(), self._timeout, self._clock, self._now)

    def _book(self, effect: Effect[Any]) -> Any:
        """Perform a journal effect (blocking: the async runner calls it in a thread)."""
        if isinstance(effect, Record):
            return self._journal.mark(
                effect.entry_id,
                effect.state,
                effect.fields,
                expect=effect.expect,
                busy_seconds=effect.busy_seconds,
                keep=effect.keep,
            )
        if isinstance(effect, OpenTasks):
            return self._journal.open_tasks()
        raise TypeError(f"unknown effect {effect!r}")


class HumanClient(_Runner):
    """Talks to a HumanRPC tasks endpoint (``http://host/api/v1/tasks``) for an agent.

    :param post: the agent's paying POST (answers a 402 by paying it).
    :param get: a plain GET (polling never pays).
    :param last_payment: the payment the calling thread's last request made, if any.
    :param journal: the agent's journal (task ids and verdicts go on the payments' rows).
    :param now: wall-clock UTC time, for a ``Retry-After`` date.
    """

    def __init__(
        self,
        url: str | None,
        *,
        post: Callable[..., requests.Response],
        get: Callable[..., requests.Response],
        last_payment: Callable[[], PaymentReceipt | None],
        journal: JournalStore,
        timeout: float,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        super().__init__(
            url, last_payment=last_payment, journal=journal, timeout=timeout, clock=clock, now=now
        )
        self._post = post
        self._get = get
        self._sleep = sleep

    def ask(self, body: dict[str, Any], deadline: float, reiterator: ReiteratorManager) -> Verdict:
        """Create a paid task and wait for its verdict by ``deadline`` (a ``clock()`` time);
        a rejection is resubmitted when ``reiterator`` is enabled."""
        self.endpoint()
        if reiterator.enabled:
            return reiterator.execute_until(deadline, self._ask_once, body, deadline)
        return self._ask_once(body, deadline)

    def _ask_once(self, body: dict[str, Any], deadline: float) -> Verdict:
        return self._run(ask_once(self._api(), body, deadline))

    def wait(self, task_id: str, timeout: float) -> Verdict:
        """Wait for an existing task's verdict (nothing is paid); the verdict is journaled."""
        return self._run(wait_for_verdict(self._api(), task_id, timeout))

    def _run(self, flow: Generator[Effect[Any], Any, T]) -> T:
        return drive(flow, self._perform)

    def _perform(self, effect: Effect[Any]) -> Any:
        if isinstance(effect, HumanHttp):
            return self._http(effect)
        if isinstance(effect, Pause):
            self._sleep(effect.seconds)
            return None
        return self._book(effect)

    def _http(self, effect: HumanHttp) -> HumanAnswer:
        try:
            if effect.paying:
                response = self._post(effect.url, json=effect.json, timeout=effect.timeout)
            else:
                response = self._get(effect.url, timeout=effect.timeout)
        except requests.RequestException as exc:
            return HumanAnswer(NoAnswer(type(exc).__name__))
        payment = self._last_payment() if effect.paying else None
        return HumanAnswer(_reply(response), payment)


class AsyncHumanClient(_Runner):
    """:class:`HumanClient` for asyncio: ``post`` and ``get`` are awaited (``httpx``-like
    responses), ``sleep`` is an async function, and the journal runs in a thread."""

    def __init__(
        self,
        url: str | None,
        *,
        post: Callable[..., Awaitable[Any]],
        get: Callable[..., Awaitable[Any]],
        last_payment: Callable[[], PaymentReceipt | None],
        journal: JournalStore,
        timeout: float,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        super().__init__(
            url, last_payment=last_payment, journal=journal, timeout=timeout, clock=clock, now=now
        )
        self._post = post
        self._get = get
        self._sleep = sleep

    async def ask(
        self, body: dict[str, Any], deadline: float, reiterator: ReiteratorManager
    ) -> Verdict:
        """Create a paid task and wait for its verdict by ``deadline`` (a ``clock()`` time);
        a rejection is resubmitted when ``reiterator`` is enabled."""
        self.endpoint()
        if reiterator.enabled:
            return await reiterator.aexecute_until(deadline, self._ask_once, body, deadline)
        return await self._ask_once(body, deadline)

    async def _ask_once(self, body: dict[str, Any], deadline: float) -> Verdict:
        return await self._run(ask_once(self._api(), body, deadline))

    async def wait(self, task_id: str, timeout: float) -> Verdict:
        """Wait for an existing task's verdict (nothing is paid); the verdict is journaled."""
        return await self._run(wait_for_verdict(self._api(), task_id, timeout))

    async def _run(self, flow: Generator[Effect[Any], Any, T]) -> T:
        return await adrive(flow, self._perform)

    async def _perform(self, effect: Effect[Any]) -> Any:
        if isinstance(effect, HumanHttp):
            return await self._http(effect)
        if isinstance(effect, Pause):
            await self._sleep(effect.seconds)
            return None
        import asyncio  # running already; the synchronous client never imports it

        return await asyncio.to_thread(self._book, effect)

    async def _http(self, effect: HumanHttp) -> HumanAnswer:
        import httpx  # loaded by AsyncAutoAgent already; not by the sync agent

        try:
            if effect.paying:
                response = await self._post(effect.url, json=effect.json, timeout=effect.timeout)
            else:
                response = await self._get(effect.url, timeout=effect.timeout)
        except (httpx.RequestError, ConnectionFailedError) as exc:
            return HumanAnswer(NoAnswer(type(exc).__name__))
        payment = self._last_payment() if effect.paying else None
        return HumanAnswer(_reply(response), payment)
