"""The real clock and sleeps: the defaults of every injectable ``clock=`` and ``sleep=``.

The core never reads the clock itself; it is handed these (tests hand it fakes).
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["async_sleep", "monotonic", "sleep"]

monotonic = time.monotonic
sleep = time.sleep
async_sleep = asyncio.sleep
