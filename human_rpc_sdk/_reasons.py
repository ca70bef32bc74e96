"""The registry of the SDK's vocabulary: every ``reason`` code an error carries, every spending
``rule`` a policy refusal names, each with its one-line meaning.

``reason`` (on every :class:`~human_rpc_sdk.exceptions.HumanRPCError`) is a stable,
machine-readable code: a caller may branch on it. ``Reason`` is the type of the codes, and
:data:`REASONS` their meanings; a test keeps the two in sync, checks that every code the
SDK passes as ``reason=`` is registered here, and that every code registered is raised.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Literal, TypeAlias

__all__ = ["REASONS", "RULES", "Reason", "Rule"]

Reason: TypeAlias = Literal[
    # defaults of the exception classes (see exceptions.py)
    "error",
    "bad_configuration",
    "bad_reiterator_configuration",
    "invalid_invoice",
    "build_failed",
    "payment_failed",
    "refused_by_policy",
    "wrong_network",
    "rpc_error",
    "human_verification_failed",
    "max_attempts_reached",
    "rate_limited",
    "connection_failed",
    "connect_timeout",
    "tls_failed",
    "proxy_failed",
    # the wallet and signing
    "missing_key",
    "bad_key",
    "bad_signer",
    "async_signer",
    "signer_failed",
    "bad_signature",
    # reading the 402 answer
    "invoice_too_large",
    "invoice_too_slow",
    "invoice_unreadable",
    "body_not_replayable",
    "no_invoice",
    "x402_challenge",
    "malformed_x402",
    "malformed_payment_identifier",
    "unknown_network",
    "unknown_currency",
    "mint_mismatch",
    "inconsistent_amount",
    "bad_recipient",
    "pays_itself",
    # pricing and deciding
    "bad_mint",
    "unpayable",
    "insufficient_funds",
    "no_payable_offer",
    "not_approved",
    "approve_failed",
    "wrong_chain",
    # paying and delivering
    "payment_in_progress",
    "reservation_lost",
    "no_fresh_blockhash",
    "no_answer_after_payment",
    "paid_not_delivered",
    "payment_refused",
    "payment_id_conflict",
    "journal_unavailable",
    # signing in (sign-in-with-x)
    "sign_in_unanswered",
    # the Solana RPC node
    "rpc_unreachable",
    "rpc_http_error",
    "rpc_bad_reply",
    # human verification
    "unavailable",
    "task_refused",
    "task_not_found",
    "bad_answer",
    "malformed_answer",
    "timeout",
    "rejected",
    "no_consensus",
    "invalid_confidence",
]
"""A ``reason`` code of an SDK error (meanings: :data:`REASONS`)."""

REASONS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "error": "an SDK error with no more specific code",
        "bad_configuration": "an argument or setting of the SDK is invalid",
        "bad_reiterator_configuration": "the reiterator's settings are invalid",
        "invalid_invoice": "the 402 answer's payment request is invalid",
        "build_failed": "the payment transaction could not be built or signed",
        "payment_failed": "the payment could not be made, or was not accepted",
        "refused_by_policy": "one of the agent's spending rules refused the payment",
        "wrong_network": "the payment request is for another network than the agent's",
        "rpc_error": "the Solana RPC node answered a JSON-RPC error",
        "human_verification_failed": "the HumanRPC task API failed",
        "max_attempts_reached": "the reviewers kept rejecting until max_attempts",
        "rate_limited": "rate limiting would push a retry past its limits",
        "connection_failed": "the unpaid request could not connect (nothing was paid)",
        "connect_timeout": "the unpaid request timed out connecting (nothing was paid)",
        "tls_failed": "the unpaid request failed its TLS handshake (nothing was paid)",
        "proxy_failed": "the unpaid request could not get through its proxy (nothing was paid)",
        "missing_key": "no wallet is configured (no key, signer or environment variable)",
        "bad_key": "the secret key given is not a usable Solana key",
        "bad_signer": "the signer returned something other than a signature",
        "async_signer": "an async signer was given where a signature is needed synchronously",
        "signer_failed": "the signer raised while signing (nothing was sent)",
        "bad_signature": "the signer's signature does not verify (nothing was sent)",
        "invoice_too_large": "the 402 body is larger than any invoice; it was not read",
        "invoice_too_slow": "the 402 body did not arrive within the request's timeout",
        "invoice_unreadable": "the 402 body broke off while being read",
        "body_not_replayable": "the request's streamed body cannot be sent again with a payment",
        "no_invoice": "the 402 answer holds no payable invoice",
        "x402_challenge": "the body looks like an x402 challenge of a version not supported",
        "malformed_x402": "every x402 offer of the challenge is malformed",
        "malformed_payment_identifier": "the challenge's payment-identifier declaration is "
        "malformed (nothing signed)",
        "unknown_network": "the invoice names a network the SDK does not know",
        "unknown_currency": "the invoice names a currency the SDK does not know",
        "mint_mismatch": "the invoice's mint is not the token its currency names",
        "inconsistent_amount": "the invoice's amounts disagree with each other",
        "bad_recipient": "the invoice's payee cannot receive this payment",
        "pays_itself": "the invoice's payee is the agent's own wallet",
        "bad_mint": "the token's mint is missing, or not a usable SPL mint",
        "unpayable": "the invoice cannot be paid as it stands on chain",
        "insufficient_funds": "the wallet cannot cover the amount, fee and rent",
        "no_payable_offer": "none of the x402 offers can be paid by this agent",
        "not_approved": "the approve callback declined the payment",
        "approve_failed": "the approve callback raised; treated as a refusal",
        "wrong_chain": "the RPC node serves another chain than the agent's network",
        "payment_in_progress": "this invoice is being paid right now by another request",
        "reservation_lost": "the payment's reservation was released before it was sent",
        "no_fresh_blockhash": "an expired payment could not be replaced: no new blockhash yet",
        "no_answer_after_payment": "the payment was sent but no definite answer came back",
        "paid_not_delivered": "the payment landed but the resource was not served",
        "payment_refused": "the server refused the payment (it may not have landed)",
        "payment_id_conflict": "the server answered 409: it holds another payment under this "
        "payment's id (nothing new signed)",
        "journal_unavailable": "the payment journal could not be read or written",
        "sign_in_unanswered": "a sign-in got no answer or a 5xx; nothing was paid (ask again)",
        "rpc_unreachable": "the Solana RPC node could not be reached",
        "rpc_http_error": "the Solana RPC node answered with an HTTP error",
        "rpc_bad_reply": "the Solana RPC node's answer is not what was asked",
        "unavailable": "the HumanRPC service could not be reached or is failing",
        "task_refused": "the HumanRPC service refused to create the task",
        "task_not_found": "the HumanRPC service does not know the task",
        "bad_answer": "the HumanRPC service answered a task request with an error",
        "malformed_answer": "the HumanRPC service's answer is malformed",
        "timeout": "no verdict came before the deadline (the task may still be open)",
        "rejected": "the human reviewers rejected the answer",
        "no_consensus": "the human reviewers reached no consensus",
        "invalid_confidence": "the guarded function returned no usable confidence",
    }
)
"""What each :data:`Reason` code means."""

Rule: TypeAlias = Literal[
    "approve",
    "budget",
    "max_payment",
    "accept_assets",
    "trusted_recipients",
    "create_token_accounts",
    "token_extensions",
    "network",
]
"""The spending rule a :class:`~human_rpc_sdk.exceptions.PaymentPolicyError` names."""

RULES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "approve": "the owner's approve callback",
        "budget": "the total budget per currency, kept in the journal",
        "max_payment": "the ceiling on one payment",
        "accept_assets": "the tokens the agent accepts",
        "trusted_recipients": "the payees a payment needing a new token account may go to",
        "create_token_accounts": "whether a payment may create the payee's token account",
        "token_extensions": "the Token-2022 extensions the agent accepts per mint",
        "network": "the network the agent is pinned to",
    }
)
"""What each :data:`Rule` names."""
