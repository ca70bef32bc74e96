"""The effects the sans-I/O payment flow yields, and the context it runs in.

A driver runs the flow: for :class:`RpcCall` it performs the JSON-RPC batch and resumes the
flow with the parsed results; for :class:`Resend` it sends the original HTTP request again with
the extra headers and resumes with the answer as an :class:`HttpReply`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from solders.account import Account
from solders.hash import Hash
from solders.pubkey import Pubkey

from ._jsonrpc import RpcRequest, latest_blockhash_request, multiple_accounts_request
from ._limits import SpendingRules
from ._receipts import PaymentReceipt
from .solana_utils import MintInfo
from .wallet import Signer

__all__ = ["ChainCache", "Effect", "HttpReply", "PaymentContext", "Resend", "RpcCall", "read_chain"]


@dataclass(frozen=True)
class HttpReply:
    """What the flow needs of an HTTP answer. ``headers`` must be case-insensitive."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str


@dataclass(frozen=True)
class RpcCall:
    """Effect: run ``requests`` as one JSON-RPC batch; resume with the parsed results."""

    requests: tuple[RpcRequest, ...]


@dataclass(frozen=True)
class Resend:
    """Effect: re-send the original request plus ``headers``; resume with an :class:`HttpReply`.

    ``receipt`` describes the payment the headers carry: from here on, money may move.
    """

    headers: Mapping[str, str]
    receipt: PaymentReceipt


Effect = RpcCall | Resend


class ChainCache:
    """Chain facts worth keeping between payments: a recent blockhash and mint data.

    A blockhash stays usable for about 60 seconds on chain; it is reused for ``blockhash_ttl``
    seconds, well inside that. Mint decimals and token programs never change and are kept.
    """

    def __init__(self, *, blockhash_ttl: float = 20.0) -> None:
        self.blockhash_ttl = blockhash_ttl
        self._lock = threading.Lock()
        self._blockhash: tuple[Hash, float] | None = None
        self._mints: dict[Pubkey, MintInfo] = {}

    def blockhash(self, now: float) -> Hash | None:
        with self._lock:
            if self._blockhash is None or now - self._blockhash[1] >= self.blockhash_ttl:
                return None
            return self._blockhash[0]

    def remember_blockhash(self, blockhash: Hash, now: float) -> None:
        with self._lock:
            self._blockhash = (blockhash, now)

    def forget_blockhash(self) -> None:
        with self._lock:
            self._blockhash = None

    def mint(self, address: Pubkey) -> MintInfo | None:
        with self._lock:
            return self._mints.get(address)

    def remember_mint(self, info: MintInfo) -> None:
        with self._lock:
            self._mints[info.address] = info


def read_chain(
    keys: list[Pubkey], ctx: PaymentContext
) -> Generator[Effect, Any, tuple[list[Account | None], Hash]]:
    """The accounts at ``keys`` and a usable blockhash, in one JSON-RPC round trip.

    The cached blockhash is used while fresh; otherwise one is fetched in the same batch.
    """
    now = ctx.clock()
    blockhash = ctx.cache.blockhash(now)
    batch = [multiple_accounts_request(keys, 0)]
    if blockhash is None:
        batch.append(latest_blockhash_request(1))
    results = yield RpcCall(tuple(batch))
    accounts: list[Account | None] = list(results[0].value)
    if blockhash is None:
        blockhash = results[1].value.blockhash
        ctx.cache.remember_blockhash(blockhash, now)
    return accounts, blockhash


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
