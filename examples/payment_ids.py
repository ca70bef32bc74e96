"""x402 payment ids: one id per purchase, on every send of it, so a lost answer is not a
second payment.

Runs offline against the embedded stub gateway, started with payment ids required (as
``python -m stub_gateway --payment-id-required`` does):

1. the gateway settles the payment, then every answer to it is lost (a 500, four times): the
   agent sends the same payment, with the same id, four times, then stops without paying
   again (``no_answer_after_payment``);
2. the same request later resumes that journaled payment (same id, same bytes) instead of
   paying anew; the gateway answers from its cache of that id;
3. the ledger shows one payment; the journal one row, with its id.

    .venv/bin/python examples/payment_ids.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import requests
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent, PaymentError
from stub_gateway import serve_in_thread


def main() -> int:
    with (
        serve_in_thread(payment_id_required=True) as server,
        tempfile.TemporaryDirectory() as folder,
    ):
        wallet = Keypair()
        requests.post(
            f"{server.url}/api/v1/faucet",
            json={"address": str(wallet.pubkey()), "sol": "1", "usdc": "1"},
            timeout=10,
        ).raise_for_status()
        url = f"{server.url}/x402/v2/premium"  # 0.01 USDC, standard x402 v2
        server.gateway.faults.error_after_payment(count=4)  # settled, then every answer lost
        with AutoAgent(
            wallet, rpc_url=server.rpc_url, journal_path=Path(folder) / "payments.sqlite3"
        ) as agent:
            try:
                agent.get(url)
            except PaymentError as exc:
                print(f"1. no answer: {exc.reason}")
            (pending,) = agent.pending_payments()
            print(f"   journal #{pending.id} {pending.state}, payment id {pending.payment_id}")
            response = agent.get(url)
            print(f"2. the same request: HTTP {response.status_code}, {response.json()['content']}")
            (paid,) = agent.payments
            print(f"   journal #{paid.id} {paid.state}, payment id {paid.payment_id}")
        spent = 1 - server.gateway.balance(wallet.pubkey(), "USDC")
        print(f"3. the wallet paid {spent} USDC, once")
    return 0


if __name__ == "__main__":
    sys.exit(main())
