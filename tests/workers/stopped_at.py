"""A paying agent that stops at one point of a payment and waits there, for the tests that
kill it (SIGKILL) or let it go on late. Either store: "journal" is a file or a PostgreSQL URL.

    python -m tests.workers.stopped_at '{"url": ..., "rpc_url": ..., "journal": ..., "at": ...}'

The key comes from PAYER_KEY (base58). "at" is one of:

* ``sign``: the payment is reserved, its signer called: it prints "reserved" and waits before
  signing;
* ``signed``: the ``signed`` row is committed (nothing sent yet): it prints "signed" and waits;
* ``answered``: the server answered (the payment settled); before the outcome is journaled it
  prints "answered" and waits.

Given a line on stdin it goes on, and prints how the request ended: "paid", or the
``PaymentError``'s reason.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from solders.keypair import Keypair
from solders.signature import Signature

from human_rpc_sdk import AutoAgent, KeypairSigner, PaymentError
from human_rpc_sdk._io.journal import Journal
from human_rpc_sdk._io.postgres import PostgresJournal

OUTCOMES = ("accepted", "refused", "submitted")


def stop(word: str) -> None:
    print(word, flush=True)
    sys.stdin.readline()  # killed here, or told to go on


class StoppingSigner(KeypairSigner):
    __slots__ = ()

    def sign_message(self, message: bytes) -> Signature:
        stop("reserved")
        return super().sign_message(message)


def stopping_mark(original: Any, at: str) -> Any:
    def mark(self: Any, entry_id: int, state: str, *args: Any, **kwargs: Any) -> Any:
        if at == "answered" and state in OUTCOMES:
            stop("answered")
        entry = original(self, entry_id, state, *args, **kwargs)
        if at == "signed" and state == "signed":
            stop("signed")
        return entry

    return mark


def main() -> None:
    job = json.loads(sys.argv[1])
    at = job["at"]
    keypair = Keypair.from_base58_string(os.environ["PAYER_KEY"])
    signer = StoppingSigner(keypair) if at == "sign" else KeypairSigner(keypair)
    for store in (Journal, PostgresJournal):
        store.mark = stopping_mark(store.mark, at)  # type: ignore[method-assign]
    agent = AutoAgent(signer=signer, rpc_url=job["rpc_url"], journal_path=job["journal"])
    try:
        response = agent.get(job["url"])
    except PaymentError as exc:
        print(exc.reason, flush=True)
    else:
        print("paid" if response.status_code == 200 else f"HTTP {response.status_code}")
    finally:
        agent.close()


if __name__ == "__main__":
    main()
