"""Building and signing Solana payment transactions.

The builders are pure: given the chain facts (blockhash, mint decimals, token program, whether
the payee's token account exists) they return an *unsigned* transaction and do no I/O. Only
:func:`build_spl_transfer` may look facts up, and only when asked to by ``rpc_url``.

Instruction layouts come from solders (System Program, compute budget, the associated token
address). The four SPL instructions a payment needs (Token and Token-2022 ``Transfer`` and
``TransferChecked``, the Associated Token Account program's ``CreateIdempotent``, a Memo) are
fixed layouts of a tag byte and little-endian integers, built here with solders: solana-py's
``spl`` builders would import pydantic and construct (about 100 ms) for them. The tests check
them byte for byte, accounts included, against ``spl``'s builders.

Every transaction is a :class:`~solders.transaction.VersionedTransaction`. With
``legacy=True`` it holds a legacy message and serializes byte for byte as a legacy
``Transaction`` (what the deployed HumanRPC service decodes); otherwise a v0 message.

Binding a payment to its invoice follows Solana Pay: a ``reference`` that is a public key is
appended to the transfer instruction as a read-only, non-signer account; any other reference
travels in an SPL Memo instruction placed just before the transfer.
"""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from solders.account import Account
from solders.clock import Clock
from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.message import Message, MessageV0, to_bytes_versioned
from solders.pubkey import Pubkey
from solders.rent import Rent
from solders.signature import Signature
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.system_program import TransferParams as SystemTransferParams
from solders.system_program import transfer as system_transfer
from solders.token.associated import get_associated_token_address
from solders.token.state import Mint, TokenAccount, TokenAccountState
from solders.transaction import VersionedTransaction

from ._jsonrpc import latest_blockhash_request, multiple_accounts_request
from ._protocol import Flow, RpcCall, perform
from .exceptions import SolanaRPCError, TransactionBuildError

if TYPE_CHECKING:
    from .wallet import Signer

__all__ = [
    "ASSOCIATED_TOKEN_PROGRAM_ID",
    "MEMO_PROGRAM_ID",
    "SYSTEM_PROGRAM_ID",
    "TOKEN_2022_PROGRAM_ID",
    "TOKEN_EXTENSION_NAMES",
    "TOKEN_PROGRAM_ID",
    "MintExtensions",
    "MintInfo",
    "TokenTransferFacts",
    "TransferFee",
    "TransferPlan",
    "add_signature",
    "associated_token_address",
    "build_exact_transfer",
    "build_sol_transfer",
    "build_spl_transfer",
    "build_transfer",
    "decode_transaction",
    "get_latest_blockhash",
    "message_to_sign",
    "network_fee",
    "parse_epoch",
    "parse_mint",
    "parse_token_account",
    "sign_and_serialize_transaction",
    "sign_transaction",
    "token_account_rent",
    "token_account_size",
    "token_transfer_facts",
]

