"""The public API is exactly what we mean to export."""

from __future__ import annotations

import human_rpc_sdk
import stub_gateway


def test_sdk_exports_exactly_the_public_names() -> None:
    """__all__ lists the public API, sorted, and every name exists."""
    expected = {
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
    }
    assert set(human_rpc_sdk.__all__) == expected
    assert human_rpc_sdk.__all__ == sorted(human_rpc_sdk.__all__)
    for name in expected:
        assert hasattr(human_rpc_sdk, name)


def test_gateway_exports_exist() -> None:
    """Every name the stub gateway exports is importable."""
    assert stub_gateway.__all__ == sorted(stub_gateway.__all__)
    for name in stub_gateway.__all__:
        assert hasattr(stub_gateway, name)


def test_sdk_never_imports_the_gateway() -> None:
    """The library does not depend on the stub gateway (layering)."""
    from pathlib import Path

    for path in Path(human_rpc_sdk.__file__).parent.glob("*.py"):
        assert "stub_gateway" not in path.read_text(encoding="utf-8"), path.name
