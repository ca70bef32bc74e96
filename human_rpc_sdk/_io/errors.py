"""The connection errors of the first, unpaid request: SDK errors that are also the
``requests`` exception raised (see :mod:`human_rpc_sdk.exceptions`, which exports them; kept
here so that importing the exceptions does not import ``requests``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import requests

from .._reasons import Reason
from ..exceptions import HumanRPCError, _rebuild

__all__ = [
    "ConnectTimeoutError",
    "ConnectionFailedError",
    "ProxyConnectionError",
    "SSLConnectionError",
]


class ConnectionFailedError(HumanRPCError, requests.ConnectionError):
    """The request could not reach the server (refused, no such host, TLS, proxy). Nothing was
    paid: this was the first, unpaid request.

    It is also the ``requests`` exception it wraps (``__cause__``): ``except
    requests.ConnectionError`` still catches it, and ``request`` is requests' own attribute.
    ``url`` is the URL that could not be reached.
    """

    default_reason: ClassVar[Reason] = "connection_failed"

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        request: requests.PreparedRequest | None = None,
        reason: Reason | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, details=details)
        self.url = url
        self.request = request
        self.response = None

    def __reduce__(self) -> tuple[Any, ...]:
        # The prepared request may hold an unpicklable body (a file, a generator): left out.
        state = {**self.__dict__, "request": None}
        return (_rebuild, (type(self), self.message), state)


class ConnectTimeoutError(ConnectionFailedError, requests.ConnectTimeout):
    """Connecting took longer than the timeout: also a ``requests.ConnectTimeout``."""

    default_reason: ClassVar[Reason] = "connect_timeout"


class SSLConnectionError(ConnectionFailedError, requests.exceptions.SSLError):
    """The TLS handshake failed (a certificate, say): also a ``requests`` ``SSLError``."""

    default_reason: ClassVar[Reason] = "tls_failed"


class ProxyConnectionError(ConnectionFailedError, requests.exceptions.ProxyError):
    """The proxy could not be reached or refused: also a ``requests`` ``ProxyError``."""

    default_reason: ClassVar[Reason] = "proxy_failed"


_ERRORS = (ConnectionFailedError, ConnectTimeoutError, SSLConnectionError, ProxyConnectionError)
for _error in _ERRORS:
    _error.__module__ = "human_rpc_sdk.exceptions"  # where they are documented and exported
