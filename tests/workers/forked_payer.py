"""An AutoAgent built, and paying once, before ``os.fork()``; then its children pay with it (the
shape of gunicorn --preload or Celery's prefork pool), for tests/test_fleet_fork.py.

    python -m tests.workers.forked_payer '{"url": ..., "rpc_url": ..., "journal": ...,
        "budget": ..., "children": 3, "attempts": 3}'

The key comes from SOLANA_PRIVATE_KEY. The parent pays "url" once, forks "children" children,
starts them together, and each child pays "attempts" times, then closes its agent; the parent
prints one JSON line: each child's counts (as tests/workers/payer.py counts them), then pays
once more and closes its agent.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from human_rpc_sdk import AutoAgent

from .payer import pay


def main() -> None:
    job = json.loads(sys.argv[1])
    agent = AutoAgent(rpc_url=job["rpc_url"], journal_path=job["journal"], budget=job["budget"])
    first = pay(agent, job["url"])
    children = []
    for _ in range(job["children"]):
        start_read, start_write = os.pipe()
        result_read, result_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(start_write)
                os.close(result_read)
                os.read(start_read, 1)  # every child starts at once
                counts: dict[str, Any] = {"paid": 0, "budget": 0, "other": []}
                for _ in range(job["attempts"]):
                    outcome = pay(agent, job["url"])
                    if outcome in ("paid", "budget"):
                        counts[outcome] += 1
                    else:
                        counts["other"].append(outcome[:300])
                agent.close()
                with os.fdopen(result_write, "w") as out:
                    out.write(json.dumps(counts))
                code = 0
            finally:
                os._exit(code)
        os.close(start_read)
        os.close(result_write)
        children.append((pid, start_write, result_read))
    for _, start_write, _ in children:
        os.write(start_write, b"x")
        os.close(start_write)
    reports = []
    for pid, _, result_read in children:
        with os.fdopen(result_read) as results:
            text = results.read()
        _, status = os.waitpid(pid, 0)
        reports.append(json.loads(text) if text else {"exit": status})
    last = pay(agent, job["url"])
    agent.close()
    print(json.dumps({"first": first, "children": reports, "last": last}))


if __name__ == "__main__":
    main()
