"""Property 9: no secret key, seed or signed payload appears in logs, errors or reprs."""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
import tempfile
from decimal import Decimal
from pathlib import Path

import base58
import pytest
from hypothesis import given
from hypothesis import strategies as st
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent, HumanRPCError, load_signer
from stub_gateway import Gateway, GatewayServer

from .conftest import PaymentCapture


def secret_forms(keypair: Keypair) -> list[str]:
    """The secret in every encoding someone might print it in."""
    raw = bytes(keypair)
    seed = raw[:32]
    return [
        str(keypair),
        json.dumps(list(raw)),
        json.dumps(list(raw), separators=(",", ":")),
        ",".join(str(b) for b in raw[:16]),
        raw.hex(),
        seed.hex(),
        base64.b64encode(raw).decode(),
        base64.b64encode(seed).decode(),
        base58.b58encode(seed).decode(),
    ]


def chain(error: BaseException) -> list[str]:
    texts = []
    seen: BaseException | None = error
    while seen is not None:
        texts += [str(seen), repr(seen), repr(getattr(seen, "__dict__", {}))]
        seen = seen.__cause__ or seen.__context__
    return texts


# **Feature: human-rpc-python-sdk, Property 9: For any logging or error output, the system should
# never expose private keys or sensitive cryptographic material**
@given(seed=st.binary(min_size=32, max_size=32))
def test_property_9_no_secret_in_any_output(
    server: GatewayServer, gateway: Gateway, seed: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Pay, fail, mistype the key: no secret in any log, error or repr; no signed payload logged."""
    keypair = Keypair.from_seed(seed)
    forms = secret_forms(keypair)
    gateway.fund(keypair.pubkey(), {"SOL": Decimal(1)})
    texts: list[str] = []
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        agent = AutoAgent(str(keypair), rpc_url=server.rpc_url)
        capture = PaymentCapture()
        agent.session.mount("http://", capture)
        texts += [repr(agent), str(agent), repr(agent._signer)]
        agent.get(f"{server.url}/api/v1/premium/sol")
        texts += [repr(p) for p in agent.payments]
        try:
            agent.get(f"{server.url}/api/v1/premium/usdc")  # no USDC: insufficient funds
        except HumanRPCError as exc:
            texts += chain(exc)
        near_misses = [
            str(keypair)[:-2],
            str(keypair) + "0",
            json.dumps([*list(bytes(keypair))[:63], 999]),
            "~/" + str(keypair),
        ]
        for value in near_misses:
            try:
                load_signer(value)
            except HumanRPCError as exc:
                texts += chain(exc)
    logged = [r.getMessage() for r in caplog.records] + [repr(r.args) for r in caplog.records]
    assert capture.headers, "a payment was made"
    for text in texts + logged:
        for form in forms:
            assert form not in text
        for header in capture.headers:
            assert header not in text
    agent.close()


def journal_texts(path: Path) -> list[str]:
    """Everything the journal holds: every column of every row, and its files' raw bytes."""
    texts: list[str] = []
    with sqlite3.connect(path) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in db.execute(f"SELECT * FROM {table}"):  # noqa: S608 - names from the schema
                texts += [str(value) for value in row]
    for file in path.parent.glob(path.name + "*"):
        texts.append(file.read_bytes().decode("latin-1"))
    return texts


# Issue 5: "Secret hygiene as a property: for generated keys, no log record, exception text,
# repr or journal row contains the secret in any encoding (base58, JSON array, hex, base64)."
@given(seed=st.binary(min_size=32, max_size=32))
def test_property_no_secret_in_the_journal_or_around_it(
    server: GatewayServer, gateway: Gateway, seed: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Pay, be refused by a rule, be refused by the server, recover: the secret appears in no
    log record, error, repr, journal row or journal file, in any encoding."""
    keypair = Keypair.from_seed(seed)
    forms = secret_forms(keypair)
    raw = bytes(keypair)
    gateway.fund(keypair.pubkey(), {"SOL": Decimal(1)})
    texts: list[str] = []

    def seen(offer: object) -> bool:
        texts.append(repr(offer))
        return True

    caplog.clear()
    with tempfile.TemporaryDirectory() as folder, caplog.at_level(logging.DEBUG):
        journal = Path(folder) / "journal.sqlite3"
        agent = AutoAgent(
            json.dumps(list(raw)),
            rpc_url=server.rpc_url,
            journal_path=journal,
            budget={"SOL": "0.0015"},
            approve=seen,
        )
        agent.get(f"{server.url}/api/v1/premium/sol")
        for url in (f"{server.url}/api/v1/premium/sol", f"{server.url}/api/v1/premium/usdc"):
            try:
                agent.get(url)  # over the budget; then no USDC at all
            except HumanRPCError as exc:
                texts += chain(exc)
        agent.recover_payments()
        texts += [repr(agent), repr(agent._journal), repr(agent.budget)]
        texts += [repr(entry) for entry in agent._journal.entries()]
        texts += [repr(p) for p in agent.payments + agent.pending_payments()]
        assert len(agent.payments) == 1
        agent.close()
        texts += journal_texts(journal)
    logged = [r.getMessage() for r in caplog.records] + [repr(r.args) for r in caplog.records]
    for text in texts + logged:
        for form in forms:
            assert form not in text
    # The raw 64-byte secret (seed and public key) in any file byte. (The bare 32-byte seed
    # is not searched as bytes: a low-entropy seed, all zeros say, occurs in any page padding.)
    for text in texts:
        assert raw not in text.encode("latin-1", "replace")
