"""AutoAgent: an HTTP client that pays HTTP 402 invoices by itself (see :mod:`._io.agent`)."""

from ._io.agent import AutoAgent
from ._io.base import RESERVATION_TIMEOUT

__all__ = ["RESERVATION_TIMEOUT", "AutoAgent"]
