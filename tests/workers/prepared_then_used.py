"""A paying agent holding a payment prepared ahead, used when told to.

    python -m tests.workers.prepared_then_used '{"url": ..., "rpc_url": ..., "journal": ...}'

The key comes from SOLANA_PRIVATE_KEY. It pays ``url`` once with ``prepay=True``, waits until
the next payment is prepared, prints "prepared", and waits for a line on stdin; then it asks
``url`` again (with the payment prepared), prints "served <status> <journal id>", and closes.
"""

from __future__ import annotations

import json
import sys

from human_rpc_sdk import AutoAgent


def main() -> None:
    job = json.loads(sys.argv[1])
    with AutoAgent(rpc_url=job["rpc_url"], journal_path=job["journal"], prepay=True) as agent:
        agent.get(job["url"]).raise_for_status()
        prepayer = agent._prepayer
        if prepayer is None or not prepayer.settle(30):
            raise SystemExit("no payment was prepared")
        print("prepared", flush=True)
        sys.stdin.readline()
        response = agent.get(job["url"])
        receipt = agent._last_payment()
        print("served", response.status_code, receipt.id if receipt else None, flush=True)


if __name__ == "__main__":
    main()
