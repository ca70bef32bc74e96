"""Solana JSON-RPC without I/O: request bodies, batches, and checked, typed replies.

solders builds each request and parses each reply; this module adds batching and the envelope
check that must come before parsing (an ``error`` member can make solders' parser panic).
Drivers (sync today, async later) only move the bytes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from solders.account_decoder import UiAccountEncoding
from solders.commitment_config import CommitmentLevel
from solders.hash import Hash
from solders.pubkey import Pubkey
from solders.rpc.config import (
    RpcAccountInfoConfig,
    RpcContextConfig,
    RpcSignaturesForAddressConfig,
    RpcSignatureStatusConfig,
)
from solders.rpc.requests import (
    GetEpochInfo,
    GetGenesisHash,
    GetLatestBlockhash,
    GetMultipleAccounts,
    GetSignaturesForAddress,
    GetSignatureStatuses,
    IsBlockhashValid,
    MinimumLedgerSlot,
    batch_to_json,
)
from solders.rpc.responses import (
    GetEpochInfoResp,
    GetGenesisHashResp,
    GetLatestBlockhashResp,
    GetMultipleAccountsResp,
    GetSignaturesForAddressResp,
    GetSignatureStatusesResp,
    IsBlockhashValidResp,
    MinimumLedgerSlotResp,
)
from solders.signature import Signature

from .exceptions import SolanaRPCError

__all__ = [
    "MIN_CONTEXT_SLOT_NOT_REACHED",
    "RpcRequest",
    "blockhash_valid_request",
    "decode_replies",
    "encode_batch",
    "epoch_info_request",
    "genesis_hash_request",
    "latest_blockhash_request",
    "minimum_ledger_slot_request",
    "multiple_accounts_request",
    "signature_statuses_request",
    "signatures_for_address_request",
]

COMMITMENT: Final = CommitmentLevel.Confirmed
MIN_CONTEXT_SLOT_NOT_REACHED: Final = -32016
"""The error code of a node asked for a ``minContextSlot`` it has not reached yet."""


@dataclass(frozen=True)
class RpcRequest:
    """One JSON-RPC call: a solders request body and the solders type that parses its reply."""

    body: Any
    response_type: Any

    @property
    def method(self) -> str:
        return str(json.loads(self.body.to_json())["method"])


def multiple_accounts_request(keys: Sequence[Pubkey], request_id: int = 0) -> RpcRequest:
    config = RpcAccountInfoConfig(encoding=UiAccountEncoding.Base64, commitment=COMMITMENT)
    return RpcRequest(
        GetMultipleAccounts(list(keys), config, id=request_id), GetMultipleAccountsResp
    )


def latest_blockhash_request(request_id: int = 0) -> RpcRequest:
    config = RpcContextConfig(commitment=COMMITMENT)
    return RpcRequest(GetLatestBlockhash(config, id=request_id), GetLatestBlockhashResp)


def genesis_hash_request(request_id: int = 0) -> RpcRequest:
    """The chain's genesis hash: which chain the node serves, whatever it is called."""
    return RpcRequest(GetGenesisHash(id=request_id), GetGenesisHashResp)


def blockhash_valid_request(blockhash: Hash, request_id: int = 0) -> RpcRequest:
    config = RpcContextConfig(commitment=CommitmentLevel.Processed)
    return RpcRequest(IsBlockhashValid(blockhash, config, id=request_id), IsBlockhashValidResp)


def epoch_info_request(min_context_slot: int | None = None, request_id: int = 0) -> RpcRequest:
    """The node's slot and block height; a node behind ``min_context_slot`` answers -32016."""
    config = RpcContextConfig(commitment=COMMITMENT, min_context_slot=min_context_slot)
    return RpcRequest(GetEpochInfo(config, id=request_id), GetEpochInfoResp)


def minimum_ledger_slot_request(request_id: int = 0) -> RpcRequest:
    """The oldest slot the node still has in its ledger: it knows nothing of older ones."""
    return RpcRequest(MinimumLedgerSlot(id=request_id), MinimumLedgerSlotResp)


def signature_statuses_request(signatures: Sequence[Signature], request_id: int = 0) -> RpcRequest:
    """Statuses of ``signatures``, searching the node's whole history, not only recent slots."""
    config = RpcSignatureStatusConfig(search_transaction_history=True)
    return RpcRequest(
        GetSignatureStatuses(list(signatures), config, id=request_id), GetSignatureStatusesResp
    )


def signatures_for_address_request(
    address: Pubkey,
    limit: int = 1000,
    request_id: int = 0,
    *,
    min_context_slot: int | None = None,
) -> RpcRequest:
    """The newest transactions (up to ``limit``) that involve ``address``, from a node that
    has reached ``min_context_slot`` (-32016 from one that has not)."""
    config = RpcSignaturesForAddressConfig(
        limit=limit, commitment=CommitmentLevel.Confirmed, min_context_slot=min_context_slot
    )
    return RpcRequest(
        GetSignaturesForAddress(address, config, id=request_id), GetSignaturesForAddressResp
    )


