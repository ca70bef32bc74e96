"""The background refresh of the chain cache: a thread for ``AutoAgent``, a task for
``AsyncAutoAgent``, both running :func:`~human_rpc_sdk._chainstate.refresh`.

Each has its own HTTP connection to the node, so a refresh never waits for (or delays) a
payment's call, and tries once: a refresh that fails is simply followed by the next one. It
starts with the agent's first payment (an agent that never pays never refreshes), reads only
what payments used in the last minute, and stops with ``close()`` / ``aclose()``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace

import requests

from .._chainstate import REFRESH_INTERVAL, ChainCache, refresh
from .._protocol import Flow
from .._retry import RPC_RETRY_POLICY
from ..exceptions import HumanRPCError
from .rpc import RpcClient, RpcStats

__all__ = ["ONE_TRY", "Refresher"]

logger = logging.getLogger(__name__)

ONE_TRY = replace(RPC_RETRY_POLICY, total=0, connect=0, read=0, status=0)


class Refresher:
    """Refresh ``cache`` from ``rpc_url`` every ``interval`` seconds, in a daemon thread."""

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
        self._rpc = RpcClient(rpc_url, timeout=timeout, session=requests.Session())
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.refreshed = threading.Event()
        """Set after each refresh the thread ran (whatever it learnt); clear it to wait for
        the next one."""
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def stats(self) -> RpcStats:
        """The refresher's own round trips to the node."""
        return self._rpc.stats

    @property
    def session(self) -> requests.Session:
        """The refresher's own HTTP session to the node."""
        return self._rpc.session

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def start(self) -> None:
        """Start the thread, once (after ``close``, never again)."""
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(
                target=self._run, name="human-rpc-sdk chain refresh", daemon=True
            )
            self._thread.start()

    def wake(self) -> None:
        """Refresh now rather than at the end of the interval."""
        self._wake.set()

    def refresh_once(self) -> bool:
        """One refresh; False when nothing was refreshed (or it failed: logged)."""
        try:
            return self._rpc.run(self._refresh())
        except HumanRPCError as exc:
            logger.debug("chain refresh failed (the next payment reads the chain): %s", exc)
            return False

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._wake.wait(self.interval)
                self._wake.clear()
                if self._stop.is_set():
                    break
                try:
                    self.refresh_once()
                except Exception:  # the refresh must outlive a surprise: logged
                    logger.warning("chain refresh failed unexpectedly", exc_info=True)
                self.refreshed.set()
        finally:
            self._rpc.session.close()

    def stop(self) -> None:
        """Tell the thread to stop (at once if it waits, after its refresh if it reads)."""
        with self._lock:
            self._stop.set()
            self._wake.set()
            if self._thread is None:
                self._rpc.session.close()

    def close(self) -> None:
        """Stop the thread and wait for it (a refresh under way ends within its timeout)."""
        self.stop()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
