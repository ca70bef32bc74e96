"""Solana JSON-RPC 2.0 over the gateway's ledger, in the real wire format.

Results are produced with solders' response types wherever they serialize the real format,
so any Solana client (solana-py, solders, web3.js) parses them. Batches are supported.
Methods: getLatestBlockhash, isBlockhashValid, getAccountInfo, getMultipleAccounts,
getBalance, getTokenAccountBalance, getTokenAccountsByOwner, getMinimumBalanceForRentExemption,
getFeeForMessage, simulateTransaction, sendTransaction, getSignatureStatuses,
getSignaturesForAddress, getTransaction, requestAirdrop, getHealth, getVersion, getSlot,
getBlockHeight, getEpochInfo, getGenesisHash, minimumLedgerSlot, getFirstAvailableBlock (this
ledger keeps its whole history: both answer its first slot).

As on Agave, ``simulateTransaction`` checks signatures only when asked (``sigVerify``), so a
transaction the fee payer has not signed yet simulates, and ``replaceRecentBlockhash`` runs it
over the newest blockhash and says which in ``replacementBlockhash``; it answers
``innerInstructions`` and the ``accounts`` as the transaction would leave them when asked.
``jsonParsed`` parses Token and Token-2022 mints and token accounts (:mod:`.parsed`) and falls
back to base64. ``getTransaction`` keeps what a node keeps: the fee, balances and token
balances before and after, logs and inner instructions (not for airdrops, which have no
transaction of their own here). There is no WebSocket endpoint: clients confirm by polling
``getSignatureStatuses``.

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
from solders.message import Message, MessageV0, from_bytes_versioned
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
from human_rpc_sdk.solana_utils import TOKEN_PROGRAMS, network_fee, parse_mint

from .instructions import COMPUTE_BUDGET_PROGRAM_ID
from .ledger import GENESIS_SLOT, Execution, Ledger
from .parsed import parse_account

__all__ = ["RpcDispatcher"]

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
SEND_TRANSACTION_PREFLIGHT_FAILURE: Final = -32002
MIN_CONTEXT_SLOT_NOT_REACHED: Final = -32016
UNSUPPORTED_TRANSACTION_VERSION: Final = -32015
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
            "getTokenAccountsByOwner": self._token_accounts_by_owner,
            "getFeeForMessage": self._fee_for_message,
            "getTransaction": self._transaction,
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
            "minimumLedgerSlot": lambda params: GENESIS_SLOT,
            "getFirstAvailableBlock": lambda params: GENESIS_SLOT,
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
            "value": self._account_json(self.ledger.account(address), encoding),
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
        accounts = [self._account_json(self.ledger.account(_pubkey(k)), encoding) for k in keys]
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

    def _token_accounts_by_owner(self, params: list[Any]) -> Any:
        owner = _pubkey(_param(params, 0))
        selector = _param(params, 1)
        config = _config(params, 2)
        self._reached(config)
        encoding = _encoding(config)
        if not isinstance(selector, dict) or len(selector) != 1:
            raise RpcError(INVALID_PARAMS, 'Invalid params: expected {"mint"} or {"programId"}')
        if "mint" in selector:
            wanted = _pubkey(selector["mint"])
            mint_account = self.ledger.account(wanted)
            if mint_account is None or mint_account.owner not in TOKEN_PROGRAMS:
                raise RpcError(INVALID_PARAMS, "Invalid param: could not find mint")
            mint: Pubkey | None = wanted
            programs = [mint_account.owner]
        elif "programId" in selector:
            mint = None
            program = _pubkey(selector["programId"])
            if program not in TOKEN_PROGRAMS:
                raise RpcError(INVALID_PARAMS, "Invalid param: unrecognized Token program id")
            programs = [program]
        else:
            raise RpcError(INVALID_PARAMS, 'Invalid params: expected {"mint"} or {"programId"}')
        found = []
        for program in programs:
            for address, account in self.ledger.program_accounts(program):
                data = bytes(account.data)
                if len(data) < 165:
                    continue
                try:
                    token = TokenAccount.from_bytes(data[:165])
                except ValueError:
                    continue
                if len(data) > 165 and data[165] != 2:
                    continue  # a Token-2022 mint with extensions, not a token account
                if token.owner != owner or (mint is not None and token.mint != mint):
                    continue
                found.append(
                    {"pubkey": str(address), "account": self._account_json(account, encoding)}
                )
        return {"context": self._context(), "value": found}

    def _minimum_balance(self, params: list[Any]) -> Any:
        size = _param(params, 0)
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= 10 * 1024 * 1024:
            raise RpcError(INVALID_PARAMS, "Invalid params: data length must be an integer")
        return self.ledger.minimum_balance(size)

    def _fee_for_message(self, params: list[Any]) -> Any:
        encoded = _param(params, 0)
        self._reached(_config(params, 1))
        if not isinstance(encoded, str) or len(encoded) > 4096:
            raise RpcError(INVALID_PARAMS, "Invalid params: message must be a base64 string")
        try:
            message = from_bytes_versioned(base64.b64decode(encoded, validate=True))
        except Exception:  # noqa: BLE001 - any decoding failure is the caller's malformed input
            raise RpcError(INVALID_PARAMS, "failed to deserialize the message") from None
        if not isinstance(message, Message | MessageV0):
            raise RpcError(INVALID_PARAMS, "Invalid params: unsupported message version")
        fee = None
        if self.ledger.is_blockhash_valid(message.recent_blockhash):
            fee = _message_fee(message)
        return {"context": self._context(), "value": fee}

    def _simulate(self, params: list[Any]) -> Any:
        config = _config(params, 1)
        self._reached(config)
        transaction = _transaction(_param(params, 0), config.get("encoding", "base58"))
        sig_verify = config.get("sigVerify", False)
        replace_blockhash = config.get("replaceRecentBlockhash", False)
        if not isinstance(sig_verify, bool) or not isinstance(replace_blockhash, bool):
            raise RpcError(
                INVALID_PARAMS, "Invalid params: sigVerify and replaceRecentBlockhash are booleans"
            )
        if sig_verify and replace_blockhash:
            raise RpcError(INVALID_PARAMS, "sigVerify may not be used with replaceRecentBlockhash")
        wanted = config.get("accounts")
        if wanted is not None and (
            not isinstance(wanted, dict)
            or not isinstance(wanted.get("addresses"), list)
            or len(wanted["addresses"]) > len(transaction.message.account_keys)
        ):
            raise RpcError(
                INVALID_PARAMS,
                'Invalid params: accounts must be {"addresses": [...]}, at most the '
                "transaction's number of accounts",
            )
        execution = self.ledger.simulate(
            transaction, sig_verify=sig_verify, replace_blockhash=replace_blockhash
        )
        value = _simulation_json(execution)
        keys = list(transaction.message.account_keys)
        if config.get("innerInstructions") is True:
            value["innerInstructions"] = _inner_json(execution, keys, parsed=False)
        if wanted is not None and execution.ok:
            encoding = _encoding(wanted)
            touched = dict(execution.simulated_accounts)

            def after(address: Pubkey) -> Account | None:
                account = touched[address] if address in touched else self.ledger.account(address)
                return None if account is None or _is_empty(account) else account

            value["accounts"] = [
                self._account_json(after(_pubkey(a)), encoding) for a in wanted["addresses"]
            ]
        return {"context": self._context(), "value": value}

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

    def _transaction(self, params: list[Any]) -> Any:
        signature = _signature(_param(params, 0))
        config = params[1] if len(params) > 1 else None
        if isinstance(config, str):  # the old form: the encoding alone
            config = {"encoding": config}
        config = _config([config], 0)
        encoding = config.get("encoding") or "json"
        if encoding not in ("json", "jsonParsed", "base64", "base58"):
            raise RpcError(INVALID_PARAMS, f"Invalid params: unsupported encoding {encoding}")
        commitment = config.get("commitment")
        if commitment == "processed":
            raise RpcError(INVALID_PARAMS, "Method does not support commitment below `confirmed`")
        supported = config.get("maxSupportedTransactionVersion")
        execution = self.ledger.status(signature)
        if execution is None or execution.transaction is None:
            return None
        transaction = execution.transaction
        version: Any = "legacy"
        if isinstance(transaction.message, MessageV0):
            version = 0
            if supported is None or (isinstance(supported, int) and supported < 0):
                raise RpcError(
                    UNSUPPORTED_TRANSACTION_VERSION,
                    "Transaction version (0) is not supported by the requesting client. Please "
                    "try the request again with the following configuration parameter: "
                    '"maxSupportedTransactionVersion": 0',
                )
        document: dict[str, Any] = {
            "slot": execution.slot,
            "blockTime": None,
            "transaction": _transaction_json(transaction, encoding),
            "meta": self._meta_json(execution, parsed=encoding == "jsonParsed"),
        }
        if supported is not None:
            document["version"] = version
        return document

    def _meta_json(self, execution: Execution, *, parsed: bool) -> dict[str, Any]:
        err = _err_json(execution)
        meta: dict[str, Any] = {
            "err": err,
            "status": {"Ok": None} if err is None else {"Err": err},
            "fee": execution.fee,
            "preBalances": [0 if a is None else a.lamports for a in execution.pre_accounts],
            "postBalances": [0 if a is None else a.lamports for a in execution.post_accounts],
            "innerInstructions": _inner_json(
                execution, list(transaction_keys(execution)), parsed=parsed
            ),
            "logMessages": execution.logs,
            "preTokenBalances": self._token_balances(execution, execution.pre_accounts),
            "postTokenBalances": self._token_balances(execution, execution.post_accounts),
            "rewards": [],
            "loadedAddresses": {"writable": [], "readonly": []},
            "computeUnitsConsumed": execution.units,
        }
        return meta

    def _token_balances(
        self, execution: Execution, accounts: tuple[Account | None, ...]
    ) -> list[dict[str, Any]]:
        balances = []
        for index, account in enumerate(accounts):
            if account is None:
                continue
            parsed = parse_account(account, self._mint_decimals)
            if parsed is None or parsed["parsed"]["type"] != "account":
                continue
            info = parsed["parsed"]["info"]
            balances.append(
                {
                    "accountIndex": index,
                    "mint": info["mint"],
                    "owner": info["owner"],
                    "programId": str(account.owner),
                    "uiTokenAmount": info["tokenAmount"],
                }
            )
        return balances

    def _mint_decimals(self, mint: Pubkey) -> int | None:
        try:
            return parse_mint(mint, self.ledger.account(mint)).decimals
        except ValueError:
            return None

    def _account_json(self, account: Account | None, encoding: str) -> Any:
        if account is None:
            return None
        data = bytes(account.data)
        encoded: Any = None
        if encoding == "jsonParsed":
            encoded = parse_account(account, self._mint_decimals)
        if encoded is not None:
            pass
        elif encoding == "binary":
            encoded = base58.b58encode(data).decode("ascii")
        elif encoding == "base58":
            encoded = [base58.b58encode(data).decode("ascii"), "base58"]
        else:  # base64, and jsonParsed for data it cannot parse (as a node does)
            encoded = [base64.b64encode(data).decode("ascii"), "base64"]
        return {
            "lamports": account.lamports,
            "data": encoded,
            "owner": str(account.owner),
            "executable": account.executable,
            "rentEpoch": account.rent_epoch,
            "space": len(data),
        }

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


def _simulation_json(execution: Execution) -> Any:
    result = RpcSimulateTransactionResult(
        execution.err, execution.logs, None, execution.units, None
    )
    document: dict[str, Any] = json.loads(result.to_json())
    document["fee"] = execution.fee if execution.logs or execution.ok else None
    document["replacementBlockhash"] = (
        None
        if execution.replacement is None
        else {
            "blockhash": str(execution.replacement[0]),
            "lastValidBlockHeight": execution.replacement[1],
        }
    )
    return document


def transaction_keys(execution: Execution) -> list[Pubkey]:
    return [] if execution.transaction is None else list(execution.transaction.message.account_keys)


def _is_empty(account: Account) -> bool:
    return account.lamports == 0 and not account.data and not account.executable


def _inner_json(execution: Execution, keys: list[Pubkey], *, parsed: bool) -> list[Any]:
    """Agave's ``innerInstructions``: for each instruction that made any, the instructions it
    invoked (``jsonParsed`` names programs and accounts, as Agave does for programs it does not
    parse)."""
    groups = []
    for index, group in enumerate(execution.inner):
        if not group:
            continue
        instructions = []
        for inner in group:
            compiled = inner.instruction()
            data = base58.b58encode(bytes(compiled.data)).decode("ascii")
            if parsed:
                entry: dict[str, Any] = {
                    "programId": str(keys[compiled.program_id_index]),
                    "accounts": [str(keys[a]) for a in compiled.accounts],
                    "data": data,
                }
            else:
                entry = {
                    "programIdIndex": compiled.program_id_index,
                    "accounts": list(compiled.accounts),
                    "data": data,
                }
            entry["stackHeight"] = inner.stack_height()
            instructions.append(entry)
        groups.append({"index": index, "instructions": instructions})
    return groups


def _err_json(execution: Execution) -> Any:
    """The transaction error in the wire format (None on success)."""
    return _simulation_json(execution)["err"]


def _message_fee(message: Message | MessageV0) -> int:
    """What the message costs its fee payer: signatures plus the priority fee, as a node
    reckons it from the compute-budget instructions (a limit of 200,000 units per other
    instruction, at most 1,400,000, when none is set)."""
    keys = list(message.account_keys)
    limit: int | None = None
    price = 0
    others = 0
    for compiled in message.instructions:
        data = bytes(compiled.data)
        if keys[compiled.program_id_index] != COMPUTE_BUDGET_PROGRAM_ID:
            others += 1
        elif data[:1] == b"\x02" and len(data) >= 5:
            limit = int.from_bytes(data[1:5], "little")
        elif data[:1] == b"\x03" and len(data) >= 9:
            price = int.from_bytes(data[1:9], "little")
    if limit is None:
        limit = min(200_000 * others, 1_400_000)
    return network_fee(message.header.num_required_signatures, min(limit, 1_400_000), price)


def _transaction_json(transaction: VersionedTransaction, encoding: str) -> Any:
    raw = bytes(transaction)
    if encoding == "base64":
        return [base64.b64encode(raw).decode("ascii"), "base64"]
    if encoding == "base58":
        return [base58.b58encode(raw).decode("ascii"), "base58"]
    message = transaction.message
    keys = [str(k) for k in message.account_keys]
    header = message.header
    instructions: list[dict[str, Any]] = [
        {
            "programIdIndex": ix.program_id_index,
            "accounts": list(ix.accounts),
            "data": base58.b58encode(bytes(ix.data)).decode("ascii"),
            "stackHeight": None,
        }
        for ix in message.instructions
    ]
    account_keys: list[Any] = keys
    if encoding == "jsonParsed":
        signed = header.num_required_signatures
        writable_signed = signed - header.num_readonly_signed_accounts
        writable_end = len(keys) - header.num_readonly_unsigned_accounts
        account_keys = [
            {
                "pubkey": key,
                "signer": i < signed,
                "writable": i < writable_signed if i < signed else i < writable_end,
                "source": "transaction",
            }
            for i, key in enumerate(keys)
        ]
        instructions = [
            {
                "programId": keys[ix.program_id_index],
                "accounts": [keys[a] for a in ix.accounts],
                "data": base58.b58encode(bytes(ix.data)).decode("ascii"),
                "stackHeight": None,
            }
            for ix in message.instructions
        ]
    body: dict[str, Any] = {
        "accountKeys": account_keys,
        "header": {
            "numRequiredSignatures": header.num_required_signatures,
            "numReadonlySignedAccounts": header.num_readonly_signed_accounts,
            "numReadonlyUnsignedAccounts": header.num_readonly_unsigned_accounts,
        },
        "recentBlockhash": str(message.recent_blockhash),
        "instructions": instructions,
    }
    if encoding == "jsonParsed":
        del body["header"]
    if isinstance(message, MessageV0):
        body["addressTableLookups"] = [
            {
                "accountKey": str(lookup.account_key),
                "writableIndexes": list(lookup.writable_indexes),
                "readonlyIndexes": list(lookup.readonly_indexes),
            }
            for lookup in message.address_table_lookups
        ]
    return {"signatures": [str(sig) for sig in transaction.signatures], "message": body}
