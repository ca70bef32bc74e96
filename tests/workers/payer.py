"""A paying agent in a process of its own, for the crash and concurrency tests.

    python -m tests.workers.payer '{"url": ..., "rpc_url": ..., "journal": ..., ...}'

The key comes from SOLANA_PRIVATE_KEY; without "journal", the journal is the agent's default
(``$HUMAN_RPC_JOURNAL``: a file, or a PostgreSQL URL). With "wait" set, once its agent is built
it prints "ready" and waits for a line on stdin before starting. It requests "url" "attempts"
times from each of "threads" threads (default 1, all started at once) and prints one JSON line:
how many were paid, refused by the budget, or failed otherwise.

With "clock_file", the journal's wall clock (which decides budget periods) is the Unix time
written in that file, read again at every reading: the worker opens its journal through the
store's own ``clock`` keyword (``open_journal(location, clock=...)``, internal, not the public
API). With "phases" (default 1), it runs that many rounds of attempts, printing one JSON line
per round and waiting for a line on stdin before each round after the first.
"""

from __future__ import annotations

import functools
import json
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from human_rpc_sdk import AutoAgent, HumanRPCError, PaymentPolicyError
from human_rpc_sdk._io import base
from human_rpc_sdk._io.store import open_journal


def file_clock(path: Path) -> datetime:
    """The time written in ``path`` (Unix seconds): a wall clock the test moves."""
    return datetime.fromtimestamp(float(path.read_text()), UTC)


def main() -> None:
    job = json.loads(sys.argv[1])
    if job.get("clock_file"):
        clock = functools.partial(file_clock, Path(job["clock_file"]))
        # The agent opens its journal through base.open_journal: this process's agents get the
        # store with the moved clock (no test hook in the SDK's public API).
        setattr(base, "open_journal", functools.partial(open_journal, clock=clock))  # noqa: B010
    agent = AutoAgent(
        rpc_url=job["rpc_url"], journal_path=job.get("journal"), budget=job.get("budget")
    )
    if job.get("wait"):
        print("ready", flush=True)
        sys.stdin.readline()  # the start signal
    for phase in range(job.get("phases", 1)):
        if phase:
            sys.stdin.readline()  # the next round's signal
        attempts(agent, job)
    agent.close()


def attempts(agent: AutoAgent, job: dict[str, Any]) -> None:
    """One round: every thread's attempts, then one JSON line of counts."""
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
