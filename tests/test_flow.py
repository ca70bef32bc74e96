"""The sans-I/O payment flow, driven by hand with made-up chain state (no network)."""

from __future__ import annotations

import ast
import json
from collections.abc import Generator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from requests.structures import CaseInsensitiveDict
from solders.account import Account
from solders.epoch_info import EpochInfo
from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.rpc.responses import (
    GetEpochInfoResp,
    GetGenesisHashResp,
    GetLatestBlockhashResp,
    GetMultipleAccountsResp,
    GetSignatureStatusesResp,
    RpcBlockhash,
    RpcResponseContext,
)
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.token.state import Mint, TokenAccount, TokenAccountState

import human_rpc_sdk._flow as flow_module
from human_rpc_sdk import InvoiceValidationError, PaymentError, SolanaRPCError
from human_rpc_sdk._flow import (
    ChainCache,
    HttpReply,
    PaymentContext,
    PaymentOutcome,
    Resend,
    RpcCall,
    pay,
)
from human_rpc_sdk._headers import (
    PAYMENT_RESPONSE_HEADER,
    decode_payment_header,
    encode_payment_response,
)
from human_rpc_sdk._limits import SpendingRules
from human_rpc_sdk._networks import GENESIS_HASHES
from human_rpc_sdk.solana_utils import (
    TOKEN_2022_PROGRAM_ID,
    TOKEN_PROGRAM_ID,
    associated_token_address,
)
from human_rpc_sdk.wallet import KeypairSigner
from stub_gateway.instructions import decompile

from .conftest import FakeClock, booked

PAYER = Keypair.from_seed(b"p" * 32)
PAYEE = Keypair.from_seed(b"q" * 32).pubkey()
USDC = Pubkey.from_string("4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU")
SOL = 10**9


# These tests exercise the flow's mechanics; the spending rules have tests of their own.
UNLIMITED = SpendingRules.build(
    max_payment=dict.fromkeys(("SOL", "USDC", "PYUSD")),
    budget=dict.fromkeys(("SOL", "USDC", "PYUSD")),
    create_token_accounts=True,
)


def context(
    cache: ChainCache | None = None,
    clock: FakeClock | None = None,
    rules: SpendingRules = UNLIMITED,
) -> PaymentContext:
    return PaymentContext(
        signer=KeypairSigner(PAYER),
        network="devnet",
        cache=cache or ChainCache(),
        clock=clock or FakeClock(1000.0),
        now=lambda: datetime(2026, 11, 21, tzinfo=UTC),
        nonce=iter(f"nonce-{i}" for i in range(1000)).__next__,
        rules=rules,
    )


def paying(reply: HttpReply, ctx: PaymentContext) -> Generator[Any, Any, PaymentOutcome]:
    """The payment flow with its bookkeeping (approve, journal) answered in memory."""
    return booked(pay(reply, ctx))


def challenge(**invoice: Any) -> HttpReply:
    body = {"amount": "0.05", "currency": "USDC", "recipient": str(PAYEE), "network": "devnet"}
    body.update(invoice)
    document = {
        "status": "payment_required",
        "invoice": {k: v for k, v in body.items() if v is not None},
    }
    return HttpReply(402, CaseInsensitiveDict(), json.dumps(document).encode(), "http://shop/item")


def wallet(lamports: int) -> Account:
    return Account(lamports=lamports, data=b"", owner=SYSTEM_PROGRAM_ID, executable=False)


def mint_account(program: Pubkey = TOKEN_PROGRAM_ID, decimals: int = 6) -> Account:
    mint = Mint(mint_authority=None, supply=10**12, decimals=decimals, is_initialized=True)
    return Account(lamports=1_461_600, data=bytes(mint), owner=program, executable=False)


def token_account(
    owner: Pubkey, amount: int, program: Pubkey = TOKEN_PROGRAM_ID, frozen: bool = False
) -> Account:
    state = TokenAccountState.Frozen if frozen else TokenAccountState.Initialized
    data = TokenAccount(USDC, owner, amount, None, state, None, 0, None)
    return Account(lamports=2_039_280, data=bytes(data), owner=program, executable=False)


