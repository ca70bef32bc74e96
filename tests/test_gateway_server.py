"""The gateway is served like a production server: a bounded worker pool, idle connections
closed, request bodies limited by size, clean shutdown.

Each test builds its own server: they hold thousands of sockets or stop the server.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from flask import Response, jsonify

from stub_gateway import GatewayServer, create_app, serve_in_thread

log = logging.getLogger(__name__)

IDLE_CONNECTIONS = 2000
# Each idle connection costs two descriptors here (client and server end) plus the gateway's.
FILES_NEEDED = 2 * IDLE_CONNECTIONS + 512


@pytest.fixture
def file_limit() -> Iterator[None]:
    """Enough open files for both ends of every idle connection (restored afterwards)."""
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < FILES_NEEDED:
        if hard != resource.RLIM_INFINITY and hard < FILES_NEEDED:
            pytest.skip(f"needs {FILES_NEEDED} open files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (FILES_NEEDED, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``seconds`` pass (the server's own threads act)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.02)  # a short pause while the server works
    return True


def timed_info(server: GatewayServer) -> float:
    """GET /api/v1/info with a client timeout of a few seconds; the latency in seconds."""
    started = time.perf_counter()
    response = requests.get(f"{server.url}/api/v1/info", timeout=5)
    latency = time.perf_counter() - started
    assert response.status_code == 200
    assert response.json()["network"] == "devnet"
    return latency


def open_idle(server: GatewayServer, count: int, stack: contextlib.ExitStack) -> None:
    """``count`` connections that send nothing, or half a request, and then wait."""
    deadline = time.monotonic() + 60
    for index in range(count):
        assert time.monotonic() < deadline, f"opening idle connections took over 60 s ({index})"
        connection = stack.enter_context(
            socket.create_connection((server.host, server.port), timeout=5)
        )
        if index % 2:
            connection.sendall(b"GET /api/v1/info HTTP/1.1\r\nHost: x\r\n")  # never finished


def test_2000_idle_connections_do_not_keep_a_request_waiting(
    file_limit: None, record_property: Callable[[str, object], None]
) -> None:
    """2,000 idle or half-sent connections: a request is answered while they are open and
    after they all close at once, and the server holds no thread per connection."""
    with serve_in_thread() as server:
        threads_before = threading.active_count()
        with contextlib.ExitStack() as idle:
            open_idle(server, IDLE_CONNECTIONS, idle)
            assert wait_until(lambda: server.open_connections >= IDLE_CONNECTIONS)
            during = timed_info(server)
            assert threading.active_count() <= threads_before + 2
        after = timed_info(server)
        assert wait_until(lambda: server.open_connections <= 1)
        again = timed_info(server)
    log.info("latency with %d idle connections: %.3f s", IDLE_CONNECTIONS, during)
    log.info("latency as they closed: %.3f s, then %.3f s", after, again)
    record_property("latency_during_s", round(during, 3))
    record_property("latency_after_s", round(after, 3))


def test_an_idle_connection_is_closed_after_the_idle_timeout() -> None:
    """A connection that sends nothing, or half a request, is closed by the server."""
    server = GatewayServer(create_app(), idle_timeout=1).start()
    try:
        with (
            socket.create_connection((server.host, server.port), timeout=10) as silent,
            socket.create_connection((server.host, server.port), timeout=10) as half,
        ):
            half.sendall(b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            assert silent.recv(1) == b""  # closed by the server, well before our 10 s timeout
            assert half.recv(1) == b""
        assert wait_until(lambda: server.open_connections == 0)
    finally:
        server.stop()


def test_the_worker_pool_is_bounded() -> None:
    """More slow requests than workers: no thread is added; the extra ones wait their turn."""
    release = threading.Event()
    app = create_app()

    @app.get("/block")
    def block() -> Response:
        release.wait(10)
        return jsonify({"done": True})

    server = GatewayServer(app, threads=2).start()
    before = threading.active_count()
    answers: list[int] = []

    def call() -> None:
        answers.append(requests.get(f"{server.url}/block", timeout=15).status_code)

    callers = [threading.Thread(target=call) for _ in range(5)]
    try:
        for caller in callers:
            caller.start()
        assert wait_until(lambda: server.open_connections == 5)
        assert threading.active_count() <= before + 5  # the 5 callers; the server added none
    finally:
        release.set()
        for caller in callers:
            caller.join(15)
        server.stop()
    assert answers == [200] * 5


def raw_post(server: GatewayServer, path: str, head: bytes, body: bytes = b"") -> bytes:
    """Send a request's head (and maybe part of its body); the whole answer the server sent."""
    with socket.create_connection((server.host, server.port), timeout=5) as connection:
        connection.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\n".encode() + head + body)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
        return answer


def test_a_body_over_the_limit_is_refused_before_it_is_read() -> None:
    """Content-Length over the limit: 413 JSON at once, from the head alone; at the limit the
    request is read and answered by the application."""
    server = GatewayServer(create_app(), max_body=1000).start()
    try:
        head = b"Content-Type: application/json\r\nContent-Length: 1001\r\n\r\n"
        answer = raw_post(server, "/api/v1/faucet", head)  # no byte of the body sent
        assert answer.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n"), answer
        assert b"Content-Type: application/json" in answer
        assert b'"reason": "request_entity_too_large"' in answer
        assert b"limit of 1000 bytes" in answer
        body = b'{"address": "' + b"x" * 985 + b'"}'
        fits = requests.post(
            f"{server.url}/api/v1/faucet",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=5,
        )
        assert len(body) == 1000
        assert fits.status_code == 400
        assert fits.json()["reason"] == "bad_address"
    finally:
        server.stop()


