"""Run a stub gateway on a loopback port in a background thread (tests, examples, notebooks).

>>> with serve_in_thread() as gateway:                 # doctest: +SKIP
...     agent = AutoAgent(key, rpc_url=gateway.rpc_url)
...     agent.get(gateway.url + "/api/v1/premium/usdc")
"""

from __future__ import annotations

import threading
from typing import Any

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .app import Gateway, create_app

__all__ = ["GatewayServer", "serve_in_thread"]


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class GatewayServer:
    """A stub gateway served by a threaded WSGI server; stop it with :meth:`stop` or ``with``."""

    def __init__(
        self, app: Flask, *, host: str = "127.0.0.1", port: int = 0, quiet: bool = True
    ) -> None:
        self.app = app
        handler = _QuietHandler if quiet else WSGIRequestHandler
        self._server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=handler
        )
        # A short poll interval makes stop() take milliseconds instead of half a second.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="stub-gateway",
            daemon=True,
        )

    @property
    def gateway(self) -> Gateway:
        gateway: Gateway = self.app.extensions["stub_gateway"]
        return gateway

    @property
    def url(self) -> str:
        return f"http://{self._server.host}:{self._server.port}"

    @property
    def rpc_url(self) -> str:
        return f"{self.url}/rpc"

    def start(self) -> GatewayServer:
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (what ``python -m stub_gateway`` does)."""
        try:
            self._server.serve_forever()
        finally:
            self._server.server_close()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> GatewayServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve_in_thread(
    *, host: str = "127.0.0.1", port: int = 0, quiet: bool = True, **options: Any
) -> GatewayServer:
    """Start a gateway (``options`` go to :class:`Gateway`) on a free port; returns it running."""
    return GatewayServer(create_app(**options), host=host, port=port, quiet=quiet).start()
