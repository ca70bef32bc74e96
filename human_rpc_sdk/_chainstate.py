"""Chain state kept ahead of time: a blockhash and the accounts payments use (pure).

A payment needs a recent blockhash and a few accounts (the payer's SOL and token accounts, the
payee's token account, mint data). :class:`ChainCache` keeps them; a background refresh
(:func:`refresh`, a flow yielding one :class:`RpcCall`, run by a thread or an asyncio task in
``_io``) fetches them again every few seconds, only for the accounts a payment used recently,
with the chain the node serves. A payment whose state is fresh then makes no RPC call.

What the cache may get wrong, and why that loses no money:

* a balance may be overstated (a debit made elsewhere not seen yet): the payment is signed and
  the chain (or the server's simulation) refuses it; nothing moves;
* a balance may be understated, or an account seem missing: every refusal decided from cached
  state is decided again from a fresh read before the agent refuses (``_quote``, ``_exact``),
  and so is an x402 offer refused while a dearer one would be paid, and the rent of a payee's
  token account the payment would create (it may exist by now);
* the payee's token account may seem to exist after it was closed: the transfer fails on chain.

A payment the server refuses makes the agent forget the accounts, so the next one reads them.

The agent's own payments are debited from the cached balances when signed, and debited again
from any read that began before them, so a burst of payments does not overspend the cache.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from solders.account import Account
from solders.hash import Hash
from solders.pubkey import Pubkey

from ._jsonrpc import genesis_hash_request, latest_blockhash_request, multiple_accounts_request
from ._networks import genesis_problem
from ._protocol import Flow, RpcCall, perform
from .solana_utils import MintInfo

__all__ = [
    "MAX_ACCOUNTS_PER_CALL",
    "REFRESH_INTERVAL",
    "BlockhashFacts",
    "ChainCache",
    "Debit",
    "account_batches",
    "refresh",
]

logger = logging.getLogger("human_rpc_sdk")

MAX_ACCOUNTS_PER_CALL: Final = 100
"""The most addresses one ``getMultipleAccounts`` call may name (Solana's RPC limit)."""
REFRESH_INTERVAL: Final = 5.0
"""Seconds between two background refreshes."""
_FETCHED_KEPT: Final = 64
_WATCHED_MAX: Final = 4 * MAX_ACCOUNTS_PER_CALL
_TOKEN_AMOUNT: Final = slice(64, 72)  # SPL Token and Token-2022 accounts: the u64 amount


@dataclass(frozen=True)
class BlockhashFacts:
    """A blockhash the agent fetched itself, with what the node said alongside it.

    ``last_valid_block_height``: transactions signed over it can land up to that block height;
    ``slot``: the slot the node answered at (``context.slot``), which it had reached. Together
    they are what a later expiry proof is checked against (see :mod:`._landing`).
    ``genesis_hash``: the chain the node served in that same batch. A transaction can land only
    on the chain whose blockhash it carries, so this is the chain of every payment signed over
    it, whatever the node serves later (a load balancer may switch chains).
    """

    blockhash: Hash
    last_valid_block_height: int
    slot: int
    genesis_hash: str


@dataclass(frozen=True)
class Debit:
    """What a signed payment takes from one account: ``lamports`` of its SOL, ``tokens`` of
    its token balance (base units)."""

    account: Pubkey
    lamports: int = 0
    tokens: int = 0


class ChainCache:
    """Chain facts worth keeping between payments: a blockhash, accounts and mint data.

    A blockhash stays usable for about 60 seconds on chain; it is reused for ``blockhash_ttl``
    seconds, well inside that. An account read is used for ``account_ttl`` seconds; the
    accounts a payment used in the last ``watch_for`` seconds are the ones a refresh reads.
    Mint decimals and token programs never change and are kept. The facts of the last
    blockhashes fetched are kept too, for the payments signed over them.
    """

    def __init__(
        self,
        *,
        blockhash_ttl: float = 20.0,
        account_ttl: float = 3 * REFRESH_INTERVAL,
        watch_for: float = 60.0,
    ) -> None:
        self.blockhash_ttl = blockhash_ttl
        self.account_ttl = account_ttl
        self.watch_for = watch_for
        self._lock = threading.Lock()
        self._blockhash: tuple[Hash, float] | None = None
        self._fetched: OrderedDict[Hash, tuple[BlockhashFacts, float]] = OrderedDict()
        self._mints: dict[Pubkey, MintInfo] = {}
        self._accounts: dict[Pubkey, tuple[Account | None, float]] = {}
        self._used: OrderedDict[Pubkey, float] = OrderedDict()
        self._debits: deque[tuple[float, Debit]] = deque()  # oldest first

    # -- the blockhash ----------------------------------------------------------------------

    def blockhash(self, now: float) -> Hash | None:
        with self._lock:
            if self._blockhash is None or now - self._blockhash[1] >= self.blockhash_ttl:
                return None
            return self._blockhash[0]

    def remember_blockhash(
        self, blockhash: Hash, now: float, facts: BlockhashFacts | None = None
    ) -> None:
        with self._lock:
            self._blockhash = (blockhash, now)
            if facts is not None and facts.blockhash == blockhash:
                self._fetched[blockhash] = (facts, now)
                self._fetched.move_to_end(blockhash)
                while len(self._fetched) > _FETCHED_KEPT:
                    self._fetched.popitem(last=False)

    def fetched(self, blockhash: Hash) -> BlockhashFacts | None:
        """What the node said with ``blockhash`` when this agent fetched it (None: it did not)."""
        with self._lock:
            kept = self._fetched.get(blockhash)
            return None if kept is None else kept[0]

    def usable_until(self, blockhash: Hash) -> float | None:
        """Until when (on the clock) a payment signed over ``blockhash`` is as fresh as one
        the agent would sign now: its fetch time plus ``blockhash_ttl`` (None: not fetched
        by this agent)."""
        with self._lock:
            kept = self._fetched.get(blockhash)
            return None if kept is None else kept[1] + self.blockhash_ttl

    def forget_blockhash(self) -> None:
        with self._lock:
            self._blockhash = None

    # -- mints ------------------------------------------------------------------------------

    def mint(self, address: Pubkey) -> MintInfo | None:
        with self._lock:
            return self._mints.get(address)

    def remember_mint(self, info: MintInfo) -> None:
        with self._lock:
            self._mints[info.address] = info

    # -- accounts ---------------------------------------------------------------------------

    def accounts(self, keys: Sequence[Pubkey], now: float) -> list[Account | None] | None:
        """The accounts at ``keys`` if every one was read in the last ``account_ttl`` seconds
        (None otherwise); they count as used now either way."""
        with self._lock:
            self._touch(keys, now)
            found: list[Account | None] = []
            for key in keys:
                kept = self._accounts.get(key)
                if kept is None or now - kept[1] >= self.account_ttl:
                    return None
                found.append(kept[0])
            return found

    def remember_accounts(
        self,
        keys: Sequence[Pubkey],
        accounts: Sequence[Account | None],
        read_at: float,
        *,
        used: bool = False,
    ) -> None:
        """Keep ``accounts`` (at ``keys``) as read by a call that began at ``read_at``: the
        debits signed since then are taken from them, as the node may not have seen those.
        ``used``: a payment read them (a refresh keeps them fresh from now on)."""
        with self._lock:
            if used:
                self._touch(keys, read_at)
            later = _totals(debit for at, debit in self._debits if at >= read_at)
            for key, account in zip(keys, accounts, strict=True):
                kept = self._accounts.get(key)
                if kept is not None and kept[1] > read_at:
                    continue  # a newer read is kept already
                self._accounts[key] = (_debited(account, later.get(key)), read_at)

    def debit(self, debits: Sequence[Debit], now: float) -> None:
        """Take a payment this agent signed from the cached balances."""
        with self._lock:
            # A debit matters to reads begun before it, which are stale after account_ttl.
            horizon = now - self.account_ttl
            while self._debits and self._debits[0][0] < horizon:
                self._debits.popleft()
            self._debits.extend((now, debit) for debit in debits)
            for key, total in _totals(debits).items():
                kept = self._accounts.get(key)
                if kept is not None:
                    self._accounts[key] = (_debited(kept[0], total), kept[1])

    def watched(self, now: float) -> list[Pubkey]:
        """The accounts a payment used in the last ``watch_for`` seconds (the others are
        forgotten): the ones a refresh reads."""
        with self._lock:
            horizon = now - self.watch_for
            while self._used and next(iter(self._used.values())) < horizon:
                key, _ = self._used.popitem(last=False)
                self._accounts.pop(key, None)
            return list(self._used)

    def forget_accounts(self) -> None:
        """Forget every account read (the next payment reads them; the refresh still does)."""
        with self._lock:
            self._accounts.clear()

    def clear(self) -> None:
        """Forget the blockhash and every account (the node serves another chain now)."""
        with self._lock:
            self._blockhash = None
            self._accounts.clear()

    def _touch(self, keys: Sequence[Pubkey], now: float) -> None:
        for key in keys:
            self._used[key] = now
            self._used.move_to_end(key)
        while len(self._used) > _WATCHED_MAX:
            key, _ = self._used.popitem(last=False)
            self._accounts.pop(key, None)


def _totals(debits: Iterable[Debit]) -> dict[Pubkey, tuple[int, int]]:
    """Each account's debits added up: (lamports, tokens)."""
    totals: dict[Pubkey, tuple[int, int]] = {}
    for debit in debits:
        lamports, tokens = totals.get(debit.account, (0, 0))
        totals[debit.account] = (lamports + debit.lamports, tokens + debit.tokens)
    return totals


def _debited(account: Account | None, total: tuple[int, int] | None) -> Account | None:
    if account is None or total is None or total == (0, 0):
        return account
    lamports, tokens = total
    data = account.data
    if tokens and len(data) >= _TOKEN_AMOUNT.stop:
        held = int.from_bytes(data[_TOKEN_AMOUNT], "little")
        amount = max(held - tokens, 0).to_bytes(8, "little")
        data = data[: _TOKEN_AMOUNT.start] + amount + data[_TOKEN_AMOUNT.stop :]
    return Account(
        lamports=max(account.lamports - lamports, 0),
        data=data,
        owner=account.owner,
        executable=account.executable,
        rent_epoch=account.rent_epoch,
    )


def account_batches(keys: Sequence[Pubkey]) -> list[list[Pubkey]]:
    """``keys`` in calls of at most :data:`MAX_ACCOUNTS_PER_CALL` addresses."""
    step = MAX_ACCOUNTS_PER_CALL
    return [list(keys[i : i + step]) for i in range(0, len(keys), step)]


def refresh(cache: ChainCache, network: str, clock: Callable[[], float]) -> Flow[bool]:
    """Read again, in one round trip, the accounts payments used recently, a blockhash and the
    chain the node serves; False when there was nothing to refresh or the node answered with
    another chain than ``network`` (then the cache is cleared: the next payment reads the chain
    itself, and is refused there)."""
    started = clock()
    keys = cache.watched(started)
    if not keys:
        return False
    chunks = account_batches(keys)
    batch = [multiple_accounts_request(chunk, n) for n, chunk in enumerate(chunks)]
    batch += [latest_blockhash_request(len(batch)), genesis_hash_request(len(batch) + 1)]
    results = yield from perform(RpcCall(tuple(batch)))
    genesis = str(results[-1].value)
    problem = genesis_problem(network, genesis)
    if problem is not None:
        logger.warning("chain refresh: %s (genesis hash %s); cache cleared", problem, genesis)
        cache.clear()
        return False
    latest = results[-2]
    blockhash = latest.value.blockhash
    facts = BlockhashFacts(
        blockhash, latest.value.last_valid_block_height, latest.context.slot, genesis
    )
    cache.remember_blockhash(blockhash, started, facts)
    found = [account for reply in results[: len(chunks)] for account in reply.value]
    if len(found) == len(keys):
        cache.remember_accounts(keys, found, started)
    return True