def accounts_reply(*accounts: Account | None) -> GetMultipleAccountsResp:
    return GetMultipleAccountsResp(list(accounts), RpcResponseContext(1))


def blockhash_reply(blockhash: Hash) -> GetLatestBlockhashResp:
    return GetLatestBlockhashResp(RpcBlockhash(blockhash, 200), RpcResponseContext(1))


def latest(blockhash: Hash, genesis: str = GENESIS_HASHES["devnet"]) -> list[Any]:
    """The replies to a new blockhash's fetch: getLatestBlockhash, then the getGenesisHash
    asked with it (the chain the blockhash, and every payment over it, belongs to)."""
    return [blockhash_reply(blockhash), GetGenesisHashResp(Hash.from_string(genesis))]


def run_until_resend(gen: Generator[Any, Any, PaymentOutcome], *answers: Any) -> Resend:
    effect = next(gen)
    for answer in answers:
        assert isinstance(effect, RpcCall)
        effect = gen.send(answer)
    assert isinstance(effect, Resend)
    return effect


def token_state(payer_usdc: int, payee_has_account: bool = True) -> GetMultipleAccountsResp:
    """Chain state for a first (uncached) USDC payment: payer, mint, then ATAs per program."""
    return accounts_reply(
        wallet(SOL),
        mint_account(),
        token_account(PAYER.pubkey(), payer_usdc),
        token_account(PAYEE, 0) if payee_has_account else None,
        None,
        None,
        None,  # the Clock sysvar (for a Token-2022 mint's transfer fee epoch): not needed here
    )


def test_sol_payment_effects_and_receipt() -> None:
    """SOL: one RPC batch (accounts, blockhash and its chain), then a resend carrying the
    signed transfer."""
    blockhash = Hash.new_unique()
    gen = paying(challenge(currency="SOL", amount="0.25"), context())
    first = next(gen)
    assert isinstance(first, RpcCall)
    assert [r.method for r in first.requests] == [
        "getMultipleAccounts",
        "getLatestBlockhash",
        "getGenesisHash",
    ]
    resend = gen.send([accounts_reply(wallet(SOL), wallet(1)), *latest(blockhash)])
    assert isinstance(resend, Resend)
    header = decode_payment_header(resend.headers["X-PAYMENT"])
    tx = header.transaction
    assert tx.message.recent_blockhash == blockhash
    assert tx.verify_with_results() == [True]
    receipt = resend.receipt
    assert (receipt.amount, receipt.currency, receipt.atomic_amount) == (
        Decimal("0.25"),
        "SOL",
        250_000_000,
    )
    assert receipt.signature == str(tx.signatures[0])
    assert receipt.payer == str(PAYER.pubkey())
    with pytest.raises(StopIteration) as done:
        gen.send(HttpReply(200, CaseInsensitiveDict(), b"ok", "http://shop/item"))
    outcome: PaymentOutcome = done.value.value
    assert outcome.error is None
    assert outcome.receipt.accepted


def test_blockhash_is_reused_within_its_ttl_only() -> None:
    """A second payment within the TTL skips getLatestBlockhash; after it, fetches again."""
    clock, cache = FakeClock(1000.0), ChainCache(blockhash_ttl=20)
    run_until_resend(
        paying(challenge(currency="SOL"), context(cache, clock)),
        [accounts_reply(wallet(SOL), wallet(1)), *latest(Hash.new_unique())],
    )
    clock.now += 19
    again = next(paying(challenge(currency="SOL"), context(cache, clock)))
    assert isinstance(again, RpcCall)
    assert [r.method for r in again.requests] == ["getMultipleAccounts"]
    clock.now += 1
    later = next(paying(challenge(currency="SOL"), context(cache, clock)))
    assert isinstance(later, RpcCall)
    assert [r.method for r in later.requests] == [
        "getMultipleAccounts",
        "getLatestBlockhash",
        "getGenesisHash",
    ]


