"""A TCP proxy for tests that can cut the line: once told to, the first answer coming back
from upstream is dropped (the client's connection closed), and the proxy stops listening, so
every later connection is refused. The upstream server has received the whole request and
acted on it (a payment settled) by the time its answer is cut.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Self

__all__ = ["CutProxy"]


class CutProxy:
    """Forwards ``127.0.0.1:<port>`` to ``upstream`` (host, port) until :meth:`cut_next_answer`
    takes effect."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.cutting = threading.Event()
        self.cut = threading.Event()
        """Set once an answer was cut and the proxy stopped listening."""
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def cut_next_answer(self) -> None:
        self.cutting.set()

    def stop(self) -> None:
        self._stop_listening()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def _stop_listening(self) -> None:
        """Refuse new connections now (shutdown wakes the thread blocked in accept)."""
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, answers: bool) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if answers and data and self.cutting.is_set() and not self.cut.is_set():
                self._cut(target)
                return
            if not data:
                with contextlib.suppress(OSError):
                    target.shutdown(socket.SHUT_WR)
                return
            try:
                target.sendall(data)
            except OSError:
                return

    def _cut(self, client: socket.socket) -> None:
        """Stop listening, then hang up on ``client`` (no answer reaches it)."""
        self._stop_listening()
        self.cut.set()  # before the client can notice, and the test look
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_RDWR)
