"""How operators name the fleet's PostgreSQL journal, and what the SDK makes of each: the forms
libpq reads (a URL in any case of its scheme, a percent-encoded password, the password in
``$PGPASSWORD``) reach the database; the forms it does not (SQLAlchemy's and JDBC's URLs,
libpq's ``key=value`` text) are configuration errors, never a SQLite file of each machine's
own; no error shows the password, even when libpq's own message quotes the URL."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent, SDKConfigurationError
from human_rpc_sdk._io.store import open_journal

from .postgres_server import ServerUnavailable, own_server

SECRET = "s3cr@t:p/w%?"
"""A password with every character a URL must encode."""

OTHER_FORMS = [
    "postgresql+psycopg://app:hunter2@db.example/payments",
    "postgresql+psycopg2://app:hunter2@db.example/payments",
    "postgres+asyncpg://app:hunter2@db.example/payments",
    "jdbc:postgresql://db.example:5432/payments?user=app&password=hunter2",
    "host=db.example dbname=payments user=app password=hunter2",
    "dbname=payments password=hunter2",
    "  service=payments",
]


@pytest.mark.parametrize("location", OTHER_FORMS)
def test_a_database_named_another_way_is_a_configuration_error_not_a_file(
    location: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Taken for a file name, such a location gave each machine its own SQLite journal and
    budget (a folder ``postgresql+psycopg:`` appeared): an error saying how to write the URL,
    without the password, from journal_path=, journal_url= and $HUMAN_RPC_JOURNAL alike."""
    monkeypatch.chdir(tmp_path)
    for options, env in (
        ({"journal_path": location}, None),
        ({"journal_url": location}, None),
        ({}, location),
    ):
        if env is None:
            monkeypatch.delenv("HUMAN_RPC_JOURNAL", raising=False)
        else:
            monkeypatch.setenv("HUMAN_RPC_JOURNAL", env)
        with pytest.raises(SDKConfigurationError) as caught:
            AutoAgent(Keypair(), **options)  # type: ignore[arg-type]
        message = str(caught.value)
        assert "names a PostgreSQL database, but not as a URL the journal reads" in message
        assert "postgresql://user:password@host:port/dbname" in message
        assert "hunter2" not in message
        assert caught.value.parameter == (
            "journal_url" if "journal_url" in options else "journal_path"
        )
    assert list(tmp_path.iterdir()) == []


def test_files_that_only_look_alike_stay_files(tmp_path: Path) -> None:
    for name in ("host-notes.sqlite3", "postgresql-backup.sqlite3", "user_journal"):
        agent = AutoAgent(Keypair(), journal_path=tmp_path / name)
        try:
            assert agent.journal_path == str(tmp_path / name)
        finally:
            agent.close()


@pytest.mark.parametrize(
    "location",
    [
        "POSTGRESQL://app:hunter2@127.0.0.1:1/payments",  # libpq reads it as key=value text
        "postgresql://app:hunter2@[::1/payments",  # a malformed URL: libpq quotes it all
        "postgresql://app:hunt%65r2@127.0.0.1:1/payments?password=hunter2&nonsense=1",
    ],
)
def test_no_error_shows_the_password_even_when_libpq_quotes_the_url(location: str) -> None:
    with pytest.raises(SDKConfigurationError) as caught:
        open_journal(location)
    message = str(caught.value)
    assert "hunter2" not in message
    assert "hunt%65r2" not in message
    assert "cannot open the payment journal" in message


def test_a_url_scheme_in_capitals_reaches_the_database(journal_url: str) -> None:
    """The SDK took ``POSTGRESQL://`` for a database URL, and libpq did not (its error quoted
    the URL, password and all): the same database either way."""
    shouting = "POSTGRESQL" + journal_url[len("postgresql") :]
    agent = AutoAgent(Keypair(), journal_url=shouting, budget={"SOL": "0.5"})
    try:
        assert agent.budget["SOL"].limit == 0.5
    finally:
        agent.close()
    with psycopg.connect(journal_url) as db:
        assert db.execute("SELECT version FROM human_rpc_schema").fetchone() is not None


def test_passwords_percent_encoded_or_in_pgpassword_reach_the_database(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that asks for passwords (scram-sha-256 over TCP): the password percent-encoded
    in the URL, or in $PGPASSWORD with none in the URL, opens the journal; a wrong one is a
    configuration error that shows neither."""
    try:
        server = own_server()
        running = server.__enter__()
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    try:
        with psycopg.connect(running.url(), autocommit=True) as admin:
            admin.execute(
                psycopg.sql.SQL("CREATE ROLE app LOGIN PASSWORD {}").format(
                    psycopg.sql.Literal(SECRET)
                )
            )
            admin.execute("CREATE DATABASE payments OWNER app")
        encoded = "".join(c if c.isalnum() else f"%{ord(c):02X}" for c in SECRET)
        url = f"postgresql://app:{encoded}@127.0.0.1:{running.port}/payments"
        journal = open_journal(url)
        assert SECRET not in journal.path
        assert encoded not in journal.path
        journal.close()
        monkeypatch.setenv("PGPASSWORD", SECRET)
        journal = open_journal(f"postgresql://app@127.0.0.1:{running.port}/payments")
        journal.close()
        monkeypatch.setenv("PGPASSWORD", "wrong-" + SECRET)
        with pytest.raises(SDKConfigurationError) as caught:
            open_journal(f"postgresql://app@127.0.0.1:{running.port}/payments")
        assert "password authentication failed" in str(caught.value)
        assert SECRET not in str(caught.value)
        monkeypatch.delenv("PGPASSWORD")
        wrong = url.replace(encoded, "wrong" + encoded)
        with pytest.raises(SDKConfigurationError) as caught:
            open_journal(wrong)
        assert SECRET not in str(caught.value)
        assert encoded not in str(caught.value)
    finally:
        server.__exit__(None, None, None)
    assert not os.environ.get("PGPASSWORD")