def test_mint_is_read_once_then_cached() -> None:
    """The first token payment reads the mint and both programs' accounts; later ones do not."""
    cache = ChainCache(account_ttl=0)  # accounts read every time: what the second one asks
    gen = paying(challenge(), context(cache))
    first = next(gen)
    assert isinstance(first, RpcCall)
    assert len(json.loads(first.requests[0].body.to_json())["params"][0]) == 7  # + Clock
    gen.send([token_state(10**6), *latest(Hash.new_unique())])
    second = next(paying(challenge(), context(cache)))
    assert isinstance(second, RpcCall)
    keys = json.loads(second.requests[0].body.to_json())["params"][0]
    assert keys == [
        str(PAYER.pubkey()),
        str(associated_token_address(PAYER.pubkey(), USDC, TOKEN_PROGRAM_ID)),
        str(associated_token_address(PAYEE, USDC, TOKEN_PROGRAM_ID)),
    ]


def test_token_payment_is_transfer_checked_to_the_payees_account() -> None:
    """USDC: TransferChecked of exactly the invoiced units to the payee's associated account."""
    resend = run_until_resend(
        paying(challenge(), context()), [token_state(10**6), *latest(Hash.new_unique())]
    )
    tx = decode_payment_header(resend.headers["X-PAYMENT"]).transaction
    instructions = decompile(tx.message)  # type: ignore[arg-type]
    assert instructions is not None
    transfer = instructions[-1]
    assert transfer.program_id == TOKEN_PROGRAM_ID
    assert bytes(transfer.data)[0] == 12
    assert int.from_bytes(bytes(transfer.data)[1:9], "little") == 50_000
    assert transfer.accounts[2].pubkey == associated_token_address(PAYEE, USDC, TOKEN_PROGRAM_ID)
    assert resend.receipt.rent_lamports == 0


def test_missing_payee_account_is_created_and_its_rent_reported() -> None:
    """No payee token account: create it first; the receipt shows the rent the payer adds."""
    resend = run_until_resend(
        paying(challenge(), context()),
        [token_state(10**6, payee_has_account=False), *latest(Hash.new_unique())],
    )
    tx = decode_payment_header(resend.headers["X-PAYMENT"]).transaction
    instructions = decompile(tx.message)  # type: ignore[arg-type]
    assert instructions is not None
    assert str(instructions[0].program_id) == "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"
    assert resend.receipt.rent_lamports == 2_039_280


def test_token_2022_mint_uses_its_program_for_accounts() -> None:
    """A Token-2022 mint: accounts derived and transfer sent under Token-2022."""
    state = accounts_reply(
        wallet(SOL),
        mint_account(TOKEN_2022_PROGRAM_ID),
        None,
        None,
        token_account(PAYER.pubkey(), 10**6, TOKEN_2022_PROGRAM_ID),
        None,
        None,  # the Clock sysvar
    )
    mint = str(Keypair().pubkey())
    resend = run_until_resend(
        paying(
            challenge(currency="PYUSD2", mint=mint),
            context(
                rules=SpendingRules.build(max_payment={mint: None}, create_token_accounts=True)
            ),
        ),
        [state, *latest(Hash.new_unique())],
    )
    tx = decode_payment_header(resend.headers["X-PAYMENT"]).transaction
    instructions = decompile(tx.message)  # type: ignore[arg-type]
    assert instructions is not None
    assert instructions[-1].program_id == TOKEN_2022_PROGRAM_ID
    assert resend.receipt.rent_lamports == 2_074_080  # 170-byte Token-2022 account


