"""Settling the journal's open payments against the chain (pure; run by ``recover_payments``).

Every payment that could still have landed is looked up (see :mod:`._landing`): one whose
outcome the server never told (``reserved``, ``signed``, ``submitted``), one the server refused
while the chain has not shown it landed, and a ``failed`` one whose failure was never proven
(older SDKs failed a payment on an ``isBlockhashValid`` false, which a lagging node also
answers). On chain, it is ``accepted`` (or ``refused``, marked as landed, when the server
refused money it took; a wrongly failed one comes back and counts against the budget again);
provably never landed, it is ``failed`` with the proof and its budget is released; otherwise
it stays as it is, to be asked again later. A ``reserved`` row holds no
signature and cannot move money: it is released once the process that reserved it is gone
(or it is older than ``stale_after`` seconds, far beyond the milliseconds signing takes).

Only the chain a payment was made on can judge it: the node's genesis hash is read first, and
a payment journaled on another chain is left as it is, with a warning naming its chain.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from ._effects import FindPayment, Flow, Record, RpcCall, perform
from ._jsonrpc import genesis_hash_request
from ._landing import Landing, landing
from ._networks import chain_name
from ._receipts import PaymentReceipt, State
from ._records import JournalEntry

__all__ = ["needs_recovery", "recover"]

logger = logging.getLogger("human_rpc_sdk")


def needs_recovery(entry: JournalEntry) -> bool:
    """Whether the chain could still tell something about ``entry``."""
    if entry.state in ("reserved", "signed", "submitted"):
        return True
    if entry.state == "accepted":  # served by the server, but did it land?
        return entry.receipt.landed is None and entry.transaction is not None
    if entry.state == "refused":
        return entry.receipt.landed is not True
    if entry.state == "failed":
        return bool(entry.transaction) and not entry.landed_proof
    return False


def recover(
    entries: Sequence[JournalEntry],
    *,
    alive: Callable[[JournalEntry], bool],
    stale_after: float,
) -> Flow[list[PaymentReceipt]]:
    """Check each of ``entries`` on chain and journal what was learnt; their receipts back."""
    receipts: list[PaymentReceipt] = []
    chain = ""
    if any(entry.state != "reserved" for entry in entries):
        (genesis,) = yield from perform(RpcCall((genesis_hash_request(),)))
        chain = str(genesis.value)
    for entry in entries:
        if entry.state != "reserved" and entry.genesis_hash and entry.genesis_hash != chain:
            logger.warning(
                "payment #%s was made on %s, but the RPC node serves %s: it was not judged. "
                "Recover it with an agent whose rpc_url points at that chain",
                entry.id,
                chain_name(entry.genesis_hash),
                chain_name(chain),
            )
            receipts.append(entry.receipt)
            continue
        if entry.state == "reserved":
            if alive(entry) and entry.age < stale_after:
                receipts.append(entry.receipt)
                continue
            abandoned = {"error": "abandoned before it was signed", "landed": False}
            updated = yield from perform(Record(entry.id, "failed", abandoned, ("reserved",)))
        else:
            updated = yield from _settle(entry)
        receipts.append(entry.receipt if updated is None else updated.receipt)
    return receipts


def _settle(entry: JournalEntry) -> Flow[JournalEntry | None]:
    if entry.receipt.landed is False and entry.landed_proof:
        chain = Landing(False, "", entry.landed_proof)  # proven when it was refused
    else:
        chain = yield from landing(entry)
    if chain.landed is None:
        return None
    fields: dict[str, Any] = {"landed": chain.landed}
    if chain.signature and chain.signature != entry.receipt.signature:
        fields["signature"] = chain.signature
    state: State
    if chain.landed:
        state = "refused" if _refused(entry) else "accepted"
        if entry.state == "failed":
            fields.update((yield from _revived(entry)))
            logger.warning(
                "payment #%s was marked failed, but it landed on chain (%s): it counts against "
                "the budget again",
                entry.id,
                chain.signature,
            )
        else:
            logger.info("payment #%s landed on chain (%s)", entry.id, chain.signature)
    else:
        state = "failed"
        fields["landed_proof"] = chain.proof
        if chain.signature:  # it executed and failed: no money moved, whatever the server said
            fields["error"] = chain.proof[:200]
        else:
            fields["error"] = entry.receipt.error_reason or "never landed; its blockhash expired"
        logger.info("payment #%s never landed and no longer can: released", entry.id)
    return (yield from perform(Record(entry.id, state, fields, (entry.state,))))


def _refused(entry: JournalEntry) -> bool:
    """The server answered the payment with an error (a ``failed`` row keeps its status)."""
    if entry.state == "refused":
        return True
    status = entry.receipt.http_status
    return entry.state == "failed" and status is not None and status >= 400


def _revived(entry: JournalEntry) -> Flow[dict[str, Any]]:
    """Fields for a ``failed`` row that landed after all. If its invoice has another live
    payment (an older SDK's replacement, which landed too), that one stays the invoice's."""
    if entry.invoice_key is None:
        return {}
    live = yield from perform(FindPayment(entry.invoice_key))
    return {} if live is None else {"invoice_key": None}
