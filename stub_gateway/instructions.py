"""Reading a compiled message back into instructions with their account metas."""

from __future__ import annotations

from solders.instruction import AccountMeta, Instruction
from solders.message import Message, MessageV0

__all__ = ["decompile"]


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
