"""Payments prepared ahead: ``AutoAgent(prepay=True)`` keeps the next x402 payment ready.

Runs offline against the embedded stub gateway:

1. the first request pays the normal way: unpaid request, 402, paid request;
2. each next request to the same URL carries a payment prepared in the background: one
   HTTP request, nothing signed on the way;
3. the payment still prepared when the agent closes is released: it never left the process,
   and its budget is back.

    .venv/bin/python examples/prepay.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import requests
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent
from stub_gateway import serve_in_thread


class Counting(requests.adapters.HTTPAdapter):
    """Counts the HTTP requests the agent sends (to show the round trips saved)."""

    sent = 0

    def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:  # type: ignore[override]
        Counting.sent += 1
        return super().send(request, **kwargs)  # type: ignore[arg-type]


def main() -> int:
    with serve_in_thread() as server, tempfile.TemporaryDirectory() as folder:
        wallet = Keypair()
        requests.post(
            f"{server.url}/api/v1/faucet",
            json={"address": str(wallet.pubkey()), "sol": "1", "usdc": "1"},
            timeout=10,
        ).raise_for_status()
        session = requests.Session()
        session.mount("http://", Counting())
        journal = Path(folder) / "payments.sqlite3"
        url = f"{server.url}/x402/v2/premium"  # 0.01 USDC each, standard x402
        agent = AutoAgent(
            wallet, rpc_url=server.rpc_url, journal_path=journal, session=session, prepay=True
        )

        for n in range(1, 4):
            before = Counting.sent
            started = time.perf_counter()
            response = agent.get(url)
            took = (time.perf_counter() - started) * 1000
            print(
                f"{n}. HTTP {response.status_code} in {Counting.sent - before} request(s), "
                f"{took:.1f} ms"
            )
            time.sleep(0.2)  # the caller's own work: meanwhile the next payment is prepared

        prepared = agent.pending_payments()
        print(f"prepared and waiting: {[(p.id, p.state) for p in prepared]}")
        print(f"USDC budget counts {agent.budget['USDC'].spent} (3 paid + 1 prepared)")
        agent.close()

        after = AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=journal)
        for receipt in after.payments:
            print(f"  #{receipt.id} {receipt.amount} {receipt.currency} {receipt.state}")
        last = after.payments[-1]
        print(f"#{last.id} was released at close: {last.error_reason}")
        print(
            f"USDC budget counts {after.budget['USDC'].spent}; the wallet paid "
            f"{1 - server.gateway.balance(wallet.pubkey(), 'USDC')} USDC"
        )
        after.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
