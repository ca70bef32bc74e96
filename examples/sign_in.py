"""Sign in with x: back into what this wallet already paid for, without paying again.

The stub gateway's ``/x402/v2/members`` is an x402 v2 route whose 402 also offers sign-in
(the ``sign-in-with-x`` extension, a Sign-In-With-Solana message). The first visit pays; on
the next ones the agent sees in its journal that this wallet paid for this URL, signs the
gateway's challenge with its key (no transaction, no fee) and is served. The journal is a
file, so a new agent (or a new process) on it signs in too.

    .venv/bin/python examples/sign_in.py
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import requests
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent
from stub_gateway import serve_in_thread


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="  [log] %(message)s")
    with serve_in_thread() as server, tempfile.TemporaryDirectory() as folder:
        wallet = Keypair()
        requests.post(
            f"{server.url}/api/v1/faucet",
            json={"address": str(wallet.pubkey()), "sol": "1", "usdc": "1"},
            timeout=10,
        ).raise_for_status()
        members = f"{server.url}/x402/v2/members"
        journal = Path(folder) / "payments.sqlite3"
        for visit in (1, 2, 3):
            with AutoAgent(wallet, rpc_url=server.rpc_url, journal_path=journal) as agent:
                answer = agent.get(members).json()
                how = "signed in" if answer["signed_in"] else "paid"
                print(f"visit {visit}: {how}; payments in the journal: {len(agent.payments)}")
        usdc = server.gateway.balance(wallet.pubkey(), "USDC")
        print(f"Wallet USDC: {usdc} (one payment of 0.01 for three visits)")


if __name__ == "__main__":
    main()