def encode_batch(batch: Sequence[RpcRequest]) -> str:
    """The HTTP body: a single request object, or a JSON-RPC batch array for several."""
    if len(batch) == 1:
        return str(batch[0].body.to_json())
    return str(batch_to_json([r.body for r in batch]))


def decode_replies(batch: Sequence[RpcRequest], payload: Any, url: str) -> list[Any] | None:
    """Typed results for ``batch`` from the decoded JSON ``payload``, in request order.

    Returns None when several requests were sent and the node did not answer with a batch
    (some providers refuse batches; the driver then sends them one by one).

    :raises SolanaRPCError: for an ``error`` member or a reply of the wrong shape.
    """
    if len(batch) == 1:
        return [_checked(batch[0], payload, url)]
    if not isinstance(payload, list):
        return None
    by_id = {item.get("id"): item for item in payload if isinstance(item, dict)}
    return [_checked(r, by_id.get(r.body.id), url) for r in batch]


def _checked(request: RpcRequest, envelope: Any, url: str) -> Any:
    method = request.method
    if not isinstance(envelope, dict):
        raise _bad_reply(url, method, "no JSON-RPC reply object for this call")
    error = envelope.get("error")
    if error is not None:
        code = error.get("code") if isinstance(error, dict) else None
        text = error.get("message") if isinstance(error, dict) else str(error)
        raise SolanaRPCError(
            f"the Solana RPC node at {url} refused {method}: {str(text)[:300]} "
            f"(code {code}). Nothing was paid",
            method=method,
            code=code if isinstance(code, int) else None,
            reason="rpc_error",
        )
    if "result" not in envelope:
        raise _bad_reply(url, method, "the reply has neither 'result' nor 'error'")
    parsed = _from_json(request.response_type, json.dumps(envelope))
    if parsed is None or not isinstance(parsed, request.response_type):
        raise _bad_reply(url, method, "the result does not have the shape Solana RPC defines")
    return parsed


def _bad_reply(url: str, method: str, problem: str) -> SolanaRPCError:
    return SolanaRPCError(
        f"the Solana RPC node at {url} answered {method} malformed: {problem}. "
        "Check that rpc_url points at a Solana JSON-RPC endpoint. Nothing was paid",
        method=method,
        reason="rpc_bad_reply",
    )


def _from_json(response_type: Any, text: str) -> Any:
    """Parse with solders, turning its Rust panics (a BaseException) into None."""
    try:
        return response_type.from_json(text)
    except Exception:  # noqa: BLE001 - any parse failure means a malformed reply
        return None
    except BaseException as exc:
        if type(exc).__name__ != "PanicException":
            raise
        return None


def methods_of(batch: Sequence[RpcRequest]) -> str:
    """The batch's methods, for a message: ``getMultipleAccounts, getLatestBlockhash``."""
    return ", ".join(r.method for r in batch)


def unreachable(url: str, methods: str, problem: str) -> SolanaRPCError:
    """The error for a node that could not be reached (``problem``: the failure's name), once
    the transport's retries are spent."""
    return SolanaRPCError(
        f"could not reach the Solana RPC node at {url} ({problem}) "
        f"while calling {methods}; check rpc_url / SOLANA_RPC_URL and the network. "
        "Nothing was paid",
        method=methods,
        reason="rpc_unreachable",
    )


def http_error(url: str, methods: str, status: int) -> SolanaRPCError:
    """The error for an HTTP status other than 200, once the transport's retries are spent."""
    hint = ""
    if status == 429:
        hint = " (rate limited: slow down or use a dedicated RPC provider)"
    return SolanaRPCError(
        f"the Solana RPC node at {url} answered HTTP {status} to {methods}{hint}. Nothing was paid",
        method=methods,
        reason="rpc_http_error",
        details={"status": status},
    )


def not_json(url: str, methods: str) -> SolanaRPCError:
    """The error for an answer whose body is not JSON."""
    return SolanaRPCError(
        f"the Solana RPC node at {url} answered {methods} with a body that is not "
        "JSON; check that rpc_url points at a Solana JSON-RPC endpoint. Nothing was paid",
        method=methods,
        reason="rpc_bad_reply",
    )


def rpc_document(url: str, methods: str, status: int, body: bytes) -> Any:
    """The JSON document of a node's answer (HTTP ``status``, ``body``), once the transport's
    retries are spent; an HTTP error or a body that is not JSON is a ``SolanaRPCError``."""
    if status != 200:
        raise http_error(url, methods, status)
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise not_json(url, methods) from None
