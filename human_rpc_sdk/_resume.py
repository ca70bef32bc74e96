"""Resuming an identified x402 purchase: the next request re-sends it rather than paying anew.

x402 gives a purchase no identity the server keeps across requests (a HumanRPC invoice has its
``reference``; an x402 offer is the same for every request). The ``payment-identifier``
extension gives it one the *client* keeps: the id, journaled with the signed payment. A
payment whose outcome this agent never learnt (no answer came, or its process died between
sending it and the answer) is therefore resumed, not paid again: when the same request (method,
URL, body) meets a challenge that declares the extension and offers the very offer that payment
paid (but for the blockhash hints a server renews in every 402, :data:`DYNAMIC_EXTRA`), the
journaled payment is sent again, with its id, byte for byte. A server that keeps ids answers it
from its cache (or serves it, if the first copy never reached it); one that settled it and kept
no answer refuses it as already paid, and the chain then tells (see :mod:`._delivery`).

Which rows qualify (:meth:`Journal.resumable`): ``submitted`` rows (delivery gave up on them),
``signed`` rows whose process is gone (it died between journaling and the answer; a process
now holding its pid, as a container's agent is pid 1 each time, is not it) or that have had no
outcome for :data:`ABANDONED_AFTER` seconds (a process on another host, which cannot be asked,
or a hung one: sending the same bytes and id again cannot pay twice), and rows a recovery found
landed before any answer came (``accepted``, no HTTP status: the books are settled, the answer
is still owed); never a fresh ``signed`` row of a live process (in flight: an identical request
of another process pays for itself), nor one the chain proved never landed (``landed`` 0:
paying anew is then right, with a new id). A resumed row answered is no longer resumable:
each is resumed until an answer comes, never paid again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

from solders.pubkey import Pubkey

from ._x402 import Offer

__all__ = ["ABANDONED_AFTER", "DYNAMIC_EXTRA", "request_fingerprint", "resume_key"]

ABANDONED_AFTER: Final = 300.0
"""Seconds after which a ``signed`` row with no outcome is resumed whoever wrote it: far past a
paid request's answer (``paid_timeout``, 60 s by default, and the re-sends that follow)."""

DYNAMIC_EXTRA: Final = ("recentBlockhash", "lastValidBlockHeight")
"""Fields of an offer's ``extra`` a server may renew in every 402 (the reference package's
Solana server puts the blockhash of the moment there, and leaves them out when it matches a
payment's offer): the same offer with other values is still the same offer."""


def request_fingerprint(method: str, body: Any) -> str:
    """What identifies a request besides its URL: its method and a digest of its body; ""
    when the body is a stream (it cannot be compared, so such a request never resumes)."""
    if body is None:
        body = b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    if not isinstance(body, bytes | bytearray | memoryview):
        return ""
    return f"{method.upper()} {hashlib.sha256(bytes(body)).hexdigest()}"


def resume_key(request: str, url: str, offer: Offer, payer: Pubkey) -> str | None:
    """The key a payment of ``offer`` by ``payer`` for the request ``request`` to ``url`` is
    journaled under; None when the request cannot be identified (no resume)."""
    if not request:
        return None
    terms = json.dumps(_lasting(offer.raw), sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256("\0".join((request, url, str(payer), terms)).encode("utf-8"))
    return digest.hexdigest()


def _lasting(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` (an offer) without the fields a server renews in every 402 (:data:`DYNAMIC_EXTRA`);
    an offer without them is kept as it is (so are the keys journaled for it)."""
    terms = dict(raw)
    extra = terms.get("extra")
    if isinstance(extra, Mapping) and any(name in extra for name in DYNAMIC_EXTRA):
        terms["extra"] = {k: v for k, v in extra.items() if k not in DYNAMIC_EXTRA}
    return terms
