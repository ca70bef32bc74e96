"""A local HumanRPC network in one process, for tests, examples and offline development.

It holds a real Solana runtime (LiteSVM, from solders), serves Solana JSON-RPC over it, funds
wallets from a faucet, and sells paywalled resources that answer 402 with HumanRPC invoices
and settle the payments on that ledger, as strictly as a real server would.

    python -m stub_gateway --port 8402

The gateway needs the ``gateway`` extra (Flask, waitress, base58): its names are imported on
first use, so ``python -m stub_gateway`` can say so in one line when it is missing. The
network itself (:mod:`.gateway`) imports no Flask; :mod:`.app` serves it through Blueprints,
and :mod:`.paywall` is the one paywall of both payment kinds.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

from .genesis import DEFAULT_SEED
from .payments import Price, Refusal, Settlement

if TYPE_CHECKING:
    from .app import create_app
    from .gateway import DEFAULT_PRICES, Gateway
    from .paywall import require_x402
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
    "require_x402",
    "serve_in_thread",
]

INSTALL_HINT: Final = "pip install 'human-rpc-sdk[gateway]'"
GATEWAY_EXTRA: Final = ("flask", "werkzeug", "waitress", "base58")
"""The top-level modules the ``gateway`` extra installs."""
_LAZY: Final = {
    "DEFAULT_PRICES": "gateway",
    "Gateway": "gateway",
    "create_app": "app",
    "require_x402": "paywall",
    "GatewayServer": "server",
    "serve_in_thread": "server",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        for extra in GATEWAY_EXTRA:  # all of them, though the Gateway itself needs no Flask
            importlib.import_module(extra)
        imported = importlib.import_module(f".{module}", __name__)
    except ModuleNotFoundError as exc:
        if exc.name not in GATEWAY_EXTRA:
            raise
        raise ModuleNotFoundError(
            f"the stub gateway needs {exc.name}, from the gateway extra: {INSTALL_HINT}",
            name=exc.name,
        ) from exc
    value = getattr(imported, name)
    globals()[name] = value
    return value
