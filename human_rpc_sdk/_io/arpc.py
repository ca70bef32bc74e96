"""Solana JSON-RPC over ``httpx.AsyncClient`` (the asynchronous driver's transport).

The same encoding, decoding and errors as the synchronous :mod:`.rpc` (:mod:`.._jsonrpc`), and
the same retry policy (:data:`~human_rpc_sdk._retry.RPC_RETRY_POLICY`), applied here by
tenacity instead of urllib3: connection errors, read timeouts, HTTP 429 and 5xx are retried
with the policy's backoff, a ``Retry-After`` honoured up to its cap, waiting with the injected
async sleep. When the retries are spent the failure is reported as a ``SolanaRPCError``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import httpx
from tenacity import AsyncRetrying, RetryCallState, stop_never

from .._jsonrpc import (
    RpcRequest,
    decode_replies,
    encode_batch,
    methods_of,
    rpc_document,
    unreachable,
)
from .._retry import RPC_RETRY_POLICY, FailureKind, RetryPolicy
from .clock import async_sleep
from .rpc import RpcStats

__all__ = ["AsyncRpcClient"]

logger = logging.getLogger(__name__)

_USER_AGENT: Final = "human-rpc-sdk"


def failure_kind(exc: BaseException) -> FailureKind | None:
    """How the policy counts a failed try: no connection, or no (whole) answer."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return "connect"
    if isinstance(exc, httpx.TransportError):
        return "read"
    return None


class AsyncRpcClient:
    """A small asynchronous JSON-RPC client.

    :param url: the RPC endpoint.
    :param timeout: seconds for each HTTP round trip.
    :param client: an ``httpx.AsyncClient`` to reuse; one is created when omitted (and closed
        by :meth:`aclose`).
    :param sleep: how to wait between retries (``asyncio.sleep`` when None).
    :param policy: the retry policy.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        policy: RetryPolicy = RPC_RETRY_POLICY,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self._owned = client is None
        self.client = client or httpx.AsyncClient(headers={"User-Agent": _USER_AGENT})
        self.sleep = sleep or async_sleep
        self.policy = policy
        self.stats = RpcStats()

    async def call(self, batch: Sequence[RpcRequest]) -> list[Any]:
        """Run ``batch`` (one HTTP round trip, retried per the policy) and return the parsed
        results, in order.

        :raises SolanaRPCError: when the node cannot be reached, answers with an HTTP error,
            an unparseable body or a JSON-RPC ``error`` member.
        """
        if not batch:
            return []
        results = decode_replies(batch, await self._post(encode_batch(batch), batch), self.url)
        if results is None:
            logger.debug("RPC %s refused a batch request; sending calls one by one", self.url)
            return [(await self.call([r]))[0] for r in batch]
        return results

    async def _post(self, body: str, batch: Sequence[RpcRequest]) -> Any:
        methods = methods_of(batch)
        self.stats.round_trips += 1
        self.stats.calls += len(batch)
        try:
            reply = await self._send(body)
        except httpx.HTTPError as exc:
            raise unreachable(self.url, methods, type(exc).__name__) from exc
        return rpc_document(self.url, methods, reply.status_code, reply.content)

    async def _send(self, body: str) -> httpx.Response:
        """POST ``body``, retried as the policy says; the last answer or failure stands."""
        failures: list[FailureKind] = []
        policy = self.policy

        def again(state: RetryCallState) -> bool:
            outcome = state.outcome
            if outcome is None:
                return False
            if outcome.failed:
                kind = failure_kind(outcome.exception())  # type: ignore[arg-type]
            else:
                status = outcome.result().status_code
                kind = "status" if status in policy.statuses else None
            if kind is None:
                return False
            failures.append(kind)
            return policy.allows(failures)

        def wait(state: RetryCallState) -> float:
            outcome = state.outcome
            header = None
            if outcome is not None and not outcome.failed:
                header = outcome.result().headers.get("Retry-After")
            return policy.delay(len(failures), header)

        retrying = AsyncRetrying(
            sleep=self.sleep, stop=stop_never, wait=wait, retry=again, reraise=True
        )
        reply: httpx.Response = await retrying(self._post_once, body)
        return reply

    async def _post_once(self, body: str) -> httpx.Response:
        return await self.client.post(
            self.url,
            content=body,
            headers={"Content-Type": "application/json", "User-Agent": _USER_AGENT},
            timeout=self.timeout,
        )

    async def aclose(self) -> None:
        """Close the HTTP client, if this client made it."""
        if self._owned:
            await self.client.aclose()
