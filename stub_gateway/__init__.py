"""A local HumanRPC network in one process, for tests, examples and offline development.

It holds a real Solana runtime (LiteSVM, from solders), serves Solana JSON-RPC over it, funds
wallets from a faucet, and sells paywalled resources that answer 402 with HumanRPC invoices
and settle the payments on that ledger, as strictly as a real server would.

    python -m stub_gateway --port 8402
"""

from .app import DEFAULT_PRICES, Gateway, create_app
from .genesis import DEFAULT_SEED
from .payments import Price, Refusal, Settlement
from .server import GatewayServer, serve_in_thread

__all__ = [
    "DEFAULT_PRICES",
    "DEFAULT_SEED",
    "Gateway",
    "GatewayServer",
    "Price",
    "Refusal",
    "Settlement",
    "create_app",
    "serve_in_thread",
]
