"""A toy sentiment classifier guarded by paid human review, offline against the stub gateway.

* A confident answer comes straight back: no network, no payment.
* An unsure answer becomes a paid HumanRPC task. The gateway's scripted reviewers first reject
  it; the reiterator resubmits the same task after a short backoff; the second review approves.
  The combined result and what was paid are printed.

    python examples/guarded_classifier.py
"""

from __future__ import annotations

import logging
import sys

import requests
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent, HumanRPCError, guard
from stub_gateway import serve_in_thread


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="  [log] %(message)s")
    logging.getLogger("human_rpc_sdk.reiterator").setLevel(logging.DEBUG)

    # Reviewers reject the first task they see and approve the next ones.
    with serve_in_thread(review_policy="script:reject,approve") as server:
        wallet = Keypair()
        requests.post(
            f"{server.url}/api/v1/faucet",
            json={"address": str(wallet.pubkey()), "sol": "1", "usdc": "1"},
            timeout=10,
        ).raise_for_status()

        agent = AutoAgent(
            wallet,
            rpc_url=server.rpc_url,
            human_rpc_url=f"{server.url}/api/v1/tasks",
            reiterator=True,  # resubmit when the humans reject
            max_retry_attempts=3,
            base_delay=0.2,
        )

        @guard(threshold=0.9, agent=agent, reward="0.05", agent_id="toy-classifier")
        def classify(text: str) -> dict[str, object]:
            """Call 'positive' when the text says 'good'; unsure about questions."""
            sentiment = "positive" if "good" in text.lower() else "negative"
            return {"answer": sentiment, "confidence": 0.55 if "?" in text else 0.97}

        try:
            print("confident:", classify("What a good day."))
            print("unsure:   ", classify("Is this good?"))
        except HumanRPCError as error:
            print(f"verification failed: {error}")
            return 1

        print(
            "\nReiterator:",
            {
                k: v
                for k, v in agent.get_reiterator_status().items()
                if k in ("attempt_count", "total_retries_session", "last_result")
            },
        )
        print("Paid for human review:")
        for receipt in agent.payments:
            fees = f"+{receipt.fee} SOL fees"
            print(f"  {receipt.amount} {receipt.currency} ({fees}), signature {receipt.signature}")
        print(f"USDC left: {agent.balance('USDC')}")
        agent.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
