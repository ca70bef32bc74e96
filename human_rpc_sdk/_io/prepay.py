"""Payments prepared ahead for ``AutoAgent(prepay=...)``: one worker thread per agent.

The decisions are :mod:`human_rpc_sdk._prepay`'s; here is only the waiting. The thread starts
with the first payment worth preparing, prepares (and releases) payments as the state asks,
and is stopped and joined by ``close()``, which releases every payment still prepared.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Final

from .._prepay import Key, Ready, Remembered
from .._prepayments import Prepayments
from .._records import JournalEntry
from ..exceptions import HumanRPCError

__all__ = ["MAX_WAIT", "Prepayer"]

logger = logging.getLogger("human_rpc_sdk")

MAX_WAIT: Final = 5.0
"""Seconds a request waits for its payment being prepared before paying the normal way."""
_IDLE: Final = 60.0
_EXIT_WAIT: Final = 30.0
"""Seconds the interpreter's exit waits for a worker to release what it holds."""


class Prepayer:
    """Prepares payments ahead in a daemon thread (see the module).

    ``make`` runs the preparing flow (its refusals are raised), ``release`` the releasing one;
    ``clock`` is the agent's.
    """

    def __init__(
        self,
        state: Prepayments,
        *,
        make: Callable[[Key, Remembered], Ready | None],
        release: Callable[[JournalEntry], object],
        clock: Callable[[], float],
        max_wait: float = MAX_WAIT,
    ) -> None:
        self.state = state
        self._make = make
        self._release = release
        self._clock = clock
        self.max_wait = max_wait
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.prepared = threading.Event()
        """Set after each preparation the thread ran (whatever came of it); clear it to wait
        for the next one."""
        _LIVE.add(self)

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def allows(self, key: Key) -> bool:
        return self.state.allows(key)

    # -- what requests do -----------------------------------------------------------------------

    def remember(self, key: Key, remembered: Remembered) -> None:
        """A normal payment for ``key`` was served: prepare its next one."""
        with self._cond:
            released = self.state.remember(key, remembered)
            self._start()
            self._cond.notify_all()
        self._release_all(released)

    def served(self, key: Key) -> None:
        """A prepared payment for ``key`` was served: prepare the next one."""
        with self._cond:
            self.state.served(key)
            self._cond.notify_all()

    def refused(self, key: Key) -> None:
        """A prepared payment for ``key`` was not served: prepare no more for it for now."""
        with self._cond:
            released = self.state.refused(key)
        self._release_all(released)

    def take(self, key: Key) -> Ready | None:
        """The payment prepared for ``key`` if one is usable (waiting up to ``max_wait``
        seconds for one being prepared); it is then the caller's to send."""
        deadline: float | None = None
        with self._cond:
            while True:
                ready, stale = self.state.take(key, self._clock())
                if (
                    ready is not None
                    or stale
                    or not self.state.coming(key, self._clock())
                    or self._stopping
                ):
                    break
                now = time.monotonic()
                deadline = now + self.max_wait if deadline is None else deadline
                if now >= deadline:
                    break
                self._cond.wait(deadline - now)
            if stale:
                self._cond.notify_all()  # the next one is wanted
        self._release_all(stale)
        return ready

    def yield_budget(self) -> bool:
        """Release every payment prepared (each prepared again only after its request's next
        served payment), for a payment the budget refused; whether there was any."""
        with self._cond:
            held = self.state.yield_budget()
        self._release_all(held)
        return bool(held)

    def settle(self, timeout: float) -> bool:
        """Wait until no payment is being prepared or about to be (False: still after
        ``timeout`` seconds). Tests and demos wait with it; requests need not."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._stopping or not self.state.preparing(self._clock()), timeout
            )

    # -- the thread ----------------------------------------------------------------------------

    def _start(self) -> None:
        if self._thread is None and not self._stopping:
            self._thread = threading.Thread(
                target=self._run, name="human-rpc-sdk payments prepared ahead", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                job, stale = self._next()
            self._release_all(stale)
            if job is None:
                return
            key, remembered = job
            ready = self._prepared(key, remembered)
            with self._cond:
                leftover = self.state.finished(key, ready)
                self._cond.notify_all()
            self._release_all(leftover)
            self.prepared.set()

    def _next(self) -> tuple[tuple[Key, Remembered] | None, list[Ready]]:
        """(Under the lock) the next preparation and what to release; (None, all) to stop."""
        while True:
            if self._stopping:
                return None, self.state.close()
            now = self._clock()
            stale = self.state.expired(now)
            job = self.state.next_job(now)
            if job is not None or stale:
                return job, stale
            deadline = self.state.next_deadline()
            wait = _IDLE if deadline is None else min(max(deadline - now, 0.01), _IDLE)
            self._cond.wait(wait)

    def _prepared(self, key: Key, remembered: Remembered) -> Ready | None:
        try:
            return self._make(key, remembered)
        except HumanRPCError as exc:  # refused or failed: the next request pays the normal way
            logger.debug("no payment prepared ahead for %s %s: %s", key[0], key[1], exc)
        except BaseException:
            # The thread must outlive a surprise, even one that unwinds (as SystemExit does):
            # left to die, it would leave its request marked "being prepared", each request to
            # it waiting for a payment that never comes.
            logger.warning("preparing a payment ahead failed unexpectedly", exc_info=True)
        return None

    def _release_all(self, payments: Iterable[Ready]) -> None:
        for ready in payments:
            try:
                self._release(ready.entry)
            except Exception:  # logged; recovery releases it once its blockhash expired
                logger.warning("releasing payment #%s failed", ready.entry.id, exc_info=True)

    def stop(self) -> None:
        """Tell the thread to release what is prepared and end (after a preparation under
        way); with no thread, release here."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            released = self.state.close() if self._thread is None else []
        self._release_all(released)

    def close(self, timeout: float | None = None) -> None:
        """Stop the thread and wait for it (at most ``timeout`` seconds): every payment
        prepared is released."""
        self.stop()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


_LIVE: Final[weakref.WeakSet[Prepayer]] = weakref.WeakSet()
"""Every prepayer not yet collected (its thread, running, keeps it alive)."""


@atexit.register
def _close_at_exit() -> None:
    """At the interpreter's exit, release what agents never closed hold prepared: their
    threads are daemons, stopped wherever they are once the exit goes on, which would leave
    those payments ``signed`` (counted, and warned about, until recovery proves they never
    landed)."""
    for prepayer in list(_LIVE):
        prepayer.close(_EXIT_WAIT)
