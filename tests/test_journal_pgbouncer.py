"""The fleet's PostgreSQL journal behind PgBouncer (Debian's ``pgbouncer`` package; ``make
postgres`` installs it; without it these tests skip, and fail under CI=true). In session
pooling mode the journal works as on PostgreSQL itself. In transaction pooling mode each
transaction may run on another server session, which breaks the statements psycopg prepares
(a statement run often) and the recovery's session lock: payments fail closed, and the error
says that the pooler's mode is the cause and what to set."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from human_rpc_sdk import PaymentError
from human_rpc_sdk._io.store import open_journal
from human_rpc_sdk._records import Reserved

from .postgres_server import PG_USER, OwnServer, ServerUnavailable, own_server
from .workers.forked import offer


@pytest.fixture
def database() -> Iterator[OwnServer]:
    try:
        with own_server(tcp=False) as running:
            yield running
    except ServerUnavailable as exc:
        pytest.skip(str(exc))


@contextlib.contextmanager
def bouncer(server: OwnServer, mode: str) -> Iterator[str]:
    """PgBouncer in pool mode ``mode`` before ``server``'s database ``postgres``, on a Unix
    socket of its own; the URL that reaches the database through it."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        text = "pgbouncer is not installed (apt-get install pgbouncer; make postgres does)"
        if os.environ.get("CI") == "true":
            pytest.fail(text)
        pytest.skip(text)
    root = Path(tempfile.mkdtemp(prefix="human-rpc-pgbouncer-"))
    port = server.port + 1 if server.port < 65000 else server.port - 1
    (root / "users.txt").write_text(f'"{PG_USER}" ""\n')
    (root / "pgbouncer.ini").write_text(
        f"[databases]\npostgres = host={server.socket_dir} port={server.port} dbname=postgres\n"
        f"[pgbouncer]\nlisten_addr =\nlisten_port = {port}\nunix_socket_dir = {root}\n"
        f"auth_type = trust\nauth_file = {root}/users.txt\npool_mode = {mode}\n"
        f"default_pool_size = 4\nlogfile = {root}/log\n"
    )
    command = [binary, str(root / "pgbouncer.ini")]
    if os.geteuid() == 0:
        shutil.chown(root, PG_USER, PG_USER)
        for name in root.iterdir():
            shutil.chown(name, PG_USER, PG_USER)
        command = ["runuser", "-u", PG_USER, "--", *command]
    running = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"postgresql://{PG_USER}@/postgres?host={root}&port={port}"
    try:
        for _ in range(100_000):  # until it listens (a refused connection fails at once)
            try:
                psycopg.connect(url, connect_timeout=5).close()
                break
            except psycopg.OperationalError:
                assert running.poll() is None, (root / "log").read_text()
        yield url
    finally:
        running.terminate()
        running.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def test_session_pooling_works_as_postgresql_itself(database: OwnServer) -> None:
    with bouncer(database, "session") as url:
        journal = open_journal(url)
        try:
            for _ in range(12):  # past psycopg's threshold for preparing a statement
                made = journal.reserve(
                    offer(), currency_key="USDC", invoice_key=None, budget=Decimal(100)
                )
                assert isinstance(made, Reserved)
                journal.mark(made.entry.id, "failed", {"error": "test"}, expect=("reserved",))
            with journal.recovering() as mine:
                assert mine
        finally:
            journal.close()


def test_transaction_pooling_fails_closed_naming_the_pooler(database: OwnServer) -> None:
    with bouncer(database, "transaction") as url:
        journal = open_journal(url)
        failures = []
        try:
            for _ in range(12):
                try:
                    made = journal.reserve(
                        offer(), currency_key="USDC", invoice_key=None, budget=Decimal(100)
                    )
                    assert isinstance(made, Reserved)
                    journal.mark(made.entry.id, "failed", {"error": "test"}, expect=("reserved",))
                except PaymentError as exc:
                    failures.append(exc)
        finally:
            journal.close()
        assert failures  # the prepared statements meet other sessions
        for failure in failures:
            assert failure.reason == "journal_unavailable"
            assert "PgBouncer's pool_mode = transaction" in str(failure)
            assert "pool_mode = session" in str(failure)
        with psycopg.connect(database.url()) as db:  # what failed reserving was rolled back
            (open_rows,) = db.execute(  # type: ignore[misc]
                "SELECT count(*) FROM payments WHERE state = 'reserved'"
            ).fetchone()
            (spent,) = db.execute(  # type: ignore[misc]
                "SELECT spent FROM totals WHERE currency_key = 'USDC'"
            ).fetchone()
        assert Decimal(spent) == open_rows
