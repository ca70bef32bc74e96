"""A paying agent in a process of its own, for the crash and concurrency tests.

    python -m tests.workers.payer '{"url": ..., "rpc_url": ..., "journal": ..., ...}'

The key comes from SOLANA_PRIVATE_KEY. With "wait" set, once its agent is built it prints
"ready" and waits for a line on stdin before starting. It requests "url" "attempts" times
and prints one JSON line: how many were paid, refused by the budget, or failed otherwise.
"""

from __future__ import annotations

import json
import sys

from human_rpc_sdk import AutoAgent, HumanRPCError, PaymentPolicyError


def main() -> None:
    job = json.loads(sys.argv[1])
    agent = AutoAgent(rpc_url=job["rpc_url"], journal_path=job["journal"], budget=job.get("budget"))
    if job.get("wait"):
        print("ready", flush=True)
        sys.stdin.readline()  # the start signal
    paid = budget = 0
    other: list[str] = []
    for _ in range(job.get("attempts", 1)):
        try:
            response = agent.get(job["url"])
        except PaymentPolicyError as exc:
            if exc.rule != "budget":
                other.append(f"{exc.rule}: {exc}")
            else:
                budget += 1
        except HumanRPCError as exc:
            other.append(f"{type(exc).__name__}: {exc}")
        else:
            if response.status_code == 200:
                paid += 1
            else:
                other.append(f"HTTP {response.status_code}")
    print(json.dumps({"paid": paid, "budget": budget, "other": other}), flush=True)


if __name__ == "__main__":
    main()