def test_a_chunked_body_over_the_limit_is_refused() -> None:
    """A chunked body that grows past the limit: 413 JSON, the rest never read."""
    server = GatewayServer(create_app(), max_body=1000).start()
    try:
        head = b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        chunk = b"800\r\n" + b"[" * 0x800 + b"\r\n"
        answer = raw_post(server, "/rpc", head, chunk)
        assert answer.startswith(b"HTTP/1.1 413"), answer
        assert b'"reason": "request_entity_too_large"' in answer
    finally:
        server.stop()


def test_a_malformed_request_is_answered_with_a_json_error() -> None:
    """A request the HTTP parser refuses gets the gateway's JSON error shape too."""
    server = serve_in_thread()
    try:
        answer = raw_post(server, "/rpc", b"Content-Length: nope\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400"), answer
        assert b"Content-Type: application/json" in answer
        assert b'"reason": "bad_request"' in answer
    finally:
        server.stop()


def test_stop_lets_a_running_request_finish_then_refuses_connections() -> None:
    """stop() while a request runs: that request is answered; then nothing listens."""
    started, release = threading.Event(), threading.Event()
    app = create_app()

    @app.get("/slow")
    def slow() -> Response:
        started.set()
        release.wait(10)
        return jsonify({"finished": True})

    server = GatewayServer(app).start()
    answers: list[requests.Response] = []
    caller = threading.Thread(
        target=lambda: answers.append(requests.get(f"{server.url}/slow", timeout=15))
    )
    caller.start()
    assert started.wait(10)
    stopper = threading.Thread(target=server.stop, kwargs={"grace": 10})
    stopper.start()
    release.set()
    stopper.join(15)
    caller.join(15)
    assert [a.json() for a in answers] == [{"finished": True}]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/api/v1/info", timeout=5)


def test_serve_forever_can_print_the_banner(capsys: pytest.CaptureFixture[str]) -> None:
    """serve_forever(banner=True) prints what the CLI prints, then serves until stopped."""
    server = GatewayServer(create_app())
    serving = threading.Thread(target=server.serve_forever, kwargs={"banner": True})
    serving.start()
    try:
        assert wait_until(lambda: _answers(server))
    finally:
        server.stop()
        serving.join(10)
    assert not serving.is_alive()
    assert capsys.readouterr().out == server.banner() + "\n"


def test_the_banner_names_every_route_group_and_the_genesis_hash() -> None:
    """The banner: the chain's genesis hash and a line for each route group."""
    with serve_in_thread() as server:
        banner = server.banner()
    lines = banner.splitlines()
    assert lines[0] == f"stub HumanRPC gateway on {server.url} (devnet)"
    assert server.gateway.genesis_hash in lines[1]
    named = {line.split()[0] for line in lines[1:] if line.startswith("  ") and line[2] != " "}
    assert named >= {"genesis", "Solana", "info", "faucet", "premium", "x402", "facilitator"}
    assert named >= {"tasks", "faults", "try"}


def test_a_port_out_of_range_is_refused() -> None:
    """GatewayServer(port=99999): ValueError, nothing listens."""
    with pytest.raises(ValueError, match="port must be from 0 to 65535"):
        GatewayServer(create_app(), port=99999)


def test_a_logged_request_is_one_plain_line(caplog: pytest.LogCaptureFixture) -> None:
    """quiet=False logs method, escaped path and status; no control characters."""
    server = GatewayServer(create_app(), quiet=False).start()
    try:
        with caplog.at_level(logging.INFO, logger="stub_gateway.access"):
            requests.get(f"{server.url}/%1b[31m", timeout=5)
            requests.get(f"{server.url}/api/v1/premium/sol", timeout=5)
    finally:
        server.stop()
    lines = [r.getMessage() for r in caplog.records if r.name == "stub_gateway.access"]
    assert lines == [
        '127.0.0.1 "GET /%1B%5B31m HTTP/1.1" 404',
        '127.0.0.1 "GET /api/v1/premium/sol HTTP/1.1" 402',
    ]


def test_start_and_stop_leave_no_thread_or_socket_behind() -> None:
    """Many gateways started and stopped, with keep-alive connections open: each stop is
    clean, and no thread or file descriptor lingers."""
    before = threading.active_count()
    files = Path("/proc/self/fd")
    files_before = len(list(files.iterdir())) if files.exists() else 0
    for _ in range(20):
        with serve_in_thread() as server, requests.Session() as session:
            timed_info(server)
            assert session.get(f"{server.url}/api/v1/info", timeout=5).status_code == 200
    assert wait_until(lambda: threading.active_count() == before)
    if files.exists():
        assert len(list(files.iterdir())) <= files_before


def _answers(server: GatewayServer) -> bool:
    with contextlib.suppress(requests.RequestException):
        return requests.get(f"{server.url}/api/v1/info", timeout=1).status_code == 200
    return False


def test_the_command_line_freezes_what_survives_a_full_collection() -> None:
    """After freeze_after_full_collections, a full collection leaves its survivors frozen."""
    code = (
        "import gc; from stub_gateway.server import freeze_after_full_collections as f; "
        "f(); f(); kept = [[i] for i in range(1000)]; gc.collect(); "
        "print(gc.get_freeze_count() >= 1000, gc.callbacks.count(gc.callbacks[-1]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["True", "1"]
