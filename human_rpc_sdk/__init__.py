"""human-rpc-sdk: an HTTP client for AI agents that pays HTTP 402 invoices on Solana.

>>> from human_rpc_sdk import AutoAgent
>>> agent = AutoAgent(network="devnet")            # key from SOLANA_PRIVATE_KEY  # doctest: +SKIP
>>> agent.get("https://api.example.com/premium")   # pays a 402, retries once     # doctest: +SKIP

>>> @guard(threshold=0.9, agent=agent)             # humans check unsure answers   # doctest: +SKIP
... def classify(text): return {"answer": "spam", "confidence": 0.6}
"""

import importlib
import logging
from typing import TYPE_CHECKING, Any, Final

from ._headers import decode_payment_response, encode_payment_header
from ._offer import PaymentOffer
from ._receipts import PaymentReceipt
from ._records import Budget, BudgetLine
from ._tasks import Verdict
from .decorator import GuardResponse, guard
from .exceptions import (
    HumanRPCError,
    HumanVerificationError,
    InvoiceValidationError,
    NetworkMismatchError,
    PaymentError,
    PaymentPolicyError,
    PendingPaymentsWarning,
    ReiteratorConfigurationError,
    ReiteratorMaxAttemptsError,
    ReiteratorRateLimitError,
    SDKConfigurationError,
    SolanaRPCError,
    TransactionBuildError,
)
from .invoices import Invoice
from .reiterator import ReiteratorManager
from .solana_utils import (
    build_sol_transfer,
    build_spl_transfer,
    get_latest_blockhash,
    sign_and_serialize_transaction,
    sign_transaction,
)
from .wallet import KeypairSigner, Signer, load_signer

if TYPE_CHECKING:
    from ._io.auth import PaymentAuth
    from .agent import AutoAgent
    from .async_agent import AsyncAutoAgent
    from .exceptions import ConnectionFailedError

    __version__: str

_LAZY: Final = {
    "AsyncAutoAgent": ".async_agent",
    "AutoAgent": ".agent",
    "ConnectionFailedError": ".exceptions",
    "PaymentAuth": "._io.auth",
}
"""Exports imported on first use: the agents and their drivers (the payment flows, requests;
httpx and tenacity for the async ones), and the connection error (a ``requests`` exception
too), none of which building or checking a transaction needs."""


def __getattr__(name: str) -> Any:
    """Import a lazy export (or read the installed version) on first access."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    elif name == "__version__":
        value = _version()
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # about 20 ms to import

    try:
        return version("human-rpc-sdk")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"


logging.getLogger("human_rpc_sdk").addHandler(logging.NullHandler())

__all__ = [
    "AsyncAutoAgent",
    "AutoAgent",
    "Budget",
    "BudgetLine",
    "ConnectionFailedError",
    "GuardResponse",
    "HumanRPCError",
    "HumanVerificationError",
    "Invoice",
    "InvoiceValidationError",
    "KeypairSigner",
    "NetworkMismatchError",
    "PaymentAuth",
    "PaymentError",
    "PaymentOffer",
    "PaymentPolicyError",
    "PaymentReceipt",
    "PendingPaymentsWarning",
    "ReiteratorConfigurationError",
    "ReiteratorManager",
    "ReiteratorMaxAttemptsError",
    "ReiteratorRateLimitError",
    "SDKConfigurationError",
    "Signer",
    "SolanaRPCError",
    "TransactionBuildError",
    "Verdict",
    "__version__",
    "build_sol_transfer",
    "build_spl_transfer",
    "decode_payment_response",
    "encode_payment_header",
    "get_latest_blockhash",
    "guard",
    "load_signer",
    "sign_and_serialize_transaction",
    "sign_transaction",
]
