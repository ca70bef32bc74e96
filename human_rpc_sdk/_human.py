"""Human verification without I/O: creating a task, polling it, journaling it, as flows.

A runner (:mod:`._io.human`, sync or async) performs the effects these flows yield:

* :class:`HumanHttp` - send this request (the paying POST, or a plain GET); resume with a
  :class:`HumanAnswer`: the reply as an :class:`~._effects.HttpReply` (or a
  :class:`~._effects.NoAnswer`) and the payment the POST made.
* :class:`~._effects.Pause` - wait between polls.
* :class:`~._effects.Record` - write the journal row of the task's payment; a ``PaymentError``
  thrown back in means the journal could not be written.
* :class:`OpenTasks` - the journal's rows of tasks paid for and not decided.

Every answer is classified here (429 before or after paying, 5xx, 404, other refusals,
malformed JSON, no ``task_id``, transient poll failures), so both runners decide alike.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from typing import Any, Final, Literal

from ._effects import Effect, Flow, HttpReply, NoAnswer, Pause, Record, perform
from ._receipts import PaymentReceipt
from ._records import JournalEntry
from ._tasks import Verdict, parse_task, poll_delays, verdict_of
from .exceptions import HumanVerificationError, PaymentError, SDKConfigurationError

__all__ = [
    "HumanAnswer",
    "HumanHttp",
    "OpenTasks",
    "TaskApi",
    "ask_once",
    "created_task",
    "endpoint_of",
    "journal_task",
    "journal_verdict",
    "poll_answer",
    "retry_after_seconds",
    "wait_for_verdict",
    "wait_verdict",
]

logger = logging.getLogger(__name__)

_TRANSIENT: Final = (429, 500, 502, 503, 504)


@dataclass(frozen=True)
class HumanAnswer:
    """What a :class:`HumanHttp` got: the reply (or why none came), and what it paid."""

    reply: HttpReply | NoAnswer
    payment: PaymentReceipt | None = None
    """The payment the paying POST made (None: nothing was paid, or a GET)."""


@dataclass(frozen=True)
class HumanHttp(Effect[HumanAnswer]):
    """Effect: send ``method`` ``url`` (with ``json``); ``paying``: through the agent's paying
    POST (a 402 is paid), else a plain request that never pays."""

    method: Literal["GET", "POST"]
    url: str
    json: Mapping[str, Any] | None = field(default=None, repr=False)
    timeout: float = 30.0
    paying: bool = False


@dataclass(frozen=True)
class OpenTasks(Effect[list[JournalEntry]]):
    """Effect: the journal's rows of tasks paid for whose verdict is not recorded."""


@dataclass(frozen=True)
class TaskApi:
    """Where the task API is and the time sources the flows read."""

    url: str
    """The tasks endpoint, without a trailing slash (see :func:`endpoint_of`)."""
    timeout: float
    """Seconds for each HTTP request."""
    clock: Callable[[], float]
    """Monotonic seconds, for the polling deadline."""
    now: Callable[[], datetime]
    """Wall-clock time (UTC), for a ``Retry-After`` given as an HTTP date."""


def endpoint_of(url: str | None) -> str:
    """The tasks endpoint, or ``SDKConfigurationError`` saying how to give one."""
    if not url:
        raise SDKConfigurationError(
            "no HumanRPC endpoint: pass human_rpc_url='http://host/api/v1/tasks' to AutoAgent "
            "or set HUMAN_RPC_URL",
            parameter="human_rpc_url",
        )
    return url.rstrip("/")


# -- flows -----------------------------------------------------------------------------------


def ask_once(api: TaskApi, body: Mapping[str, Any], deadline: float) -> Flow[Verdict]:
    """Create a paid task, journal its id on its payment, wait for the verdict by ``deadline``
    (a ``clock()`` time) and journal it."""
    answer = yield from perform(HumanHttp("POST", api.url, body, api.timeout, paying=True))
    task_id, payment = created_task(answer, api.url, api.now)
    receipt = answer.payment
    if receipt is not None and not (yield from journal_task(receipt, task_id)):
        receipt = None  # its row is not this task's: the verdict is looked up by task id
    verdict = yield from wait_verdict(api, task_id, max(0.0, deadline - api.clock()))
    yield from journal_verdict(task_id, verdict["outcome"], receipt)
    verdict["payment"] = payment or verdict["payment"]
    return verdict


def wait_for_verdict(api: TaskApi, task_id: str, timeout: float) -> Flow[Verdict]:
    """Wait for an existing task's verdict (nothing is paid) and journal it."""
    verdict = yield from wait_verdict(api, task_id, timeout)
    yield from journal_verdict(task_id, verdict["outcome"], None)
    return verdict


