"""Settling the journal's open payments against the chain (pure; run by ``recover_payments``).

A payment whose outcome the server never told (``reserved``, ``signed``, ``submitted``), or
that the server refused without the chain having been asked, is looked up (see
:mod:`._landing`): on chain, it is ``accepted`` (or stays ``refused``, now marked as landed,
when the server refused money it took); provably never landed, it is ``failed`` and its budget
is released; otherwise it stays open, to be asked again later. A ``reserved`` row holds no
signature and cannot move money: it is released once the process that reserved it is gone
(or it is older than ``stale_after`` seconds, far beyond the milliseconds signing takes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Sequence
from typing import Any

from solders.signature import Signature

from ._effects import Effect, Record, RpcCall
from ._jsonrpc import signature_statuses_request
from ._landing import landing
from ._receipts import PaymentReceipt
from ._records import JournalEntry

__all__ = ["needs_recovery", "recover"]

logger = logging.getLogger("human_rpc_sdk")


def needs_recovery(entry: JournalEntry) -> bool:
    """Whether the chain could still tell something about ``entry``."""
    if entry.state in ("reserved", "signed", "submitted"):
        return True
    if entry.state == "accepted":  # served by the server, but did it land? (s6: token mints)
        return entry.receipt.landed is None and entry.transaction is not None
    return entry.state == "refused" and entry.receipt.landed is None


def recover(
    entries: Sequence[JournalEntry],
    *,
    alive: Callable[[JournalEntry], bool],
    stale_after: float,
) -> Generator[Effect, Any, list[PaymentReceipt]]:
    """Check each of ``entries`` on chain and journal what was learnt; their receipts back."""
    receipts: list[PaymentReceipt] = []
    for entry in entries:
        if entry.state == "reserved":
            if alive(entry) and entry.age < stale_after:
                receipts.append(entry.receipt)
                continue
            updated = yield Record(
                entry.id,
                "failed",
                {"error": "abandoned before it was signed", "landed": False},
                ("reserved",),
            )
        else:
            updated = yield from _settle(entry)
        receipts.append(entry.receipt if updated is None else updated.receipt)
    return receipts


def _settle(entry: JournalEntry) -> Generator[Effect, Any, JournalEntry | None]:
    landed, signature = yield from landing(entry)
    if landed is None:
        return None
    fields: dict[str, Any] = {"landed": landed}
    if signature and not entry.receipt.signature:
        fields["signature"] = signature
    if landed:
        state = "refused" if entry.state == "refused" else "accepted"
        logger.info("payment #%s landed on chain (%s)", entry.id, signature)
    else:
        state = "failed"
        if signature:  # it executed and failed: no money moved, whatever the server said
            fields["error"] = yield from _chain_error(signature)
        else:
            fields["error"] = entry.receipt.error_reason or "never landed; its blockhash expired"
        logger.info("payment #%s never landed and no longer can: released", entry.id)
    updated: JournalEntry | None = yield Record(entry.id, state, fields, (entry.state,))
    return updated


def _chain_error(signature: str) -> Generator[Effect, Any, str]:
    """What the chain says went wrong with the transaction ``signature`` (s6: failed on chain)."""
    (statuses,) = yield RpcCall((signature_statuses_request([Signature.from_string(signature)]),))
    status = statuses.value[0]
    error = "unknown error" if status is None or status.err is None else str(status.err)
    return f"failed on chain: {error}"[:200]
