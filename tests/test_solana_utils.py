"""Transaction building and signing: structure, slots, and the serialization round trip."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.system_program import decode_transfer as decode_system_transfer
from solders.transaction import Transaction, VersionedTransaction
from spl.token.instructions import decode_transfer, decode_transfer_checked

from human_rpc_sdk import (
    TransactionBuildError,
    build_sol_transfer,
    build_spl_transfer,
    sign_and_serialize_transaction,
)
from human_rpc_sdk._headers import decode_payment_header, encode_payment_header
from human_rpc_sdk.solana_utils import (
    ASSOCIATED_TOKEN_PROGRAM_ID,
    MEMO_PROGRAM_ID,
    TOKEN_2022_PROGRAM_ID,
    TOKEN_PROGRAM_ID,
    MintInfo,
    TransferPlan,
    associated_token_address,
    build_transfer,
    decode_transaction,
    sign_transaction,
    split_reference,
)
from human_rpc_sdk.wallet import load_signer
from stub_gateway.instructions import decompile

PAYER = Keypair.from_seed(b"a" * 32)
PAYEE = Keypair.from_seed(b"b" * 32).pubkey()
MINT = Keypair.from_seed(b"m" * 32).pubkey()
BLOCKHASH = Hash.new_unique()


def instructions_of(tx: VersionedTransaction) -> list:  # type: ignore[type-arg]
    message = tx.message
    assert isinstance(message, Message | MessageV0)
    decoded = decompile(message)
    assert decoded is not None
    return decoded


def test_sol_transfer_moves_lamports_to_the_recipient() -> None:
    """build_sol_transfer makes one System transfer from the sender to the recipient."""
    tx = build_sol_transfer(PAYER, str(PAYEE), 1234, BLOCKHASH)
    (ix,) = instructions_of(tx)
    params = decode_system_transfer(ix)
    assert (params["from_pubkey"], params["to_pubkey"], params["lamports"]) == (
        PAYER.pubkey(),
        PAYEE,
        1234,
    )
    assert tx.message.account_keys[0] == PAYER.pubkey()
    assert tx.signatures == [Signature.default()]


def test_public_key_reference_is_a_read_only_account_of_the_transfer() -> None:
    """A public-key reference is appended to the transfer as read-only, non-signer."""
    reference = Keypair().pubkey()
    tx = build_sol_transfer(PAYER, PAYEE, 5_000_000, BLOCKHASH, reference=str(reference))
    (ix,) = instructions_of(tx)
    meta = ix.accounts[-1]
    assert (meta.pubkey, meta.is_signer, meta.is_writable) == (reference, False, False)


def test_text_reference_travels_in_a_memo_before_the_transfer() -> None:
    """Any other reference becomes an SPL Memo placed just before the transfer."""
    tx = build_sol_transfer(PAYER, PAYEE, 5_000_000, BLOCKHASH, reference="order-42")
    memo, transfer = instructions_of(tx)
    assert memo.program_id == MEMO_PROGRAM_ID
    assert bytes(memo.data) == b"order-42"
    assert transfer.program_id == SYSTEM_PROGRAM_ID


@pytest.mark.parametrize("program", [TOKEN_PROGRAM_ID, TOKEN_2022_PROGRAM_ID])
def test_spl_transfer_is_transfer_checked_between_associated_accounts(program: Pubkey) -> None:
    """TransferChecked from the payer's ATA to the payee's ATA under the mint's program."""
    tx = build_spl_transfer(
        PAYER,
        PAYEE,
        MINT,
        50_000,
        decimals=6,
        token_program=program,
        recent_blockhash=BLOCKHASH,
        create_recipient_account=False,
    )
    (ix,) = instructions_of(tx)
    params = decode_transfer_checked(ix)
    assert ix.program_id == program
    assert params.source == associated_token_address(PAYER.pubkey(), MINT, program)
    assert params.dest == associated_token_address(PAYEE, MINT, program)
    assert (params.mint, params.amount, params.decimals, params.owner) == (
        MINT,
        50_000,
        6,
        PAYER.pubkey(),
    )


def test_missing_recipient_account_is_created_idempotently() -> None:
    """When the payee has no token account, an idempotent create-ATA instruction comes first."""
    tx = build_spl_transfer(
        PAYER,
        PAYEE,
        MINT,
        1,
        decimals=6,
        token_program=TOKEN_PROGRAM_ID,
        recent_blockhash=BLOCKHASH,
        create_recipient_account=True,
    )
    create, _ = instructions_of(tx)
    assert create.program_id == ASSOCIATED_TOKEN_PROGRAM_ID
    assert bytes(create.data) == b"\x01"
    assert create.accounts[1].pubkey == associated_token_address(PAYEE, MINT, TOKEN_PROGRAM_ID)


def test_legacy_plain_transfer_for_the_deployed_service() -> None:
    """legacy=True, checked=False: a legacy message with the plain SPL Transfer (opcode 3)."""
    tx = build_spl_transfer(
        PAYER,
        PAYEE,
        MINT,
        100,
        decimals=6,
        token_program=TOKEN_PROGRAM_ID,
        recent_blockhash=BLOCKHASH,
        create_recipient_account=False,
        legacy=True,
        checked=False,
    )
    assert isinstance(tx.message, Message)
    (ix,) = instructions_of(tx)
    assert bytes(ix.data)[0] == 3
    assert decode_transfer(ix).amount == 100
    signed = base64.b64decode(sign_and_serialize_transaction(tx, PAYER))
    assert Transaction.from_bytes(signed).message == tx.message


