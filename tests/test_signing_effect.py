"""Signing is an effect: the flow asks for a signature (``Sign``), verifies what comes back,
and sends nothing before a good one; signers may be remote objects (KMS) or async."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Generator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

from human_rpc_sdk import AutoAgent, SDKConfigurationError, SolanaRPCError, TransactionBuildError
from human_rpc_sdk._effects import Effect, RpcCall, Sign
from human_rpc_sdk._flow import Resend, pay
from human_rpc_sdk._headers import decode_payment_header
from human_rpc_sdk._io.rpc import RpcClient
from human_rpc_sdk.solana_utils import (
    add_signature,
    build_sol_transfer,
    message_to_sign,
    sign_transaction,
    token_transfer_facts,
)
from human_rpc_sdk.wallet import is_async_signer, load_signer, sign_async, signature_of
from stub_gateway import Gateway, GatewayServer

from .conftest import Books
from .test_flow import PAYER, SOL, accounts_reply, challenge, context, latest, wallet

PRICE = Decimal("0.001")
FEE = Decimal("0.000005")
BLOCKHASH = Hash.new_unique()


def until_sign(books: Books) -> tuple[Generator[Effect[Any], Any, Any], Sign, list[Effect[Any]]]:
    """A SOL payment driven by hand up to its Sign effect; every effect seen before it."""
    flow = pay(challenge(currency="SOL", amount="0.25"), context())
    seen: list[Effect[Any]] = []
    effect = next(flow)
    while not isinstance(effect, Sign):
        seen.append(effect)
        if isinstance(effect, RpcCall):
            answer: Any = [accounts_reply(wallet(SOL), wallet(1)), *latest(BLOCKHASH)]
        else:
            answer = books.driver.keep_books(effect)
        effect = flow.send(answer)
    return flow, effect, seen


def finish(flow: Generator[Effect[Any], Any, Any], effect: Effect[Any], books: Books) -> None:
    """Answer the flow's bookkeeping to its end; it must never send the payment."""
    while True:
        assert not isinstance(effect, Resend)
        effect = flow.send(books.driver.keep_books(effect))


def states(books: Books) -> list[str]:
    return [entry.state for entry in books.journal.entries()]


def test_the_flow_asks_for_the_message_and_sends_nothing_before_a_signature() -> None:
    """The Sign effect carries the payer and the very message the sent transaction holds;
    before it, nothing was sent and the journal holds only the reservation."""
    books = Books()
    flow, sign, seen = until_sign(books)
    assert sign.pubkey == PAYER.pubkey()
    assert not any(isinstance(effect, Resend) for effect in seen)
    assert states(books) == ["reserved"]
    assert "message=<" in repr(sign)
    assert str(list(sign.message[:8])) not in repr(sign)
    effect = flow.send(PAYER.sign_message(sign.message))
    while not isinstance(effect, Resend):
        effect = flow.send(books.driver.keep_books(effect))
    transaction = decode_payment_header(effect.headers["X-PAYMENT"]).transaction
    assert message_to_sign(transaction, PAYER.pubkey()) == sign.message
    assert transaction.verify_with_results() == [True]
    assert states(books) == ["signed"]


def test_a_signature_that_does_not_verify_fails_the_row_and_sends_nothing() -> None:
    """A wrong signature sent back: TransactionBuildError, the row failed, no Resend."""
    books = Books()
    flow, sign, _ = until_sign(books)
    effect = flow.send(Keypair().sign_message(sign.message))
    with pytest.raises(TransactionBuildError, match="does not verify") as caught:
        finish(flow, effect, books)
    assert caught.value.reason == "bad_signature"
    assert states(books) == ["failed"]


def test_an_error_thrown_in_at_sign_fails_the_row_and_is_raised_unchanged() -> None:
    """The driver's signer failed: the error thrown into the flow marks the row failed and
    comes out as it went in."""
    books = Books()
    flow, _, _ = until_sign(books)
    error = SDKConfigurationError("the signing service is down", parameter="signer")
    effect = flow.throw(error)
    with pytest.raises(SDKConfigurationError) as caught:
        finish(flow, effect, books)
    assert caught.value is error
    assert states(books) == ["failed"]


