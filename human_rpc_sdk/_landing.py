"""Did a journaled payment land on chain? (pure: the chain's answers arrive as effect results)

"Not found" alone proves nothing: a lagging node, or another node behind a load balancer, has
not seen a transaction that landed a moment ago, and answers ``isBlockhashValid`` false for a
blockhash newer than its own view. So a payment is judged never landed only with a proof:

1. when the agent fetched the blockhash itself, it recorded the ``lastValidBlockHeight`` and
   the slot its node answered at (``getLatestBlockhash``'s ``context.slot``);
2. ``getEpochInfo`` with ``minContextSlot`` = that slot (a node behind it answers -32016 and so
   proves nothing) reports a block height past that ``lastValidBlockHeight``, at slot A: no
   block from then on can hold the transaction;
3. the transaction is not found by a node that has reached slot A (the reply's
   ``context.slot``, or ``minContextSlot`` = A for a history search);
4. and whose history reaches back to the blockhash's slot: its ``minimumLedgerSlot``, asked in
   the same batch as the search (so of the same node), is at or before that slot. A node
   restarted from a recent snapshot, or one that keeps only recent slots, has never seen an
   older transaction; one that cannot say how far back it goes proves nothing.

Without all four the answer is "unknown": the payment may still land, and it is never paid
again automatically. A blockhash the server chose (x402 ``extra.recentBlockhash``) has no
recorded height, so such a payment is only ever found landed, or stays open.

The transaction is found by its signature when it is known. An x402 transaction's id is the
facilitator's signature, unknown to the agent until settlement; it is then found among the
payer's recent transactions as the one whose first signature verifies, with the fee payer's
key, over exactly the message the agent signed.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from solders.message import to_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from ._effects import Flow, RpcCall, perform
from ._jsonrpc import (
    MIN_CONTEXT_SLOT_NOT_REACHED,
    RpcRequest,
    epoch_info_request,
    minimum_ledger_slot_request,
    signature_statuses_request,
    signatures_for_address_request,
)
from ._records import FAILED_ON_CHAIN, JournalEntry
from .exceptions import SolanaRPCError

__all__ = ["HISTORY_LIMIT", "Landing", "landing", "signed_by_fee_payer"]

HISTORY_LIMIT = 1000


@dataclass(frozen=True)
class Landing:
    """What the chain says of a payment's transaction.

    ``landed``: True, on chain and succeeded; False, proven never landed and never able to
    (or failed on chain), with ``proof`` saying how; None, unknown: it may still land.
    ``signature``: the transaction's signature when it was found.
    """

    landed: bool | None
    signature: str = ""
    proof: str = ""


@dataclass(frozen=True)
class _Expired:
    """A node at ``slot`` reported ``block_height``, past the last valid height of the
    blockhash the agent fetched at slot ``since``."""

    block_height: int
    slot: int
    since: int


def landing(entry: JournalEntry) -> Flow[Landing]:
    """Whether ``entry``'s transaction landed; see :class:`Landing`."""
    transaction = _transaction(entry)
    if transaction is None or entry.blockhash is None:
        return Landing(None)  # nothing signed, or a row written by a newer SDK: not ours to judge
    expired = yield from _expiry(entry)
    signature = entry.receipt.signature
    if signature and _signs(entry, transaction, signature):
        return (yield from _by_signature(entry, signature, expired))
    return (yield from _in_history(entry, transaction, expired))


def signed_by_fee_payer(entry: JournalEntry, signature: str) -> bool:
    """Whether ``signature`` is the transaction of ``entry`` (see :func:`_signs`)."""
    transaction = _transaction(entry)
    return transaction is not None and _signs(entry, transaction, signature)


def _signs(entry: JournalEntry, transaction: VersionedTransaction, signature: str) -> bool:
    """Whether ``signature`` is ``transaction``'s own (the fee payer's, over its message).

    An x402 row's signature comes from the server's settlement header: a made-up one (never
    on chain, so "not found" after expiry) must not judge the payment; the history search does.
    """
    if not entry.fee_payer:
        return True  # an older row: its signature is the one the agent signed with
    try:
        found = Signature.from_string(signature)
        fee_payer = Pubkey.from_string(entry.fee_payer)
    except ValueError:
        return False
    return found.verify(fee_payer, to_bytes_versioned(transaction.message))


