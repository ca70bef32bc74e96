"""Solana JSON-RPC 2.0 over the gateway's ledger, in the real wire format.

Results are produced with solders' response types wherever they serialize the real format,
so any Solana client (solana-py, solders, web3.js) parses them. Batches are supported.
Methods: getLatestBlockhash, isBlockhashValid, getAccountInfo, getMultipleAccounts,
getBalance, getTokenAccountBalance, getMinimumBalanceForRentExemption, simulateTransaction,
sendTransaction, getSignatureStatuses, getSignaturesForAddress, requestAirdrop, getHealth,
getVersion, getSlot, getBlockHeight, getEpochInfo, getGenesisHash.

The methods that take ``minContextSlot`` on a real node honour it: asked for a slot the ledger
has not reached, they answer error -32016, as Agave does. (This ledger is never behind, so
that happens only for a future slot; ``tests/lagging_rpc.py`` plays a node that lags.)
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from typing import Any, Final

import base58
import solders
from solders.account import Account
from solders.account_decoder import UiTokenAmount
from solders.hash import Hash, ParseHashError
from solders.pubkey import Pubkey
from solders.rpc.responses import (
    GetSignatureStatusesResp,
    RpcConfirmedTransactionStatusWithSignature,
    RpcResponseContext,
    RpcSimulateTransactionResult,
)
from solders.signature import Signature
from solders.token.state import TokenAccount
from solders.transaction import VersionedTransaction
from solders.transaction_status import TransactionConfirmationStatus, TransactionStatus

from human_rpc_sdk._money import format_amount, from_base_units
from human_rpc_sdk.solana_utils import TOKEN_PROGRAMS, parse_mint

from .ledger import Execution, Ledger

__all__ = ["RpcDispatcher"]

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
SEND_TRANSACTION_PREFLIGHT_FAILURE: Final = -32002
MIN_CONTEXT_SLOT_NOT_REACHED: Final = -32016
MAX_BATCH: Final = 100
MAX_AIRDROP_LAMPORTS: Final = 1_000 * 10**9


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


class RpcDispatcher:
    """Answers JSON-RPC documents (single or batch) from a :class:`Ledger`."""

    def __init__(self, ledger: Ledger, network: str, genesis_hash: str) -> None:
        self.ledger = ledger
        self.genesis_hash = genesis_hash
        self.network = network
        self._count_lock = threading.Lock()
        self.requests_served = 0
        self.calls_served = 0
        self._methods: dict[str, Callable[[list[Any]], Any]] = {
            "getLatestBlockhash": self._latest_blockhash,
            "isBlockhashValid": self._is_blockhash_valid,
            "getAccountInfo": self._account_info,
            "getMultipleAccounts": self._multiple_accounts,
            "getBalance": self._balance,
            "getTokenAccountBalance": self._token_account_balance,
            "getMinimumBalanceForRentExemption": self._minimum_balance,
            "simulateTransaction": self._simulate,
            "sendTransaction": self._send,
            "getSignatureStatuses": self._signature_statuses,
            "getSignaturesForAddress": self._signatures_for_address,
            "requestAirdrop": self._airdrop,
            "getHealth": lambda params: "ok",
            "getVersion": lambda params: {
                "solana-core": f"2.2.0-litesvm (solders {solders.__version__})",
                "feature-set": 0,
            },
            "getSlot": self._slot,
            "getBlockHeight": self._block_height,
            "getEpochInfo": self._epoch_info,
            "getGenesisHash": self._genesis_hash,
        }

    def handle(self, raw: bytes) -> Any:
        """Answer the raw request body; returns the JSON document to send back."""
        with self._count_lock:
            self.requests_served += 1
        try:
            document = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return _error(None, RpcError(PARSE_ERROR, "Parse error"))
        if isinstance(document, list):
            if not document or len(document) > MAX_BATCH:
                return _error(None, RpcError(INVALID_REQUEST, "Invalid request"))
            return [self._one(item) for item in document]
        return self._one(document)

    def _one(self, request: Any) -> dict[str, Any]:
        if (
            not isinstance(request, dict)
            or request.get("jsonrpc") != "2.0"
            or not isinstance(request.get("method"), str)
        ):
            return _error(
                request.get("id") if isinstance(request, dict) else None,
                RpcError(INVALID_REQUEST, "Invalid request"),
            )
        with self._count_lock:
            self.calls_served += 1
        request_id = request.get("id")
        method = self._methods.get(request["method"])
        if method is None:
            return _error(request_id, RpcError(METHOD_NOT_FOUND, "Method not found"))
        params = request.get("params", [])
        if not isinstance(params, list):
            return _error(request_id, RpcError(INVALID_PARAMS, "Invalid params: expected an array"))
        try:
            return {"jsonrpc": "2.0", "result": method(params), "id": request_id}
        except RpcError as exc:
            return _error(request_id, exc)

    # -- methods ----------------------------------------------------------------------------

    def _context(self) -> dict[str, Any]:
        return {"apiVersion": "2.2.0", "slot": self.ledger.slot()}

    def _reached(self, config: dict[str, Any]) -> None:
        """Refuse, as a node does, a ``minContextSlot`` beyond the slot this ledger reached."""
        wanted = config.get("minContextSlot")
        if wanted is None:
            return
        if isinstance(wanted, bool) or not isinstance(wanted, int) or wanted < 0:
            raise RpcError(INVALID_PARAMS, "Invalid params: minContextSlot must be a slot number")
        slot = self.ledger.slot()
        if wanted > slot:
            raise RpcError(
                MIN_CONTEXT_SLOT_NOT_REACHED,
                "Minimum context slot has not been reached",
                {"contextSlot": slot},
            )

    def _slot(self, params: list[Any]) -> Any:
        self._reached(_config(params, 0))
        return self.ledger.slot()

    def _block_height(self, params: list[Any]) -> Any:
        self._reached(_config(params, 0))
        return self.ledger.block_height()

    def _epoch_info(self, params: list[Any]) -> Any:
        self._reached(_config(params, 0))
        return self.ledger.epoch_info()

    def _latest_blockhash(self, params: list[Any]) -> Any:
        self._reached(_config(params, 0))
        blockhash, last_valid, slot = self.ledger.latest_blockhash()
        return {
            "context": {"apiVersion": "2.2.0", "slot": slot},
            "value": {"blockhash": str(blockhash), "lastValidBlockHeight": last_valid},
        }

    def _is_blockhash_valid(self, params: list[Any]) -> Any:
        blockhash = _hash(_param(params, 0))
        self._reached(_config(params, 1))
        return {"context": self._context(), "value": self.ledger.is_blockhash_valid(blockhash)}

    def _account_info(self, params: list[Any]) -> Any:
        address = _pubkey(_param(params, 0))
        config = _config(params, 1)
        self._reached(config)
        encoding = _encoding(config)
        return {
            "context": self._context(),
            "value": _account_json(self.ledger.account(address), encoding),
        }

    def _multiple_accounts(self, params: list[Any]) -> Any:
        keys = _param(params, 0)
        if not isinstance(keys, list) or len(keys) > 100:
            raise RpcError(
                INVALID_PARAMS, "Invalid params: expected an array of at most 100 addresses"
            )
        config = _config(params, 1)
        self._reached(config)
        encoding = _encoding(config)
        accounts = [_account_json(self.ledger.account(_pubkey(k)), encoding) for k in keys]
        return {"context": self._context(), "value": accounts}

    def _balance(self, params: list[Any]) -> Any:
        self._reached(_config(params, 1))
        return {
            "context": self._context(),
            "value": self.ledger.balance(_pubkey(_param(params, 0))),
        }

    def _token_account_balance(self, params: list[Any]) -> Any:
        address = _pubkey(_param(params, 0))
        account = self.ledger.account(address)
        if account is None or account.owner not in TOKEN_PROGRAMS or len(account.data) < 165:
            raise RpcError(INVALID_PARAMS, "Invalid param: not a Token account")
        token = TokenAccount.from_bytes(bytes(account.data)[:165])
        try:
            decimals = parse_mint(token.mint, self.ledger.account(token.mint)).decimals
        except ValueError:
            raise RpcError(INVALID_PARAMS, "Invalid param: could not find mint") from None
        ui = from_base_units(token.amount, decimals)
        amount = UiTokenAmount(float(ui), decimals, str(token.amount), format_amount(ui))
        return {"context": self._context(), "value": json.loads(amount.to_json())}

    def _minimum_balance(self, params: list[Any]) -> Any:
        size = _param(params, 0)
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= 10 * 1024 * 1024:
            raise RpcError(INVALID_PARAMS, "Invalid params: data length must be an integer")
        return self.ledger.minimum_balance(size)

    def _simulate(self, params: list[Any]) -> Any:
        config = _config(params, 1)
        self._reached(config)
        transaction = _transaction(_param(params, 0), config.get("encoding", "base58"))
        execution = self.ledger.simulate(transaction)
        return {"context": self._context(), "value": _simulation_json(execution)}

    def _send(self, params: list[Any]) -> Any:
        config = _config(params, 1)
        self._reached(config)
        transaction = _transaction(_param(params, 0), config.get("encoding", "base58"))
        if not config.get("skipPreflight", False):
            preflight = self.ledger.simulate(transaction)
            if not preflight.ok:
                raise RpcError(
                    SEND_TRANSACTION_PREFLIGHT_FAILURE,
                    f"Transaction simulation failed: {preflight.describe()}",
                    _simulation_json(preflight),
                )
        execution = self.ledger.execute(transaction)
        if execution.logs == [] and not execution.ok:
            # Refused before execution (blockhash, duplicate): a real node refuses these too.
            raise RpcError(
                SEND_TRANSACTION_PREFLIGHT_FAILURE,
                f"Transaction simulation failed: {execution.describe()}",
                _simulation_json(execution),
            )
        return str(execution.signature)

    def _signature_statuses(self, params: list[Any]) -> Any:
        signatures = _param(params, 0)
        if not isinstance(signatures, list) or len(signatures) > 256:
            raise RpcError(
                INVALID_PARAMS, "Invalid params: expected an array of at most 256 signatures"
            )
        statuses = []
        for text in signatures:
            execution = self.ledger.status(_signature(text))
            statuses.append(
                None
                if execution is None
                else TransactionStatus(
                    execution.slot,
                    None,
                    execution.err,
                    execution.err,
                    TransactionConfirmationStatus.Finalized,
                )
            )
        resp = GetSignatureStatusesResp(statuses, RpcResponseContext(self.ledger.slot()))
        return json.loads(resp.to_json())["result"]

    def _signatures_for_address(self, params: list[Any]) -> Any:
        address = _pubkey(_param(params, 0))
        config = _config(params, 1)
        self._reached(config)
        limit = config.get("limit") or 1000
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise RpcError(INVALID_PARAMS, "Invalid limit; max 1000")
        before = config.get("before")
        executions = self.ledger.history(
            address, limit=limit, before=None if before is None else _signature(before)
        )
        return [
            json.loads(
                RpcConfirmedTransactionStatusWithSignature(
                    e.signature, e.slot, e.err, None, None, TransactionConfirmationStatus.Finalized
                ).to_json()
            )
            for e in executions
        ]

    def _airdrop(self, params: list[Any]) -> Any:
        address = _pubkey(_param(params, 0))
        lamports = _param(params, 1)
        if (
            isinstance(lamports, bool)
            or not isinstance(lamports, int)
            or not 0 < lamports <= MAX_AIRDROP_LAMPORTS
        ):
            raise RpcError(
                INVALID_PARAMS,
                f"Invalid params: lamports must be between 1 and {MAX_AIRDROP_LAMPORTS}",
            )
        execution = self.ledger.airdrop(address, lamports)
        if not execution.ok:
            raise RpcError(INVALID_PARAMS, f"airdrop failed: {execution.describe()}")
        return str(execution.signature)

    def _genesis_hash(self, params: list[Any]) -> Any:
        return self.genesis_hash


# -- encoding helpers -----------------------------------------------------------------------


def _error(request_id: Any, error: RpcError) -> dict[str, Any]:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.data is not None:
        body["data"] = error.data
    return {"jsonrpc": "2.0", "error": body, "id": request_id}


def _param(params: list[Any], index: int) -> Any:
    if len(params) <= index:
        raise RpcError(INVALID_PARAMS, f"Invalid params: missing parameter {index}")
    return params[index]


def _config(params: list[Any], index: int) -> dict[str, Any]:
    config = params[index] if len(params) > index else None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise RpcError(INVALID_PARAMS, "Invalid params: configuration must be an object")
    return config


def _encoding(config: dict[str, Any]) -> str:
    encoding = config.get("encoding") or "binary"
    if encoding not in ("binary", "base58", "base64", "jsonParsed"):
        raise RpcError(INVALID_PARAMS, f"Invalid params: unsupported encoding {encoding}")
    return encoding


def _pubkey(value: Any) -> Pubkey:
    try:
        return Pubkey.from_string(value)
    except (ValueError, TypeError):
        raise RpcError(INVALID_PARAMS, "Invalid param: Invalid") from None


def _hash(value: Any) -> Hash:
    try:
        return Hash.from_string(value)
    except (ValueError, TypeError, ParseHashError):  # ParseHashError is no ValueError
        raise RpcError(INVALID_PARAMS, "Invalid param: Invalid hash") from None


def _signature(value: Any) -> Signature:
    try:
        return Signature.from_string(value)
    except (ValueError, TypeError):
        raise RpcError(INVALID_PARAMS, "Invalid param: Invalid signature") from None


def _transaction(value: Any, encoding: str) -> VersionedTransaction:
    if not isinstance(value, str) or len(value) > 4096:
        raise RpcError(INVALID_PARAMS, "Invalid params: transaction must be an encoded string")
    try:
        if encoding == "base64":
            raw = base64.b64decode(value, validate=True)
        elif encoding == "base58":
            raw = base58.b58decode(value)
        else:
            raise RpcError(INVALID_PARAMS, f"Invalid params: unsupported encoding {encoding}")
        transaction = VersionedTransaction.from_bytes(raw)
        transaction.sanitize()  # as a real node: e.g. fewer signatures than the message needs
        return transaction
    except RpcError:
        raise
    except Exception:  # noqa: BLE001 - any decoding failure is the caller's malformed input
        raise RpcError(INVALID_PARAMS, "failed to deserialize the transaction") from None


def _account_json(account: Account | None, encoding: str) -> Any:
    if account is None:
        return None
    data = bytes(account.data)
    if encoding == "binary":
        encoded: Any = base58.b58encode(data).decode("ascii")
    elif encoding == "base58":
        encoded = [base58.b58encode(data).decode("ascii"), "base58"]
    else:  # base64; jsonParsed falls back to it, as a node does for data it cannot parse
        encoded = [base64.b64encode(data).decode("ascii"), "base64"]
    return {
        "lamports": account.lamports,
        "data": encoded,
        "owner": str(account.owner),
        "executable": account.executable,
        "rentEpoch": account.rent_epoch,
        "space": len(data),
    }


def _simulation_json(execution: Execution) -> Any:
    result = RpcSimulateTransactionResult(
        execution.err, execution.logs, None, execution.units, None
    )
    return json.loads(result.to_json())
