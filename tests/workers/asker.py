"""An agent asking humans in a process of its own, for the task crash tests.

    python -m tests.workers.asker '{"how": "ask" | "guard", "rpc_url": ..., "tasks_url": ...,
                                   "journal": ..., "reward": "0.02"}'

The key comes from SOLANA_PRIVATE_KEY. It creates one paid task and waits for its verdict;
the test stops it during the wait. Interrupted (SIGINT), it prints {"interrupted": true} and
exits with status 130; given a verdict, it prints it as one JSON line.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from human_rpc_sdk import AutoAgent, guard


def main() -> None:
    job = json.loads(sys.argv[1])
    agent = AutoAgent(
        rpc_url=job["rpc_url"], human_rpc_url=job["tasks_url"], journal_path=job["journal"]
    )
    try:
        if job["how"] == "guard":

            @guard(threshold=0.9, reward=job["reward"], agent=agent, timeout=600)
            def classify(text: str) -> dict[str, Any]:
                return {"answer": "positive", "confidence": 0.4}

            result: Any = classify("I loved this film")
        else:
            result = agent.ask_human_rpc(
                "Is 2 + 2 = 4?", answer="yes", confidence=0.4, reward=job["reward"], timeout=600
            )
    except KeyboardInterrupt:
        print(json.dumps({"interrupted": True}), flush=True)
        sys.exit(130)
    print(json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    main()
