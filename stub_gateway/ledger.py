"""A local Solana ledger: LiteSVM plus the parts of a cluster that LiteSVM leaves out.

LiteSVM executes transactions exactly as a validator would (signatures, fees, rent, the
System, Token, Token-2022, Associated Token Account and Memo programs), but knows a single
blockhash at a time. :class:`Ledger` adds a slot clock (one slot per 400 ms of the injected
clock), a new blockhash each slot, and Solana's rule that a blockhash stays usable for 150
blocks (its ``lastValidBlockHeight``). Block heights are not slots: the ledger starts at slot
``GENESIS_SLOT`` with block height ``GENESIS_BLOCK_HEIGHT``, as if the slots between had been
skipped, so a client that mixes the two units is caught; after that every slot has a block.
It also keeps each transaction, its status, fee and the balances before and after, and which
transactions touched each address, so ``getSignatureStatuses``, ``getSignaturesForAddress``
and ``getTransaction`` can answer. Simulation can skip signature checks and replace the
blockhash, as ``simulateTransaction``'s ``sigVerify`` and ``replaceRecentBlockhash`` ask.
All access goes through one lock: LiteSVM is not thread-safe and the gateway serves threads.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from solders.account import Account
from solders.address_lookup_table_account import ID as ADDRESS_LOOKUP_TABLE_ID
from solders.address_lookup_table_account import AddressLookupTable
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction
from solders.transaction_metadata import SimulatedTransactionInfo
from solders.transaction_status import TransactionErrorFieldless

__all__ = ["ChainState", "Execution", "Ledger"]

SLOT_SECONDS: Final = 0.4
_SYSTEM_PROGRAM: Final = Pubkey.from_string("11111111111111111111111111111111")
_RUNTIME_OWNERS: Final = frozenset(
    Pubkey.from_string(owner)
    for owner in (
        "Sysvar1111111111111111111111111111111111111",
        "NativeLoader1111111111111111111111111111111",
        "BPFLoader1111111111111111111111111111111111",
        "BPFLoader2111111111111111111111111111111111",
        "BPFLoaderUpgradeab1e11111111111111111111111",
        "LoaderV411111111111111111111111111111111111",
    )
)
BLOCKHASH_VALIDITY_SLOTS: Final = 150
GENESIS_SLOT: Final = 1_000
GENESIS_BLOCK_HEIGHT: Final = 800
SLOTS_PER_EPOCH: Final = 432_000
FAUCET_POOL_LAMPORTS: Final = 10**18  # a billion SOL for airdrops


@dataclass(frozen=True)
class Execution:
    """The result of simulating or executing a transaction."""

    signature: Signature
    err: Any
    """None on success, else a solders ``TransactionError``."""
    logs: list[str]
    units: int
    slot: int
    fee: int = 0
    """Lamports charged to the fee payer (0 when refused before execution)."""
    transaction: VersionedTransaction | None = field(default=None, repr=False)
    """The executed transaction (None for airdrops and refusals)."""
    pre_accounts: tuple[Account | None, ...] = field(default=(), repr=False)
    """Each of the transaction's static account keys before execution, in key order."""
    post_accounts: tuple[Account | None, ...] = field(default=(), repr=False)
    replacement: tuple[Hash, int] | None = None
    """For a simulation with the blockhash replaced: the blockhash used, its last valid height."""
    inner: tuple[Any, ...] = field(default=(), repr=False)
    """The inner instructions (LiteSVM's ``InnerInstruction`` lists), one list per instruction."""
    simulated_accounts: tuple[tuple[Pubkey, Account], ...] = field(default=(), repr=False)
    """For a successful simulation: the transaction's accounts as it would leave them."""

    @property
    def ok(self) -> bool:
        return self.err is None

    def describe(self) -> str:
        """A short human explanation of a failure (the runtime's last informative log line)."""
        if self.err is None:
            return "ok"
        if self.err == TransactionErrorFieldless.BlockhashNotFound:
            return "blockhash not found or expired; fetch a recent blockhash and sign again"
        if self.err == TransactionErrorFieldless.AlreadyProcessed:
            return "this transaction was already processed"
        detail = next(
            (
                line
                for line in reversed(self.logs)
                if "invoke" not in line and "success" not in line
            ),
            "",
        )
        return f"{self.err}{f': {detail}' if detail else ''}"


