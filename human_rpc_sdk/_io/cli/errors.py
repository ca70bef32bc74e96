"""Exit statuses and how an error reaches the owner: one line saying what was wrong and what
to do, on stderr (or as JSON with ``--json``), never a traceback and never key material."""

from __future__ import annotations

from typing import Final

import click
import requests

from ...exceptions import (
    HumanRPCError,
    HumanVerificationError,
    PaymentPolicyError,
    SDKConfigurationError,
)

__all__ = [
    "EXIT_CODES",
    "EXIT_CONFIG",
    "EXIT_ERROR",
    "EXIT_HTTP",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_UNSETTLED",
    "Unsettled",
    "exit_code_of",
]

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_CONFIG: Final = 2
EXIT_REFUSED: Final = 3
EXIT_HTTP: Final = 4
EXIT_UNSETTLED: Final = 5
EXIT_INTERRUPTED: Final = 130

EXIT_CODES: Final = (
    (EXIT_OK, "done"),
    (EXIT_ERROR, "a payment, RPC, service or connection error (the message says what moved)"),
    (EXIT_CONFIG, "bad usage or configuration: an option, the key, the network, the journal"),
    (EXIT_REFUSED, "a spending rule refused to pay (--max, the budget): nothing was signed"),
    (EXIT_HTTP, "get/request: the server answered an HTTP error (the body is still printed)"),
    (
        EXIT_UNSETTLED,
        "unsettled: payments still pending after recover, no verdict yet, a doctor check failed",
    ),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C): run `human-rpc recover` if a payment was under way"),
)


_OPTIONS: Final = {
    "rpc_url": "--rpc-url or SOLANA_RPC_URL",
    "human_rpc_url": "--human-rpc-url or HUMAN_RPC_URL",
    "journal_path": "--journal or HUMAN_RPC_JOURNAL",
    "solana_private_key": "--key-file, SOLANA_PRIVATE_KEY or SOLANA_KEYPAIR_PATH",
    "max_payment": "--max AMOUNT TOKEN",
    "amounts": "budget raise AMOUNT TOKEN",
}
"""The command line's name for an SDK parameter an error names."""


_SDK_CALLS: Final = (
    ("agent.recover_payments()", "`human-rpc recover`"),
    ("recover_payments()", "`human-rpc recover`"),
    ("agent.last_payment()", "`human-rpc payments`"),
)
"""The SDK calls an error may advise, and the commands that do the same at a shell."""


def _for_the_shell(message: str) -> str:
    """``message`` with the SDK calls it advises replaced by the commands doing the same."""
    for call, command in _SDK_CALLS:
        message = message.replace(call, command)
    return message


class Unsettled(click.ClickException):
    """The command did its work, but something is still open (exit status 5)."""

    exit_code = EXIT_UNSETTLED


def exit_code_of(exc: BaseException) -> int:
    """The exit status for an error a command raised."""
    if isinstance(exc, PaymentPolicyError):
        return EXIT_REFUSED
    if isinstance(exc, SDKConfigurationError):
        return EXIT_CONFIG
    if isinstance(exc, HumanVerificationError) and exc.reason == "timeout":
        return EXIT_UNSETTLED
    if isinstance(exc, HumanRPCError | requests.RequestException):
        return EXIT_ERROR
    return EXIT_ERROR


def describe(exc: BaseException) -> tuple[str, str | None]:
    """The message and the reason code of an error, for the owner."""
    if isinstance(exc, SDKConfigurationError) and exc.parameter in _OPTIONS:
        return f"{exc.message} [on the command line: {_OPTIONS[exc.parameter]}]", exc.reason
    if isinstance(exc, HumanRPCError):
        return _for_the_shell(exc.message), exc.reason
    if isinstance(exc, requests.Timeout):
        return (
            f"the server did not answer in time ({type(exc).__name__}); if a payment was sent, "
            "`human-rpc payments --pending` lists it and `human-rpc recover` settles it",
            "timeout",
        )
    if isinstance(exc, requests.RequestException):
        return (
            f"the request failed: {type(exc).__name__}: {str(exc)[:300]}; check the URL and "
            "the network, then try again",
            "request_failed",
        )
    return f"{type(exc).__name__}: {str(exc)[:300]}", None