def wait_verdict(api: TaskApi, task_id: str, timeout: float) -> Flow[Verdict]:
    """Poll until the task is completed or expired; growing intervals, bounded by timeout.

    Transient failures (no answer, 5xx, 429) are retried until the timeout.

    :raises HumanVerificationError: 404 (``task_not_found``), a malformed answer, any other
        refusal, or the timeout (``timeout``, with ``task_id`` to resume later).
    """
    url = f"{api.url}/{task_id}"
    deadline = api.clock() + timeout
    for delay in poll_delays():
        answer = yield from perform(HumanHttp("GET", url, None, api.timeout))
        wait = poll_answer(answer.reply, task_id, delay, api.now)
        if isinstance(wait, dict):
            return wait
        remaining = deadline - api.clock()
        if remaining <= 0:
            raise HumanVerificationError(
                f"no verdict for task {task_id} within {timeout:g} s; the task is still open. "
                f"Resume waiting with agent.wait_for_verdict({task_id!r})",
                task_id=task_id,
                reason="timeout",
            )
        yield from perform(Pause(min(wait, remaining)))
    raise AssertionError("unreachable")  # pragma: no cover - poll_delays never ends


def journal_task(receipt: PaymentReceipt, task_id: str) -> Flow[bool]:
    """Write the task's id on the row of the payment that created it (before waiting);
    whether the row now names this task.

    A row naming another task keeps it: a payment sent again (a service reissuing an invoice)
    that got a second task must not make the first, still paid and undecided, leave the
    agent's ``pending_tasks()``."""
    if receipt.id is None or receipt.state is None:
        return False
    if receipt.task_id not in (None, task_id):
        logger.warning(
            "task %s was created by a payment sent again (journal id %s), which paid for "
            "task %s already; the journal keeps task %s on it. If this process stops before "
            "the verdict, resume with agent.wait_for_verdict(%r)",
            task_id,
            receipt.id,
            receipt.task_id,
            receipt.task_id,
            task_id,
        )
        return False
    mark = Record(receipt.id, receipt.state, {"task_id": task_id}, expect=(receipt.state,))
    try:
        entry = yield from perform(mark)
    except PaymentError as exc:
        entry = None
        logger.warning("task %s: could not journal it with its payment (%s)", task_id, exc)
    if entry is None:
        logger.warning(
            "task %s is paid (journal id %s) but not journaled with its payment; if this "
            "process stops before the verdict, resume with agent.wait_for_verdict(%r)",
            task_id,
            receipt.id,
            task_id,
        )
        return False
    return True


def journal_verdict(task_id: str, outcome: str, receipt: PaymentReceipt | None) -> Flow[None]:
    """Record the verdict on the task's payment row: it leaves the pending tasks.

    ``receipt``: the payment this process made for the task (written directly); without it,
    or when its row moved on meanwhile, the rows pending with ``task_id`` are looked up.
    """
    if receipt is not None and (yield from _mark_outcome(receipt, outcome, task_id)):
        return
    for entry in (yield from perform(OpenTasks())):
        if entry.receipt.task_id == task_id:
            yield from _mark_outcome(entry.receipt, outcome, task_id)


def _mark_outcome(row: PaymentReceipt, outcome: str, task_id: str) -> Flow[bool]:
    if row.id is None or row.state is None:
        return False
    mark = Record(row.id, row.state, {"task_outcome": outcome}, expect=(row.state,))
    try:
        entry = yield from perform(mark)
    except PaymentError as exc:
        logger.warning("task %s: could not journal its verdict (%s)", task_id, exc)
        return True  # the journal cannot be written: looking further would not help
    return entry is not None and entry.receipt.task_id == task_id


# -- classifying answers ----------------------------------------------------------------------


def created_task(
    answer: HumanAnswer, url: str, now: Callable[[], datetime] | None = None
) -> tuple[str, dict[str, Any] | None]:
    """The task id a creating POST got, and what was paid for it (None if nothing was).

    :raises HumanVerificationError: no answer or a 5xx (``unavailable``), a 429 before paying
        (``rate_limited``, with ``retry_after``) or after (``unavailable``: asking again pays
        again), another refusal (``task_refused``), no ``task_id`` (``malformed_answer``).
    """
    reply = answer.reply
    if isinstance(reply, NoAnswer):
        raise HumanVerificationError(
            f"could not reach the HumanRPC service at {url} ({reply.problem}); check "
            "human_rpc_url and that the service is up",
            reason="unavailable",
        )
    payment = payment_json(answer.payment) if answer.payment is not None else None
    _refused(reply, url, payment, now)
    document = json_of(reply)
    task_id = document.get("task_id") if isinstance(document, dict) else None
    if not isinstance(task_id, str) or not task_id:
        raise HumanVerificationError(
            f"the HumanRPC service at {url} accepted the task but sent no task_id; check that "
            "human_rpc_url points at a HumanRPC tasks endpoint",
            reason="malformed_answer",
            details={"payment": payment},
        )
    logger.debug("created HumanRPC task %s", task_id)
    return task_id, payment


