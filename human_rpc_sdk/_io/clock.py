"""The real clock and sleeps: the defaults of every injectable ``clock=`` and ``sleep=``.

The core never reads the clock itself; it is handed these (tests hand it fakes).
"""

from __future__ import annotations

import time

__all__ = ["async_sleep", "monotonic", "sleep"]

monotonic = time.monotonic
sleep = time.sleep


async def async_sleep(seconds: float) -> None:
    """``asyncio.sleep`` (asyncio imported here: a synchronous agent never loads it)."""
    import asyncio

    await asyncio.sleep(seconds)
