"""``requests``' environment settings, worked out once per origin rather than on every call.

``Session.request`` calls ``merge_environment_settings`` each time: it reads the proxies from
the environment (a walk of every variable), decides whether the host bypasses them, and looks
up the CA bundle variables, then merges the session's defaults. For one agent talking to the
same few origins the answer does not change unless the environment does, so
:class:`EnvironmentSettings` remembers it per origin and per the arguments and settings it
depends on, the environment variables that decide it included: a proxy set (or removed) in
the environment later is honoured at the next call. Not watched: a ``*_proxy`` variable named
in mixed case (``Https_Proxy``), and on macOS or Windows a change to the system's proxy
configuration, after the origin was first used.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import requests

__all__ = ["EnvironmentSettings"]

_VARIABLES: Final = (
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
    "REQUEST_METHOD",  # under CGI, urllib ignores HTTP_PROXY
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)
"""The environment variables ``merge_environment_settings`` reads for an http(s) URL."""
_ORIGINS: Final = 256


class EnvironmentSettings:
    """``session.merge_environment_settings``, remembered (see the module)."""

    def __init__(self, session: requests.Session) -> None:
        self.session = session
        self.computed = 0
        """How many times the settings were worked out (not found remembered)."""
        self._known: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def __call__(
        self,
        url: str | None,
        proxies: Mapping[str, str] | None = None,
        stream: bool | None = None,
        verify: Any = None,
        cert: Any = None,
    ) -> dict[str, Any]:
        """What ``merge_environment_settings(url, proxies, stream, verify, cert)`` returns (a
        fresh dict each time); ``proxies`` is not changed."""
        try:
            key = self._key(url or "", proxies or {}, stream, verify, cert)
            settings = self._known.get(key)
        except TypeError:  # an unhashable verify or cert: work it out each time
            return self._compute(url, proxies, stream, verify, cert)
        if settings is None:
            settings = self._compute(url, proxies, stream, verify, cert)
            with self._lock:
                if len(self._known) >= _ORIGINS:
                    self._known.clear()
                self._known[key] = settings
        return {**settings, "proxies": dict(settings["proxies"])}

    def _key(
        self, url: str, proxies: Mapping[str, str], stream: Any, verify: Any, cert: Any
    ) -> tuple[Any, ...]:
        session = self.session
        parts = urlsplit(url)
        environment = tuple(map(os.environ.get, _VARIABLES)) if session.trust_env else None
        return (
            parts.scheme,
            parts.netloc,
            tuple(sorted(proxies.items())),
            stream,
            verify,
            cert,
            session.trust_env,
            tuple(sorted(session.proxies.items())),
            session.stream,
            session.verify,
            session.cert,
            environment,
        )

    def _compute(
        self,
        url: str | None,
        proxies: Mapping[str, str] | None,
        stream: bool | None,
        verify: Any,
        cert: Any,
    ) -> dict[str, Any]:
        self.computed += 1
        return dict(
            self.session.merge_environment_settings(url, dict(proxies or {}), stream, verify, cert)
        )
