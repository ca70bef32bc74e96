"""Async agents, offline against the stub gateway: concurrent purchases and an async @guard.

* One ``AsyncAutoAgent`` buys five resources at once (three SOL-priced HumanRPC invoices and two
  x402 routes paid in USDC): every 402 is paid once, the payments are journaled, and a budget
  shared by the five is never overspent.
* An ``async def`` classifier is guarded by paid human review: its unsure answer becomes a task
  that the gateway's reviewers approve, awaited on the event loop (no thread).
* ``PaymentAuth`` pays a 402 for an ``httpx.AsyncClient`` the program already had.

    python examples/async_agent.py
"""

from __future__ import annotations

import asyncio
import logging
import sys
from decimal import Decimal

import httpx
from solders.keypair import Keypair

from human_rpc_sdk import AsyncAutoAgent, HumanRPCError, PaymentAuth, guard
from stub_gateway import serve_in_thread


async def shop(gateway_url: str, rpc_url: str, wallet: Keypair) -> int:
    async with AsyncAutoAgent(
        wallet,
        rpc_url=rpc_url,
        human_rpc_url=f"{gateway_url}/api/v1/tasks",
        budget={"SOL": "0.05", "USDC": "1"},
    ) as agent:
        urls = [f"{gateway_url}/api/v1/premium/sol" for _ in range(3)]
        urls += [f"{gateway_url}/x402/v2/premium", f"{gateway_url}/x402/v1/premium"]
        responses = await asyncio.gather(*(agent.get(url) for url in urls))
        print("bought:", [response.status_code for response in responses])
        for receipt in agent.payments:
            print(f"  {receipt.amount} {receipt.currency} for {receipt.url} ({receipt.state})")
        for currency, line in agent.budget.items():
            print(f"  budget {currency}: spent {line.spent} of {line.limit}")

        @guard(threshold=0.9, agent=agent, reward="0.05", agent_id="async-classifier")
        async def classify(text: str) -> dict[str, object]:
            """Call 'positive' when the text says 'good'; unsure about questions."""
            sentiment = "positive" if "good" in text.lower() else "negative"
            return {"answer": sentiment, "confidence": 0.55 if "?" in text else 0.97}

        try:
            print("confident:", await classify("What a good day."))
            print("unsure:   ", await classify("Is this good?"))
        except HumanRPCError as error:
            print(f"verification failed: {error}")
            return 1

        # A client the program already has: PaymentAuth pays its 402s with the same agent.
        async with httpx.AsyncClient(auth=PaymentAuth(agent)) as client:
            response = await client.get(f"{gateway_url}/x402/v2/premium")
            print("through PaymentAuth:", response.status_code, response.json()["content"])
        print(f"USDC left: {await agent.balance('USDC')}")
    return 0


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="  [log] %(message)s")
    with serve_in_thread(review_policy="approve") as server:
        wallet = Keypair()
        server.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(2)})
        return asyncio.run(shop(server.url, server.rpc_url, wallet))


if __name__ == "__main__":
    sys.exit(main())
