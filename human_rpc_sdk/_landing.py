"""Did a journaled payment land on chain? (pure: the chain's answers arrive as effect results)

A transaction can land only while its blockhash is valid. So the blockhash is checked *first*
and the transaction looked up *second*: "blockhash expired" then "not found" proves the
payment never landed and never can, and only then may the same invoice be paid with a new
transaction.

The transaction is found by its signature when it is known. An x402 transaction's id is the
facilitator's signature, unknown to the agent until settlement; it is then found among the
payer's recent transactions as the one whose first signature verifies, with the fee payer's
key, over exactly the message the agent signed.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Generator
from typing import Any

from solders.hash import Hash
from solders.message import to_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from ._effects import Effect, RpcCall
from ._jsonrpc import (
    blockhash_valid_request,
    signature_statuses_request,
    signatures_for_address_request,
)
from ._records import JournalEntry

__all__ = ["HISTORY_LIMIT", "Landing", "landing"]

HISTORY_LIMIT = 1000

Landing = tuple[bool | None, str]
"""(True: on chain and succeeded; False: never landed and never can (or failed on chain);
None: unknown, it may still land) and the signature found, if any."""


def landing(entry: JournalEntry) -> Generator[Effect, Any, Landing]:
    """Whether ``entry``'s transaction landed; see :data:`Landing`."""
    transaction = _transaction(entry)
    if transaction is None or entry.blockhash is None:
        return None, ""  # nothing signed, or a row written by a newer SDK: not ours to judge
    (valid,) = yield RpcCall((blockhash_valid_request(Hash.from_string(entry.blockhash)),))
    expired = not valid.value
    signature = entry.receipt.signature
    if signature:
        (statuses,) = yield RpcCall(
            (signature_statuses_request([Signature.from_string(signature)]),)
        )
        status = statuses.value[0]
        if status is not None:
            return status.err is None, signature
    else:
        found = yield from _search_history(entry, transaction)
        if found is not None:
            return found
    return (False, "") if expired else (None, "")


def _search_history(
    entry: JournalEntry, transaction: VersionedTransaction
) -> Generator[Effect, Any, Landing | None]:
    if not entry.fee_payer:
        return None
    message = to_bytes_versioned(transaction.message)
    fee_payer = Pubkey.from_string(entry.fee_payer)
    payer = Pubkey.from_string(entry.receipt.payer)
    (history,) = yield RpcCall((signatures_for_address_request(payer, HISTORY_LIMIT),))
    for item in history.value:
        if item.signature.verify(fee_payer, message):
            return item.err is None, str(item.signature)
    if len(history.value) >= HISTORY_LIMIT:
        return None, ""  # the page is full: older transactions were not searched
    return None


def _transaction(entry: JournalEntry) -> VersionedTransaction | None:
    if not entry.transaction:
        return None
    try:
        return VersionedTransaction.from_bytes(base64.b64decode(entry.transaction))
    except (binascii.Error, ValueError):
        return None
