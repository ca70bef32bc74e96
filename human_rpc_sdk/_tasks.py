"""HumanRPC tasks without I/O: the request body, reading task answers, and verdicts.

The wire format is the deployed HumanRPC service's (``PROTOCOL.md`` section A): a task is
created with ``text`` and a ``context`` whose ``data`` carries the AI's answer and confidence;
``GET /api/v1/tasks/<id>`` answers ``status`` and, when completed, ``result.decision``
(``"yes"``, ``"no"`` or null for no consensus). Here ``yes``/``no`` become the design
document's ``approve``/``reject``, and every final state is one of four outcomes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Literal, TypeAlias, TypedDict, TypeGuard

from ._checks import finite_number, show
from ._money import MoneyError, format_amount, parse_decimal
from .exceptions import HumanVerificationError, SDKConfigurationError

__all__ = [
    "APPROVED",
    "EXPIRED",
    "NO_CONSENSUS",
    "REJECTED",
    "Decision",
    "Outcome",
    "TaskSnapshot",
    "Verdict",
    "parse_task",
    "poll_delays",
    "task_body",
    "verdict_of",
]

Outcome: TypeAlias = Literal["approved", "rejected", "no_consensus", "expired"]
"""How a task ended: every final state of a task is one of these."""
Decision: TypeAlias = Literal["approve", "reject"]
"""What the reviewers decided, when they reached a decision."""

APPROVED: Final = "approved"
REJECTED: Final = "rejected"
NO_CONSENSUS: Final = "no_consensus"
EXPIRED: Final = "expired"
_DECISIONS: Final[dict[str, Decision]] = {"yes": "approve", "no": "reject"}
MAX_TEXT: Final = 20_000


class Verdict(TypedDict):
    """What the humans decided about one task."""

    task_id: str
    status: str
    outcome: Outcome
    """``approved``, ``rejected``, ``no_consensus`` or ``expired``."""
    decision: Decision | None
    """``approve``, ``reject``, or None when the humans reached no decision."""
    confidence: float | None
    sentiment: str | None
    comment: str | None
    comments: list[str]
    consensus: dict[str, Any]
    payment: dict[str, Any] | None


@dataclass(frozen=True)
class TaskSnapshot:
    """One reading of a task."""

    task_id: str
    status: str
    result: Mapping[str, Any] | None
    consensus: Mapping[str, Any]
    payment: Mapping[str, Any] | None

    @property
    def final(self) -> bool:
        return self.status in ("completed", "expired")


def task_body(
    text: str,
    *,
    answer: Any = None,
    confidence: float | None = None,
    context: Mapping[str, Any] | None = None,
    reward: Any = None,
    currency: str = "USDC",
    agent_id: str | None = None,
    task_type: str = "ai_verification",
    category: str | None = None,
    reasoning: str | None = None,
) -> dict[str, Any]:
    """The ``POST /api/v1/tasks`` body, validated. Raises ``SDKConfigurationError``."""
    if not isinstance(text, str) or not text.strip():
        raise SDKConfigurationError(
            "text must be a non-empty question for the reviewers", parameter="text"
        )
    if len(text) > MAX_TEXT:
        raise SDKConfigurationError(f"text is longer than {MAX_TEXT} characters", parameter="text")
    if confidence is not None and not is_confidence(confidence):
        raise SDKConfigurationError(
            f"confidence must be a number between 0 and 1 (got {show(confidence)})",
            parameter="confidence",
        )
    if context is not None and not isinstance(context, Mapping):
        raise SDKConfigurationError(
            "context must be a mapping (a JSON object)", parameter="context"
        )
    conclusion = None if answer is None else _conclusion(answer)
    data: dict[str, Any] = {"userQuery": text, "agentConclusion": conclusion}
    if confidence is not None:
        data["confidence"] = data["aiConfidence"] = float(confidence)
    if reasoning is not None:
        data["reasoning"] = reasoning
    if context is not None:
        data["context"] = dict(context)
    body: dict[str, Any] = {
        "text": text,
        "task_type": task_type,
        "agentName": agent_id or "human-rpc-sdk",
        "context": {"type": task_type, "summary": (conclusion or text)[:200], "data": data},
    }
    if category is not None:
        body["category"] = category
    if reward is not None:
        amount = reward_amount(reward)
        body["rewardAmount"] = format_amount(amount)
        body["rewardCurrency"] = currency.upper()
        body["reward"] = f"{format_amount(amount)} {currency.upper()}"
    return body


def _conclusion(answer: Any) -> str:
    if isinstance(answer, str):
        return answer
    try:
        return repr(answer)
    except ValueError:  # an int too long to print
        raise SDKConfigurationError(
            f"answer cannot be shown to reviewers: it is a {type(answer).__name__} too long to "
            "print; pass it as text",
            parameter="answer",
        ) from None


def reward_amount(reward: Any) -> Decimal:
    """A reward in display units (``"0.05"``), strictly parsed. Raises ``SDKConfigurationError``."""
    try:
        return parse_decimal(reward)
    except MoneyError as exc:
        raise SDKConfigurationError(f"reward {exc}", parameter="reward") from None


def is_confidence(value: object) -> TypeGuard[float]:
    """A real number in [0, 1] (not a bool, not NaN)."""
    number = finite_number(value)
    return number is not None and 0 <= number <= 1


def parse_task(document: Any, task_id: str) -> TaskSnapshot:
    """Read a ``GET /api/v1/tasks/<id>`` answer. Raises ``HumanVerificationError`` if malformed."""
    if not isinstance(document, Mapping):
        raise _malformed(task_id, "the answer is not a JSON object")
    status = document.get("status")
    if not isinstance(status, str) or not status:
        raise _malformed(task_id, "the answer has no status")
    result = document.get("result")
    if result is not None and not isinstance(result, Mapping):
        raise _malformed(task_id, "result is not an object")
    if status == "completed" and (
        result is None or result.get("decision") not in ("yes", "no", None)
    ):
        raise _malformed(task_id, "a completed task must have result.decision yes, no or null")
    consensus = document.get("consensus")
    payment = document.get("payment")
    return TaskSnapshot(
        task_id=task_id,
        status=status,
        result=result,
        consensus=consensus if isinstance(consensus, Mapping) else {},
        payment=payment if isinstance(payment, Mapping) else None,
    )


def verdict_of(task: TaskSnapshot) -> Verdict:
    """The verdict of a final task (completed or expired)."""
    result = task.result or {}
    raw = result.get("decision")
    decision = _DECISIONS.get(raw) if isinstance(raw, str) else None
    outcome: Outcome
    if task.status == "expired":
        outcome = EXPIRED
    elif decision == "approve":
        outcome = APPROVED
    elif decision == "reject":
        outcome = REJECTED
    else:
        outcome = NO_CONSENSUS
    comments = (
        [c for c in result.get("comments", []) if isinstance(c, str)]
        if isinstance(result.get("comments"), list)
        else []
    )
    message = result.get("message") if isinstance(result.get("message"), str) else None
    confidence = result.get("confidence")
    sentiment = result.get("sentiment")
    return Verdict(
        task_id=task.task_id,
        status=task.status,
        outcome=outcome,
        decision=decision,
        confidence=float(confidence) if is_confidence(confidence) else None,
        sentiment=sentiment if isinstance(sentiment, str) else None,
        comment=comments[0] if comments else message,
        comments=comments,
        consensus=dict(task.consensus),
        payment=dict(task.payment) if task.payment else None,
    )


def poll_delays(first: float = 0.25, factor: float = 1.5, cap: float = 5.0) -> Iterator[float]:
    """Growing waits between polls: 0.25, 0.375, 0.56, ... up to ``cap`` seconds."""
    delay = first
    while True:
        yield delay
        delay = min(cap, delay * factor)


def _malformed(task_id: str, problem: str) -> HumanVerificationError:
    return HumanVerificationError(
        f"the HumanRPC service answered malformed for task {task_id}: {problem}. Check that "
        "human_rpc_url points at a HumanRPC tasks endpoint",
        task_id=task_id,
        reason="malformed_answer",
    )
