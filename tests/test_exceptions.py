"""The exception tree: one root, structured fields, pickle-safe."""

from __future__ import annotations

import pickle

import pytest

from human_rpc_sdk import (
    HumanRPCError,
    HumanVerificationError,
    InvoiceValidationError,
    NetworkMismatchError,
    PaymentError,
    PaymentPolicyError,
    ReiteratorConfigurationError,
    ReiteratorMaxAttemptsError,
    ReiteratorRateLimitError,
    SDKConfigurationError,
    SolanaRPCError,
    TransactionBuildError,
)

ALL = [
    SDKConfigurationError("m", parameter="timeout"),
    ReiteratorConfigurationError("m", parameter="max_retry_attempts"),
    InvoiceValidationError(
        "m", field="invoice.amount", invoice={"amount": "0"}, reason="no_invoice"
    ),
    TransactionBuildError("m"),
    PaymentError("m", invoice={"a": 1}, signature="sig", details={"missing": "1"}),
    PaymentPolicyError("m", rule="budget", details={"spent": "1"}),
    NetworkMismatchError("m", field="invoice.network", invoice={"network": "testnet"}),
    SolanaRPCError("m", method="getBalance", code=-32602),
    HumanVerificationError("m", task_id="t1"),
    ReiteratorMaxAttemptsError("m", attempts=3, last_result={"decision": "no"}),
    ReiteratorRateLimitError("m", retry_after=2.5),
]


@pytest.mark.parametrize("error", ALL, ids=lambda e: type(e).__name__)
def test_every_error_is_a_humanrpc_error(error: HumanRPCError) -> None:
    """Every SDK exception derives from HumanRPCError and has a reason code."""
    assert isinstance(error, HumanRPCError)
    assert error.reason
    assert str(error) == "m"


@pytest.mark.parametrize("error", ALL, ids=lambda e: type(e).__name__)
def test_errors_survive_pickle(error: HumanRPCError) -> None:
    """A pickle round trip keeps the type, message and every structured field."""
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert copy.args == error.args
    assert vars(copy) == vars(error)


def test_hierarchy_matches_the_design() -> None:
    """Reiterator configuration is configuration; RPC failures are payment failures."""
    assert issubclass(ReiteratorConfigurationError, SDKConfigurationError)
    assert issubclass(SolanaRPCError, PaymentError)
    assert not issubclass(InvoiceValidationError, PaymentError)


def test_a_wrong_network_is_an_invoice_error_and_a_policy_refusal() -> None:
    """The pinned network: caught as InvoiceValidationError or PaymentPolicyError(rule)."""
    error = NetworkMismatchError("m", field="invoice.network")
    assert isinstance(error, InvoiceValidationError)
    assert isinstance(error, PaymentPolicyError)
    assert (error.rule, error.field) == ("network", "invoice.network")
    assert error.reason == "wrong_network"


def test_fields_are_attributes() -> None:
    """Structured fields are readable attributes, not only text."""
    error = InvoiceValidationError("bad", field="invoice.mint", invoice={"mint": "x"})
    assert error.field == "invoice.mint"
    assert error.invoice == {"mint": "x"}
    assert error.reason == "invalid_invoice"
