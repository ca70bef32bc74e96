"""Fresh-process measurements for bench_payment.py (each run in a new interpreter).

``python benchmarks/probe.py fsync CONFIG``: one agent (journal on disk) pays CONFIG["url"]
once to warm up, then CONFIG["payments"] times between two markers that strace can see (an
``access()`` of ``/human-rpc-bench-start`` and ``/human-rpc-bench-end``); prints
``{"payments": N, "full_syncs": <the journal's counter over them, or null>}``.

``python -X importtime benchmarks/probe.py first-payment CONFIG``: imports the SDK, builds an
agent and pays once, writing ``BENCH-MARK <phase>`` lines to standard error between the phases
so that the imports of each phase can be told apart.

CONFIG is JSON: url, rpc_url, secret (base58), journal (a path), payments, prepay (bool).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

START_MARK = "/human-rpc-bench-start"
END_MARK = "/human-rpc-bench-end"


def _agent(config: dict[str, Any]) -> Any:
    from human_rpc_sdk import AutoAgent

    options: dict[str, Any] = {"budget": {"USDC": None, "SOL": None}}
    if config.get("prepay"):
        options["prepay"] = True
    return AutoAgent(
        config["secret"], rpc_url=config["rpc_url"], journal_path=config["journal"], **options
    )


def _expect_paid(status: int, url: str) -> None:
    if status != 200:
        raise SystemExit(f"probe: GET {url} answered {status}, expected 200")


def fsync(config: dict[str, Any]) -> None:
    from bench_support import full_syncs

    agent = _agent(config)
    url = config["url"]
    for _ in range(2):  # warm: connections, caches, and a payment prepared if prepay is on
        _expect_paid(agent.get(url).status_code, url)
    before = full_syncs(agent)
    os.access(START_MARK, os.F_OK)
    for _ in range(config["payments"]):
        _expect_paid(agent.get(url).status_code, url)
    os.access(END_MARK, os.F_OK)
    after = full_syncs(agent)
    agent.close()
    synced = None if before is None or after is None else after - before
    print(json.dumps({"payments": config["payments"], "full_syncs": synced}))


def first_payment(config: dict[str, Any]) -> None:
    sys.stderr.write("BENCH-MARK import\n")
    import human_rpc_sdk  # noqa: F401 - what is measured

    sys.stderr.write("BENCH-MARK construct\n")
    agent = _agent(config)
    sys.stderr.write("BENCH-MARK first-payment\n")
    _expect_paid(agent.get(config["url"]).status_code, config["url"])
    sys.stderr.write("BENCH-MARK end\n")
    agent.close()


def main() -> int:
    command, config = sys.argv[1], json.loads(sys.argv[2])
    {"fsync": fsync, "first-payment": first_payment}[command](config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
