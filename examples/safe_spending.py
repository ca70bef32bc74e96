"""Spending safely: limits, an approval callback, the payment journal and recovery.

Runs offline against the embedded stub gateway, whose injected faults play a flaky server:

1. a purchase within every limit is paid;
2. the approval callback declines a purchase in SOL: nothing is signed;
3. the server drops the connection after settling a payment: the agent sends the *same*
   payment again and gets its answer, paying once;
4. the budget is spent: refused, until the owner raises it;
5. the server never answers: the payment stays pending in the journal until a recovery
   finds it on chain.

    .venv/bin/python examples/safe_spending.py
"""

from __future__ import annotations

import logging
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

import requests
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent, PaymentError, PaymentOffer, PaymentPolicyError
from stub_gateway import serve_in_thread


def approve(offer: PaymentOffer) -> bool:
    """The owner's rule: small USDC payments only (a human prompt or a judge model also fits)."""
    verdict = offer.currency == "USDC" and offer.amount <= Decimal("0.05")
    print(f"  approve {offer.amount} {offer.currency} for {offer.url}? {verdict}")
    return verdict


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="  [log] %(message)s")
    with serve_in_thread() as server, tempfile.TemporaryDirectory() as folder:
        gateway = server.gateway
        wallet = Keypair()
        requests.post(
            f"{server.url}/api/v1/faucet",
            json={"address": str(wallet.pubkey()), "sol": "1", "usdc": "1"},
            timeout=10,
        ).raise_for_status()
        usdc = f"{server.url}/api/v1/premium/usdc"  # 0.05 USDC each
        agent = AutoAgent(
            wallet,
            rpc_url=server.rpc_url,
            journal_path=Path(folder) / "payments.sqlite3",
            max_payment={"USDC": "0.10"},
            budget={"USDC": "0.12"},
            trusted_recipients=[str(gateway.treasury)],
            approve=approve,
            sleep=lambda seconds: None,  # don't wait between re-sends in a demo
        )

        print("1. A purchase within every limit:")
        print(f"  -> HTTP {agent.get(usdc).status_code}")

        print("2. A purchase the approval callback declines:")
        try:
            agent.get(f"{server.url}/api/v1/premium/sol")
        except PaymentPolicyError as error:
            print(f"  -> refused by rule {error.rule!r}; nothing signed")

        print("3. The server drops the connection after settling:")
        gateway.faults.drop_after_payment()
        print(f"  -> HTTP {agent.get(usdc).status_code}, the same payment sent twice, paid once")

        print("4. The budget is spent:")
        try:
            agent.get(usdc)
        except PaymentPolicyError as error:
            spent, limit = error.details["spent"], error.details["limit"]
            print(f"  -> refused by rule {error.rule!r}: {spent} of {limit} USDC already spent")
        agent.raise_budget({"USDC": "0.10"})
        print(f"  raised; budget now {agent.budget['USDC'].limit} USDC")

        print("5. The server never answers:")
        gateway.faults.error_after_payment(count=10)
        try:
            agent.get(usdc)
        except PaymentError as error:
            print(f"  -> {error.reason}; pending: {[p.id for p in agent.pending_payments()]}")
        for receipt in agent.recover_payments():
            print(f"  recovered #{receipt.id}: {receipt.state}, landed={receipt.landed}")

        print("\nThe journal:")
        for receipt in agent.payments:
            print(f"  #{receipt.id} {receipt.amount} {receipt.currency} {receipt.state}")
        line = agent.budget["USDC"]
        print(f"USDC budget: {line.spent} spent of {line.limit}, {line.remaining} left")
        print(f"Wallet USDC: {gateway.balance(wallet.pubkey(), 'USDC')}")
        agent.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