def test_sign_transaction_is_built_from_the_pure_parts() -> None:
    """sign_transaction signs what message_to_sign names; add_signature refuses a bad one."""
    tx = build_sol_transfer(PAYER, Keypair().pubkey(), 1, BLOCKHASH)
    signed = sign_transaction(tx, load_signer(PAYER))
    payload = message_to_sign(tx, PAYER.pubkey())
    assert signed.signatures[0] == PAYER.sign_message(payload)
    assert add_signature(tx, PAYER.pubkey(), PAYER.sign_message(payload)) == signed
    with pytest.raises(TransactionBuildError, match="does not verify"):
        add_signature(tx, PAYER.pubkey(), Keypair().sign_message(payload))
    with pytest.raises(TransactionBuildError, match="not a required signer"):
        message_to_sign(tx, Keypair().pubkey())


def test_signature_of_accepts_a_signature_or_64_bytes_only() -> None:
    """Signature or 64 bytes are a Signature; anything else is refused, its value unshown."""
    signature = PAYER.sign_message(b"m")
    assert signature_of(signature) == signature
    assert signature_of(bytes(signature)) == signature
    assert signature_of(bytearray(bytes(signature))) == signature
    secret = "5" * 88
    for raw in (b"x" * 63, secret, None, list(bytes(signature))):
        with pytest.raises(SDKConfigurationError) as caught:
            signature_of(raw)
        assert caught.value.parameter == "signer"
        assert secret not in str(caught.value)
        assert "xxx" not in str(caught.value)


class KmsSigner:
    """A remote signer's adapter: the key is elsewhere; it answers base58 and raw bytes."""

    def __init__(self, keypair: Keypair) -> None:
        self._remote = keypair
        self.calls = 0

    def pubkey(self) -> str:
        return str(self._remote.pubkey())

    def sign_message(self, message: bytes) -> bytes:
        self.calls += 1
        return bytes(self._remote.sign_message(message))


class LyingSigner(KmsSigner):
    """Reports one key and signs with another."""

    def sign_message(self, message: bytes) -> bytes:
        self.calls += 1
        return bytes(Keypair().sign_message(message))


class AsyncSigner(KmsSigner):
    """A signer to await (a remote service called with asyncio)."""

    async def sign_message(self, message: bytes) -> bytes:  # type: ignore[override]
        await asyncio.sleep(0)
        return bytes(self._remote.sign_message(message))