def test_spl_transfer_without_facts_needs_rpc() -> None:
    """Without chain facts or an rpc_url the builder says what it needs."""
    with pytest.raises(TransactionBuildError, match="rpc_url"):
        build_spl_transfer(PAYER, PAYEE, MINT, 1)


@pytest.mark.parametrize("amount", [0, -1, 2**64, 1.5, True])
def test_amounts_outside_u64_are_refused(amount: object) -> None:
    """Amounts must be whole base units in 1..2**64-1."""
    with pytest.raises(TransactionBuildError, match="amount"):
        build_sol_transfer(PAYER, PAYEE, amount, BLOCKHASH)  # type: ignore[arg-type]


def test_signing_fills_only_the_signers_slot() -> None:
    """A second required signer's slot stays empty (for a facilitator to fill later)."""
    co_signer = Keypair()
    from solders.instruction import AccountMeta, Instruction

    ix = Instruction(MEMO_PROGRAM_ID, b"x", [AccountMeta(PAYER.pubkey(), True, True)])
    message = MessageV0.try_compile(co_signer.pubkey(), [ix], [], BLOCKHASH)
    unsigned = VersionedTransaction.populate(message, [Signature.default()] * 2)
    signed = sign_transaction(unsigned, load_signer(PAYER))
    assert signed.signatures[0] == Signature.default()
    assert signed.verify_with_results() == [False, True]


def test_signer_outside_the_transaction_is_refused() -> None:
    """Signing with a key that is not a required signer is an error, not a silent no-op."""
    tx = build_sol_transfer(PAYER, PAYEE, 1, BLOCKHASH)
    with pytest.raises(TransactionBuildError, match="not a required signer"):
        sign_transaction(tx, load_signer(Keypair()))


class LyingSigner:
    """Reports one key and signs with another."""

    def pubkey(self) -> Pubkey:
        return PAYER.pubkey()

    def sign_message(self, message: bytes) -> Signature:
        return Keypair().sign_message(message)


def test_signature_that_does_not_verify_is_refused() -> None:
    """A signer whose signature does not match its key is caught before anything is sent."""
    tx = build_sol_transfer(PAYER, PAYEE, 1, BLOCKHASH)
    with pytest.raises(TransactionBuildError, match="does not verify"):
        sign_transaction(tx, load_signer(signer=LyingSigner()))


def test_split_reference() -> None:
    """Public keys bind as accounts, anything else as memo text."""
    key = Keypair().pubkey()
    assert split_reference(str(key)) == (key, None)
    assert split_reference("abc") == (None, "abc")
    assert split_reference(None) == (None, None)


# -- Property 10 ------------------------------------------------------------------------------

keys = st.binary(min_size=32, max_size=32).map(lambda b: Keypair.from_seed(b).pubkey())
plans = st.builds(
    lambda payee, amount, token, program, decimals, create, reference, memo, legacy, checked: (
        TransferPlan(
            payer=PAYER.pubkey(),
            recipient=payee,
            amount=amount,
            destination=associated_token_address(payee, MINT, program) if token else payee,
            mint=MintInfo(MINT, program, decimals) if token else None,
            source=associated_token_address(PAYER.pubkey(), MINT, program) if token else None,
            create_destination=create,
            reference=reference,
            memo=memo,
            legacy=legacy,
            checked=checked,
        )
    ),
    keys,
    st.integers(1, 2**64 - 1),
    st.booleans(),
    st.sampled_from([TOKEN_PROGRAM_ID, TOKEN_2022_PROGRAM_ID]),
    st.integers(0, 9),
    st.booleans(),
    st.none() | keys,
    st.none() | st.text(min_size=1, max_size=64),
    st.booleans(),
    st.booleans(),
)


# **Feature: human-rpc-python-sdk, Property 10: For any valid transaction built by the SDK,
# serializing then deserializing should produce an equivalent transaction structure**
@given(plan=plans, blockhash=st.binary(min_size=32, max_size=32).map(Hash))
def test_property_10_serialization_round_trip(plan: TransferPlan, blockhash: Hash) -> None:
    """Built, signed, serialized, decoded (directly and through X-PAYMENT): the same transaction."""
    signed = sign_transaction(build_transfer(plan, blockhash), load_signer(PAYER))
    again = VersionedTransaction.from_bytes(bytes(signed))
    assert again == signed
    assert bytes(again) == bytes(signed)
    assert again.message.recent_blockhash == blockhash
    assert again.verify_with_results() == [True]
    assert instructions_of(again) == instructions_of(signed)
    header = decode_payment_header(encode_payment_header(signed, "devnet"))
    assert header.transaction == signed
    assert header.network == "devnet"
    if plan.legacy:
        assert Transaction.from_bytes(bytes(signed)).message == signed.message


def test_a_transaction_with_bytes_after_its_end_is_not_a_payment_header() -> None:
    """One payment, one byte form: a header whose transaction has trailing bytes is refused."""
    signed = sign_transaction(build_sol_transfer(PAYER, str(PAYEE), 1234, BLOCKHASH), PAYER)
    exact = encode_payment_header(signed, "devnet")
    assert decode_payment_header(exact).transaction == signed
    padded = base64.b64encode(bytes(signed) + b"\0").decode()
    with pytest.raises(ValueError, match="bytes follow its end"):
        decode_transaction(padded)
