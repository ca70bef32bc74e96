"""A PostgreSQL journal's password stays out of everything an agent shows: ``journal_path``
(the URL with ``***``), reprs, logs down to DEBUG (the SDK's, psycopg's and its pool's), error
messages (a wrong password, the server down) and the CLI's output, text and ``--json``; while
the agent and the CLI keep working with the real URL.

The server is the test's own, asking a password over TCP (``scram-sha-256``): the session's
test server trusts every connection, so a wrong password would go unnoticed there.
"""

from __future__ import annotations

import json
import logging
import subprocess
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from solders.keypair import Keypair

from human_rpc_sdk import AsyncAutoAgent, AutoAgent, PaymentError, SDKConfigurationError
from human_rpc_sdk._io.cli.app import cli
from human_rpc_sdk._settings import redacted_url

from .postgres_server import OwnServer, ServerUnavailable, _as_server_user, _missing, own_server

psycopg = pytest.importorskip("psycopg")

SECRET = "s3cret-Pa55"
USER = "app"


def add_user(server: OwnServer, dbname: str) -> str:
    """A user with a password owning database ``dbname``: its URL over TCP, password in it."""
    with psycopg.connect(server.url(), autocommit=True) as db:
        db.execute(f"CREATE ROLE {USER} LOGIN PASSWORD '{SECRET}'")
        db.execute(f'CREATE DATABASE "{dbname}" OWNER {USER}')
    return f"postgresql://{USER}:{SECRET}@127.0.0.1:{server.port}/{dbname}"


@pytest.fixture(scope="module")
def guarded() -> Iterator[tuple[OwnServer, str]]:
    """A server asking passwords, and the URL (with the password) of a database on it."""
    try:
        with own_server() as server:
            yield server, add_user(server, "journal")
    except ServerUnavailable as exc:
        _missing(str(exc))


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)  # every logger: the SDK's, psycopg's, psycopg.pool's
    return caplog


def shown(text: str) -> str:
    assert SECRET not in text, text
    return text


def redacted(url: str) -> str:
    return url.replace(f":{SECRET}@", ":***@")


def test_the_agent_shows_its_journal_without_the_password(
    guarded: tuple[OwnServer, str], logs: pytest.LogCaptureFixture
) -> None:
    _, url = guarded
    agent = AutoAgent(Keypair(), journal_url=url, budget={"SOL": "1"})
    try:
        assert agent.journal_path == redacted(url)
        agent.raise_budget({"SOL": "0.5"})  # a write: the journal works with the real URL
        assert str(agent.budget["SOL"].limit) == "1.5"
        assert agent.recover_payments() == []
        for text in (repr(agent), str(agent), repr(agent._settings), repr(agent._journal)):
            shown(text)
    finally:
        agent.close()
    asynchronous = AsyncAutoAgent(Keypair(), journal_path=url)
    try:
        assert asynchronous.journal_path == redacted(url)
        shown(repr(asynchronous))
    finally:
        asynchronous._journal.close()
    assert logs.records, "nothing logged at DEBUG"
    shown(logs.text)


def test_a_password_given_as_a_url_parameter_is_hidden_too(
    guarded: tuple[OwnServer, str], logs: pytest.LogCaptureFixture
) -> None:
    """libpq also takes ``?password=`` (and ``sslpassword``): the same treatment."""
    server, _ = guarded
    url = f"postgresql://{USER}@127.0.0.1:{server.port}/journal?sslmode=disable&password={SECRET}"
    agent = AutoAgent(Keypair(), journal_path=url)
    try:
        assert agent.journal_path == url.replace(f"password={SECRET}", "password=***")
        assert agent.recover_payments() == []
        shown(repr(agent._journal))
    finally:
        agent.close()
    shown(logs.text)