def journal_states(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT state FROM payments ORDER BY id")]


Funder = Callable[..., Keypair]


def test_a_kms_like_signer_pays_end_to_end(
    server: GatewayServer, gateway: Gateway, funded_wallet: Funder, tmp_path: Path
) -> None:
    """A signer object (base58 pubkey, raw signature bytes) pays: balances move on the
    ledger and the journal row is accepted."""
    wallet = funded_wallet(sol="1")
    kms = KmsSigner(wallet)
    treasury = gateway.balance(gateway.treasury)
    path = tmp_path / "j.db"
    with AutoAgent(signer=kms, rpc_url=server.rpc_url, journal_path=path) as agent:
        response = agent.get(f"{server.url}/api/v1/premium/sol")
    assert response.status_code == 200
    assert kms.calls == 1
    assert gateway.balance(wallet.pubkey()) == 1 - PRICE - FEE
    assert gateway.balance(gateway.treasury) - treasury == PRICE
    assert journal_states(path) == ["accepted"]


def test_a_bad_signature_end_to_end_moves_nothing_and_fails_the_row(
    server: GatewayServer, gateway: Gateway, funded_wallet: Funder, tmp_path: Path
) -> None:
    """A signer whose signature does not verify: TransactionBuildError, no money moved on the
    ledger, the journal row failed."""
    wallet = funded_wallet(sol="1")
    liar = LyingSigner(wallet)
    treasury = gateway.balance(gateway.treasury)
    path = tmp_path / "j.db"
    agent = AutoAgent(signer=liar, rpc_url=server.rpc_url, journal_path=path)
    with agent, pytest.raises(TransactionBuildError, match="does not verify"):
        agent.get(f"{server.url}/api/v1/premium/sol")
    assert liar.calls == 1
    assert gateway.balance(wallet.pubkey()) == 1
    assert gateway.balance(gateway.treasury) == treasury
    assert journal_states(path) == ["failed"]


def test_an_async_signer_is_loaded_but_refused_by_the_sync_agent() -> None:
    """load_signer takes an async signer; it cannot sign synchronously, and AutoAgent refuses
    it at construction, pointing at AsyncAutoAgent."""
    remote = Keypair()
    signer = load_signer(signer=AsyncSigner(remote))
    assert signer.pubkey() == remote.pubkey()
    assert is_async_signer(signer)
    assert is_async_signer(AsyncSigner(remote))
    assert not is_async_signer(load_signer(signer=KmsSigner(remote)))
    assert not is_async_signer(remote)
    with pytest.raises(SDKConfigurationError, match="AsyncAutoAgent"):
        signer.sign_message(b"m")
    with pytest.raises(SDKConfigurationError, match="AsyncAutoAgent") as caught:
        AutoAgent(signer=AsyncSigner(remote), journal_path=":memory:")  # type: ignore[arg-type]
    assert caught.value.parameter == "signer"


def test_sign_async_awaits_an_async_signer_and_calls_a_sync_one() -> None:
    """sign_async awaits an async signer through load_signer's adapter, and calls a sync one;
    both give the Signature of the message."""
    remote = Keypair()
    for given in (AsyncSigner(remote), KmsSigner(remote), remote):
        signature = asyncio.run(sign_async(load_signer(signer=given), b"message"))
        assert signature == remote.sign_message(b"message")


def test_a_signer_that_raises_is_reported_as_an_sdk_error() -> None:
    """A signer raising a non-SDK error (an outage) is told to the flow as a
    TransactionBuildError; the row fails."""

    class Down(KmsSigner):
        def sign_message(self, message: bytes) -> bytes:
            raise ConnectionError("kms unreachable")

    books = Books(signer=load_signer(signer=Down(PAYER)))
    flow, sign, _ = until_sign(books)
    with pytest.raises(TransactionBuildError, match="ConnectionError") as caught:
        books.driver._perform(sign, None)
    assert caught.value.reason == "signer_failed"
    assert isinstance(caught.value.__cause__, ConnectionError)
    effect = flow.throw(caught.value)
    with pytest.raises(TransactionBuildError):
        finish(flow, effect, books)
    assert states(books) == ["failed"]


def test_pubkey_is_what_the_sign_effect_names() -> None:
    """Sign carries the payer's public key as a Pubkey and the message as bytes."""
    effect = Sign(b"abc", PAYER.pubkey())
    assert isinstance(effect.pubkey, Pubkey)
    assert effect.message == b"abc"
    assert repr(effect) == f"Sign(pubkey={PAYER.pubkey()}, message=<3 bytes>)"
    assert isinstance(PAYER.sign_message(effect.message), Signature)


def test_token_facts_are_a_flow_the_rpc_client_runs(
    server: GatewayServer, gateway: Gateway, funded_wallet: Funder
) -> None:
    """build_spl_transfer's chain facts come from a pure flow (one RpcCall) that RpcClient.run
    performs over the gateway's JSON-RPC; the client refuses any other effect."""
    usdc = gateway.genesis.token("USDC")
    holder, empty = funded_wallet(sol="1", usdc="1"), Keypair()
    client = RpcClient(server.rpc_url)
    facts = client.run(token_transfer_facts(usdc.mint, holder.pubkey()))
    assert (facts.mint.decimals, facts.mint.program_id) == (usdc.decimals, usdc.program_id)
    assert facts.recipient_account_exists
    assert not client.run(token_transfer_facts(usdc.mint, empty.pubkey())).recipient_account_exists
    with pytest.raises(SolanaRPCError) as caught:
        client.run(token_transfer_facts(holder.pubkey(), empty.pubkey()))  # a wallet, no mint
    assert caught.value.reason == "bad_mint"
    with pytest.raises(TypeError, match="only RpcCall"):
        client.run(until_sign(Books())[0])
