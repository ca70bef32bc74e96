"""A real PostgreSQL server for the tests of the PostgreSQL journal (see ``conftest.py``).

The server is Debian's ``postgresql`` package (``/usr/lib/postgresql/<version>/bin``, or the
folder in ``$HUMAN_RPC_PG_BIN``); pytest-postgresql makes and drops a fresh database for each
test (its ``postgresql`` client factory over the server this module starts, the way its
``postgresql_noproc`` serves a server started elsewhere).

Why not pytest-postgresql's ``postgresql_proc``: it runs ``initdb`` and ``pg_ctl`` as the
current user inside pytest's own temporary folder (mode 0700). PostgreSQL refuses to run as
root, and the tests run as root in containers; so this module starts the server itself, as
the ``postgres`` system user the Debian package creates (``runuser``), in a folder that user
owns, and as the current user when that is not root (then no system user is needed).

Under ``CI=true`` a missing server or driver fails the tests that need it; otherwise they are
skipped, saying what to install.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_USER = "postgres"


def _bindir() -> Path | None:
    named = os.environ.get("HUMAN_RPC_PG_BIN")
    if named:
        return Path(named)
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name)
    )
    return found[-1].parent if found else None


def _missing(why: str) -> None:
    text = (
        f"{why}: the PostgreSQL journal's tests need Debian's postgresql package (apt-get "
        "install postgresql) and the postgres extra (pip install -e '.[dev,postgres]')"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(text)
    pytest.skip(text)


def _as_server_user(command: list[str]) -> list[str]:
    """``command`` run as the ``postgres`` system user when this process is root."""
    if os.geteuid() != 0:
        return command
    runuser = shutil.which("runuser")
    if runuser is None:
        _missing("running as root without runuser to start PostgreSQL as another user")
    return [str(runuser), "-u", PG_USER, "--", *command]


class PostgresServer:
    """A PostgreSQL server of the tests' own on 127.0.0.1 (trust authentication, user
    ``postgres``), in a temporary folder; :meth:`stop` and :meth:`start` restart it on the same
    port and data (for the tests of a server restarted mid-run), :meth:`remove` deletes it."""

    def __init__(self) -> None:
        try:
            import port_for
        except ImportError as exc:
            _missing(f"{exc.name} is not installed")
        bindir = _bindir()
        if bindir is None or not (bindir / "pg_ctl").exists():
            _missing("no PostgreSQL server binaries under /usr/lib/postgresql")
        assert bindir is not None
        self.pg_ctl = str(bindir / "pg_ctl")
        self.root = Path(tempfile.mkdtemp(prefix="human-rpc-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.root, PG_USER, PG_USER)
        self.data = self.root / "data"
        self.port = port_for.select_random()
        self.host = "127.0.0.1"
        self.running = False
        subprocess.run(
            _as_server_user(
                [
                    self.pg_ctl,
                    "initdb",
                    "-s",
                    "-D",
                    str(self.data),
                    "-o",
                    f"-A trust -U {PG_USER} -E UTF8",
                ]
            ),
            check=True,
            capture_output=True,
        )

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{PG_USER}@{self.host}:{self.port}/{dbname}"

    def start(self) -> None:
        """Start the server (again), waiting until it accepts connections."""
        options = (
            f"-F -p {self.port} -c listen_addresses={self.host} "
            f"-c unix_socket_directories={self.root} "
            "-c max_connections=200 -c fsync=on -c synchronous_commit=on"
        )
        started = subprocess.run(
            _as_server_user(
                [
                    self.pg_ctl,
                    "start",
                    "-w",
                    "-t",
                    "60",
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.root / "log"),
                    "-o",
                    options,
                ]
            ),
            capture_output=True,
            text=True,
        )
        if started.returncode != 0:
            log = (self.root / "log").read_text() if (self.root / "log").exists() else ""
            pytest.fail(f"PostgreSQL did not start: {started.stderr}\n{log}")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server, waiting until it is down: ``fast`` (sessions ended, what is
        uncommitted rolled back, a clean shutdown) or ``immediate`` (every process quits at
        once, as in a crash: the next start replays the write-ahead log)."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"unknown stop mode {mode!r}")
        subprocess.run(
            _as_server_user(
                [self.pg_ctl, "stop", "-w", "-t", "60", "-m", mode, "-D", str(self.data)]
            ),
            check=True,
            capture_output=True,
        )
        self.running = False

    def remove(self) -> None:
        if self.running:
            subprocess.run(
                _as_server_user(
                    [self.pg_ctl, "stop", "-w", "-m", "immediate", "-D", str(self.data)]
                ),
                check=False,
                capture_output=True,
            )
            self.running = False
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    """A PostgreSQL server on 127.0.0.1 for this test session (trust authentication, user
    ``postgres``), as pytest-postgresql's ``NoopExecutor`` describes one. Shared by the
    tests: never stopped before the session ends (see :func:`private_postgres`)."""
    try:
        import psycopg
        from pytest_postgresql.executors.noop import NoopExecutor
    except ImportError as exc:
        _missing(f"{exc.name} is not installed")
    running = PostgresServer()
    try:
        running.start()
        server = NoopExecutor(
            host=running.host, port=running.port, user=PG_USER, options="", dbname="journal_tests"
        )
        with psycopg.connect(running.url(), autocommit=True) as db:
            # the template each test's database is cloned from
            db.execute(f'CREATE DATABASE "{server.template_dbname}" IS_TEMPLATE = true')
        yield server
    finally:
        running.remove()


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test alone, started, with a database ``journal``: the
    test may stop and start it (the session's server, which other tests share, is never
    restarted)."""
    try:
        import psycopg
    except ImportError as exc:
        _missing(f"{exc.name} is not installed")
    running = PostgresServer()
    try:
        running.start()
        with psycopg.connect(running.url(), autocommit=True) as db:
            db.execute('CREATE DATABASE "journal"')
        yield running
    finally:
        running.remove()


