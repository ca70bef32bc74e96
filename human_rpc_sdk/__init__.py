"""human-rpc-sdk: an HTTP client for AI agents that pays HTTP 402 invoices on Solana.

>>> from human_rpc_sdk import AutoAgent
>>> agent = AutoAgent(network="devnet")            # key from SOLANA_PRIVATE_KEY  # doctest: +SKIP
>>> agent.get("https://api.example.com/premium")   # pays a 402, retries once     # doctest: +SKIP

>>> @guard(threshold=0.9, agent=agent)             # humans check unsure answers   # doctest: +SKIP
... def classify(text): return {"answer": "spam", "confidence": 0.6}
"""

import logging
from importlib.metadata import PackageNotFoundError, version

from ._headers import decode_payment_response, encode_payment_header
from ._io.auth import PaymentAuth
from ._offer import PaymentOffer
from ._receipts import PaymentReceipt
from ._records import BudgetLine
from ._tasks import Verdict
from .agent import AutoAgent
from .async_agent import AsyncAutoAgent
from .decorator import GuardResponse, guard
from .exceptions import (
    ConnectionFailedError,
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

try:
    __version__ = version("human-rpc-sdk")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

logging.getLogger("human_rpc_sdk").addHandler(logging.NullHandler())

__all__ = [
    "AsyncAutoAgent",
    "AutoAgent",
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
