"""Solana JSON-RPC over a ``requests`` session (the synchronous driver's transport).

solana-py 0.40+ ships only an async client, so the synchronous driver speaks JSON-RPC itself:
:mod:`._jsonrpc` encodes requests and checks and parses replies; this module moves the bytes.
Several requests travel as one JSON-RPC batch: one HTTP round trip.

Transient failures (connection errors, read timeouts, HTTP 429 and 5xx) are retried by the
HTTP stack itself, urllib3's :class:`~urllib3.util.Retry`, with a short exponential backoff
and ``Retry-After`` honoured up to a few seconds; JSON-RPC reads are safe to repeat. When the
retries are spent the failure is reported as a ``SolanaRPCError``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import requests
from requests.adapters import HTTPAdapter
from solders.hash import Hash
from solders.rpc.responses import GetLatestBlockhashResp
from urllib3 import BaseHTTPResponse
from urllib3.exceptions import InvalidHeader
from urllib3.util import Retry

from .._jsonrpc import (
    RpcRequest,
    decode_replies,
    encode_batch,
    latest_blockhash_request,
)
from .._protocol import Effect, Flow, RpcCall
from ..exceptions import SolanaRPCError

__all__ = ["RPC_RETRY", "RpcClient", "RpcStats"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

_USER_AGENT: Final = "human-rpc-sdk"
MAX_RETRY_AFTER: Final = 5.0


class _Retry(Retry):
    """urllib3's Retry, honouring ``Retry-After`` for at most :data:`MAX_RETRY_AFTER` seconds
    (a malformed one is ignored) and waiting with an injectable ``pause``."""

    def __init__(self, *args: Any, pause: Callable[[float], None] | None = None, **kw: Any):
        super().__init__(*args, **kw)
        self.pause = pause

    def new(self, **kw: Any) -> _Retry:
        fresh = super().new(**kw)
        fresh.pause = self.pause
        return fresh

    def get_retry_after(self, response: BaseHTTPResponse) -> float | None:
        try:
            seconds = super().get_retry_after(response)
        except InvalidHeader:
            return None
        return None if seconds is None else min(seconds, MAX_RETRY_AFTER)

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        if self.pause is None:
            super().sleep(response)
            return
        wanted = None
        if self.respect_retry_after_header and response is not None:
            wanted = self.get_retry_after(response)
        seconds = wanted or self.get_backoff_time()
        if seconds > 0:
            self.pause(seconds)


RPC_RETRY: Final = _Retry(
    total=4,
    connect=3,
    read=2,
    status=3,
    other=0,
    backoff_factor=0.1,
    backoff_max=2.0,
    status_forcelist=(429, 500, 502, 503, 504),
    allowed_methods=frozenset({"POST"}),
    raise_on_status=False,
    respect_retry_after_header=True,
)
"""How the RPC transport retries: at most 3 more tries per failure kind, 4 in all."""


@dataclass
class RpcStats:
    """How much a client has talked to the node: HTTP round trips and JSON-RPC calls."""

    round_trips: int = 0
    calls: int = 0


class RpcClient:
    """A small synchronous JSON-RPC client.

    :param url: the RPC endpoint.
    :param timeout: seconds for each HTTP round trip.
    :param session: a ``requests.Session`` to reuse; one is created when omitted, retrying
        transient failures with :data:`RPC_RETRY`.
    :param sleep: how that session waits between retries (``time.sleep`` when None).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        if session is None:
            session = requests.Session()
            retry = RPC_RETRY.new()
            retry.pause = sleep
            adapter = HTTPAdapter(max_retries=retry)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        self.session = session
        self.session.headers.setdefault("User-Agent", _USER_AGENT)
        self.stats = RpcStats()
        self._stats_lock = threading.Lock()

    def call(self, batch: Sequence[RpcRequest]) -> list[Any]:
        """Run ``batch`` (one HTTP round trip) and return the parsed results, in order.

        :raises SolanaRPCError: when the node cannot be reached, answers with an HTTP error,
            an unparseable body or a JSON-RPC ``error`` member.
        """
        if not batch:
            return []
        results = decode_replies(batch, self._post(encode_batch(batch), batch), self.url)
        if results is None:
            logger.debug("RPC %s refused a batch request; sending calls one by one", self.url)
            return [self.call([r])[0] for r in batch]
        return results

    def _post(self, body: str, batch: Sequence[RpcRequest]) -> Any:
        methods = ", ".join(r.method for r in batch)
        with self._stats_lock:
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
            hint = ""
            if reply.status_code == 429:
                hint = " (rate limited: slow down or use a dedicated RPC provider)"
            raise SolanaRPCError(
                f"the Solana RPC node at {self.url} answered HTTP {reply.status_code} to "
                f"{methods}{hint}. Nothing was paid",
                method=methods,
                reason="rpc_http_error",
                details={"status": reply.status_code},
            )
        try:
            return reply.json()
        except (ValueError, RecursionError):
            raise SolanaRPCError(
                f"the Solana RPC node at {self.url} answered {methods} with a body that is not "
                "JSON; check that rpc_url points at a Solana JSON-RPC endpoint. Nothing was paid",
                method=methods,
                reason="rpc_bad_reply",
            ) from None

    def run(self, flow: Flow[T]) -> T:
        """Run a flow that asks only for JSON-RPC calls (:class:`RpcCall`); its result.

        An RPC error is thrown into the flow, which may handle it; any other effect is a
        programming error (``TypeError``).
        """
        try:
            effect: Effect[Any] = next(flow)
            while True:
                if not isinstance(effect, RpcCall):
                    raise TypeError(f"RpcClient.run performs only RpcCall effects, not {effect!r}")
                try:
                    results = self.call(effect.requests)
                except SolanaRPCError as exc:
                    effect = flow.throw(exc)
                else:
                    effect = flow.send(results)
        except StopIteration as stop:
            value: T = stop.value
            return value

    # -- conveniences -------------------------------------------------------------------

    def latest_blockhash(self) -> Hash:
        resp: GetLatestBlockhashResp = self.call([latest_blockhash_request()])[0]
        return resp.value.blockhash
