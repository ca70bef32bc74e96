"""Solana JSON-RPC over a ``requests`` session, with solders' typed requests and responses.

solana-py 0.40+ ships only an async client, so the synchronous driver speaks JSON-RPC itself:
solders builds each request body and parses each reply; this module only moves bytes and
checks the envelope. Several requests travel as one JSON-RPC batch (one HTTP round trip).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import requests
from solders.account_decoder import UiAccountEncoding
from solders.commitment_config import CommitmentLevel
from solders.hash import Hash
from solders.pubkey import Pubkey
from solders.rpc.config import RpcAccountInfoConfig, RpcContextConfig
from solders.rpc.requests import GetLatestBlockhash, GetMultipleAccounts
from solders.rpc.responses import GetLatestBlockhashResp, GetMultipleAccountsResp

from .exceptions import SolanaRPCError
from .solana_utils import TOKEN_PROGRAMS, MintInfo, associated_token_address, parse_mint

__all__ = ["RpcClient", "RpcRequest", "RpcStats"]

logger = logging.getLogger(__name__)

COMMITMENT: Final = CommitmentLevel.Confirmed
_USER_AGENT: Final = "human-rpc-sdk"


@dataclass(frozen=True)
class RpcRequest:
    """One JSON-RPC call: a solders request body and the solders type that parses its reply."""

    body: Any
    response_type: Any

    @property
    def method(self) -> str:
        return str(json.loads(self.body.to_json())["method"])


@dataclass
class RpcStats:
    """How much this client has talked to the node: HTTP round trips and JSON-RPC calls."""

    round_trips: int = 0
    calls: int = 0


def multiple_accounts_request(keys: Sequence[Pubkey], request_id: int = 0) -> RpcRequest:
    config = RpcAccountInfoConfig(encoding=UiAccountEncoding.Base64, commitment=COMMITMENT)
    return RpcRequest(
        GetMultipleAccounts(list(keys), config, id=request_id), GetMultipleAccountsResp
    )


def latest_blockhash_request(request_id: int = 0) -> RpcRequest:
    config = RpcContextConfig(commitment=COMMITMENT)
    return RpcRequest(GetLatestBlockhash(config, id=request_id), GetLatestBlockhashResp)


@dataclass(frozen=True)
class TokenTransferFacts:
    mint: MintInfo
    blockhash: Hash
    recipient_account_exists: bool


class RpcClient:
    """A small synchronous JSON-RPC client.

    :param url: the RPC endpoint.
    :param timeout: seconds for each HTTP round trip.
    :param session: a ``requests.Session`` to reuse; one is created when omitted.
    """

    def __init__(
        self, url: str, *, timeout: float = 10.0, session: requests.Session | None = None
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.headers.setdefault("User-Agent", _USER_AGENT)
        self.stats = RpcStats()

    def call(self, batch: Sequence[RpcRequest]) -> list[Any]:
        """Run ``batch`` (one HTTP round trip) and return the parsed results, in order.

        :raises SolanaRPCError: when the node cannot be reached, answers with an HTTP error,
            an unparseable body or a JSON-RPC ``error`` member.
        """
        if not batch:
            return []
        if len(batch) == 1:
            return [self._parse(batch[0], self._post(batch[0].body.to_json(), batch))]
        from solders.rpc.requests import batch_to_json

        payload = self._post(batch_to_json([r.body for r in batch]), batch)
        if not isinstance(payload, list):
            # Some providers refuse batches; fall back to one call each.
            logger.debug("RPC %s refused a batch request; sending calls one by one", self.url)
            return [self.call([r])[0] for r in batch]
        by_id = {item.get("id"): item for item in payload if isinstance(item, dict)}
        return [self._parse(r, by_id.get(r.body.id)) for r in batch]

    def _post(self, body: str, batch: Sequence[RpcRequest]) -> Any:
        methods = ", ".join(r.method for r in batch)
        self.stats.round_trips += 1
        self.stats.calls += len(batch)
        try:
            reply = self.session.post(
                self.url,
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise SolanaRPCError(
                f"could not reach the Solana RPC node at {self.url} ({type(exc).__name__}) "
                f"while calling {methods}; check rpc_url / SOLANA_RPC_URL and the network. "
                "Nothing was paid",
                method=methods,
                reason="rpc_unreachable",
            ) from exc
        if reply.status_code != 200:
            hint = (
                " (rate limited: slow down or use a dedicated RPC provider)"
                if reply.status_code == 429
                else ""
            )
            raise SolanaRPCError(
                f"the Solana RPC node at {self.url} answered HTTP {reply.status_code} to "
                f"{methods}{hint}. Nothing was paid",
                method=methods,
                reason="rpc_http_error",
                details={"status": reply.status_code},
            )
        try:
            return reply.json()
        except ValueError:
            raise SolanaRPCError(
                f"the Solana RPC node at {self.url} answered {methods} with a body that is not "
                "JSON; check that rpc_url points at a Solana JSON-RPC endpoint. Nothing was paid",
                method=methods,
                reason="rpc_bad_reply",
            ) from None

    def _parse(self, request: RpcRequest, envelope: Any) -> Any:
        method = request.method
        if not isinstance(envelope, dict):
            raise self._bad_reply(method, "no JSON-RPC reply object for this call")
        error = envelope.get("error")
        if error is not None:
            code = error.get("code") if isinstance(error, dict) else None
            text = error.get("message") if isinstance(error, dict) else str(error)
            raise SolanaRPCError(
                f"the Solana RPC node at {self.url} refused {method}: {str(text)[:300]} "
                f"(code {code}). Nothing was paid",
                method=method,
                code=code if isinstance(code, int) else None,
                reason="rpc_error",
            )
        if "result" not in envelope:
            raise self._bad_reply(method, "the reply has neither 'result' nor 'error'")
        parsed = _from_json(request.response_type, json.dumps(envelope))
        if parsed is None or not isinstance(parsed, request.response_type):
            raise self._bad_reply(method, "the result does not have the shape Solana RPC defines")
        return parsed

    def _bad_reply(self, method: str, problem: str) -> SolanaRPCError:
        return SolanaRPCError(
            f"the Solana RPC node at {self.url} answered {method} malformed: {problem}. "
            "Check that rpc_url points at a Solana JSON-RPC endpoint. Nothing was paid",
            method=method,
            reason="rpc_bad_reply",
        )

    # -- conveniences -----------------------------------------------------------------------

    def latest_blockhash(self) -> Hash:
        resp: GetLatestBlockhashResp = self.call([latest_blockhash_request()])[0]
        return resp.value.blockhash

    def token_transfer_facts(self, mint: Pubkey, recipient: Pubkey) -> TokenTransferFacts:
        """Mint decimals and program, a fresh blockhash, and whether the payee's ATA exists."""
        candidates = [associated_token_address(recipient, mint, p) for p in TOKEN_PROGRAMS]
        accounts, blockhash = self.call(
            [multiple_accounts_request([mint, *candidates], 0), latest_blockhash_request(1)]
        )
        try:
            info = parse_mint(mint, accounts.value[0])
        except ValueError as exc:
            raise SolanaRPCError(
                str(exc), method="getMultipleAccounts", reason="bad_mint"
            ) from None
        index = 1 + TOKEN_PROGRAMS.index(info.program_id)
        return TokenTransferFacts(
            mint=info,
            blockhash=blockhash.value.blockhash,
            recipient_account_exists=accounts.value[index] is not None,
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
