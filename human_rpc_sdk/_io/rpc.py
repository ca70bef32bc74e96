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
from urllib3.util import Retry

from .._driving import drive
from .._jsonrpc import (
    RpcRequest,
    decode_replies,
    encode_batch,
    latest_blockhash_request,
    methods_of,
    rpc_document,
    unreachable,
)
from .._protocol import Effect, Flow, RpcCall
from .._retry import RPC_RETRY_POLICY, RetryPolicy
from .environment import EnvironmentSettings

__all__ = ["RPC_RETRY", "RpcClient", "RpcStats"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

_USER_AGENT: Final = "human-rpc-sdk"
_JSON: Final = {"Content-Type": "application/json"}
MAX_RETRY_AFTER: Final = RPC_RETRY_POLICY.max_retry_after


class _Retry(Retry):
    """urllib3's Retry applying a :class:`~human_rpc_sdk._retry.RetryPolicy`: ``Retry-After``
    honoured up to the policy's cap (a malformed one is ignored), waiting with an injectable
    ``pause``."""

    def __init__(
        self,
        *args: Any,
        pause: Callable[[float], None] | None = None,
        policy: RetryPolicy = RPC_RETRY_POLICY,
        **kw: Any,
    ):
        super().__init__(*args, **kw)
        self.pause = pause
        self.policy = policy

    def new(self, **kw: Any) -> _Retry:
        fresh = super().new(**kw)
        fresh.pause = self.pause
        fresh.policy = self.policy
        return fresh

    def get_retry_after(self, response: BaseHTTPResponse) -> float | None:
        return self.policy.retry_after(response.headers.get("Retry-After"))

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


def retry_of(policy: RetryPolicy) -> _Retry:
    """urllib3's ``Retry`` doing what ``policy`` says."""
    return _Retry(
        total=policy.total,
        connect=policy.connect,
        read=policy.read,
        status=policy.status,
        other=0,
        backoff_factor=policy.backoff_factor,
        backoff_max=policy.backoff_max,
        status_forcelist=tuple(sorted(policy.statuses)),
        allowed_methods=frozenset({"POST"}),
        raise_on_status=False,
        respect_retry_after_header=True,
        policy=policy,
    )


RPC_RETRY: Final = retry_of(RPC_RETRY_POLICY)
"""How the RPC transport retries: :data:`~human_rpc_sdk._retry.RPC_RETRY_POLICY`."""


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
        self._environment = EnvironmentSettings(session)
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
        methods = methods_of(batch)
        with self._stats_lock:
            self.stats.round_trips += 1
            self.stats.calls += len(batch)
        # Session.post, with the environment's settings remembered rather than read again.
        request = requests.Request("POST", self.url, data=body, headers=_JSON)
        try:
            prepared = self.session.prepare_request(request)
            settings = self._environment(prepared.url)
            reply = self.session.send(prepared, timeout=self.timeout, **settings)
        except requests.RequestException as exc:
            raise unreachable(self.url, methods, type(exc).__name__) from exc
        return rpc_document(self.url, methods, reply.status_code, reply.content)

    def run(self, flow: Flow[T]) -> T:
        """Run a flow that asks only for JSON-RPC calls (:class:`RpcCall`); its result.

        An RPC error is thrown into the flow, which may handle it; any other effect is a
        programming error (``TypeError``).
        """
        return drive(flow, self._perform)

    def _perform(self, effect: Effect[Any]) -> list[Any]:
        if not isinstance(effect, RpcCall):
            raise TypeError(f"RpcClient.run performs only RpcCall effects, not {effect!r}")
        return self.call(effect.requests)

    # -- conveniences -------------------------------------------------------------------

    def latest_blockhash(self) -> Hash:
        resp: GetLatestBlockhashResp = self.call([latest_blockhash_request()])[0]
        return resp.value.blockhash