@dataclass(frozen=True)
class ChainState:
    """Everything a ledger knows, taken at one moment (see :meth:`Ledger.snapshot`)."""

    slot: int
    issued: int
    """How many blockhashes the ledger has issued (the next one derives from this count)."""
    blockhashes: tuple[tuple[Hash, int], ...]
    """The usable blockhashes and the slot each was issued at, oldest first."""
    accounts: tuple[tuple[Pubkey, Account], ...]
    """Every account the ledger knows of (written at genesis or touched by a transaction),
    but programs and sysvars, which the runtime provides; a closed one as an empty account."""
    executions: tuple[Execution, ...]
    """Every executed transaction and airdrop, oldest first."""
    history: dict[Pubkey, tuple[Signature, ...]]
    """For each address, the signatures of the transactions that involved it, oldest first."""


class Ledger:
    """A thread-safe local Solana ledger with realistic blockhash expiry.

    :param clock: monotonic seconds; inject a fake one to move slots forward in tests.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, chain: bytes = b"") -> None:
        self._lock = threading.RLock()
        # Blockhash validity is enforced here (150 slots), not by LiteSVM (latest only), and
        # the blockhashes are the ledger's own: derived from ``chain`` (its genesis hash), so
        # two ledgers never issue the same ones, as two clusters never do. (LiteSVM's own
        # sequence is the same in every instance: one ledger could run another's transaction.)
        self._svm = LiteSVM().with_blockhash_check(False).with_lamports(FAUCET_POOL_LAMPORTS)
        self._chain = chain or secrets.token_bytes(32)
        self._issued = 0
        self._latest = self._next_blockhash()
        self._clock = clock
        self._started = clock()
        self._slot = GENESIS_SLOT
        # Every usable blockhash and the slot it was issued at, oldest first.
        self._blockhashes: OrderedDict[Hash, int] = OrderedDict({self._latest: GENESIS_SLOT})
        self._statuses: dict[Signature, Execution] = {}
        self._history: dict[Pubkey, list[Signature]] = {}
        self._written: set[Pubkey] = set()  # addresses given by set_account (genesis state)

    # -- time ----------------------------------------------------------------------------

    def slot(self) -> int:
        with self._lock:
            self._tick()
            return self._slot

    def _tick(self) -> None:
        slot = GENESIS_SLOT + int((self._clock() - self._started) / SLOT_SECONDS)
        if slot <= self._slot:
            return
        self._slot = slot
        self._latest = self._next_blockhash()
        self._blockhashes[self._latest] = slot
        height = _block_height(slot)
        while self._blockhashes:
            oldest, issued = next(iter(self._blockhashes.items()))
            if _last_valid_height(issued) >= height:
                break
            del self._blockhashes[oldest]

    def block_height(self) -> int:
        """The number of blocks below the newest one (not a slot: see the module docstring)."""
        with self._lock:
            self._tick()
            return _block_height(self._slot)

    def epoch_info(self) -> dict[str, int]:
        """``getEpochInfo``'s answer: slot, block height, epoch and transaction count."""
        with self._lock:
            self._tick()
            return {
                "absoluteSlot": self._slot,
                "blockHeight": _block_height(self._slot),
                "epoch": self._slot // SLOTS_PER_EPOCH,
                "slotIndex": self._slot % SLOTS_PER_EPOCH,
                "slotsInEpoch": SLOTS_PER_EPOCH,
                "transactionCount": len(self._statuses),
            }

    def latest_blockhash(self) -> tuple[Hash, int, int]:
        """The newest blockhash, the last block height it is valid at, and the current slot."""
        with self._lock:
            self._tick()
            blockhash = self._latest
            return blockhash, _last_valid_height(self._blockhashes[blockhash]), self._slot

    def blockhash_issued(self, blockhash: Hash) -> int | None:
        """The slot ``blockhash`` was issued at, while it is usable (None: unknown or expired)."""
        with self._lock:
            self._tick()
            return self._blockhashes.get(blockhash)

    def blockhash_at(self, slot: int) -> tuple[Hash, int, int] | None:
        """The newest usable blockhash issued at or before ``slot``, its last valid block
        height and its slot: what a node that has reached only ``slot`` calls the latest."""
        with self._lock:
            self._tick()
            found = None
            for blockhash, issued in self._blockhashes.items():
                if issued > slot:
                    break
                found = (blockhash, _last_valid_height(issued), issued)
            return found

    def is_blockhash_valid(self, blockhash: Hash) -> bool:
        with self._lock:
            self._tick()
            return blockhash in self._blockhashes

    # -- accounts ------------------------------------------------------------------------

    def account(self, address: Pubkey) -> Account | None:
        with self._lock:
            account = self._svm.get_account(address)
        # LiteSVM reports a never-funded address as an empty system account; RPC says null.
        if account is None or (
            account.lamports == 0 and not account.data and not account.executable
        ):
            return None
        return account

    def balance(self, address: Pubkey) -> int:
        account = self.account(address)
        return 0 if account is None else account.lamports

    def program_accounts(self, program_id: Pubkey) -> list[tuple[Pubkey, Account]]:
        """Every account owned by ``program_id``, with its address."""
        with self._lock:
            return list(self._svm.get_program_accounts(program_id))

    def minimum_balance(self, size: int) -> int:
        with self._lock:
            return self._svm.minimum_balance_for_rent_exemption(size)

    def set_account(self, address: Pubkey, account: Account) -> None:
        """Write an account directly (genesis state, like ``solana-test-validator --account``)."""
        with self._lock:
            self._svm.set_account(address, account)
            self._written.add(address)

    # -- keeping the chain across restarts -------------------------------------------------

    def snapshot(self) -> ChainState:
        """The whole ledger at this moment, consistent (taken under the ledger's lock)."""
        with self._lock:
            self._tick()
            addresses = dict.fromkeys([*self._written, *self._history, *self._looked_up()])
            accounts = []
            for address in addresses:
                account = self._svm.get_account(address) or Account(0, b"", _SYSTEM_PROGRAM)
                if account.executable or account.owner in _RUNTIME_OWNERS:
                    continue
                accounts.append((address, account))
            return ChainState(
                slot=self._slot,
                issued=self._issued,
                blockhashes=tuple(self._blockhashes.items()),
                accounts=tuple(accounts),
                executions=tuple(self._statuses.values()),
                history={a: tuple(s) for a, s in self._history.items()},
            )

    def restore(self, state: ChainState) -> None:
        """Continue the chain ``state`` describes: its accounts, slot, blockhashes and
        transactions replace this ledger's (which should be a fresh one of the same genesis)."""
        with self._lock:
            for address, account in state.accounts:
                self._svm.set_account(address, account)
            self._written.update(address for address, _ in state.accounts)
            self._statuses = {e.signature: e for e in state.executions}
            self._history = {a: list(s) for a, s in state.history.items()}
            self._slot = max(state.slot, GENESIS_SLOT)
            self._started = self._clock() - (self._slot - GENESIS_SLOT) * SLOT_SECONDS
            self._issued = max(self._issued, state.issued)
            self._blockhashes = OrderedDict(state.blockhashes)
            self._new_blockhash()  # never reissue a blockhash of the previous run

    def _looked_up(self) -> list[Pubkey]:
        """The addresses transactions loaded through address lookup tables."""
        found: list[Pubkey] = []
        for execution in self._statuses.values():
            message = None if execution.transaction is None else execution.transaction.message
            if not isinstance(message, MessageV0):
                continue
            for lookup in message.address_table_lookups:
                table = self._svm.get_account(lookup.account_key)
                if table is None or table.owner != ADDRESS_LOOKUP_TABLE_ID:
                    continue
                try:
                    addresses = AddressLookupTable.deserialize(bytes(table.data)).addresses
                except ValueError:  # not (or no longer) a lookup table
                    continue
                for index in (*lookup.writable_indexes, *lookup.readonly_indexes):
                    if index < len(addresses):
                        found.append(addresses[index])
        return found

    # -- transactions --------------------------------------------------------------------

    def simulate(
        self,
        transaction: VersionedTransaction,
        *,
        sig_verify: bool = True,
        replace_blockhash: bool = False,
    ) -> Execution:
        """Run ``transaction`` without committing anything.

        ``sig_verify=False`` skips the signature checks, so a transaction that only some of
        its signers have signed yet (the client, not the fee payer) simulates, as on a node.
        ``replace_blockhash`` runs it over the newest blockhash instead of its own (and so
        cannot check signatures); the result says which blockhash was used.
        """
        if replace_blockhash and sig_verify:
            raise ValueError("the blockhash can be replaced only without signature checks")
        with self._lock:
            self._tick()
            replacement = None
            if replace_blockhash:
                blockhash = self._latest
                replacement = (blockhash, _last_valid_height(self._blockhashes[blockhash]))
                transaction = _with_blockhash(transaction, blockhash)
            early = self._precheck(transaction)
            if early is not None:
                return early
            self._svm.with_sigverify(sig_verify)
            try:
                result = self._svm.simulate_transaction(transaction)
            finally:
                self._svm.with_sigverify(True)
            execution = self._execution(transaction.signatures[0], result)
            touched = tuple(result.post_accounts()) if hasattr(result, "post_accounts") else ()
            return replace(execution, replacement=replacement, simulated_accounts=touched)

    def execute(self, transaction: VersionedTransaction) -> Execution:
        """Execute ``transaction``: on success its effects are committed; a failure still
        charges the fee, as on a real cluster, once the transaction passed the blockhash and
        duplicate checks."""
        with self._lock:
            self._tick()
            early = self._precheck(transaction)
            if early is not None:
                return early
            keys = list(transaction.message.account_keys)
            before = tuple(self._svm.get_account(key) for key in keys)
            result = self._svm.send_transaction(transaction)
            execution = replace(
                self._execution(transaction.signatures[0], result),
                transaction=transaction,
                pre_accounts=before,
                post_accounts=tuple(self._svm.get_account(key) for key in keys),
            )
            self._remember(execution, keys)
            return execution

    def settle(
        self, transaction: VersionedTransaction, *, signatures_checked: bool = False
    ) -> Execution:
        """Simulate ``transaction`` with every check, and commit its effects only if it
        succeeds: a payment the gateway settles (the runtime runs once, not twice).

        ``signatures_checked``: the caller has just verified every signature of this very
        transaction (:func:`.instructions.check_signatures`), so the runtime does not verify
        them a second time; every other check stays.

        A refused or failing transaction changes nothing and is not recorded (a server that
        simulates before sending never sends it); a successful one is recorded exactly as
        :meth:`execute` records it. The simulation leaves every account it wrote (the fee
        payer's fee included) in its result; those are written back under the ledger's lock,
        so nothing can run between the simulation and the commit.
        """
        with self._lock:
            self._tick()
            early = self._precheck(transaction)
            if early is not None:
                return early
            keys = list(transaction.message.account_keys)
            get_account = self._svm.get_account
            before = tuple(get_account(key) for key in keys)
            if signatures_checked:
                self._svm.with_sigverify(False)
                try:
                    result = self._svm.simulate_transaction(transaction)
                finally:
                    self._svm.with_sigverify(True)
            else:
                result = self._svm.simulate_transaction(transaction)
            if not isinstance(result, SimulatedTransactionInfo):
                return self._execution(transaction.signatures[0], result)
            written = dict(result.post_accounts())
            set_account = self._svm.set_account
            for address, account in written.items():
                set_account(address, account)
            execution = self._execution(
                transaction.signatures[0],
                result,
                transaction=transaction,
                pre_accounts=before,
                # What was just written, else what was there: get_account's answers, unread.
                post_accounts=tuple(written.get(k, b) for k, b in zip(keys, before, strict=True)),
            )
            self._remember(execution, keys)
            return execution

    def status(self, signature: Signature) -> Execution | None:
        with self._lock:
            return self._statuses.get(signature)

    def history(
        self, address: Pubkey, *, limit: int, before: Signature | None = None
    ) -> list[Execution]:
        """The newest ``limit`` transactions that involved ``address`` (older than ``before``)."""
        with self._lock:
            signatures = list(reversed(self._history.get(address, [])))
            if before is not None and before in signatures:
                signatures = signatures[signatures.index(before) + 1 :]
            return [self._statuses[s] for s in signatures[:limit]]

    def _remember(self, execution: Execution, keys: Sequence[Pubkey]) -> None:
        if execution.signature in self._statuses:
            return
        self._statuses[execution.signature] = execution
        for key in keys:
            self._history.setdefault(key, []).append(execution.signature)

    def _precheck(self, transaction: VersionedTransaction) -> Execution | None:
        signature = transaction.signatures[0]
        if signature in self._statuses:
            return self._failure(signature, TransactionErrorFieldless.AlreadyProcessed)
        if transaction.message.recent_blockhash not in self._blockhashes:
            return self._failure(signature, TransactionErrorFieldless.BlockhashNotFound)
        return None

    def _failure(self, signature: Signature, err: Any) -> Execution:
        return Execution(signature=signature, err=err, logs=[], units=0, slot=self._slot)

    def _execution(self, signature: Signature, result: Any, **recorded: Any) -> Execution:
        # LiteSVM answers TransactionMetadata on success, FailedTransactionMetadata (err() and
        # meta()) on failure, and SimulatedTransactionInfo (meta()) for a good simulation.
        err = result.err() if hasattr(result, "err") else None
        meta = result.meta() if hasattr(result, "meta") else result
        return Execution(
            signature=signature,
            err=err,
            logs=list(meta.logs()),
            units=meta.compute_units_consumed(),
            slot=self._slot,
            fee=meta.fee(),
            inner=tuple(meta.inner_instructions()),
            **recorded,
        )

    # -- the gateway's own operations ------------------------------------------------------

    def airdrop(self, address: Pubkey, lamports: int) -> Execution:
        """Send ``lamports`` from the ledger's faucet account to ``address``."""
        with self._lock:
            self._tick()
            execution = self._airdrop_once(address, lamports)
            if execution.err == TransactionErrorFieldless.AlreadyProcessed:
                # The same airdrop twice in one slot is the same transaction: use a new blockhash.
                self._new_blockhash()
                execution = self._airdrop_once(address, lamports)
            self._remember(execution, [address])
            return execution

    def _airdrop_once(self, address: Pubkey, lamports: int) -> Execution:
        result = self._svm.airdrop(address, lamports)
        meta = result.meta() if hasattr(result, "meta") else result
        return self._execution(meta.signature(), result)

    def run(
        self, instructions: Sequence[Instruction], payer: Keypair, *signers: Keypair
    ) -> Execution:
        """Build, sign and execute a transaction of the gateway's own (faucet, set-up)."""
        with self._lock:
            self._tick()
            transaction = self._compile(instructions, payer, signers)
            if transaction.signatures[0] in self._statuses:
                # Identical to one already sent in this slot: sign over a new blockhash instead.
                self._new_blockhash()
                transaction = self._compile(instructions, payer, signers)
            return self.execute(transaction)

    def _compile(
        self, instructions: Sequence[Instruction], payer: Keypair, signers: Sequence[Keypair]
    ) -> VersionedTransaction:
        blockhash = self._latest
        message = MessageV0.try_compile(payer.pubkey(), list(instructions), [], blockhash)
        return VersionedTransaction(message, [payer, *signers])

    def _new_blockhash(self) -> None:
        """Issue another blockhash within the current slot (it stays valid like the others)."""
        self._latest = self._next_blockhash()
        self._blockhashes[self._latest] = self._slot

    def _next_blockhash(self) -> Hash:
        self._svm.expire_blockhash()  # LiteSVM's own, for its airdrops: a new one each time
        self._issued += 1
        return Hash(hashlib.sha256(self._chain + self._issued.to_bytes(8, "little")).digest())


def _with_blockhash(transaction: VersionedTransaction, blockhash: Hash) -> VersionedTransaction:
    """``transaction`` over ``blockhash`` (its signatures no longer verify)."""
    message = transaction.message
    if isinstance(message, MessageV0):
        rebuilt: Message | MessageV0 = MessageV0(
            message.header,
            list(message.account_keys),
            blockhash,
            list(message.instructions),
            list(message.address_table_lookups),
        )
    else:
        rebuilt = Message.new_with_compiled_instructions(
            message.header.num_required_signatures,
            message.header.num_readonly_signed_accounts,
            message.header.num_readonly_unsigned_accounts,
            list(message.account_keys),
            blockhash,
            list(message.instructions),
        )
    return VersionedTransaction.populate(rebuilt, list(transaction.signatures))


def _block_height(slot: int) -> int:
    return GENESIS_BLOCK_HEIGHT + slot - GENESIS_SLOT


def _last_valid_height(issued_slot: int) -> int:
    """A blockhash issued at ``issued_slot`` is usable until this block height, inclusive."""
    return _block_height(issued_slot) + BLOCKHASH_VALIDITY_SLOTS
