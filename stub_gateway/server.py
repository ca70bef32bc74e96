"""Serve a stub gateway on waitress, a production WSGI server (tests, examples, the CLI).

>>> with serve_in_thread() as gateway:                 # doctest: +SKIP
...     agent = AutoAgent(key, rpc_url=gateway.rpc_url)
...     agent.get(gateway.url + "/api/v1/premium/usdc")

Connections are multiplexed by one event loop (``poll``, so thousands of idle sockets cost
no threads); requests run on a fixed pool of worker threads. A connection idle for
``idle_timeout`` seconds is closed, at most ``connection_limit`` are open at once (beyond it
the server stops accepting until some close), and a request body over ``max_body`` bytes is
refused with 413 from its ``Content-Length`` before a byte of it is read. Waitress's own
refusals (413, 431, a malformed request) are JSON, like the application's errors.
"""

from __future__ import annotations

import gc
import json
import logging
import socket
import sys
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import quote

from flask import Flask
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, WSGITask

from ._http import MAX_BODY, SOCKET_ENVIRON_KEY
from .app import create_app
from .faults import Faults
from .gateway import Gateway

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "GatewayServer",
    "freeze_after_full_collections",
    "raise_file_limit",
    "serve_in_thread",
]

DEFAULT_THREADS: Final = 16
DEFAULT_CONNECTION_LIMIT: Final = 10_000
DEFAULT_IDLE_TIMEOUT: Final = 30
MAX_HEADER_BYTES: Final = 65_536
_FD_HEADROOM: Final = 64

access_log = logging.getLogger("stub_gateway.access")


_MESSAGES: Final = {
    413: "the request body is over the gateway's limit of {limit} bytes",
    431: "the request headers are too large",
    500: "the server failed to answer this request",
}


class _JsonErrorTask(ErrorTask):  # type: ignore[misc]
    """Waitress's own refusals as the gateway's JSON errors (``{"error": {...}, "reason"}``)."""

    def execute(self) -> None:
        error = self.request.error
        reason = str(error.reason).lower().replace(" ", "_")
        message = _MESSAGES.get(error.code, "{body}").format(
            body=error.body, limit=self.channel.adj.max_request_body_size - 1
        )
        body = json.dumps({"error": {"reason": reason, "message": message}, "reason": reason})
        payload = body.encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(payload)
        self.write(payload)


