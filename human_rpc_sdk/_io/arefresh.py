"""The background refresh of the chain cache for ``AsyncAutoAgent``: an asyncio task running
:func:`~human_rpc_sdk._chainstate.refresh` (see :mod:`.refresh`, whose thread serves
``AutoAgent``; apart so that the sync agent never imports httpx or asyncio).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from .._chainstate import REFRESH_INTERVAL, ChainCache, refresh
from .._driving import adrive
from .._protocol import Effect, Flow, RpcCall
from ..exceptions import HumanRPCError
from .arpc import AsyncRpcClient
from .refresh import ONE_TRY
from .rpc import RpcStats

__all__ = ["AsyncRefresher"]

logger = logging.getLogger(__name__)


class AsyncRefresher:
    """Refresh ``cache`` from ``rpc_url`` every ``interval`` seconds, in an asyncio task."""

    def __init__(
        self,
        cache: ChainCache,
        network: str,
        rpc_url: str,
        *,
        timeout: float,
        clock: Callable[[], float],
        interval: float = REFRESH_INTERVAL,
    ) -> None:
        self.interval = interval
        self._refresh: Callable[[], Flow[bool]] = lambda: refresh(cache, network, clock)
        self._rpc = AsyncRpcClient(rpc_url, timeout=timeout, policy=ONE_TRY)
        self._wake = asyncio.Event()
        self.refreshed = asyncio.Event()
        """Set after each refresh the task ran; clear it to wait for the next one."""
        self._closed = False
        self.task: asyncio.Task[None] | None = None

    @property
    def stats(self) -> RpcStats:
        """The refresher's own round trips to the node."""
        return self._rpc.stats

    def start(self) -> None:
        """Start the task in the running loop, once (after ``aclose``, never again)."""
        if self.task is not None or self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop running: the next payment, in one, starts it
            return
        self.task = loop.create_task(self._run(), name="human-rpc-sdk chain refresh")

    def wake(self) -> None:
        """Refresh now rather than at the end of the interval."""
        self._wake.set()

    async def refresh_once(self) -> bool:
        """One refresh; False when nothing was refreshed (or it failed: logged)."""
        try:
            return await adrive(self._refresh(), self._perform)
        except HumanRPCError as exc:
            logger.debug("chain refresh failed (the next payment reads the chain): %s", exc)
            return False

    async def _perform(self, effect: Effect[Any]) -> list[Any]:
        if not isinstance(effect, RpcCall):
            raise TypeError(f"the chain refresh performs only RpcCall effects, not {effect!r}")
        return await self._rpc.call(effect.requests)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            try:
                await self.refresh_once()
            except Exception:  # the refresh must outlive a surprise: logged
                logger.warning("chain refresh failed unexpectedly", exc_info=True)
            self.refreshed.set()

    async def aclose(self) -> None:
        """Cancel the task, wait for it to end, and close the connection."""
        self._closed = True
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._rpc.aclose()
