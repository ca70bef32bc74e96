"""One budget for a fleet: four worker processes, each with its own wallet, share a budget of
three payments through a PostgreSQL journal.

Needs a PostgreSQL database the workers can reach and the ``postgres`` extra
(``pip install 'human-rpc-sdk[postgres]'``); the gateway is the embedded stub:

    HUMAN_RPC_JOURNAL=postgresql://user:password@localhost/agents .venv/bin/python examples/fleet.py

1. Four processes (as if on four machines) each try three 0.001 SOL purchases, all under one
   budget of 0.00302 SOL (a payment costs 0.001 SOL and its 0.000005 SOL fee): exactly three
   are paid, whichever workers get there first; the others are refused before signing.
2. The ledger agrees: three transfers in all.

Each run uses a budget scope of its own, so running it again on the same database starts from
a budget of its own too.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import uuid
from decimal import Decimal

import requests
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent, PaymentPolicyError
from stub_gateway import serve_in_thread

WORKERS = 4
ATTEMPTS = 3
BUDGET = {"SOL": "0.00302"}  # three payments of 0.001 SOL and their fees, not four


def worker(secret: str, url: str, rpc_url: str, journal: str, scope: str) -> tuple[int, int]:
    """One worker of the fleet: its own wallet and agent, the fleet's journal and budget."""
    paid = refused = 0
    with AutoAgent(
        secret, rpc_url=rpc_url, journal_url=journal, budget=BUDGET, budget_scope=scope
    ) as agent:
        for _ in range(ATTEMPTS):
            try:
                agent.get(url).raise_for_status()
                paid += 1
            except PaymentPolicyError as refusal:
                if refusal.rule != "budget":
                    raise
                refused += 1
    return paid, refused


def main() -> int:
    journal = os.environ.get("HUMAN_RPC_JOURNAL", "")
    if not journal.startswith(("postgresql://", "postgres://")):
        print("set HUMAN_RPC_JOURNAL to a PostgreSQL database URL (postgresql://...)")
        return 2
    scope = f"fleet-example-{uuid.uuid4().hex[:8]}"
    with serve_in_thread() as server:
        wallets = [Keypair() for _ in range(WORKERS)]
        for wallet in wallets:
            requests.post(
                f"{server.url}/api/v1/faucet",
                json={"address": str(wallet.pubkey()), "sol": "1"},
                timeout=10,
            ).raise_for_status()
        url = f"{server.url}/api/v1/premium/sol"  # 0.001 SOL each
        jobs = [(str(w), url, server.rpc_url, journal, scope) for w in wallets]
        with multiprocessing.get_context("spawn").Pool(WORKERS) as pool:
            results = pool.starmap(worker, jobs)

        print(f"1. {WORKERS} workers x {ATTEMPTS} attempts, one budget of {BUDGET['SOL']} SOL:")
        for number, (paid, refused) in enumerate(results, 1):
            print(f"  worker {number}: {paid} paid, {refused} refused by the budget")
        paid_in_all = sum(paid for paid, _ in results)
        print(f"  paid in all: {paid_in_all}")

        spent = sum((Decimal(1) - server.gateway.balance(w.pubkey()) for w in wallets), Decimal(0))
        print(f"2. the ledger: {spent} SOL left the workers' wallets")
        with AutoAgent(
            wallets[0], rpc_url=server.rpc_url, journal_url=journal, budget_scope=scope
        ) as agent:
            print(f"  the journal: {agent.budget['SOL'].spent} SOL spent in scope {scope}")
        return 0 if paid_in_all == 3 else 1


if __name__ == "__main__":
    sys.exit(main())
