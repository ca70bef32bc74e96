"""Exceptions raised by human_rpc_sdk.

Every error the SDK raises derives from :class:`HumanRPCError`::

    HumanRPCError
    ├── SDKConfigurationError           local: bad argument, missing or malformed key
    │   └── ReiteratorConfigurationError
    ├── InvoiceValidationError          remote: the 402 answer is malformed or not payable here
    ├── TransactionBuildError           local: the transfer could not be built or signed
    │   └── NetworkMismatchError        the invoice is for another network (also a policy refusal)
    ├── PaymentError                    the payment could not be made, or was not accepted
    │   ├── PaymentPolicyError          local: a spending rule of this agent refused it
    │   │   └── NetworkMismatchError    (the network is pinned; see above)
    │   └── SolanaRPCError              the Solana RPC node failed or answered with an error
    ├── HumanVerificationError          the HumanRPC task API failed or timed out
    ├── ReiteratorMaxAttemptsError      the humans kept rejecting until max_attempts
    └── ReiteratorRateLimitError        rate limiting would push a retry past its limits

Messages say what went wrong and what to do about it. Structured fields are attributes
(``reason`` is a stable machine-readable code). No exception ever carries key material: the
SDK builds every message itself and never formats a key, a seed or a signed payload into one.
Exceptions survive a pickle round trip (``args`` is always ``(message,)`` and the fields live
in ``__dict__``; :meth:`HumanRPCError.__reduce__` rebuilds them without calling ``__init__``),
so they can cross process boundaries.

One warning category is not an error: :class:`PendingPaymentsWarning` (a ``UserWarning``)
tells the owner of a restarted agent that its journal holds payments of unknown outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "HumanRPCError",
    "HumanVerificationError",
    "InvoiceValidationError",
    "NetworkMismatchError",
    "PaymentError",
    "PaymentPolicyError",
    "PendingPaymentsWarning",
    "ReiteratorConfigurationError",
    "ReiteratorMaxAttemptsError",
    "ReiteratorRateLimitError",
    "SDKConfigurationError",
    "SolanaRPCError",
    "TransactionBuildError",
]


class HumanRPCError(Exception):
    """Root of every exception raised by human_rpc_sdk.

    :param message: what went wrong and what to do about it.
    :param reason: a stable, machine-readable code such as ``"insufficient_funds"``.
    :param details: extra structured context (never secrets).
    """

    default_reason = "error"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.details: dict[str, Any] = dict(details or {})

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's own reduce calls cls(*args), which fails for required keyword fields.
        return (_rebuild, (type(self), self.message), dict(self.__dict__))


def _rebuild(cls: type[HumanRPCError], message: str) -> HumanRPCError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    return error


class SDKConfigurationError(HumanRPCError):
    """The SDK was configured wrongly: a bad argument, a missing or malformed key."""

    default_reason = "bad_configuration"

    def __init__(
        self,
        message: str,
        *,
        parameter: str | None = None,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, details=details)
        self.parameter = parameter


class ReiteratorConfigurationError(SDKConfigurationError):
    """The reiterator's configuration (attempts, strategy, delays) is invalid."""

    default_reason = "bad_reiterator_configuration"


class InvoiceValidationError(HumanRPCError):
    """A 402 answer could not be parsed, or its invoice cannot be paid by this agent.

    ``field`` names the offending field as a dotted path (``"invoice.amount"``); ``invoice``
    is the invoice as received (public data, never secret). Nothing was signed.
    """

    default_reason = "invalid_invoice"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        invoice: Mapping[str, Any] | None = None,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, details=details)
        self.field = field
        self.invoice = dict(invoice) if invoice is not None else None


class TransactionBuildError(HumanRPCError):
    """The payment transaction could not be built or signed. Nothing was sent."""

    default_reason = "build_failed"


class PaymentError(HumanRPCError):
    """The payment could not be made, or the server did not accept it.

    ``signature`` is set when a signed transaction left the process: use it to look the
    payment up on chain before trying again. ``invoice`` is the invoice being paid.
    """

    default_reason = "payment_failed"

    def __init__(
        self,
        message: str,
        *,
        invoice: Mapping[str, Any] | None = None,
        signature: str | None = None,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, details=details)
        self.invoice = dict(invoice) if invoice is not None else None
        self.signature = signature


class PaymentPolicyError(PaymentError):
    """One of the agent's spending rules refused the payment. Nothing was signed.

    ``rule`` names the rule (``"max_payment"``, ``"accept_assets"``, ...).
    """

    default_reason = "refused_by_policy"

    def __init__(
        self,
        message: str,
        *,
        rule: str,
        invoice: Mapping[str, Any] | None = None,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, invoice=invoice, reason=reason, details=details)
        self.rule = rule


class NetworkMismatchError(InvoiceValidationError, PaymentPolicyError):
    """The invoice or offer is for another Solana network than the agent's: never paid.

    Both an :class:`InvoiceValidationError` (``field`` names the network field) and a
    :class:`PaymentPolicyError` (``rule == "network"``): the agent's network is pinned. (Its
    bases' initialisers chain through each other, so it sets its fields itself.)
    """

    default_reason = "wrong_network"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        invoice: Mapping[str, Any] | None = None,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        HumanRPCError.__init__(self, message, reason=reason, details=details)
        self.field = field
        self.invoice = dict(invoice) if invoice is not None else None
        self.signature = None
        self.rule = "network"


class SolanaRPCError(PaymentError):
    """The Solana JSON-RPC node could not be reached, failed, or answered with an error.

    ``method`` is the RPC method, ``code`` the JSON-RPC error code when the node sent one.
    """

    default_reason = "rpc_error"

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        code: int | None = None,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, details=details)
        self.method = method
        self.code = code


class HumanVerificationError(HumanRPCError):
    """The HumanRPC task API failed, answered something malformed, or timed out.

    ``task_id`` is set when a task exists, so the caller can resume waiting on it.
    """

    default_reason = "human_verification_failed"

    def __init__(
        self,
        message: str,
        *,
        task_id: str | None = None,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, details=details)
        self.task_id = task_id


class ReiteratorMaxAttemptsError(HumanRPCError):
    """The humans did not approve within ``max_attempts`` submissions."""

    default_reason = "max_attempts_reached"

    def __init__(
        self,
        message: str,
        *,
        attempts: int = 0,
        last_result: Mapping[str, Any] | None = None,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, details=details)
        self.attempts = attempts
        self.last_result = dict(last_result) if last_result is not None else None


class ReiteratorRateLimitError(HumanRPCError):
    """The service rate-limited us and waiting would pass the reiterator's limits."""

    default_reason = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, details=details)
        self.retry_after = retry_after


class PendingPaymentsWarning(UserWarning):
    """The payment journal holds payments whose outcome is unknown (signed or reserved, never
    answered): a process stopped while paying. Issued when an agent is built on such a journal,
    with no logging set up; ``agent.recover_payments()`` settles them against the chain.

    Silence it, once you handle pending payments yourself, with
    ``warnings.simplefilter("ignore", PendingPaymentsWarning)``.
    """