def test_insufficient_tokens_name_the_wallet_and_the_shortfall() -> None:
    """Too few tokens: PaymentError with the address to fund and the amount missing; no resend."""
    gen = paying(challenge(), context())
    next(gen)
    with pytest.raises(PaymentError) as caught:
        gen.send([token_state(10_000), *latest(Hash.new_unique())])
    error = caught.value
    assert error.reason == "insufficient_funds"
    assert error.details == {
        "address": str(PAYER.pubkey()),
        "missing": Decimal("0.04"),
        "currency": "USDC",
    }
    assert str(PAYER.pubkey()) in str(error)
    assert "0.04 USDC" in str(error)
    assert error.signature is None


def test_insufficient_sol_counts_the_fee() -> None:
    """Exactly the price but not the fee: short by the fee."""
    gen = paying(challenge(currency="SOL", amount="0.5"), context())
    next(gen)
    with pytest.raises(PaymentError) as caught:
        gen.send([accounts_reply(wallet(SOL // 2), wallet(1)), *latest(Hash.new_unique())])
    assert caught.value.details["missing"] == Decimal("0.000005")


def test_payment_may_not_strand_the_payer_below_rent() -> None:
    """Leaving a few lamports in the payer's account would fail on chain: refused up front."""
    gen = paying(challenge(currency="SOL", amount="0.5"), context())
    next(gen)
    with pytest.raises(PaymentError, match=r"below the 0\.00089088 SOL") as caught:
        gen.send(
            [
                accounts_reply(wallet(SOL // 2 + 5_000 + 10), wallet(1)),
                *latest(Hash.new_unique()),
            ]
        )
    assert caught.value.details["missing"] == Decimal("0.00089087")


def test_emptying_the_wallet_exactly_is_allowed() -> None:
    """Spending the whole balance (price + fee) leaves 0, which Solana accepts."""
    run_until_resend(
        paying(challenge(currency="SOL", amount="0.5"), context()),
        [accounts_reply(wallet(SOL // 2 + 5_000), wallet(1)), *latest(Hash.new_unique())],
    )


def test_sol_below_rent_to_a_new_account_is_refused() -> None:
    """A tiny SOL payment to an account that does not exist would fail: refused, nothing signed."""
    gen = paying(challenge(currency="SOL", amount="0.0001"), context())
    next(gen)
    with pytest.raises(PaymentError, match="refuses to create one") as caught:
        gen.send([accounts_reply(wallet(SOL), None), *latest(Hash.new_unique())])
    assert caught.value.reason == "unpayable"


def test_frozen_token_account_is_reported() -> None:
    """A frozen source account cannot pay: say so instead of failing on chain."""
    state = accounts_reply(
        wallet(SOL),
        mint_account(),
        token_account(PAYER.pubkey(), 10**6, frozen=True),
        None,
        None,
        None,
        None,  # the Clock sysvar
    )
    gen = paying(challenge(), context())
    next(gen)
    with pytest.raises(PaymentError, match="frozen"):
        gen.send([state, *latest(Hash.new_unique())])


def test_mint_that_is_not_a_mint_is_an_invoice_error() -> None:
    """An invoice naming a wallet as its mint is refused as invalid, naming invoice.mint."""
    other = str(Keypair().pubkey())
    gen = paying(challenge(currency="XYZ", mint=other), context())
    next(gen)
    with pytest.raises(InvoiceValidationError) as caught:
        gen.send(
            [
                accounts_reply(wallet(SOL), wallet(5), None, None, None, None, None),
                *latest(Hash.new_unique()),
            ]
        )
    assert caught.value.field == "invoice.mint"


def test_legacy_token_account_must_be_the_payees_associated_account() -> None:
    """A legacy body naming someone else's token account is refused."""
    body = {
        "payment": {
            "recipientWallet": str(PAYEE),
            "tokenAccount": str(Keypair().pubkey()),
            "mint": str(USDC),
            "amount": 100,
            "cluster": "devnet",
        }
    }
    reply = HttpReply(402, CaseInsensitiveDict(), json.dumps(body).encode(), "http://svc/tasks")
    gen = paying(reply, context())
    next(gen)
    with pytest.raises(InvoiceValidationError) as caught:
        gen.send([token_state(10**6), *latest(Hash.new_unique())])
    assert caught.value.field == "payment.tokenAccount"


def test_payment_without_reference_carries_a_nonce_memo() -> None:
    """Two equal payments without a reference still differ (random memo)."""
    state = [accounts_reply(wallet(SOL), wallet(1)), *latest(Hash.new_unique())]
    ctx = context()
    one = run_until_resend(paying(challenge(currency="SOL"), ctx), state)
    two = run_until_resend(paying(challenge(currency="SOL"), ctx))  # all from the cache
    assert one.receipt.signature != two.receipt.signature


def test_second_402_after_paying_is_an_error_with_the_signature() -> None:
    """Still 402 after paying: the outcome carries a PaymentError with signature and reason."""
    gen = paying(challenge(currency="SOL"), context())
    resend = run_until_resend(
        gen, [accounts_reply(wallet(SOL), wallet(1)), *latest(Hash.new_unique())]
    )
    headers = CaseInsensitiveDict(
        {
            PAYMENT_RESPONSE_HEADER: encode_payment_response(
                success=False,
                transaction="",
                network="devnet",
                payer=None,
                error_reason="invoice_expired",
            )
        }
    )
    chain = gen.send(HttpReply(402, headers, b"{}", "http://shop/item"))
    # A refusal: the chain is asked whether the payment landed anyway: first whether the node
    # serves the payment's chain at all (another chain proves nothing), then whether a node
    # that has seen the blockhash's slot (1) is past its last valid block height (200).
    assert isinstance(chain, RpcCall)
    assert [r.method for r in chain.requests] == ["getGenesisHash"]
    check = gen.send([GetGenesisHashResp(Hash.from_string(GENESIS_HASHES["devnet"]))])
    assert isinstance(check, RpcCall)
    assert [r.method for r in check.requests] == ["getEpochInfo"]
    assert json.loads(check.requests[0].body.to_json())["params"][0]["minContextSlot"] == 1
    lookup = gen.send([GetEpochInfoResp(EpochInfo(0, 0, 432_000, 5, 200, 3))])
    assert isinstance(lookup, RpcCall)
    assert [r.method for r in lookup.requests] == ["getSignatureStatuses"]
    with pytest.raises(StopIteration) as done:
        gen.send([GetSignatureStatusesResp([None], RpcResponseContext(1))])
    outcome: PaymentOutcome = done.value.value
    assert outcome.error is not None
    assert outcome.error.signature == resend.receipt.signature
    assert outcome.error.reason == "payment_refused"
    assert "invoice_expired" in str(outcome.error)
    assert not outcome.receipt.accepted
    assert outcome.receipt.state == "refused"
    assert outcome.receipt.landed is None


def test_a_node_answering_fewer_accounts_than_asked_is_an_rpc_error() -> None:
    """A node that answers getMultipleAccounts short: SolanaRPCError, nothing signed."""
    gen = paying(challenge(currency="SOL", amount="0.25"), context())
    next(gen)
    with pytest.raises(SolanaRPCError) as caught:
        gen.send([accounts_reply(wallet(SOL)), *latest(Hash.new_unique())])
    assert caught.value.reason == "rpc_bad_reply"


def test_flows_perform_effects_only_through_perform() -> None:
    """In the payment core, the only bare ``yield`` is perform's: every effect's result is
    typed (``x = yield from perform(effect)``)."""
    package = Path(flow_module.__file__).parent
    bare = []
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if not any(
            isinstance(node, ast.ImportFrom) and node.module in ("_effects", "_protocol")
            for node in tree.body
        ):
            continue
        for function in ast.walk(tree):
            if isinstance(function, ast.FunctionDef) and function.name != "perform":
                inner = [n for n in ast.walk(function) if isinstance(n, ast.Yield)]
                bare += [f"{path.name}:{n.lineno}" for n in inner]
    assert bare == []