def database_url(connection: object) -> str:
    """The URL of the database pytest-postgresql made for a test (its psycopg connection)."""
    info = connection.info  # type: ignore[attr-defined]
    return f"postgresql://{info.user}@{info.host}:{info.port}/{info.dbname}"


class ServerUnavailable(RuntimeError):
    """No PostgreSQL server binaries, or no way to run them (see :func:`own_server`)."""


@dataclass(frozen=True)
class OwnServer:
    """A PostgreSQL server started by :func:`own_server`: superuser ``postgres`` without a
    password over its Unix socket (in ``socket_dir``) and, when started so, over TCP."""

    socket_dir: Path
    port: int
    bindir: Path
    data: Path

    def url(self, dbname: str = "postgres", *, tcp: bool = False, user: str = PG_USER) -> str:
        """A URL of database ``dbname``: over the Unix socket, or over 127.0.0.1."""
        if tcp:
            return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"
        return f"postgresql://{user}@/{dbname}?host={self.socket_dir}&port={self.port}"


@contextlib.contextmanager
def own_server(settings: Mapping[str, str] = {}, *, tcp: bool = True) -> Iterator[OwnServer]:
    """A PostgreSQL server of the caller's own, configured with ``settings`` (``-c`` options),
    in a temporary folder that also holds its Unix socket; stopped and removed at the end.
    Local (socket) connections are trusted; TCP ones (127.0.0.1, when ``tcp``) need a password.

    :raises ServerUnavailable: no server binaries, or root without ``runuser``.
    """
    bindir = _bindir()
    if bindir is None or not (bindir / "pg_ctl").exists():
        raise ServerUnavailable("no PostgreSQL server binaries under /usr/lib/postgresql")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        raise ServerUnavailable("running as root without runuser to start PostgreSQL")
    import port_for

    root = Path(tempfile.mkdtemp(prefix="human-rpc-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(root, PG_USER, PG_USER)
        data, port, pg_ctl = root / "data", port_for.select_random(), str(bindir / "pg_ctl")
        auth = f"--auth-local=trust --auth-host=scram-sha-256 -U {PG_USER} -E UTF8"
        subprocess.run(
            _as_server_user([pg_ctl, "initdb", "-s", "-D", str(data), "-o", auth]),
            check=True,
            capture_output=True,
        )
        listen = "127.0.0.1" if tcp else "''"
        options = f"-F -p {port} -c listen_addresses={listen} -c unix_socket_directories={root}"
        options += "".join(f" -c {name}={value}" for name, value in settings.items())
        start = [pg_ctl, "start", "-w", "-t", "60", "-D", str(data), "-l", str(root / "log")]
        started = subprocess.run(
            _as_server_user([*start, "-o", options]), capture_output=True, text=True
        )
        if started.returncode != 0:
            log = (root / "log").read_text() if (root / "log").exists() else ""
            raise ServerUnavailable(f"PostgreSQL did not start: {started.stderr}\n{log}")
        try:
            yield OwnServer(socket_dir=root, port=port, bindir=bindir, data=data)
        finally:
            subprocess.run(
                _as_server_user([pg_ctl, "stop", "-w", "-m", "fast", "-D", str(data)]),
                check=False,
                capture_output=True,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