def _expiry(entry: JournalEntry) -> Flow[_Expired | None]:
    """Proof that the blockhash expired, from a node that has seen it; else None."""
    last_valid, slot = entry.last_valid_block_height, entry.blockhash_slot
    if last_valid is None or slot is None:
        return None
    epoch = yield from _ask(epoch_info_request(slot))
    if epoch is None:
        return None
    info = epoch.value
    if info.absolute_slot < slot or info.block_height <= last_valid:
        return None
    return _Expired(info.block_height, info.absolute_slot, slot)


def _by_signature(entry: JournalEntry, signature: str, expired: _Expired | None) -> Flow[Landing]:
    request = signature_statuses_request([Signature.from_string(signature)])
    statuses, first = yield from _search(request, expired)
    if statuses is None:
        return Landing(None)
    status = statuses.value[0]
    if status is not None:
        if status.err is None:
            return Landing(True, signature)
        return Landing(False, signature, f"{FAILED_ON_CHAIN} at slot {status.slot}: {status.err}")
    searched_at = statuses.context.slot
    if expired is not None and first is not None and searched_at >= expired.slot:
        return Landing(False, "", _proof(expired, entry, searched_at, first))
    return Landing(None)


def _in_history(
    entry: JournalEntry, transaction: VersionedTransaction, expired: _Expired | None
) -> Flow[Landing]:
    if not entry.fee_payer:
        return Landing(None)
    message = to_bytes_versioned(transaction.message)
    fee_payer = Pubkey.from_string(entry.fee_payer)
    payer = Pubkey.from_string(entry.receipt.payer)
    seen_at = None if expired is None else expired.slot
    request = signatures_for_address_request(payer, HISTORY_LIMIT, min_context_slot=seen_at)
    history, first = yield from _search(request, expired)
    if history is None:
        return Landing(None)
    for item in history.value:
        if item.signature.verify(fee_payer, message):
            found = str(item.signature)
            if item.err is None:
                return Landing(True, found)
            return Landing(False, found, f"{FAILED_ON_CHAIN} at slot {item.slot}: {item.err}")
    if len(history.value) >= HISTORY_LIMIT or expired is None or first is None:
        return Landing(None)  # a full page leaves older transactions unsearched
    return Landing(False, "", _proof(expired, entry, expired.slot, first))


def _search(request: RpcRequest, expired: _Expired | None) -> Flow[tuple[Any, int | None]]:
    """The reply to the search ``request`` (None: see :func:`_ask`) and, with an expiry
    proven, the searching node's ``minimumLedgerSlot`` when its history reaches back to the
    blockhash's slot (None otherwise: its "not found" proves nothing).

    The first slot is asked in the same batch as the search: one node answers both.
    """
    if expired is None:  # nothing to prove: a "not found" is unknown whatever the history
        return (yield from _ask(request)), None
    try:
        reply, first = yield from perform(
            RpcCall((request, minimum_ledger_slot_request(request_id=1)))
        )
    except SolanaRPCError as exc:
        if exc.method != "minimumLedgerSlot":
            if exc.code == MIN_CONTEXT_SLOT_NOT_REACHED:
                return None, None
            raise
        # A node that cannot say how far back it goes proves nothing, but what it finds counts.
        return (yield from _ask(request)), None
    reaches_back = first.value <= expired.since
    return reply, first.value if reaches_back else None


def _ask(request: RpcRequest) -> Flow[Any]:
    """The reply to ``request``; None from a node that has not reached its minContextSlot."""
    try:
        (reply,) = yield from perform(RpcCall((request,)))
    except SolanaRPCError as exc:
        if exc.code == MIN_CONTEXT_SLOT_NOT_REACHED:
            return None
        raise
    return reply


def _proof(expired: _Expired, entry: JournalEntry, searched_at: int, first: int) -> str:
    return (
        f"block height {expired.block_height} at slot {expired.slot} is past the blockhash's "
        f"last valid block height {entry.last_valid_block_height}, and a node at slot "
        f"{searched_at}, whose history begins at slot {first} (the blockhash is of slot "
        f"{expired.since}), does not have the transaction"
    )


def _transaction(entry: JournalEntry) -> VersionedTransaction | None:
    if not entry.transaction:
        return None
    try:
        return VersionedTransaction.from_bytes(base64.b64decode(entry.transaction))
    except (binascii.Error, ValueError):
        return None
