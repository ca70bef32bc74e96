"""The HumanRPC task API driver: create a task (paying its 402), then poll for the verdict.

Deciding lives in :mod:`._tasks` (bodies, parsing, verdicts, the poll schedule); this module
sends the requests and waits, with the clock and sleep it is given.
"""

from __future__ import annotations

import email.utils
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import requests

from .._receipts import PaymentReceipt
from .._tasks import Verdict, parse_task, poll_delays, verdict_of
from ..exceptions import HumanVerificationError, SDKConfigurationError

__all__ = ["HumanClient"]

logger = logging.getLogger(__name__)

_TRANSIENT = (429, 500, 502, 503, 504)


class HumanClient:
    """Talks to a HumanRPC tasks endpoint (``http://host/api/v1/tasks``) for an agent.

    :param post: the agent's paying POST (answers a 402 by paying it).
    :param get: a plain GET (polling never pays).
    :param last_payment: the payment the calling thread's last request made, if any.
    """

    def __init__(
        self,
        url: str | None,
        *,
        post: Callable[..., requests.Response],
        get: Callable[..., requests.Response],
        last_payment: Callable[[], PaymentReceipt | None],
        timeout: float,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        self.url = url
        self._post = post
        self._get = get
        self._last_payment = last_payment
        self._timeout = timeout
        self._clock = clock
        self._sleep = sleep

    def endpoint(self) -> str:
        if not self.url:
            raise SDKConfigurationError(
                "no HumanRPC endpoint: pass human_rpc_url='http://host/api/v1/tasks' to AutoAgent "
                "or set HUMAN_RPC_URL",
                parameter="human_rpc_url",
            )
        return self.url.rstrip("/")

    # -- creating ----------------------------------------------------------------------------

    def create(self, body: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
        """Create a task; returns its id and what was paid for it (None if nothing was)."""
        url = self.endpoint()
        try:
            response = self._post(url, json=body, timeout=self._timeout)
        except requests.RequestException as exc:
            raise HumanVerificationError(
                f"could not reach the HumanRPC service at {url} ({type(exc).__name__}); check "
                "human_rpc_url and that the service is up",
                reason="unavailable",
            ) from exc
        receipt = self._last_payment()
        payment = _payment_json(receipt) if receipt is not None else None
        if response.status_code == 429 and payment is not None:
            # Rate limited only after taking the payment: waiting and asking again pays again.
            raise HumanVerificationError(
                f"the HumanRPC service at {url} took the payment {payment['signature']} and "
                "then refused to create the task (HTTP 429, rate limited); asking again pays "
                "again: take the payment up with the service",
                reason="unavailable",
                details={"status": 429, "payment": payment},
            )
        if response.status_code == 429:
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            raise HumanVerificationError(
                f"the HumanRPC service at {url} is rate limiting task creation (HTTP 429); "
                f"retry after {wait:g} s. Nothing was paid",
                reason="rate_limited",
                details={"retry_after": wait},
            )
        if response.status_code >= 500:
            paid = (
                f" The payment {payment['signature']} was sent."
                if payment
                else " Nothing was paid."
            )
            raise HumanVerificationError(
                f"the HumanRPC service at {url} failed to create the task (HTTP "
                f"{response.status_code}).{paid}",
                reason="unavailable",
                details={"status": response.status_code, "payment": payment},
            )
        if response.status_code not in (200, 201, 202):
            raise HumanVerificationError(
                f"the HumanRPC service at {url} refused the task (HTTP {response.status_code}: "
                f"{_error_text(response)}); check the request",
                reason="task_refused",
                details={"status": response.status_code, "payment": payment},
            )
        task_id = _json(response).get("task_id") if isinstance(_json(response), dict) else None
        if not isinstance(task_id, str) or not task_id:
            raise HumanVerificationError(
                f"the HumanRPC service at {url} accepted the task but sent no task_id; check that "
                "human_rpc_url points at a HumanRPC tasks endpoint",
                reason="malformed_answer",
                details={"payment": payment},
            )
        logger.debug("created HumanRPC task %s", task_id)
        return task_id, payment

    # -- waiting -----------------------------------------------------------------------------

    def wait(self, task_id: str, timeout: float) -> Verdict:
        """Poll until the task is completed or expired; growing intervals, bounded by timeout.

        Transient failures (connection errors, 5xx, 429) are retried until the timeout.

        :raises HumanVerificationError: 404 (``task_not_found``), a malformed answer, any other
            refusal, or the timeout (``timeout``, with ``task_id`` to resume later).
        """
        url = f"{self.endpoint()}/{task_id}"
        deadline = self._clock() + timeout
        for delay in poll_delays():
            wait = self._poll(url, task_id, delay)
            if isinstance(wait, dict):
                return wait
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise HumanVerificationError(
                    f"no verdict for task {task_id} within {timeout:g} s; the task is still open. "
                    f"Resume waiting with agent.wait_for_verdict({task_id!r})",
                    task_id=task_id,
                    reason="timeout",
                )
            self._sleep(min(wait, remaining))
        raise AssertionError("unreachable")  # pragma: no cover - poll_delays never ends

    def _poll(self, url: str, task_id: str, delay: float) -> Verdict | float:
        """The verdict, or how long to wait before the next poll."""
        try:
            response = self._get(url, timeout=self._timeout)
        except requests.RequestException as exc:
            logger.debug("task %s: poll failed (%s); retrying", task_id, type(exc).__name__)
            return delay
        if response.status_code == 404:
            raise HumanVerificationError(
                f"the HumanRPC service does not know task {task_id} (HTTP 404); check the id and "
                "human_rpc_url",
                task_id=task_id,
                reason="task_not_found",
            )
        if response.status_code in _TRANSIENT:
            logger.debug("task %s: HTTP %s; retrying", task_id, response.status_code)
            if response.status_code == 429:
                return max(delay, retry_after_seconds(response.headers.get("Retry-After")))
            return delay
        if response.status_code != 200:
            raise HumanVerificationError(
                f"the HumanRPC service answered HTTP {response.status_code} for task {task_id}: "
                f"{_error_text(response)}",
                task_id=task_id,
                reason="bad_answer",
            )
        snapshot = parse_task(_json(response), task_id)
        if not snapshot.final:
            votes = snapshot.consensus.get("currentVoteCount")
            logger.debug("task %s: %s (%s votes)", task_id, snapshot.status, votes)
            return delay
        verdict = verdict_of(snapshot)
        logger.debug("task %s: %s", task_id, verdict["outcome"])
        return verdict


def retry_after_seconds(header: str | None, default: float = 1.0) -> float:
    """A ``Retry-After`` header in seconds (delta-seconds or an HTTP date)."""
    if not header:
        return default
    try:
        seconds = float(header)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return default
        seconds = (moment - datetime.now(UTC)).total_seconds()
    return seconds if math.isfinite(seconds) and seconds >= 0 else default


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except (ValueError, RecursionError):
        return None


def _error_text(response: requests.Response) -> str:
    document = _json(response)
    if isinstance(document, dict):
        error = document.get("error")
        if isinstance(error, dict):
            error = error.get("message")
        if isinstance(error, str):
            return error[:200]
    return response.reason or "no details"


def _payment_json(receipt: PaymentReceipt) -> dict[str, Any]:
    return {
        "signature": receipt.signature,
        "amount": str(receipt.amount),
        "currency": receipt.currency,
        "accepted": receipt.accepted,
    }
