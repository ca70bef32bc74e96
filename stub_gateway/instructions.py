"""Reading a payment transaction back: instructions, the transfer it makes, its memos.

Nothing here knows about invoices; the payment desk compares what is read to what it asked.
A transaction that is not a plain payment raises :class:`Unacceptable` with a reason code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from solders.instruction import AccountMeta, Instruction
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.system_program import decode_transfer as decode_system_transfer
from solders.transaction import VersionedTransaction
from spl.memo.constants import MEMO_PROGRAM_ID
from spl.token.constants import ASSOCIATED_TOKEN_PROGRAM_ID
from spl.token.instructions import decode_transfer

from human_rpc_sdk.solana_utils import TOKEN_PROGRAMS

__all__ = [
    "Payment",
    "Transfer",
    "Unacceptable",
    "check_signatures",
    "decompile",
    "exact_transaction",
    "legacy_instructions",
    "read_payment",
    "read_transfer",
]

COMPUTE_BUDGET_PROGRAM_ID: Final = Pubkey.from_string("ComputeBudget111111111111111111111111111111")
# The programs a payment may call: transfers, creating the payee's token account, memos, fees.
PAYMENT_PROGRAMS: Final = {
    SYSTEM_PROGRAM_ID,
    *TOKEN_PROGRAMS,
    ASSOCIATED_TOKEN_PROGRAM_ID,
    MEMO_PROGRAM_ID,
    COMPUTE_BUDGET_PROGRAM_ID,
}


class Unacceptable(Exception):
    """The transaction is not an acceptable payment; ``reason`` is a stable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Transfer:
    """A System transfer, an SPL ``TransferChecked`` or a plain SPL ``Transfer``."""

    instruction: Instruction
    kind: str  # "system", "checked" or "plain"
    source_owner: Pubkey
    destination: Pubkey
    amount: int
    mint: Pubkey | None = None
    decimals: int | None = None
    extras: list[Any] = field(default_factory=list)
    """Accounts beyond the instruction's own: where Solana Pay references go."""


@dataclass(frozen=True)
class Payment:
    """What a payment transaction holds: its one transfer, its memos, all its instructions."""

    transfer: Transfer
    memos: list[str]
    instructions: list[Instruction]


def decompile(message: Message | MessageV0) -> list[Instruction] | None:
    """The message's instructions with signer/writable flags; None if it cannot be read.

    Only static account keys are resolved (payments never use address lookup tables). The
    flags follow the message header, as the runtime reads them: the first
    ``num_required_signatures`` keys sign, and the last ``num_readonly_*`` of each group are
    read-only.
    """
    keys = list(message.account_keys)
    header = message.header
    signed = header.num_required_signatures
    writable_signed = signed - header.num_readonly_signed_accounts
    writable_unsigned_end = len(keys) - header.num_readonly_unsigned_accounts

    def meta(index: int) -> AccountMeta:
        is_signer = index < signed
        writable = index < writable_signed if is_signer else index < writable_unsigned_end
        return AccountMeta(keys[index], is_signer=is_signer, is_writable=writable)

    instructions = []
    for compiled in message.instructions:
        indexes = [compiled.program_id_index, *compiled.accounts]
        if any(i >= len(keys) for i in indexes):
            return None
        accounts = [meta(i) for i in compiled.accounts]
        instructions.append(
            Instruction(keys[compiled.program_id_index], bytes(compiled.data), accounts)
        )
    return instructions


def exact_transaction(raw: bytes) -> VersionedTransaction:
    """The transaction ``raw`` is, and nothing more: raises ``ValueError`` when it is not one
    or has bytes after its end.

    ``VersionedTransaction.from_bytes`` stops at the transaction's end and ignores the rest, so
    the same payment could be presented in any number of byte forms; a payment must be exactly
    the bytes it serialises to.
    """
    transaction = VersionedTransaction.from_bytes(raw)
    if bytes(transaction) != raw:
        raise ValueError(
            f"the transaction is {len(bytes(transaction))} bytes but {len(raw)} were sent"
        )
    return transaction


