"""AsyncAutoAgent: the asyncio agent over httpx (see :mod:`._io.async_agent`)."""

from ._io.async_agent import AsyncAutoAgent

__all__ = ["AsyncAutoAgent"]
