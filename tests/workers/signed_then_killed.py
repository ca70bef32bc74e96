"""A paying agent that stops right after journaling its payment as signed, for a crash test.

    python -m tests.workers.signed_then_killed '{"url": ..., "rpc_url": ..., "journal": ...}'

The key comes from SOLANA_PRIVATE_KEY. Once the ``signed`` row is committed (before the
payment is sent), it prints "signed" and waits for a line on stdin: the test kills it there.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from human_rpc_sdk import AutoAgent
from human_rpc_sdk._io.journal import Journal
from human_rpc_sdk._records import JournalEntry

_mark = Journal.mark


def _mark_then_stop(self: Journal, entry_id: int, state: str, *args: Any, **kwargs: Any) -> Any:
    entry: JournalEntry | None = _mark(self, entry_id, state, *args, **kwargs)
    if state == "signed":
        print(f"signed {self.full_syncs}", flush=True)
        sys.stdin.readline()  # killed here
    return entry


def main() -> None:
    job = json.loads(sys.argv[1])
    Journal.mark = _mark_then_stop  # type: ignore[method-assign]
    agent = AutoAgent(rpc_url=job["rpc_url"], journal_path=job["journal"])
    agent.get(job["url"])


if __name__ == "__main__":
    main()
