"""A paying agent in a process of its own, for the crash and concurrency tests.

    python -m tests.workers.payer '{"url": ..., "rpc_url": ..., "journal": ..., ...}'

The key comes from SOLANA_PRIVATE_KEY; without "journal", the journal is the agent's default
(``$HUMAN_RPC_JOURNAL``: a file, or a PostgreSQL URL). With "wait" set, once its agent is built
it prints "ready" and waits for a line on stdin before starting. It requests "url" "attempts"
times from each of "threads" threads (default 1, all started at once) and prints one JSON line:
how many were paid, refused by the budget, or failed otherwise.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

from human_rpc_sdk import AutoAgent, HumanRPCError, PaymentPolicyError


def main() -> None:
    job = json.loads(sys.argv[1])
    agent = AutoAgent(
        rpc_url=job["rpc_url"], journal_path=job.get("journal"), budget=job.get("budget")
    )
    if job.get("wait"):
        print("ready", flush=True)
        sys.stdin.readline()  # the start signal
    counts: dict[str, Any] = {"paid": 0, "budget": 0, "other": []}
    lock = threading.Lock()
    threads = job.get("threads", 1)
    start = threading.Barrier(threads)

    def attempt() -> None:
        start.wait()
        for _ in range(job.get("attempts", 1)):
            outcome = pay(agent, job["url"])
            with lock:
                if outcome in ("paid", "budget"):
                    counts[outcome] += 1
                else:
                    counts["other"].append(outcome)

    running = [threading.Thread(target=attempt) for _ in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    agent.close()
    print(json.dumps(counts), flush=True)


def pay(agent: AutoAgent, url: str) -> str:
    """One request: "paid", "budget" (refused by the budget rule), or what went wrong."""
    try:
        response = agent.get(url)
    except PaymentPolicyError as exc:
        return "budget" if exc.rule == "budget" else f"{exc.rule}: {exc}"
    except HumanRPCError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "paid" if response.status_code == 200 else f"HTTP {response.status_code}"


if __name__ == "__main__":
    main()