@pytest.mark.parametrize(
    ("url", "shown_as"),
    [
        ("postgresql://app:pw@db:5432/j", "postgresql://app:***@db:5432/j"),
        ("postgres://app:@db/j", "postgres://app:***@db/j"),
        (
            "postgresql://app@db/j?password=pw&sslmode=require",
            "postgresql://app@db/j?password=***&sslmode=require",
        ),
        (
            "POSTGRESQL://db/j?sslmode=require&SSLPassword=pw",
            "postgresql://db/j?sslmode=require&SSLPassword=***",
        ),
        (
            "postgresql://app@/j?host=/run/pg&port=5433",
            "postgresql://app@/j?host=/run/pg&port=5433",
        ),
        ("postgresql://app:pw@[::1/j", "postgresql://***"),
        ("/var/lib/journal.sqlite3", "/var/lib/journal.sqlite3"),
    ],
)
def test_redacted_url(url: str, shown_as: str) -> None:
    assert redacted_url(url) == shown_as


def test_a_wrong_password_is_a_configuration_error_without_it(
    guarded: tuple[OwnServer, str], logs: pytest.LogCaptureFixture
) -> None:
    server, _ = guarded
    wrong = f"postgresql://{USER}:{SECRET}x@127.0.0.1:{server.port}/journal"
    with pytest.raises(SDKConfigurationError) as caught:
        AutoAgent(Keypair(), journal_url=wrong)
    message = shown(str(caught.value))
    assert caught.value.parameter == "journal_path"
    assert "password authentication failed" in message
    assert f"{USER}:***@127.0.0.1" in message
    shown("".join(traceback.format_exception(caught.value)))
    shown(logs.text)


def test_a_server_down_is_reported_without_the_password(
    logs: pytest.LogCaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Down at the start (a configuration error) and down under a running agent
    (``journal_unavailable``): neither message nor log shows the password."""
    monkeypatch.chdir(tmp_path)
    try:
        with own_server() as server:
            url = add_user(server, "journal")
            agent = AutoAgent(Keypair(), journal_url=url)
            agent._journal.wait_seconds = 2  # type: ignore[attr-defined] # a PostgresJournal
            pg_ctl = str(server.bindir / "pg_ctl")
            stop = [pg_ctl, "stop", "-w", "-m", "fast", "-D", str(server.data)]
            subprocess.run(_as_server_user(stop), check=True, capture_output=True)
            with pytest.raises(PaymentError) as down:
                agent.raise_budget({"SOL": "1"})
            assert down.value.reason == "journal_unavailable"
            assert redacted(url) in shown(str(down.value))
            with pytest.raises(SDKConfigurationError) as refused:
                AutoAgent(Keypair(), journal_url=url)
            assert redacted(url) in shown(str(refused.value))
            agent._journal._deferred.clear()  # type: ignore[attr-defined] # nothing to write
            agent.close()
    except ServerUnavailable as exc:
        _missing(str(exc))
    shown(logs.text)
    assert list(tmp_path.iterdir()) == []


def test_the_cli_uses_the_database_and_never_prints_the_password(
    guarded: tuple[OwnServer, str],
    tmp_path: Path,
    logs: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, url = guarded
    monkeypatch.chdir(tmp_path)
    key = tmp_path / "wallet.json"
    key.write_text(json.dumps(list(bytes(Keypair()))))
    key.chmod(0o600)
    runner = CliRunner()
    options = ["--key-file", str(key), "--rpc-url", "http://127.0.0.1:9/", "-vv", "--journal"]

    def run(*args: str, journal: str = url) -> Result:
        done = runner.invoke(cli, [*options, journal, *args], catch_exceptions=False)
        shown(done.stdout)
        shown(done.stderr)
        return done

    assert json.loads(run("payments", "--json").stdout) == []
    listed = run("payments").stderr  # a note: nothing to list
    assert listed.startswith("no payments by ")
    assert listed.rstrip().endswith(f" in {redacted(url)}")
    assert json.loads(run("budget", "--json").stdout)
    # `payment` reopens the journal: with the real URL (the shown one's password is ***).
    assert f"the journal {redacted(url)} has no payment #1" in run("payment", "1").stderr
    assert f"PostgreSQL database {redacted(url)}" in run("doctor").stdout
    run("doctor", "--json")
    run("recover", "--json")
    assert list(tmp_path.iterdir()) == [key]  # no folder postgresql: (--journal as a path)
    wrong = run("payments", "--json", journal=url.replace(SECRET, SECRET + "x"))
    assert wrong.exit_code != 0
    assert "password authentication failed" in wrong.stdout + wrong.stderr
    shown(logs.text)
