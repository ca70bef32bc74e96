"""The gateway over several processes (``python -m stub_gateway --workers N``).

One process keeps the ledger and every piece of state: the LiteSVM ledger, the invoices, the
x402 duplicate check, the paid answers kept for re-sends, the faults and the tasks (the
:class:`.gateway.Gateway` the single-process gateway serves). ``N`` worker processes do the
HTTP work: each runs waitress on the one listening socket they share, and the same Flask app
over a :class:`RemoteGateway`, which does on the worker all that needs no state and asks the
ledger process for the rest, over Unix sockets (a pool per worker, one thread each here):

* the paid routes (``/api/v1/premium/<name>``, ``/x402/v1|v2/premium``) run on the worker:
  HTTP, Flask, making invoices, decoding the payment, checking its signatures and
  instructions, the x402 rules and the fee payer's co-signature. The ledger process
  registers each invoice (:meth:`.payments.PaymentDesk.register`), judges and settles each
  payment (:meth:`.payments.PaymentDesk.conclude`, :meth:`.x402.ExactFacilitator.conclude`:
  the invoice or duplicate checks, the simulation and the commit, under its locks, exactly
  as in one process; an x402 payment id is claimed and bound there, in the same call) and
  keeps the answer for re-sends (:meth:`.replies.PaidReplies.turn`,
  taken with the settlement's call, and ``land``, not waited for): one call per 402, one
  call and one message per paid request;
* every other request (JSON-RPC, the faucet, info, tasks, faults, the facilitator API, and
  ``/x402/v2/members``, whose sign-in state, the payers, spent nonces and key, lives there)
  is forwarded whole to the ledger process, which answers it with the single-process app.

Faults are armed in the ledger process; workers read one shared byte saying whether any is
armed, and ask for a fault only then. The one difference from a single process: the
``drop_after_payment`` fault drops the connection of a paid route, but not of a paid task
(forwarded: the ledger process holds no client socket), which gets its answer instead.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import logging
import mmap
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Final, cast

from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from ._http import EXTENSION
from .faults import Fault, Faults
from .gateway import Gateway
from .genesis import Genesis
from .instructions import Payment, Unacceptable, check_signatures
from .ledger import Execution, Ledger
from .payments import Invoice, PaymentDesk, Price, Refusal, Settlement
from .replies import Claim, PaidReplies, PaymentIds, Serving, Turn, _failed, _Reply
from .x402 import ExactFacilitator, IdClaim, Outcome, Verification

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from flask import Flask, Response

__all__ = ["LedgerHost", "Link", "NotLeading", "RemoteGateway", "WorkersServer"]

log = logging.getLogger(__name__)

Headers = list[tuple[str, str]]

_NOT_LEADING: Final = "not leading"
_PAID_PATHS: Final = frozenset({"/x402/v1/premium", "/x402/v2/premium"})
_PREMIUM_PREFIX: Final = "/api/v1/premium/"


@dataclass(frozen=True)
class GatewayParts:
    """What a worker needs to know of the gateway: its constants (no state)."""

    network: str
    genesis: Genesis
    genesis_hash: str
    prices: dict[str, Price]
    task_price: Price
    x402_price: Price
    invoice_ttl: float
    reference_style: str
    payment_id_required: bool = False


# -- the ledger process ---------------------------------------------------------------------


class LedgerHost:
    """Serves the gateway's state to worker processes over a Unix socket in ``directory``.

    Every connection (a worker keeps a pool of them) gets a thread here, so a call that
    waits (a re-send joining its first copy, a slow fault) holds up only its connection.
    """

    def __init__(self, app: Flask, directory: Path) -> None:
        self.app = app
        self.gateway: Gateway = app.extensions[EXTENSION]
        self.address = str(directory / "ledger.sock")
        self.authkey = secrets.token_bytes(32)
        self.flag_path = directory / "faults"
        self.flag_path.write_bytes(b"\0")
        self._flag_file = self.flag_path.open("r+b")
        self._flag = mmap.mmap(self._flag_file.fileno(), 1)
        self._listener = Listener(self.address, "AF_UNIX", authkey=self.authkey)
        self._closed = False
        self.gateway.faults.watchers.append(self._faults_changed)
        self._faults_changed(bool(self.gateway.faults.armed()))
        desk, facilitator, replies = (
            self.gateway.desk,
            self.gateway.facilitator,
            self.gateway.replies,
        )
        self._operations: dict[str, Callable[..., Any]] = {
            "hello": self._parts,
            "http": self._http,
            "register": lambda invoice: desk.register(invoice) and None,
            "conclude": lambda *args: _bare(desk.conclude(*args)),
            "execute": lambda *args: _bare(desk.execute(*args)),
            "x402": lambda *args: _bare_outcome(facilitator.conclude(*args)),
            "land": replies.land,
            "take": self.gateway.faults.take,
            "claim_id": self.gateway.payment_ids.claim,
            "id_conflicts": self.gateway.payment_ids.conflicts,
            "confirm_id": self.gateway.payment_ids.confirm,
            "release_id": self.gateway.payment_ids.release,
        }
        self._leaders: dict[str, Connection] = {}
        """The paid requests being served, and the connection whose call took each turn."""
        self._leaders_lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="ledger-host", daemon=True)

    def start(self) -> LedgerHost:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        self._flag.close()
        self._flag_file.close()

    def _faults_changed(self, armed: bool) -> None:
        if not self._flag.closed:
            self._flag[0] = 1 if armed else 0

    def _accept(self) -> None:
        while not self._closed:
            try:
                connection = self._listener.accept()
            except (OSError, EOFError):
                if self._closed:
                    return
                log.warning("a worker failed to connect to the ledger process", exc_info=True)
                continue
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: Connection) -> None:
        try:
            with connection:
                self._answer(connection)
        finally:
            with self._leaders_lock:
                led = [k for k, c in self._leaders.items() if c is connection]
                for key in led:
                    del self._leaders[key]
            self._abandon(led)

    def _answer(self, connection: Connection) -> None:
        """Answer one connection's calls, in order, until the worker hangs up."""
        replies = self.gateway.replies
        while True:
            try:
                operation, args, kwargs, answered, turn_for = connection.recv()
            except (EOFError, OSError):
                return
            if turn_for is not None:
                # The call carries a paid request's turn (RemoteReplies.serving): the
                # operation runs only for the copy that leads.
                turn = replies.turn(turn_for)
                if turn[0] != "lead":
                    connection.send((_NOT_LEADING, turn))
                    continue
                with self._leaders_lock:
                    self._leaders[turn_for] = connection
            if operation == "land":
                with self._leaders_lock:
                    self._leaders.pop(args[0], None)
            try:
                answer: tuple[bool, Any] = (True, self._operations[operation](*args, **kwargs))
            except Exception as exc:  # raised again in the worker (or logged here)
                if not answered:
                    log.exception("the ledger process failed to %s for a worker", operation)
                answer = (False, exc)
            if answered:
                connection.send(answer)

    def _abandon(self, led: list[str]) -> None:
        """A connection hung up (its worker died?) while leading these paid requests:
        land each as failed, so copies waiting for it get a 500 and later ones are judged
        afresh (as when a view fails after settling in one process), not a 503 forever."""
        if not led:
            return
        log.error("a worker left %d paid request(s) unanswered; they fail", len(led))
        with self.app.app_context():
            failure = _Reply.of(0.0, _failed())
        for key in led:
            self.gateway.replies.land(key, failure, keep=False)

    def _parts(self) -> GatewayParts:
        gateway, desk = self.gateway, self.gateway.desk
        return GatewayParts(
            network=gateway.network,
            genesis=gateway.genesis,
            genesis_hash=gateway.genesis_hash,
            prices=dict(gateway.prices),
            task_price=gateway.task_price,
            x402_price=gateway.x402_price,
            invoice_ttl=desk.invoice_ttl,
            reference_style=desk.reference_style,
            payment_id_required=gateway.payment_id_required,
        )

    def _http(self, environ: dict[str, str], body: bytes) -> tuple[str, Headers, bytes]:
        """Answer a forwarded request with the single-process app."""
        full: dict[str, Any] = {
            **environ,
            "wsgi.version": (1, 0),
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        started: list[tuple[str, Headers]] = []
        chunks: list[bytes] = []

        def start_response(status: str, headers: Headers, exc_info: Any = None) -> Any:
            started[:] = [(status, list(headers))]
            return chunks.append

        result = self.app(full, start_response)
        try:
            chunks.extend(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = started[0]
        return status, headers, b"".join(chunks)


def _bare(outcome: Settlement | Refusal) -> Settlement | Refusal:
    """A settlement as a worker needs it: its execution summed up (no accounts, no logs)."""
    if isinstance(outcome, Refusal):
        return outcome
    done = outcome.execution
    summary = Execution(done.signature, done.err, [], done.units, done.slot, done.fee)
    return Settlement(outcome.signature, outcome.payer, outcome.invoice, summary)


def _bare_outcome(outcome: Outcome) -> Outcome:
    """An x402 outcome as a worker needs it: without the co-signed transaction it sent."""
    verification = outcome.verification
    if verification is None or verification.transaction is None:
        return outcome
    return Outcome(dataclasses.replace(verification, transaction=None), outcome.settlement)


# -- a worker process -----------------------------------------------------------------------


class NotLeading(Exception):
    """Another copy of this paid request leads (or led) it: give ``turn``'s answer."""

    def __init__(self, turn: tuple[Turn, _Reply | None]) -> None:
        super().__init__("another copy of this paid request is served")
        self.turn = turn


class Link:
    """Calls to the ledger process over a pool of connections (one per call at a time).

    The pool is last in, first out: at low concurrency the worker's calls keep to one
    connection, so the ledger process keeps answering on one warm thread; under load it
    grows to one connection per busy worker thread.

    A paid request's turn (:meth:`.replies.PaidReplies.turn`) is not a call of its own: it
    rides on the next call of the thread (:meth:`defer_turn`), the settlement, so a paid
    request costs the ledger process one call less."""

    def __init__(self, address: str, authkey: bytes) -> None:
        self._address = address
        self._authkey = authkey
        self._local = threading.local()
        self._idle: list[Connection] = []
        self._idle_lock = threading.Lock()

    def call(self, operation: str, *args: Any, **kwargs: Any) -> Any:
        """``operation`` done by the ledger process; its answer (or its exception, raised)."""
        turn_for: str | None = self._local.__dict__.pop("turn_for", None)
        with self._connection() as connection:
            connection.send((operation, args, kwargs, True, turn_for))
            ok, value = connection.recv()
        if ok == _NOT_LEADING:
            raise NotLeading(value)
        if turn_for is not None:
            self._local.leading = turn_for
        if not ok:
            raise value
        return value

    def tell(self, operation: str, *args: Any, **kwargs: Any) -> None:
        """``operation`` for the ledger process, not waiting for it."""
        with self._connection() as connection:
            connection.send((operation, args, kwargs, False, None))

    def defer_turn(self, key: str) -> None:
        """Take the turn of paid request ``key`` with this thread's next call."""
        self._local.turn_for = key
        self._local.leading = None

    def led(self, key: str) -> bool:
        """Whether this thread took the turn of ``key`` and leads it (forgets both)."""
        self._local.__dict__.pop("turn_for", None)
        leading: str | None = self._local.__dict__.pop("leading", None)
        return leading == key

    def close(self) -> None:
        """Hang up every idle connection (the ledger process forgets what they led)."""
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Connection]:
        with self._idle_lock:
            connection = self._idle.pop() if self._idle else None
        if connection is None:
            connection = Client(self._address, "AF_UNIX", authkey=self._authkey)
        try:
            yield connection
        except BaseException:
            connection.close()  # half a call on it: no one else may use it
            raise
        with self._idle_lock:
            self._idle.append(connection)


class RemoteFaults(Faults):
    """The ledger process's faults, asked for only while one is armed (a shared byte says)."""

    def __init__(self, link: Link, flag: mmap.mmap) -> None:
        super().__init__()
        self._link = link
        self._flag = flag

    def take(self, mode: str) -> Fault | None:
        if not self._flag[0]:
            return None
        fault: Fault | None = self._link.call("take", mode)
        return fault


class RemoteReplies(PaidReplies):
    """The paid answers kept by the ledger process (so a re-send may reach any worker).

    The turn is taken with the settlement's call (:meth:`Link.defer_turn`): all the checks
    that need no state run first, then the ledger process takes the turn and, for the copy
    that leads, settles. A copy that does not lead gets its answer then (:class:`NotLeading`
    ends the paywall's block here). The checks are the same for every copy of one request
    (same payment, same request), so each copy is answered as in one process: the first
    settles, the others get its answer; a payment refused by those checks is refused, as
    it is when judged afresh after the first copy's refusal.
    """

    def __init__(self, link: Link) -> None:
        super().__init__(time.monotonic)
        self._link = link

    @contextlib.contextmanager
    def serving(self, key: str) -> Iterator[Serving]:
        self._link.defer_turn(key)
        kept: list[Response] = []
        serving = Serving(None, kept.append)
        failure = None
        try:
            yield serving
        except NotLeading as other:
            _, reply = other.turn
            serving.reply = self.answer_for(reply)
        except BaseException:
            failure = _Reply.of(0.0, _failed())
            raise
        finally:
            if self._link.led(key):
                answer = _Reply.of(0.0, kept[0]) if kept else failure
                self._link.tell("land", key, answer, keep=bool(kept))


class RemotePaymentIds(PaymentIds):
    """The payment ids bound by the ledger process (so a re-send may reach any worker).

    The paywall binds ids through the ledger process's facilitator, in the settlement's one
    call (:meth:`RemoteFacilitator.conclude` carries the claim); these are for any other use.
    """

    def __init__(self, link: Link) -> None:
        super().__init__(time.monotonic)
        self._link = link

    def claim(self, scope: str, payment_id: str, digest: str) -> Claim:
        claimed: Claim = self._link.call("claim_id", scope, payment_id, digest)
        return claimed

    def conflicts(self, scope: str, payment_id: str, digest: str) -> bool:
        conflicting: bool = self._link.call("id_conflicts", scope, payment_id, digest)
        return conflicting

    def confirm(self, scope: str, payment_id: str, digest: str) -> None:
        self._link.call("confirm_id", scope, payment_id, digest)

    def release(self, scope: str, payment_id: str, digest: str) -> None:
        self._link.call("release_id", scope, payment_id, digest)


class RemoteDesk(PaymentDesk):
    """Reads payments here; the ledger process issues invoices and settles payments."""

    def __init__(self, link: Link, parts: GatewayParts) -> None:
        # No ledger here: every method that would touch one is the ledger process's.
        super().__init__(
            cast(Ledger, None),
            parts.genesis,
            invoice_ttl=parts.invoice_ttl,
            reference_style=parts.reference_style,
            clock=time.monotonic,
        )
        self._link = link

    def register(self, invoice: Invoice) -> Invoice:
        # Made here, known there (the clock is the same: monotonic, system-wide).
        self._link.call("register", invoice)
        return invoice

    def conclude(
        self,
        transaction: VersionedTransaction,
        payment: Payment,
        resource: str,
        price: Price | None = None,
    ) -> Settlement | Refusal:
        outcome: Settlement | Refusal = self._link.call(
            "conclude", transaction, payment, resource, price
        )
        return outcome

    def execute(
        self, transaction: VersionedTransaction, payer: Pubkey, invoice: Invoice | None
    ) -> Settlement | Refusal:
        outcome: Settlement | Refusal = self._link.call("execute", transaction, payer, invoice)
        return outcome


class RemoteFacilitator(ExactFacilitator):
    """Checks and co-signs x402 payments here; the ledger process settles them."""

    def __init__(self, link: Link, parts: GatewayParts) -> None:
        super().__init__(
            cast(Ledger, None), parts.genesis.fee_payer, parts.network, clock=time.monotonic
        )
        self._link = link

    def _check(
        self,
        payload: Mapping[str, Any],
        requirements: Mapping[str, Any],
        transaction: VersionedTransaction | None = None,
    ) -> Verification:
        """Every rule, and here (not in the ledger process) the co-signed transaction's
        signatures: when one fails, the ledger process's runtime refuses it as it would."""
        verification = super()._check(payload, requirements, transaction)
        if verification.transaction is None:
            return verification
        try:
            check_signatures(verification.transaction)
        except Unacceptable:
            return verification
        return dataclasses.replace(verification, signatures_checked=True)

    def conclude(
        self, key: str, verification: Verification, network: str, claim: IdClaim | None = None
    ) -> Outcome:
        outcome: Outcome = self._link.call("x402", key, verification, network, claim)
        return outcome


class RemoteGateway(Gateway):
    """A worker's view of the gateway: its constants here, its state in the ledger process.

    It serves the paid routes; every other route is forwarded whole (:func:`forwarding`).
    """

    def __init__(self, link: Link, parts: GatewayParts, flag: mmap.mmap) -> None:
        # Gateway.__init__ is not called: it would make a ledger of its own.
        self.network = parts.network
        self.genesis = parts.genesis
        self.genesis_hash = parts.genesis_hash
        self.prices = dict(parts.prices)
        self.task_price = parts.task_price
        self.x402_price = parts.x402_price
        self.sleep = time.sleep
        self.faults = RemoteFaults(link, flag)
        self.replies = RemoteReplies(link)
        self.payment_ids = RemotePaymentIds(link)
        self.payment_id_required = parts.payment_id_required
        self.desk = RemoteDesk(link, parts)
        self.facilitator = RemoteFacilitator(link, parts)


def is_paid_route(path: str) -> bool:
    """The routes a worker serves itself (the rest goes to the ledger process whole)."""
    if path in _PAID_PATHS:
        return True
    name = path[len(_PREMIUM_PREFIX) :] if path.startswith(_PREMIUM_PREFIX) else ""
    return bool(name) and "/" not in name


def forwarding(app: Flask, link: Link) -> WSGIApplication:
    """``app`` for the paid routes; every other request forwarded to the ledger process."""

    def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if is_paid_route(environ.get("PATH_INFO", "")):
            return app(environ, start_response)
        portable = {k: v for k, v in environ.items() if isinstance(v, str)}
        body = environ["wsgi.input"].read()
        status, headers, payload = link.call("http", portable, body)
        start_response(status, headers)
        return [payload]

    return application


def worker_main(argv: Sequence[str] | None = None) -> int:
    """A worker process: waitress on the inherited socket, the app over the ledger process."""
    parser = argparse.ArgumentParser(prog="python -m stub_gateway.workers")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--flag", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--idle-timeout", type=int, required=True)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from .app import create_app
    from .server import GatewayServer, freeze_after_full_collections

    _exit_with_parent()
    freeze_after_full_collections()
    authkey = bytes.fromhex(sys.stdin.readline().strip())
    link = Link(args.ledger, authkey)
    parts: GatewayParts = link.call("hello")
    with Path(args.flag).open("rb") as file:
        flag = mmap.mmap(file.fileno(), 1, access=mmap.ACCESS_READ)
    app = create_app(gateway=RemoteGateway(link, parts, flag))
    sock = socket.socket(fileno=args.fd)
    server = GatewayServer(
        app,
        sock=sock,
        application=forwarding(app, link),
        quiet=args.quiet,
        threads=args.threads,
        idle_timeout=args.idle_timeout,
    )
    signal.signal(signal.SIGTERM, _exit_cleanly)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _exit_with_parent() -> None:
    """Stop this worker (SIGTERM to itself) once the ledger process is gone (even killed):
    a worker without it could only answer errors, on a port it would keep."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


# -- the whole: ledger process and workers ----------------------------------------------------


class WorkersServer:
    """The gateway in this process (the ledger process) and ``workers`` worker processes."""

    def __init__(
        self,
        app: Flask,
        *,
        workers: int,
        host: str = "127.0.0.1",
        port: int = 0,
        quiet: bool = True,
        threads: int = 8,
        idle_timeout: int = 30,
    ) -> None:
        if isinstance(workers, bool) or workers < 1:
            raise ValueError(f"workers must be a whole number of at least 1 (got {workers!r})")
        self.app = app
        self._directory = Path(tempfile.mkdtemp(prefix="stub-gateway-"))
        self._host = LedgerHost(app, self._directory)
        self._socket = socket.create_server((host, port), backlog=2048)
        self._socket.set_inheritable(True)
        self._options = (workers, threads, idle_timeout, quiet)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.failed = False
        """Whether :meth:`serve_forever` stopped because a worker process exited."""

    @property
    def gateway(self) -> Gateway:
        gateway: Gateway = self.app.extensions[EXTENSION]
        return gateway

    @property
    def host(self) -> str:
        return str(self._socket.getsockname()[0])

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def rpc_url(self) -> str:
        return f"{self.url}/rpc"

    def start(self) -> WorkersServer:
        """Start the ledger host and the workers; returns once every worker serves."""
        self._host.start()
        workers, threads, idle_timeout, quiet = self._options
        command = [
            sys.executable,
            "-m",
            "stub_gateway.workers",
            "--fd",
            str(self._socket.fileno()),
            "--ledger",
            self._host.address,
            "--flag",
            str(self._host.flag_path),
            "--threads",
            str(threads),
            "--idle-timeout",
            str(idle_timeout),
            *(["--quiet"] if quiet else []),
        ]
        for _ in range(workers):
            process = subprocess.Popen(  # noqa: S603 - our own module, our own arguments
                command, stdin=subprocess.PIPE, pass_fds=(self._socket.fileno(),)
            )
            self.processes.append(process)
            # The key to the ledger process, on stdin: never on a command line others can read.
            stdin = cast("io.BufferedWriter", process.stdin)
            stdin.write(self._host.authkey.hex().encode() + b"\n")
            stdin.close()
        return self

    def serve_forever(self, *, banner: bool = False) -> None:
        """Serve until interrupted (or a worker dies), then stop the workers."""
        from .server import banner as banner_text

        self.start()
        if banner:
            sys.stdout.write(banner_text(self) + f"\n  workers      {len(self.processes)}\n")
            sys.stdout.flush()
        try:
            while all(p.poll() is None for p in self.processes):
                time.sleep(0.5)
            log.error("a worker process exited; stopping the gateway")
            self.failed = True
        finally:
            self.stop()

    def stop(self, grace: float = 5.0) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._socket.close()
        self._host.close()
        shutil.rmtree(self._directory, ignore_errors=True)

    def __enter__(self) -> WorkersServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(worker_main())
