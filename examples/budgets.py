"""Budgets per period: a limit a day next to a limit in total, and scopes sharing one journal.

Runs offline against the embedded stub gateway:

1. 0.10 USDC a day and 1 USDC in total: two 0.05 USDC purchases pass, the third is refused by
   the day line (the message says when it resets);
2. ``agent.budget`` lists every line with what it spent and when it resets;
3. ``raise_budget(..., per="day")`` lifts today's line only: one more purchase passes;
4. a second kind of agent (``budget_scope="writer"``) on the same journal has its own budget.

    .venv/bin/python examples/budgets.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import requests
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent, PaymentPolicyError
from stub_gateway import serve_in_thread


def main() -> int:
    with serve_in_thread() as server, tempfile.TemporaryDirectory() as folder:
        wallet = Keypair()
        requests.post(
            f"{server.url}/api/v1/faucet",
            json={"address": str(wallet.pubkey()), "sol": "1", "usdc": "1"},
            timeout=10,
        ).raise_for_status()
        usdc = f"{server.url}/api/v1/premium/usdc"  # 0.05 USDC each
        journal = Path(folder) / "payments.sqlite3"
        crawler = AutoAgent(
            wallet,
            rpc_url=server.rpc_url,
            journal_path=journal,
            budget={"USDC": [{"limit": "0.10", "per": "day"}, "1"]},
            budget_scope="crawler",
        )

        print("1. 0.10 USDC a day, 1 USDC in total:")
        for _ in range(2):
            print(f"  -> HTTP {crawler.get(usdc).status_code}")
        try:
            crawler.get(usdc)
        except PaymentPolicyError as error:
            print(f"  -> refused by rule {error.rule!r} per {error.details['per']}; nothing paid")
            print(f"     ({error})")

        print("2. Every line of the USDC budget:")
        for line in crawler.budget["USDC"]:
            per = line.per or "total"
            resets = "never" if line.resets is None else f"{line.resets:%Y-%m-%d %H:%M} UTC"
            print(f"  {per:>5}: {line.spent} spent of {line.limit}, resets {resets}")

        print("3. A raise for today only:")
        crawler.raise_budget({"USDC": "0.05"}, per="day")
        print(f"  -> HTTP {crawler.get(usdc).status_code}")
        print(f"  crawler USDC spent: {crawler.budget['USDC'].spent}")

        print("4. Another kind of agent on the same journal, with its own budget:")
        writer = AutoAgent(
            wallet,
            rpc_url=server.rpc_url,
            journal_path=journal,
            budget={"USDC": {"limit": "0.05", "per": "day"}},
            budget_scope="writer",
        )
        print(f"  writer USDC spent before: {writer.budget['USDC'].spent}")
        print(f"  -> HTTP {writer.get(usdc).status_code}")
        print(
            f"  writer payments: {len(writer.payments)}, crawler payments: {len(crawler.payments)}"
        )
        crawler.close()
        writer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