def check_signatures(transaction: VersionedTransaction) -> None:
    """Every required signature is present and verifies."""
    try:
        transaction.sanitize()
        results = transaction.verify_with_results()
    except Exception:  # noqa: BLE001 - solders raises several types for malformed input
        raise Unacceptable("invalid_transaction", "the transaction is malformed") from None
    if not results or not all(results):
        raise Unacceptable(
            "invalid_signature", "a required signature is missing or does not verify"
        )


def read_payment(transaction: VersionedTransaction) -> Payment:
    """Exactly one transfer, any memos, and nothing from programs a payment does not need."""
    instructions = _instructions(transaction)
    transfers: list[Transfer] = []
    memos: list[str] = []
    for ix in instructions:
        if ix.program_id not in PAYMENT_PROGRAMS:
            raise Unacceptable(
                "unexpected_instruction",
                f"the payment calls {ix.program_id}, which a payment does not need",
            )
        if ix.program_id == MEMO_PROGRAM_ID:
            try:
                memos.append(bytes(ix.data).decode("utf-8"))
            except UnicodeDecodeError:
                raise Unacceptable("invalid_memo", "a memo is not valid UTF-8") from None
        elif ix.program_id == SYSTEM_PROGRAM_ID or ix.program_id in TOKEN_PROGRAMS:
            transfer = read_transfer(ix)
            if transfer is None:
                raise Unacceptable(
                    "unexpected_instruction", f"an instruction of {ix.program_id} is not a transfer"
                )
            transfers.append(transfer)
    if len(transfers) != 1:
        raise Unacceptable(
            "no_single_transfer",
            f"a payment must hold exactly one transfer (found {len(transfers)})",
        )
    return Payment(transfers[0], memos, instructions)


def legacy_instructions(transaction: VersionedTransaction) -> list[Instruction]:
    """The instructions of a legacy transaction (what the deployed service decodes)."""
    if not isinstance(transaction.message, Message):
        raise Unacceptable(
            "not_legacy_transaction",
            "this service decodes legacy transactions only; send a legacy (non-versioned) "
            "transaction",
        )
    return _instructions(transaction)


def _instructions(transaction: VersionedTransaction) -> list[Instruction]:
    message = transaction.message
    if not isinstance(message, Message | MessageV0):
        raise Unacceptable("unsupported_version", "payments must be legacy or v0 transactions")
    if isinstance(message, MessageV0) and message.address_table_lookups:
        raise Unacceptable(
            "lookup_tables_not_supported", "payments must not use address lookup tables"
        )
    instructions = decompile(message)
    if instructions is None:
        raise Unacceptable(
            "unreadable_transaction", "the transaction's instructions cannot be read"
        )
    return instructions


def read_transfer(ix: Instruction) -> Transfer | None:
    """The transfer ``ix`` makes, or None when it is not one."""
    try:
        if ix.program_id == SYSTEM_PROGRAM_ID:
            params = decode_system_transfer(ix)
            return Transfer(
                ix,
                "system",
                params["from_pubkey"],
                params["to_pubkey"],
                params["lamports"],
                extras=list(ix.accounts[2:]),
            )
        if ix.program_id not in TOKEN_PROGRAMS:
            return None
        data = bytes(ix.data)
        if data[:1] == b"\x0c":
            return _transfer_checked(ix, data)
        plain = decode_transfer(ix)
        return Transfer(
            ix, "plain", plain.owner, plain.dest, plain.amount, extras=list(ix.accounts[3:])
        )
    except Exception:  # noqa: BLE001 - the decoders raise several types on foreign data
        return None


def _transfer_checked(ix: Instruction, data: bytes) -> Transfer | None:
    """``TransferChecked`` read as ``spl.token.instructions.decode_transfer_checked`` reads
    it (its layout: tag 12, amount u64 little-endian, decimals u8, any bytes after ignored;
    accounts source, mint, destination, owner, then signers), without its parser's cost."""
    accounts = ix.accounts
    if len(data) < 10 or len(accounts) < 4:
        return None
    return Transfer(
        ix,
        "checked",
        accounts[3].pubkey,
        accounts[2].pubkey,
        int.from_bytes(data[1:9], "little"),
        accounts[1].pubkey,
        data[9],
        list(accounts[4:]),
    )
