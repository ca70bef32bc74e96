"""An agent in a process of its own that runs ``recover_payments()`` once, for the tests of
recovery from another process (and of two recoverers at once).

    python -m tests.workers.recoverer '{"rpc_url": ..., "journal": ..., "hold": false}'

With "hold" true, once it holds the journal's recovery lock (about to list the open payments)
it prints "recovering" and waits for a line on stdin. It prints one JSON line: the payments
recovered, each ``[id, state, landed]``.
"""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any

from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent, PendingPaymentsWarning
from human_rpc_sdk._io.postgres import PostgresJournal

_unsettled = PostgresJournal.unsettled


def holding_unsettled(self: PostgresJournal) -> Any:
    print("recovering", flush=True)
    sys.stdin.readline()
    return _unsettled(self)


def main() -> None:
    job = json.loads(sys.argv[1])
    if job.get("hold"):
        PostgresJournal.unsettled = holding_unsettled  # type: ignore[method-assign]
    warnings.simplefilter("ignore", PendingPaymentsWarning)
    agent = AutoAgent(Keypair(), rpc_url=job["rpc_url"], journal_path=job["journal"])
    try:
        recovered = agent.recover_payments()
    finally:
        agent.close()
    print(json.dumps([[r.id, r.state, r.landed] for r in recovered]), flush=True)


if __name__ == "__main__":
    main()
