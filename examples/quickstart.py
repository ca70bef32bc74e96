"""Quick start: a new agent wallet pays for two resources on a local HumanRPC gateway.

Everything runs offline, in this process: the stub gateway holds a real Solana runtime
(LiteSVM), serves Solana JSON-RPC, funds wallets from a faucet and sells paywalled resources
that answer HTTP 402 with an invoice. The agent pays each invoice by itself.

    make demo        # or: python examples/quickstart.py
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

import requests
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent, HumanRPCError
from stub_gateway import serve_in_thread


def main() -> int:
    # The SDK logs each payment it makes on the "human_rpc_sdk" logger.
    logging.basicConfig(level=logging.INFO, format="  [log] %(message)s")

    with serve_in_thread() as server, tempfile.TemporaryDirectory() as folder:
        print(f"Stub HumanRPC gateway running at {server.url} (Solana RPC at {server.rpc_url})")

        wallet = Keypair()  # a brand-new agent wallet
        faucet = requests.post(
            f"{server.url}/api/v1/faucet",
            json={"address": str(wallet.pubkey()), "sol": "1", "usdc": "5"},
            timeout=10,
        )
        faucet.raise_for_status()
        print(f"Funded new wallet {wallet.pubkey()} with {faucet.json()['funded']}")

        # Every payment is journaled (SQLite) before it is sent. A real agent keeps the default
        # journal, one per wallet under ~/.local/state/human-rpc-sdk; this throwaway wallet's
        # journal goes with the temporary folder.
        journal = Path(folder) / "payments.sqlite3"
        with AutoAgent(
            wallet, rpc_url=server.rpc_url, network="devnet", journal_path=journal
        ) as agent:
            before = {currency: agent.balance(currency) for currency in ("SOL", "USDC")}
            for name in ("sol", "usdc"):
                url = f"{server.url}/api/v1/premium/{name}"
                try:
                    response = agent.get(url)
                except HumanRPCError as error:
                    print(f"Could not buy {url}: {error}")
                    return 1
                print(f"GET {url} -> {response.status_code}: {response.json()['content']!r}")
            after = {currency: agent.balance(currency) for currency in ("SOL", "USDC")}

            print("\nPayments made:")
            for receipt in agent.payments:
                print(
                    f"  {receipt.amount} {receipt.currency} to {receipt.recipient}\n"
                    f"    plus {receipt.fee} SOL in fees, signature {receipt.signature}"
                )
            print("\nWallet balances:")
            for currency in before:
                print(f"  {currency:<5} {before[currency]:>12} -> {after[currency]:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
