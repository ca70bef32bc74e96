"""A loopback HTTP proxy in front of one server, for paid-request faults (test helper).

It forwards every request to ``upstream`` (same path and query) and relays the answer, except
that it can *drop* the answers to paid requests (those carrying ``PAYMENT-SIGNATURE``): it
forwards them, so the server settles and answers, then closes the connection without relaying
anything (the client sees no answer); or *swallow* them (neither forwarded nor answered).
``hold`` makes it keep such a connection open instead, after setting ``held``, until
``release`` is set (a client killed meanwhile never learns the answer). Every paid request's
payment header is recorded in ``payments``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

_HOP: frozenset[str] = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}
)


class PaidProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream.rstrip("/")
        self.drop = 0
        """How many more paid answers to drop."""
        self.swallow = 0
        """How many more paid requests to swallow: neither forwarded nor answered."""
        self.hold = False
        self.held = threading.Event()
        self.release = threading.Event()
        self.payments: list[str] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def take_drop(self) -> bool:
        with self.lock:
            if self.drop > 0:
                self.drop -= 1
                return True
            return False

    def take_swallow(self) -> bool:
        with self.lock:
            if self.swallow > 0:
                self.swallow -= 1
                return True
            return False


class _Handler(BaseHTTPRequestHandler):
    server: PaidProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def _forward(self) -> None:
        proxy = self.server
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", *_HOP)}
        payment = self.headers.get("PAYMENT-SIGNATURE")
        if payment is not None:
            with proxy.lock:
                proxy.payments.append(payment)
            if proxy.take_swallow():
                self.close_connection = True  # it never reaches the server
                return
        answer = requests.request(
            self.command, proxy.upstream + self.path, headers=headers, data=body, timeout=60
        )
        if payment is not None and proxy.hold:
            proxy.held.set()
            proxy.release.wait(120)
            self.close_connection = True
            return
        if payment is not None and proxy.take_drop():
            self.close_connection = True  # the server answered; the client never hears it
            return
        self.send_response(answer.status_code)
        for name, value in answer.headers.items():
            if name.lower() not in _HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)


@contextmanager
def paid_proxy(upstream: str) -> Iterator[PaidProxy]:
    proxy = PaidProxy(upstream)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.release.set()
        proxy.shutdown()
        proxy.server_close()
        thread.join()
