"""AutoAgent: an HTTP client that pays HTTP 402 invoices by itself (see :mod:`._io.agent`)."""

from ._io.agent import RESERVATION_TIMEOUT, AutoAgent

__all__ = ["RESERVATION_TIMEOUT", "AutoAgent"]