TOKEN_PROGRAM_ID: Final = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
TOKEN_2022_PROGRAM_ID: Final = Pubkey.from_string("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
ASSOCIATED_TOKEN_PROGRAM_ID: Final = Pubkey.from_string(
    "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"
)
MEMO_PROGRAM_ID: Final = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
TOKEN_PROGRAMS: Final = (TOKEN_PROGRAM_ID, TOKEN_2022_PROGRAM_ID)
LAMPORTS_PER_SIGNATURE: Final = 5_000
MINT_SIZE: Final = 82
TOKEN_ACCOUNT_SIZE: Final = 165
_RENT: Final = Rent.default()
_SYSVAR_OWNER: Final = Pubkey.from_string("Sysvar1111111111111111111111111111111111111")


@dataclass(frozen=True)
class TransferFee:
    """A Token-2022 transfer fee: ``basis_points`` of each transfer, at most ``maximum_fee``
    base units, from ``epoch`` on. The fee is withheld from what the payee receives."""

    epoch: int
    maximum_fee: int
    basis_points: int

    def fee(self, amount: int) -> int:
        """The base units withheld from a transfer of ``amount`` (rounded up, as on chain)."""
        if self.basis_points == 0 or amount == 0:
            return 0
        return min(-(-amount * self.basis_points // 10_000), self.maximum_fee)

    @property
    def charges(self) -> bool:
        return self.basis_points > 0 and self.maximum_fee > 0


@dataclass(frozen=True)
class MintExtensions:
    """What a Token-2022 mint's extensions change about paying with it (empty: nothing).

    ``types`` lists every extension type number the mint carries, known or not. Transfer
    fees, hooks, permanent delegates, non-transferable and default-frozen mints change what a
    payee receives, whether a plain transfer can succeed, or who controls the tokens.
    """

    types: tuple[int, ...] = ()
    older_transfer_fee: TransferFee | None = None
    newer_transfer_fee: TransferFee | None = None
    transfer_hook_program: Pubkey | None = None
    permanent_delegate: Pubkey | None = None
    default_frozen: bool = False
    non_transferable: bool = False
    paused: bool = False

    def transfer_fee(self, epoch: int | None) -> TransferFee | None:
        """The fee that applies in ``epoch``; with no epoch known, the dearer of the two."""
        older, newer = self.older_transfer_fee, self.newer_transfer_fee
        if older is None or newer is None:
            return None
        if epoch is None:
            return max(older, newer, key=lambda f: (f.basis_points, f.maximum_fee))
        return newer if epoch >= newer.epoch else older

    def risks(self, epoch: int | None) -> dict[str, str]:
        """The extensions that make a payment risky, by opt-in name, each with what it does."""
        found: dict[str, str] = {}
        fee = self.transfer_fee(epoch)
        if fee is not None and fee.charges:
            found["transfer_fee"] = (
                f"a transfer fee of {fee.basis_points / 100:g}% (at most {fee.maximum_fee} base "
                "units) withheld from what the payee receives"
            )
        if self.transfer_hook_program is not None:
            found["transfer_hook"] = (
                f"a transfer hook that runs program {self.transfer_hook_program} on every "
                "transfer (a plain transfer without its accounts fails on chain)"
            )
        if self.permanent_delegate is not None:
            found["permanent_delegate"] = (
                f"a permanent delegate ({self.permanent_delegate}) that can move or burn tokens "
                "from any account of this mint"
            )
        if self.non_transferable:
            found["non_transferable"] = "non-transferable tokens (any transfer fails on chain)"
        if self.default_frozen:
            found["default_account_state"] = (
                "new token accounts that start frozen (a payment into one fails on chain)"
            )
        return found


TOKEN_EXTENSION_NAMES: Final = (
    "default_account_state",
    "non_transferable",
    "permanent_delegate",
    "transfer_fee",
    "transfer_hook",
)
"""Token-2022 extensions an agent refuses unless allowed per mint (``allow_token_extensions``)."""


@dataclass(frozen=True)
class MintInfo:
    """What a payment needs to know about an SPL mint."""

    address: Pubkey
    program_id: Pubkey
    decimals: int
    extensions: MintExtensions = field(default_factory=MintExtensions)

    @property
    def cacheable(self) -> bool:
        """Whether nothing about the mint can change (no extensions an authority may update)."""
        return not self.extensions.types


@dataclass(frozen=True)
class TransferPlan:
    """Everything needed to build one payment transfer, with no I/O left to do.

    ``destination`` is the payee wallet for SOL, or the payee's token account for a token.
    ``create_destination`` adds the idempotent create-associated-token-account instruction.
    ``checked`` selects ``TransferChecked`` (mint and decimals asserted on chain) over the
    plain SPL ``Transfer`` that the deployed HumanRPC service's verifier expects.
    """

    payer: Pubkey
    recipient: Pubkey
    amount: int
    destination: Pubkey
    mint: MintInfo | None = None
    source: Pubkey | None = None
    create_destination: bool = False
    reference: Pubkey | None = None
    memo: str | None = None
    legacy: bool = False
    checked: bool = True


@functools.lru_cache(maxsize=4096)
def associated_token_address(owner: Pubkey, mint: Pubkey, token_program: Pubkey) -> Pubkey:
    """The associated token account of ``owner`` for ``mint`` under ``token_program``.

    A program-address search (hashes until one is off the curve), so derived once per
    (owner, mint, program) and remembered: the same few accounts pay and are paid again."""
    return get_associated_token_address(owner, mint, token_program)


def parse_mint(address: Pubkey, account: Account | None) -> MintInfo:
    """Read a mint account. Raises ``ValueError`` saying why it is not a usable SPL mint."""
    if account is None:
        raise ValueError(f"mint {address} does not exist on this network")
    if account.owner not in TOKEN_PROGRAMS:
        raise ValueError(f"{address} is not an SPL token mint (it is owned by {account.owner})")
    data = bytes(account.data)
    if len(data) < MINT_SIZE:
        raise ValueError(f"{address} is not an SPL token mint (its data is {len(data)} bytes)")
    try:
        mint = Mint.from_bytes(data[:MINT_SIZE])
    except ValueError:
        raise ValueError(f"{address} is not an SPL token mint (unreadable mint data)") from None
    if not mint.is_initialized:
        raise ValueError(f"mint {address} is not initialized")
    extensions = MintExtensions()
    if account.owner == TOKEN_2022_PROGRAM_ID and len(data) > MINT_SIZE:
        extensions = _mint_extensions(address, data)
    return MintInfo(
        address=address,
        program_id=account.owner,
        decimals=mint.decimals,
        extensions=extensions,
    )


# -- Token-2022 extensions ------------------------------------------------------------------
# Layouts from the spl-token-2022 sources (interface/src/extension): after the 82-byte mint,
# zero padding to 165 bytes, one account-type byte (1 = mint), then TLV entries: u16 type,
# u16 length, value. Extension type numbers and the account extensions a mint requires:

_UNINITIALIZED: Final = 0
_TRANSFER_FEE_CONFIG: Final = 1
_TRANSFER_FEE_AMOUNT: Final = 2
_DEFAULT_ACCOUNT_STATE: Final = 6
_IMMUTABLE_OWNER: Final = 7
_NON_TRANSFERABLE: Final = 9
_PERMANENT_DELEGATE: Final = 12
_NON_TRANSFERABLE_ACCOUNT: Final = 13
_TRANSFER_HOOK: Final = 14
_TRANSFER_HOOK_ACCOUNT: Final = 15
_PAUSABLE: Final = 26
_PAUSABLE_ACCOUNT: Final = 27
_ACCOUNT_TYPE_MINT: Final = 1
_ACCOUNT_FROZEN: Final = 2
_MULTISIG_SIZE: Final = 355
# Value sizes of the account extensions, and those each mint extension requires.
_ACCOUNT_EXTENSION_BYTES: Final = {
    _TRANSFER_FEE_AMOUNT: 8,
    _IMMUTABLE_OWNER: 0,
    _NON_TRANSFERABLE_ACCOUNT: 0,
    _TRANSFER_HOOK_ACCOUNT: 1,
    _PAUSABLE_ACCOUNT: 0,
}
_REQUIRED_ACCOUNT_EXTENSIONS: Final = {
    _TRANSFER_FEE_CONFIG: (_TRANSFER_FEE_AMOUNT,),
    _NON_TRANSFERABLE: (_NON_TRANSFERABLE_ACCOUNT, _IMMUTABLE_OWNER),
    _TRANSFER_HOOK: (_TRANSFER_HOOK_ACCOUNT,),
    _PAUSABLE: (_PAUSABLE_ACCOUNT,),
}


def _mint_extensions(address: Pubkey, data: bytes) -> MintExtensions:
    if len(data) <= TOKEN_ACCOUNT_SIZE or any(data[MINT_SIZE:TOKEN_ACCOUNT_SIZE]):
        raise ValueError(f"mint {address} has malformed Token-2022 extension data")
    if data[TOKEN_ACCOUNT_SIZE] != _ACCOUNT_TYPE_MINT:
        raise ValueError(f"{address} is a Token-2022 account but not a mint")
    found: dict[str, Any] = {}
    types: list[int] = []
    start = TOKEN_ACCOUNT_SIZE + 1
    while start + 4 <= len(data):
        kind = int.from_bytes(data[start : start + 2], "little")
        length = int.from_bytes(data[start + 2 : start + 4], "little")
        if kind == _UNINITIALIZED:
            break
        value = data[start + 4 : start + 4 + length]
        if len(value) != length:
            raise ValueError(f"mint {address} has a truncated Token-2022 extension ({kind})")
        types.append(kind)
        found.update(_read_extension(kind, value))
        start += 4 + length
    return MintExtensions(types=tuple(types), **found)


def _read_extension(kind: int, value: bytes) -> dict[str, Any]:
    if kind == _TRANSFER_FEE_CONFIG and len(value) >= 108:
        return {
            "older_transfer_fee": _transfer_fee(value[72:90]),
            "newer_transfer_fee": _transfer_fee(value[90:108]),
        }
    if kind == _TRANSFER_HOOK and len(value) >= 64:
        return {"transfer_hook_program": _optional_key(value[32:64])}
    if kind == _PERMANENT_DELEGATE and len(value) >= 32:
        return {"permanent_delegate": _optional_key(value[:32])}
    if kind == _DEFAULT_ACCOUNT_STATE and len(value) >= 1:
        return {"default_frozen": value[0] == _ACCOUNT_FROZEN}
    if kind == _NON_TRANSFERABLE:
        return {"non_transferable": True}
    if kind == _PAUSABLE and len(value) >= 33:
        return {"paused": value[32] != 0}
    return {}


def _transfer_fee(raw: bytes) -> TransferFee:
    return TransferFee(
        epoch=int.from_bytes(raw[0:8], "little"),
        maximum_fee=int.from_bytes(raw[8:16], "little"),
        basis_points=int.from_bytes(raw[16:18], "little"),
    )


def _optional_key(raw: bytes) -> Pubkey | None:
    return None if not any(raw) else Pubkey.from_bytes(raw)


def token_account_size(mint: MintInfo) -> int:
    """Bytes of a new associated token account for ``mint``: 165 for the Token program; for
    Token-2022, the base account, the account-type byte, and the ImmutableOwner extension plus
    every account extension the mint's extensions require (as ``GetAccountDataSize``)."""
    if mint.program_id != TOKEN_2022_PROGRAM_ID:
        return TOKEN_ACCOUNT_SIZE
    needed = {_IMMUTABLE_OWNER}
    for kind in mint.extensions.types:
        needed.update(_REQUIRED_ACCOUNT_EXTENSIONS.get(kind, ()))
    size = TOKEN_ACCOUNT_SIZE + 1 + sum(4 + _ACCOUNT_EXTENSION_BYTES[k] for k in needed)
    return size + 2 if size == _MULTISIG_SIZE else size


def token_account_rent(mint: MintInfo) -> int:
    """Lamports that make a new associated token account for ``mint`` rent-exempt."""
    return _RENT.minimum_balance(token_account_size(mint))


def parse_epoch(account: Account | None) -> int | None:
    """The epoch in the Clock sysvar's account data; None when it is missing or unreadable."""
    if account is None or account.owner != _SYSVAR_OWNER:
        return None
    try:
        return int(Clock.from_bytes(bytes(account.data)).epoch)
    except ValueError:
        return None


def network_fee(signatures: int, compute_unit_limit: int = 0, compute_unit_price: int = 0) -> int:
    """Lamports a transaction costs its fee payer: the base fee per signature plus the
    priority fee (compute-unit limit times price in micro-lamports, rounded up)."""
    priority = -(-compute_unit_limit * compute_unit_price // 1_000_000)
    return LAMPORTS_PER_SIGNATURE * signatures + priority


def parse_token_account(account: Account | None, program_id: Pubkey) -> TokenAccount | None:
    """Read a token account owned by ``program_id``; None when it does not exist.

    Raises ``ValueError`` when the account exists but is not a token account of that program.
    """
    if account is None:
        return None
    if account.owner != program_id or len(account.data) < TOKEN_ACCOUNT_SIZE:
        raise ValueError("the account exists but is not a token account of the mint's program")
    try:
        return TokenAccount.from_bytes(bytes(account.data)[:TOKEN_ACCOUNT_SIZE])
    except ValueError:
        raise ValueError("the account's token data is unreadable") from None


def is_frozen(account: TokenAccount) -> bool:
    return account.state == TokenAccountState.Frozen


# -- building -----------------------------------------------------------------------------


def transfer_instructions(plan: TransferPlan) -> list[Instruction]:
    """The payment's instructions, in Solana Pay order: [create ATA], [memo], transfer.

    Built by solana-py's ``spl`` builders, imported on the first payment that needs them
    (they bring pydantic and construct, about 100 ms, which ``import human_rpc_sdk`` skips).
    """
    from spl.memo.instructions import create_memo
    from spl.memo.models import MemoParams
    from spl.token.instructions import create_idempotent_associated_token_account

    instructions: list[Instruction] = []
    if plan.mint is not None and plan.create_destination:
        if plan.mint.program_id not in TOKEN_PROGRAMS:
            raise TransactionBuildError(
                f"token program {plan.mint.program_id} is not Token or Token-2022"
            )
        instructions.append(
            create_idempotent_associated_token_account(
                plan.payer, plan.recipient, plan.mint.address, plan.mint.program_id
            )
        )
    if plan.memo is not None:
        instructions.append(
            create_memo(
                MemoParams(
                    program_id=MEMO_PROGRAM_ID, signer=plan.payer, message=plan.memo.encode()
                )
            )
        )
    instructions.append(_with_reference(_transfer_instruction(plan), plan.reference))
    return instructions


def _transfer_instruction(plan: TransferPlan) -> Instruction:
    if plan.mint is None:
        return system_transfer(
            SystemTransferParams(
                from_pubkey=plan.payer, to_pubkey=plan.destination, lamports=plan.amount
            )
        )
    from spl.token.instructions import transfer, transfer_checked
    from spl.token.models import TransferCheckedParams, TransferParams

    if plan.source is None:
        raise TransactionBuildError("a token transfer needs the payer's token account")
    if plan.checked:
        return transfer_checked(
            TransferCheckedParams(
                program_id=plan.mint.program_id,
                source=plan.source,
                mint=plan.mint.address,
                dest=plan.destination,
                owner=plan.payer,
                amount=plan.amount,
                decimals=plan.mint.decimals,
            )
        )
    return transfer(
        TransferParams(
            program_id=plan.mint.program_id,
            source=plan.source,
            dest=plan.destination,
            owner=plan.payer,
            amount=plan.amount,
        )
    )


def _with_reference(instruction: Instruction, reference: Pubkey | None) -> Instruction:
    if reference is None:
        return instruction
    accounts = [*instruction.accounts, AccountMeta(reference, is_signer=False, is_writable=False)]
    return Instruction(instruction.program_id, instruction.data, accounts)


def build_transfer(plan: TransferPlan, recent_blockhash: Hash) -> VersionedTransaction:
    """Compile ``plan`` into an unsigned transaction with the payer as fee payer."""
    instructions = transfer_instructions(plan)
    message: Message | MessageV0
    if plan.legacy:
        message = Message.new_with_blockhash(instructions, plan.payer, recent_blockhash)
    else:
        message = MessageV0.try_compile(plan.payer, instructions, [], recent_blockhash)
    empty = [Signature.default()] * message.header.num_required_signatures
    return VersionedTransaction.populate(message, empty)


def build_exact_transfer(
    *,
    payer: Pubkey,
    fee_payer: Pubkey,
    pay_to: Pubkey,
    mint: MintInfo,
    amount: int,
    memo: str,
    recent_blockhash: Hash,
    compute_unit_limit: int = 20_000,
    compute_unit_price: int = 1,
) -> VersionedTransaction:
    """An unsigned x402 "exact" payment: the facilitator pays the fee, the payer the amount.

    The v0 message has ``fee_payer`` in signature slot 0 (left empty for the facilitator) and
    exactly the reference client's instructions: compute-unit limit, compute-unit price,
    ``TransferChecked`` from the payer's to ``pay_to``'s associated token account, and a memo
    without accounts (after the transfer, as x402 places it).
    """
    from spl.token.instructions import transfer_checked
    from spl.token.models import TransferCheckedParams

    transfer = transfer_checked(
        TransferCheckedParams(
            program_id=mint.program_id,
            source=associated_token_address(payer, mint.address, mint.program_id),
            mint=mint.address,
            dest=associated_token_address(pay_to, mint.address, mint.program_id),
            owner=payer,
            amount=_check_amount(amount),
            decimals=mint.decimals,
        )
    )
    instructions = [
        set_compute_unit_limit(compute_unit_limit),
        set_compute_unit_price(compute_unit_price),
        transfer,
        Instruction(MEMO_PROGRAM_ID, memo.encode("utf-8"), []),
    ]
    message = MessageV0.try_compile(fee_payer, instructions, [], recent_blockhash)
    empty = [Signature.default()] * message.header.num_required_signatures
    return VersionedTransaction.populate(message, empty)


def build_sol_transfer(
    sender_keypair: Any,
    recipient_pubkey: Pubkey | str,
    lamports: int,
    recent_blockhash: Hash | str,
    *,
    reference: Pubkey | str | None = None,
    memo: str | None = None,
    legacy: bool = False,
) -> VersionedTransaction:
    """An unsigned System Program transfer of ``lamports`` from the sender to the recipient.

    ``sender_keypair`` may be a Keypair, any :class:`~human_rpc_sdk.wallet.Signer`, or a
    public key: only the public key is used. Sign with :func:`sign_and_serialize_transaction`.
    """
    payer = _pubkey_of(sender_keypair, "sender_keypair")
    recipient = _as_pubkey(recipient_pubkey, "recipient_pubkey")
    ref_key, ref_memo = split_reference(reference)
    plan = TransferPlan(
        payer=payer,
        recipient=recipient,
        amount=_check_amount(lamports),
        destination=recipient,
        reference=ref_key,
        memo=_join_memos(ref_memo, memo),
        legacy=legacy,
    )
    return build_transfer(plan, _as_hash(recent_blockhash))


def build_spl_transfer(
    sender_keypair: Any,
    recipient_pubkey: Pubkey | str,
    mint_pubkey: Pubkey | str,
    amount: int,
    rpc_url: str | None = None,
    *,
    decimals: int | None = None,
    token_program: Pubkey | None = None,
    recent_blockhash: Hash | str | None = None,
    create_recipient_account: bool | None = None,
    reference: Pubkey | str | None = None,
    memo: str | None = None,
    legacy: bool = False,
    checked: bool = True,
    timeout: float = 10.0,
) -> VersionedTransaction:
    """An unsigned SPL token transfer of ``amount`` base units to the recipient's token account.

    The payee is the recipient *wallet*; its associated token account is derived under the
    mint's token program (Token or Token-2022). Chain facts not passed as arguments
    (``decimals``, ``token_program``, ``recent_blockhash``, whether the recipient's token
    account exists) are read from ``rpc_url``; with all of them given, no I/O happens.
    """
    payer = _pubkey_of(sender_keypair, "sender_keypair")
    recipient = _as_pubkey(recipient_pubkey, "recipient_pubkey")
    mint = _as_pubkey(mint_pubkey, "mint_pubkey")
    missing = decimals is None or token_program is None or recent_blockhash is None
    if missing or create_recipient_account is None:
        if rpc_url is None:
            raise TransactionBuildError(
                "build_spl_transfer needs rpc_url, or all of decimals=, token_program=, "
                "recent_blockhash= and create_recipient_account="
            )
        from ._io.rpc import RpcClient  # I/O only on request

        facts = RpcClient(rpc_url, timeout=timeout).run(token_transfer_facts(mint, recipient))
        decimals = facts.mint.decimals if decimals is None else decimals
        token_program = facts.mint.program_id if token_program is None else token_program
        recent_blockhash = facts.blockhash if recent_blockhash is None else recent_blockhash
        if create_recipient_account is None:
            create_recipient_account = not facts.recipient_account_exists
    if decimals is None or token_program is None or recent_blockhash is None:
        raise TransactionBuildError("decimals, token_program and recent_blockhash are required")
    if token_program not in TOKEN_PROGRAMS:
        raise TransactionBuildError(f"token_program {token_program} is not Token or Token-2022")
    ref_key, ref_memo = split_reference(reference)
    plan = TransferPlan(
        payer=payer,
        recipient=recipient,
        amount=_check_amount(amount),
        destination=associated_token_address(recipient, mint, token_program),
        mint=MintInfo(address=mint, program_id=token_program, decimals=decimals),
        source=associated_token_address(payer, mint, token_program),
        create_destination=bool(create_recipient_account),
        reference=ref_key,
        memo=_join_memos(ref_memo, memo),
        legacy=legacy,
        checked=checked,
    )
    return build_transfer(plan, _as_hash(recent_blockhash))


@dataclass(frozen=True)
class TokenTransferFacts:
    """What :func:`build_spl_transfer` reads of the chain when not told."""

    mint: MintInfo
    blockhash: Hash
    recipient_account_exists: bool


def token_transfer_facts(mint: Pubkey, recipient: Pubkey) -> Flow[TokenTransferFacts]:
    """Mint decimals and program, a fresh blockhash, and whether the payee's associated token
    account exists (under either token program), in one JSON-RPC round trip.

    :raises SolanaRPCError: when ``mint`` is not a usable SPL mint (reason ``bad_mint``).
    """
    candidates = [associated_token_address(recipient, mint, p) for p in TOKEN_PROGRAMS]
    batch = (multiple_accounts_request([mint, *candidates], 0), latest_blockhash_request(1))
    accounts, blockhash = yield from perform(RpcCall(batch))
    try:
        info = parse_mint(mint, accounts.value[0])
    except ValueError as exc:
        raise SolanaRPCError(str(exc), method="getMultipleAccounts", reason="bad_mint") from None
    index = 1 + TOKEN_PROGRAMS.index(info.program_id)
    return TokenTransferFacts(
        mint=info,
        blockhash=blockhash.value.blockhash,
        recipient_account_exists=accounts.value[index] is not None,
    )


def get_latest_blockhash(rpc_url: str, *, timeout: float = 10.0) -> Hash:
    """The node's latest blockhash (JSON-RPC ``getLatestBlockhash``, commitment confirmed), for
    :func:`build_sol_transfer` and :func:`build_spl_transfer`. A transaction signed over it
    can land for about 60 to 90 seconds (150 blocks).

    :raises SolanaRPCError: when the node cannot be reached or refuses.
    :raises SDKConfigurationError: when ``timeout`` is not a positive number of seconds.
    """
    from ._checks import positive_seconds
    from ._io.rpc import RpcClient  # I/O only on request

    return RpcClient(rpc_url, timeout=positive_seconds(timeout, "timeout")).latest_blockhash()


def split_reference(reference: Pubkey | str | None) -> tuple[Pubkey | None, str | None]:
    """A reference that is a public key binds as an account; anything else goes in a memo."""
    if reference is None or isinstance(reference, Pubkey):
        return reference, None
    try:
        return Pubkey.from_string(reference), None
    except ValueError:
        return None, reference


def _join_memos(first: str | None, second: str | None) -> str | None:
    if first is not None and second is not None:
        return f"{first} {second}"
    return first if first is not None else second


# -- signing and encoding -----------------------------------------------------------------


def message_to_sign(transaction: VersionedTransaction, signer_key: Pubkey) -> bytes:
    """The bytes ``signer_key`` signs for ``transaction``: its serialized message (``0x80 ||
    message`` for v0, as ``to_bytes_versioned``), which any signer (KMS, hardware) can sign.

    :raises TransactionBuildError: when ``transaction`` is not a ``VersionedTransaction`` or
        ``signer_key`` is not one of its required signers.
    """
    if not isinstance(transaction, VersionedTransaction):
        raise TransactionBuildError(
            "transaction must be a solders VersionedTransaction (got "
            f"{type(transaction).__name__}); build it with build_sol_transfer or build_spl_transfer"
        )
    _signer_slot(transaction, signer_key)
    return to_bytes_versioned(transaction.message)


def add_signature(
    transaction: VersionedTransaction, signer_key: Pubkey, signature: Signature
) -> VersionedTransaction:
    """``transaction`` with ``signature`` in ``signer_key``'s slot, every other one untouched.

    :raises TransactionBuildError: when ``signature`` does not verify against ``signer_key``
        over :func:`message_to_sign`, or ``signer_key`` is not a required signer.
    """
    payload = message_to_sign(transaction, signer_key)
    if not isinstance(signature, Signature) or not signature.verify(signer_key, payload):
        raise TransactionBuildError(
            f"the signer for {signer_key} returned a signature that does not verify; check that "
            "the signer signs with the key it reports. Nothing was sent",
            reason="bad_signature",
        )
    return place_signature(transaction, signer_key, signature)


def place_signature(
    transaction: VersionedTransaction, signer_key: Pubkey, signature: Signature
) -> VersionedTransaction:
    """``transaction`` with ``signature`` in ``signer_key``'s slot, *unverified*: only for a
    signature made here from the key held (see :func:`add_signature`)."""
    signatures = list(transaction.signatures)
    signatures[_signer_slot(transaction, signer_key)] = signature
    return VersionedTransaction.populate(transaction.message, signatures)


def _signer_slot(transaction: VersionedTransaction, signer_key: Pubkey) -> int:
    message = transaction.message
    required = list(message.account_keys[: message.header.num_required_signatures])
    if signer_key not in required:
        raise TransactionBuildError(
            f"{signer_key} is not a required signer of this transaction; build it with this "
            "wallet as the sender"
        )
    return required.index(signer_key)


def sign_transaction(transaction: VersionedTransaction, signer: Signer) -> VersionedTransaction:
    """Sign ``transaction`` in ``signer``'s slot, leaving every other signature untouched.

    The serialized message is signed (:func:`message_to_sign`), so any
    :class:`~human_rpc_sdk.wallet.Signer` works, including a KMS or hardware wallet; the
    signature is verified before it is attached (:func:`add_signature`).

    :raises TransactionBuildError: when ``transaction`` is not a ``VersionedTransaction``, the
        signer is not a required signer, or returns a signature that does not verify against
        its public key.
    :raises SDKConfigurationError: when ``signer`` has no ``pubkey()``/``sign_message()``, or
        they return something other than a public key and a signature, or it signs only
        asynchronously.
    """
    from .wallet import load_signer  # a payer given as a Keypair or a KMS adapter is checked

    if not isinstance(transaction, VersionedTransaction):
        message_to_sign(transaction, Pubkey.default())  # raises, naming what it got
    signer = load_signer(signer=signer)
    signer_key = signer.pubkey()
    payload = message_to_sign(transaction, signer_key)
    return add_signature(transaction, signer_key, signer.sign_message(payload))


def sign_and_serialize_transaction(transaction: VersionedTransaction, keypair: Any) -> str:
    """Sign ``transaction`` with ``keypair`` (a Keypair or any Signer); return base64 wire bytes."""
    from .wallet import load_signer

    signer = load_signer(signer=keypair)
    return base64.b64encode(bytes(sign_transaction(transaction, signer))).decode("ascii")


def decode_transaction(serialized: str) -> VersionedTransaction:
    """Decode a base64 transaction (legacy or v0), exactly: bytes after its end are refused,
    so one payment has one byte form. Raises ``ValueError`` when it is not one."""
    try:
        raw = base64.b64decode(serialized, validate=True)
        transaction = VersionedTransaction.from_bytes(raw)
    except ValueError:
        raise ValueError("not a base64-encoded Solana transaction") from None
    if bytes(transaction) != raw:
        raise ValueError("not a base64-encoded Solana transaction: bytes follow its end")
    return transaction


# -- argument helpers -----------------------------------------------------------------------


def _pubkey_of(value: Any, name: str) -> Pubkey:
    if isinstance(value, Pubkey):
        return value
    if callable(getattr(value, "pubkey", None)):
        key = value.pubkey()
        if isinstance(key, Pubkey):
            return key
    if isinstance(value, str):
        return _as_pubkey(value, name)
    raise TransactionBuildError(f"{name} must be a Keypair, a Signer or a public key")


def _as_pubkey(value: Pubkey | str, name: str) -> Pubkey:
    if isinstance(value, Pubkey):
        return value
    try:
        return Pubkey.from_string(value)
    except (ValueError, TypeError):
        raise TransactionBuildError(f"{name} is not a valid Solana address") from None


def _as_hash(value: Hash | str) -> Hash:
    if isinstance(value, Hash):
        return value
    try:
        return Hash.from_string(value)
    except (ValueError, TypeError):
        raise TransactionBuildError("recent_blockhash is not a valid base58 blockhash") from None


def _check_amount(amount: int) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount < 2**64:
        raise TransactionBuildError(
            f"amount must be a whole number of base units between 1 and 2**64-1 (got {amount!r})"
        )
    return amount
