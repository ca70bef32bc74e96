"""A paying agent holding a payment prepared ahead, that exits without closing its agent.

    python -m tests.workers.prepared_then_exits '{"url": ..., "rpc_url": ..., "journal": ...}'

The key comes from SOLANA_PRIVATE_KEY. It pays ``url`` once with ``prepay=True``, waits until
the next payment is prepared (journaled ``signed``, never sent), prints "prepared" and returns,
its agent still referenced (a module global), never closed: the interpreter exits with it.
"""

from __future__ import annotations

import json
import sys

from human_rpc_sdk import AutoAgent

AGENTS: list[AutoAgent] = []


def main() -> None:
    job = json.loads(sys.argv[1])
    agent = AutoAgent(rpc_url=job["rpc_url"], journal_path=job["journal"], prepay=True)
    AGENTS.append(agent)
    agent.get(job["url"]).raise_for_status()
    prepayer = agent._prepayer
    if prepayer is None or not prepayer.settle(30):
        raise SystemExit("no payment was prepared")
    print("prepared", flush=True)


if __name__ == "__main__":
    main()
