"""The effects the sans-I/O payment flow yields, and the context it runs in.

A driver runs the flow and resumes it with each effect's result:

* :class:`RpcCall` - perform the JSON-RPC batch; the parsed results.
* :class:`Resend` - send the request that got the 402 again with the extra headers; the answer
  as an :class:`HttpReply`, or :class:`NoAnswer` when none came (timeout, reset).
* :class:`Pause` - wait that long; None.
* :class:`Sign` - sign these message bytes with the payer's key; the ``Signature``.
* :class:`Approve` - ask the owner's ``approve`` callback; its answer (True to go ahead).
* :class:`FindPayment`, :class:`Reserve`, :class:`Record` - read and write the payment
  journal; the journal's answer.
* :class:`PaidBefore` - read the journal: a served payment of this URL by this wallet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from solders.account import Account
from solders.hash import Hash
from solders.pubkey import Pubkey
from solders.signature import Signature

from ._budgets import LineRule
from ._chainstate import (
    MAX_ACCOUNTS_PER_CALL,
    BlockhashFacts,
    ChainCache,
    Debit,
    account_batches,
)
from ._jsonrpc import (
    genesis_hash_request,
    latest_blockhash_request,
    multiple_accounts_request,
)
from ._limits import SpendingRules
from ._networks import chain_name, genesis_problem
from ._offer import PaymentOffer
from ._protocol import Effect, Flow, RpcCall, perform
from ._receipts import PaymentReceipt, State
from ._records import Existing, JournalEntry, OverBudget, Reserved
from .exceptions import NetworkMismatchError, SolanaRPCError
from .wallet import OwnSignature, Signer

__all__ = [
    "MAX_ACCOUNTS_PER_CALL",
    "Approve",
    "BlockhashFacts",
    "ChainCache",
    "ChainRead",
    "Debit",
    "Effect",
    "FindPayment",
    "FindResumable",
    "Flow",
    "HttpReply",
    "NoAnswer",
    "PaidBefore",
    "Pause",
    "PaymentContext",
    "Record",
    "Resend",
    "Reserve",
    "RpcCall",
    "Sign",
    "check_chain",
    "perform",
    "read_chain",
]


@dataclass(frozen=True)
class HttpReply:
    """What the flow needs of an HTTP answer. ``headers`` must be case-insensitive."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str
    request: str = ""
    """The request that got this answer, as :func:`._resume.request_fingerprint` identifies it
    (method and body; "" when unknown)."""


@dataclass(frozen=True)
class NoAnswer:
    """What a :class:`Resend` got when no HTTP answer came back: ``problem`` says why."""

    problem: str


@dataclass(frozen=True)
class Resend(Effect[HttpReply | NoAnswer]):
    """Effect: re-send the original request plus ``headers``; resume with an :class:`HttpReply`.

    ``receipt`` describes the payment the headers carry: from here on, money may move.
    """

    headers: Mapping[str, str] = field(repr=False)  # a signed payment: never in a repr
    receipt: PaymentReceipt


@dataclass(frozen=True)
class Pause(Effect[None]):
    """Effect: wait ``seconds`` (with the driver's injectable sleep)."""

    seconds: float


@dataclass(frozen=True)
class Approve(Effect[object]):
    """Effect: ask the owner's ``approve`` callback about ``offer``; resume with its answer."""

    offer: PaymentOffer


@dataclass(frozen=True)
class FindPayment(Effect[JournalEntry | None]):
    """Effect: the journal's live payment of this invoice; resume with it or None."""

    invoice_key: str


@dataclass(frozen=True)
class FindResumable(Effect[JournalEntry | None]):
    """Effect: the oldest payment journaled under one of ``resume_keys`` whose outcome is
    unknown and that nobody is sending (see :mod:`._resume`); None when there is none."""

    resume_keys: tuple[str, ...]
    abandoned_after: float
    """Seconds with no outcome after which a ``signed`` row is resumed even if its process may
    live (another host's, or a hung one)."""


@dataclass(frozen=True)
class Reserve(Effect[Reserved | Existing | OverBudget]):
    """Effect: atomically check the invoice is unpaid and the budget allows ``offer``, and
    journal it as ``reserved``; resume with ``Reserved``, ``Existing`` or ``OverBudget``."""

    offer: PaymentOffer
    currency_key: str
    invoice_key: str | None
    budget: Decimal | None
    sol_budget: Decimal | None = None
    """The SOL budget, which the payment's fee and rent count against."""
    genesis_hash: str | None = None
    """The chain the payment is made on, journaled with it."""
    periods: Mapping[str, tuple[LineRule, ...]] = field(default_factory=dict)
    """Each currency's budget lines per period (checked with the lifetime ones)."""
    scope: str = ""
    """The budget scope the payment counts in."""


@dataclass(frozen=True)
class Record(Effect[JournalEntry | None]):
    """Effect: move journal row ``entry_id`` to ``state`` with ``fields`` (only from ``expect``
    states when given); resume with the updated ``JournalEntry``, or None if it was not."""

    entry_id: int
    state: State
    fields: Mapping[str, Any] = field(default_factory=dict)
    expect: tuple[State, ...] | None = None
    busy_seconds: float | None = None
    """How long to wait for a journal another process holds locked (None: the default)."""
    keep: bool = False
    """If the write fails, keep it in this process and write it at the next write that can."""
    durable: bool = True
    """Commit with a full sync; False for what recovery can learn again (see the journal)."""