class _SocketTask(WSGITask):  # type: ignore[misc]
    def get_environment(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().get_environment()
        environ[SOCKET_ENVIRON_KEY] = self.channel.socket
        return environ


class _Channel(HTTPChannel):  # type: ignore[misc]
    task_class = _SocketTask
    error_task_class = _JsonErrorTask


class _Server(TcpWSGIServer):  # type: ignore[misc]
    channel_class = _Channel


class GatewayServer:
    """A stub gateway served by waitress; stop it with :meth:`stop` or ``with``.

    ``threads`` workers answer requests; ``connection_limit`` connections may be open at once
    (lowered to what the process's file limit allows); ``idle_timeout`` seconds closes an idle
    connection; ``max_body`` bytes is the largest request body (default: the app's
    ``MAX_CONTENT_LENGTH``, which :func:`create_app` sets to :data:`._http.MAX_BODY`, 1 MiB).
    ``sock`` is a listening socket to accept on instead of ``host`` and ``port`` (worker
    processes share one); ``application`` is the WSGI callable to serve instead of ``app``
    itself (a worker's, which forwards what needs the ledger).
    """

    def __init__(
        self,
        app: Flask,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        quiet: bool = True,
        threads: int = DEFAULT_THREADS,
        connection_limit: int = DEFAULT_CONNECTION_LIMIT,
        idle_timeout: int = DEFAULT_IDLE_TIMEOUT,
        max_body: int | None = None,
        sock: socket.socket | None = None,
        application: WSGIApplication | None = None,
    ) -> None:
        if isinstance(port, bool) or not 0 <= port <= 65535:
            raise ValueError(f"port must be from 0 to 65535 (got {port})")
        for name, value in (
            ("threads", threads),
            ("connection_limit", connection_limit),
            ("idle_timeout", idle_timeout),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1 (got {value!r})")
        self.app = app
        limit = max_body or app.config.get("MAX_CONTENT_LENGTH") or MAX_BODY
        served: WSGIApplication = application or app
        if not quiet:
            served = _logged(served)
        listening: dict[str, Any] = {"host": host, "port": port}
        if sock is not None:  # a socket already listening, shared by worker processes
            listening = {
                "_sock": sock,
                "bind_socket": False,
                "sockinfo": (sock.family, sock.type, sock.proto, sock.getsockname()),
            }
        self._server = _Server(
            served,
            **listening,
            threads=threads,
            connection_limit=_within_file_limit(connection_limit),
            channel_timeout=idle_timeout,
            cleanup_interval=max(1, min(idle_timeout, 10)),
            # waitress refuses a body of max_request_body_size bytes or more.
            max_request_body_size=int(limit) + 1,
            max_request_header_size=MAX_HEADER_BYTES,
            asyncore_use_poll=True,  # select() cannot watch more than 1024 sockets
            ident="stub-gateway",
            expose_tracebacks=False,
            # A client that vanished mid-answer is the client's business, not an error here.
            log_socket_errors=False,
        )
        self._thread = threading.Thread(target=self._loop, name="stub-gateway", daemon=True)
        self._stopped = False
        self._closing = False
        self._closing_lock = threading.Lock()

    @property
    def gateway(self) -> Gateway:
        """The network this server serves: ledger, faucet, paywalls, tasks and faults."""
        gateway: Gateway = self.app.extensions["stub_gateway"]
        return gateway

    @property
    def faults(self) -> Faults:
        """The gateway's injected faults (``server.faults.slow_rpc(2.0)``); the same object
        as ``server.gateway.faults``."""
        return self.gateway.faults

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return str(self._server.effective_host)

    @property
    def port(self) -> int:
        """The port the server listens on (the one chosen when started with port 0)."""
        return int(self._server.effective_port)

    @property
    def url(self) -> str:
        """The server's base URL, ``http://host:port``."""
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address
        return f"http://{host}:{self.port}"

    @property
    def rpc_url(self) -> str:
        """The Solana JSON-RPC endpoint over the gateway's ledger (``SOLANA_RPC_URL``)."""
        return f"{self.url}/rpc"

    @property
    def open_connections(self) -> int:
        """Client connections open right now."""
        return len(self._server.active_channels)

    def start(self) -> GatewayServer:
        """Serve in a background thread; returns at once (the socket already listens)."""
        self._thread.start()
        return self

    def serve_forever(self, *, banner: bool = False) -> None:
        """Serve until interrupted (Ctrl-C, or SystemExit from a signal handler), then stop.

        ``banner=True`` first writes :meth:`banner` to standard output, as the CLI does.
        """
        if banner:
            sys.stdout.write(self.banner() + "\n")
            sys.stdout.flush()
        self.start()
        try:
            while self._thread.is_alive():
                self._thread.join(timeout=1.0)
        finally:
            self.stop(grace=5.0)

    def stop(self, grace: float = 1.0) -> None:
        """Stop accepting, let running requests finish (up to ``grace`` s), close everything."""
        if self._stopped:
            return
        self._stopped = True
        server = self._server
        if not self._thread.is_alive():
            server.task_dispatcher.shutdown(timeout=grace)
            wasyncore.close_all(server._map)
            return
        # The event loop owns the sockets: closing them happens on its thread.
        server.trigger.pull_trigger(lambda: wasyncore.dispatcher.close(server))
        server.task_dispatcher.shutdown(timeout=grace)
        with self._closing_lock:
            # Under the lock the loop cannot see _closing (and close the trigger) before the
            # trigger is pulled: a pull on a closed, maybe reused, descriptor is never made.
            self._closing = True
            server.trigger.pull_trigger()
        self._thread.join(timeout=5)

    def banner(self) -> str:
        """What the gateway serves, one line per route group (what the CLI prints)."""
        return banner(self)

    def _loop(self) -> None:
        """waitress's event loop (``wasyncore.loop`` with poll), until :meth:`stop` closes it."""
        socket_map = self._server._map
        timeout = self._server.adj.asyncore_loop_timeout
        while socket_map:
            with self._closing_lock:
                if self._closing:
                    break
            wasyncore.poll2(timeout, socket_map)
        wasyncore.close_all(socket_map)

    def __enter__(self) -> GatewayServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class Served(Protocol):
    """What the banner describes: a gateway served at a URL."""

    @property
    def gateway(self) -> Gateway: ...
    @property
    def url(self) -> str: ...
    @property
    def rpc_url(self) -> str: ...


def banner(server: Served) -> str:
    """The CLI's banner: the addresses, the chain's genesis hash and every route group."""
    gateway, url = server.gateway, server.url
    policy = gateway.tasks.policy
    reviewers = policy.kind if policy.kind != "script" else "script:" + ",".join(policy.script)
    faucet_body = '{"address": "<wallet>", "sol": 1, "usdc": 100}'
    lines = [
        f"stub HumanRPC gateway on {url} ({gateway.network})",
        f"  genesis hash {gateway.genesis_hash}  (a local chain of its own, not {gateway.network})",
        f"  Solana RPC   {server.rpc_url}",
        f"  treasury     {gateway.treasury}",
        *(
            f"  {token.symbol:<12} {token.mint} ({token.decimals} decimals)"
            for token in gateway.genesis.tokens.values()
        ),
        f"  info         {url}/api/v1/info",
        f"  faucet       curl -X POST {url}/api/v1/faucet \\",
        f"                 -H 'Content-Type: application/json' -d '{faucet_body}'",
        f"  premium      {url}/api/v1/premium/{{{','.join(gateway.prices)}}}  (HumanRPC 402)",
        f"  x402         {url}/x402/v1/premium  {url}/x402/v2/premium",
        f"  sign-in      {url}/x402/v2/members  (x402 v2, paid once, then sign-in-with-x)",
        f"  facilitator  {url}/facilitator/{{supported,verify,settle}}",
        f"  tasks        {url}/api/v1/tasks  (reviewers: {reviewers})",
        f"  faults       {url}/api/v1/faults  (GET lists the modes and their parameters)",
        f"  console      {url}/review  {url}/payments  (pages for people; index at {url}/)",
        f"  try          curl -i {url}/api/v1/premium/usdc",
    ]
    return "\n".join(lines)


def serve_in_thread(
    *, host: str = "127.0.0.1", port: int = 0, quiet: bool = True, **options: Any
) -> GatewayServer:
    """Start a gateway (``options`` go to :class:`Gateway`) on a free port; returns it running."""
    return GatewayServer(create_app(**options), host=host, port=port, quiet=quiet).start()


def _within_file_limit(connection_limit: int) -> int:
    """No more connections than open files allow: past that, accept() fails in a busy loop."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return connection_limit
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return connection_limit
    return max(1, min(connection_limit, soft - _FD_HEADROOM))


def raise_file_limit(connections: int = DEFAULT_CONNECTION_LIMIT) -> None:
    """Let this process open enough files for ``connections`` (up to the hard limit), as
    servers do at start-up; the CLI calls it, a library caller may."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + _FD_HEADROOM
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def freeze_after_full_collections() -> None:
    """After each full garbage collection, freeze what survived it (:func:`gc.freeze`).

    The ledger keeps every transaction, invoice and settlement, so without this each full
    collection walks the whole history again: its pause grows with the traffic served (about
    50 ms after 5,000 payments, 75 ms after 10,000, landing on whichever requests run then).
    Frozen, a full collection walks only what is newer than the last one. The cost: a
    reference cycle that was alive when frozen is never collected (freed by reference
    counting, as nearly everything is, it still goes). The command line calls this; a
    library caller may.
    """
    if _freeze not in gc.callbacks:
        gc.callbacks.append(_freeze)


def _freeze(phase: str, info: dict[str, int]) -> None:
    if phase == "stop" and info.get("generation") == 2:
        gc.freeze()


def _logged(app: WSGIApplication) -> WSGIApplication:
    """Log one plain line per request (no colours; the path escaped, so logs stay text)."""

    def logged(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            path = quote(environ.get("PATH_INFO", ""), safe="/:@!$&'()*+,;=-._~")
            access_log.info(
                '%s "%s %s %s" %s',
                environ.get("REMOTE_ADDR", "-"),
                quote(environ.get("REQUEST_METHOD", ""), safe=""),
                path,
                environ.get("SERVER_PROTOCOL", ""),
                status.split(" ", 1)[0],
            )
            return start_response(status, headers, exc_info)

        return app(environ, start)

    return logged
