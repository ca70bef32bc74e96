"""Payments prepared ahead for ``AsyncAutoAgent(prepay=...)``: one asyncio task per agent.

The asyncio twin of :mod:`.prepay` (the decisions are :mod:`human_rpc_sdk._prepay`'s). The
task starts with the first payment worth preparing, in the agent's loop; it prepares and
releases payments as the state asks, and ``aclose()`` stops it after a preparation under way
and releases every payment still prepared. Everything runs in the one loop, so the state needs
no lock; a change wakes whoever waits (:meth:`AsyncPrepayer._pulse`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

from .._prepay import Key, Ready, Remembered
from .._prepayments import Prepayments
from .._records import JournalEntry
from ..exceptions import HumanRPCError
from .prepay import MAX_WAIT

__all__ = ["AsyncPrepayer"]

logger = logging.getLogger("human_rpc_sdk")

_IDLE: Final = 60.0


class AsyncPrepayer:
    """Prepares payments ahead in an asyncio task (see the module)."""

    def __init__(
        self,
        state: Prepayments,
        *,
        make: Callable[[Key, Remembered], Awaitable[Ready | None]],
        release: Callable[[JournalEntry], Awaitable[object]],
        clock: Callable[[], float],
        max_wait: float = MAX_WAIT,
    ) -> None:
        self.state = state
        self._make = make
        self._release = release
        self._clock = clock
        self.max_wait = max_wait
        self._changed = asyncio.Event()
        self._to_release: list[Ready] = []
        self._stopping = False
        self.task: asyncio.Task[None] | None = None
        self.prepared = asyncio.Event()
        """Set after each preparation the task ran; clear it to wait for the next one."""

    def allows(self, key: Key) -> bool:
        return self.state.allows(key)

    def _pulse(self) -> None:
        """Wake every waiter (each waits on the event current when it began)."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _hand_over(self, payments: Iterable[Ready]) -> None:
        """Give payments to release to the task (or to ``aclose``), and wake it."""
        self._to_release.extend(payments)
        self._pulse()

    # -- what requests do -----------------------------------------------------------------------

    def remember(self, key: Key, remembered: Remembered) -> None:
        """A normal payment for ``key`` was served: prepare its next one."""
        self._hand_over(self.state.remember(key, remembered))
        self._start()

    def served(self, key: Key) -> None:
        """A prepared payment for ``key`` was served: prepare the next one."""
        self.state.served(key)
        self._pulse()

    def refused(self, key: Key) -> None:
        """A prepared payment for ``key`` was not served: prepare no more for it for now."""
        self._hand_over(self.state.refused(key))

    async def take(self, key: Key) -> Ready | None:
        """The payment prepared for ``key`` if one is usable (waiting up to ``max_wait``
        seconds for one being prepared); it is then the caller's to send."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while True:
            ready, stale = self.state.take(key, self._clock())
            if stale:
                self._hand_over(stale)
            if (
                ready is not None
                or stale
                or not self.state.coming(key, self._clock())
                or self._stopping
            ):
                return ready
            left = deadline - loop.time()
            if left <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    async def yield_budget(self) -> bool:
        """Release every payment prepared (each prepared again only after its request's next
        served payment), for a payment the budget refused; whether there was any."""
        held = self.state.yield_budget()
        for ready in held:
            try:
                await self._release(ready.entry)
            except Exception:  # logged; recovery releases it once its blockhash expired
                logger.warning("releasing payment #%s failed", ready.entry.id, exc_info=True)
        return bool(held)

    async def settle(self, timeout: float) -> bool:
        """Wait until no payment is being prepared or about to be (False: still after
        ``timeout`` seconds). Tests and demos wait with it; requests need not."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._stopping and self.state.preparing(self._clock()):
            left = deadline - loop.time()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return True

    # -- the task ------------------------------------------------------------------------------

    def _start(self) -> None:
        if self.task is None and not self._stopping:
            self.task = asyncio.get_running_loop().create_task(
                self._run(), name="human-rpc-sdk payments prepared ahead"
            )

    async def _run(self) -> None:
        try:
            while True:
                job = await self._next()
                await self._release_all()
                if job is None:
                    return
                key, remembered = job
                ready = await self._prepared(key, remembered)
                self._hand_over(self.state.finished(key, ready))
                self.prepared.set()
        except BaseException as exc:
            # The loop is ending with the agent never closed (asyncio.run cancels what is
            # left), or a signer unwound the task: prepare nothing more (no request waits for
            # a payment that never comes), and release what is prepared rather than leave it
            # signed.
            self._stopping = True
            self._pulse()
            self._to_release.extend(self.state.close())
            await self._release_all()
            if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                raise
            logger.warning("preparing payments ahead stopped unexpectedly", exc_info=True)

    async def _next(self) -> tuple[Key, Remembered] | None:
        """The next preparation (None: stop, everything prepared handed over to release)."""
        while True:
            if self._stopping:
                self._to_release.extend(self.state.close())
                return None
            now = self._clock()
            self._to_release.extend(self.state.expired(now))
            job = self.state.next_job(now)
            if job is not None or self._to_release:
                return job
            deadline = self.state.next_deadline()
            wait = _IDLE if deadline is None else min(max(deadline - now, 0.01), _IDLE)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), wait)

    async def _prepared(self, key: Key, remembered: Remembered) -> Ready | None:
        try:
            return await self._make(key, remembered)
        except HumanRPCError as exc:  # refused or failed: the next request pays the normal way
            logger.debug("no payment prepared ahead for %s %s: %s", key[0], key[1], exc)
        except Exception:  # the task must outlive a surprise: logged
            logger.warning("preparing a payment ahead failed unexpectedly", exc_info=True)
        return None

    async def _release_all(self) -> None:
        while self._to_release:
            ready = self._to_release.pop()
            try:
                await self._release(ready.entry)
            except Exception:  # logged; recovery releases it once its blockhash expired
                logger.warning("releasing payment #%s failed", ready.entry.id, exc_info=True)

    async def aclose(self) -> None:
        """Stop the task after a preparation under way; release every payment prepared."""
        self._stopping = True
        self._pulse()
        task = self.task
        if task is not None:
            await asyncio.wait([task])  # one cancelled (its loop ending) released its own
        self._to_release.extend(self.state.close())
        await self._release_all()