@dataclass(frozen=True, repr=False)
class Sign(Effect[Signature | OwnSignature]):
    """Effect: sign ``message`` (a transaction message, or a sign-in text: see ``_siwx``) with
    the key of ``pubkey``; resume with the solders ``Signature``. The driver asks its signer,
    which may be remote (a KMS, a hardware wallet) or async; the flow verifies what comes back
    before anything is sent, unless the driver answers
    :class:`~human_rpc_sdk.wallet.OwnSignature` (its signer is the SDK's own keypair signer of
    that key)."""

    message: bytes
    pubkey: Pubkey

    def __repr__(self) -> str:
        return f"Sign(pubkey={self.pubkey}, message=<{len(self.message)} bytes>)"


@dataclass(frozen=True)
class PaidBefore(Effect[JournalEntry | None]):
    """Effect: the journal's latest payment by wallet ``payer`` on ``network`` for ``url`` that
    the server served (``accepted``); resume with it or None. A read: nothing is written."""

    url: str
    payer: str
    network: str


PaymentEffect = RpcCall | Resend | Pause | Approve | FindPayment | Reserve | Record | Sign
"""The effects of the payment flows."""


class ChainRead(NamedTuple):
    """What :func:`read_chain` read (in one round trip, or none)."""

    accounts: list[Account | None]
    """The accounts, in the order of the keys asked (None: no account there)."""
    blockhash: Hash
    """A usable blockhash the agent fetched (its facts: ``ChainCache.fetched``)."""
    genesis_hash: str | None
    """The chain the node served in this batch, checked against the agent's network; None
    when it was not asked (the cached blockhash's facts name its chain)."""
    cached: bool = False
    """Whether the accounts came from the cache (a refusal is then checked on a fresh read)."""


def read_chain(
    keys: list[Pubkey], ctx: PaymentContext, *, ask_chain: bool = False, fresh: bool = False
) -> Flow[ChainRead]:
    """The accounts at ``keys`` and a usable blockhash: from the cache when all are fresh
    (no round trip), else in one JSON-RPC round trip.

    Each address is read once, in calls of at most :data:`MAX_ACCOUNTS_PER_CALL` addresses
    (the node's limit for ``getMultipleAccounts``); the list follows ``keys``. The cached
    blockhash is used while fresh; otherwise one is fetched in the same batch, with the chain
    the node serves (its genesis hash), remembered with the blockhash: a node behind a load
    balancer may serve another chain tomorrow, and a payment signed over the blockhash can land
    only on the chain it came from. ``ask_chain`` asks the genesis hash even with a cached
    blockhash (for a payment over a blockhash the server chose); ``fresh`` reads the accounts
    even when cached (before refusing a payment on cached state). A chain that is not the
    agent's network stops the payment before anything is signed.

    :raises NetworkMismatchError: the RPC node serves another chain than ``ctx.network``.
    """
    now = ctx.clock()
    blockhash = ctx.cache.blockhash(now)
    if blockhash is not None and not (ask_chain or fresh):
        kept = ctx.cache.accounts(keys, now)
        if kept is not None:
            return ChainRead(kept, blockhash, None, cached=True)
    unique = list(dict.fromkeys(keys))
    chunks = account_batches(unique)
    batch = [multiple_accounts_request(chunk, n) for n, chunk in enumerate(chunks)]
    if blockhash is None:
        batch.append(latest_blockhash_request(len(batch)))
    with_chain = blockhash is None or ask_chain
    if with_chain:
        batch.append(genesis_hash_request(len(batch)))
    results = yield from perform(RpcCall(tuple(batch)))
    genesis = str(results[-1].value) if with_chain else None
    if genesis is not None:
        check_chain(genesis, ctx.network)
    found = [account for reply in results[: len(chunks)] for account in reply.value]
    if len(found) != len(unique):
        raise SolanaRPCError(
            f"the Solana RPC node answered getMultipleAccounts with {len(found)} accounts for "
            f"{len(unique)} addresses. Check that rpc_url points at a Solana JSON-RPC endpoint. "
            "Nothing was paid",
            method="getMultipleAccounts",
            reason="rpc_bad_reply",
        )
    ctx.cache.remember_accounts(unique, found, now, used=True)
    by_key: dict[Pubkey, Account | None] = dict(zip(unique, found, strict=True))
    accounts = [by_key[key] for key in keys]
    if blockhash is None:
        latest = results[len(chunks)]
        blockhash = latest.value.blockhash
        last_valid = latest.value.last_valid_block_height
        chain = str(results[-1].value)  # asked with every blockhash fetched
        facts = BlockhashFacts(blockhash, last_valid, latest.context.slot, chain)
        ctx.cache.remember_blockhash(blockhash, now, facts)
    return ChainRead(accounts, blockhash, genesis)


def check_chain(genesis_hash: str, network: str) -> None:
    """Refuse to pay on a chain other than ``network`` (see ``genesis_problem``)."""
    problem = genesis_problem(network, genesis_hash)
    if problem is not None:
        raise NetworkMismatchError(
            f"{problem} (genesis hash {genesis_hash}): this agent pays only on {network}. "
            "Nothing was signed or paid; point rpc_url (or SOLANA_RPC_URL) at a "
            f"{network} node, or create the agent with network= the chain's name",
            reason="wrong_chain",
            details={"genesis_hash": genesis_hash, "chain": chain_name(genesis_hash)},
        )


@dataclass(frozen=True)
class PaymentContext:
    """Everything the flow needs besides the 402 answer."""

    signer: Signer
    network: str
    cache: ChainCache
    clock: Callable[[], float]
    """Monotonic seconds, for cache ages."""
    now: Callable[[], datetime]
    """Wall-clock time (UTC), for receipts."""
    nonce: Callable[[], str]
    """A fresh random memo text, making payments without a reference unique."""
    rules: SpendingRules = field(default_factory=SpendingRules)
    """The agent's spending rules (ceilings, accepted assets)."""