def _refused(
    reply: HttpReply,
    url: str,
    payment: dict[str, Any] | None,
    now: Callable[[], datetime] | None,
) -> None:
    status = reply.status
    if status == 429 and payment is not None:
        # Rate limited only after taking the payment: waiting and asking again pays again.
        raise HumanVerificationError(
            f"the HumanRPC service at {url} took the payment {payment['signature']} and "
            "then refused to create the task (HTTP 429, rate limited); asking again pays "
            "again: take the payment up with the service",
            reason="unavailable",
            details={"status": 429, "payment": payment},
        )
    if status == 429:
        wait = retry_after_seconds(reply.headers.get("Retry-After"), now)
        raise HumanVerificationError(
            f"the HumanRPC service at {url} is rate limiting task creation (HTTP 429); "
            f"retry after {wait:g} s. Nothing was paid",
            reason="rate_limited",
            details={"retry_after": wait},
        )
    if status >= 500:
        paid = f" The payment {payment['signature']} was sent." if payment else " Nothing was paid."
        raise HumanVerificationError(
            f"the HumanRPC service at {url} failed to create the task (HTTP {status}).{paid}",
            reason="unavailable",
            details={"status": status, "payment": payment},
        )
    if status not in (200, 201, 202):
        raise HumanVerificationError(
            f"the HumanRPC service at {url} refused the task (HTTP {status}: "
            f"{error_text(reply)}); check the request",
            reason="task_refused",
            details={"status": status, "payment": payment},
        )


def poll_answer(
    reply: HttpReply | NoAnswer,
    task_id: str,
    delay: float,
    now: Callable[[], datetime] | None = None,
) -> Verdict | float:
    """The verdict a poll got, or how long to wait before the next poll (``delay``, or a
    429's ``Retry-After`` when longer).

    :raises HumanVerificationError: 404 (``task_not_found``), another refusal
        (``bad_answer``), a malformed task (``malformed_answer``).
    """
    if isinstance(reply, NoAnswer):
        logger.debug("task %s: poll failed (%s); retrying", task_id, reply.problem)
        return delay
    if reply.status == 404:
        raise HumanVerificationError(
            f"the HumanRPC service does not know task {task_id} (HTTP 404); check the id and "
            "human_rpc_url",
            task_id=task_id,
            reason="task_not_found",
        )
    if reply.status in _TRANSIENT:
        logger.debug("task %s: HTTP %s; retrying", task_id, reply.status)
        if reply.status == 429:
            return max(delay, retry_after_seconds(reply.headers.get("Retry-After"), now))
        return delay
    if reply.status != 200:
        raise HumanVerificationError(
            f"the HumanRPC service answered HTTP {reply.status} for task {task_id}: "
            f"{error_text(reply)}",
            task_id=task_id,
            reason="bad_answer",
        )
    snapshot = parse_task(json_of(reply), task_id)
    if not snapshot.final:
        votes = snapshot.consensus.get("currentVoteCount")
        logger.debug("task %s: %s (%s votes)", task_id, snapshot.status, votes)
        return delay
    verdict = verdict_of(snapshot)
    logger.debug("task %s: %s", task_id, verdict["outcome"])
    return verdict


def retry_after_seconds(
    header: str | None, now: Callable[[], datetime] | None, default: float = 1.0
) -> float:
    """A ``Retry-After`` header in seconds (delta-seconds, or an HTTP date read against
    ``now()``; without ``now`` a date gives ``default``)."""
    if not header:
        return default
    try:
        seconds = float(header)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return default
        if now is None:
            return default
        seconds = (moment - now()).total_seconds()
    return seconds if math.isfinite(seconds) and seconds >= 0 else default


def json_of(reply: HttpReply) -> Any:
    """The reply's JSON document, or None when the body is not JSON."""
    try:
        return json.loads(reply.body)
    except (ValueError, RecursionError):
        return None


def error_text(reply: HttpReply) -> str:
    """The service's error message (at most 200 characters), else the status's phrase."""
    document = json_of(reply)
    if isinstance(document, dict):
        error = document.get("error")
        if isinstance(error, dict):
            error = error.get("message")
        if isinstance(error, str):
            return error[:200]
    try:
        return HTTPStatus(reply.status).phrase or "no details"
    except ValueError:
        return "no details"


def payment_json(receipt: PaymentReceipt) -> dict[str, Any]:
    """What a verdict's ``payment`` says of the payment that created the task."""
    return {
        "signature": receipt.signature,
        "amount": str(receipt.amount),
        "currency": receipt.currency,
        "accepted": receipt.accepted,
    }
