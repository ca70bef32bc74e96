"""What the review page shows of each task: plain values taken from the task board (no Flask).

Every string here comes from whoever created the task and is hostile input: the templates
render it autoescaped, and the page's JavaScript never builds HTML from it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from .._http import jsonable
from ..tasks import MAX_PHASES, Task, TaskBoard

__all__ = ["MAX_PENDING_SHOWN", "RECENT_DECIDED", "Board", "TaskCard", "board"]

MAX_PENDING_SHOWN: Final = 100
RECENT_DECIDED: Final = 10


@dataclass(frozen=True)
class TaskCard:
    """One task as a reviewer sees it."""

    id: str
    status: str
    question: str
    answer: str | None
    """The AI's answer as submitted, as text (None: the agent gave none)."""
    certainty: float
    """The AI's confidence the gateway scaled the consensus rule by (0 to 1)."""
    reward: str
    agent: str | None
    required_voters: int
    threshold: float
    phase: int
    max_phases: int
    yes: int
    no: int
    decision: str | None
    """``yes``, ``no`` or None (no consensus, expired, or still pending)."""
    message: str | None
    comments: tuple[str, ...]

    @property
    def votes(self) -> int:
        return self.yes + self.no


@dataclass(frozen=True)
class Board:
    """The review page's content: pending tasks (oldest first) and the latest decided ones."""

    pending: tuple[TaskCard, ...]
    pending_total: int
    decided: tuple[TaskCard, ...]
    policy: str


def board(tasks: TaskBoard) -> Board:
    """The review page's content now (reading the tasks applies simulated reviews and expiry)."""
    everything = tasks.all()
    pending = [t for t in everything if t.status == "pending"]
    decided = sorted(
        (t for t in everything if t.status != "pending"),
        key=lambda t: t.updated or t.created,
        reverse=True,
    )
    return Board(
        pending=tuple(card(t) for t in pending[:MAX_PENDING_SHOWN]),
        pending_total=len(pending),
        decided=tuple(card(t) for t in decided[:RECENT_DECIDED]),
        policy=tasks.policy.kind,
    )


def card(task: Task) -> TaskCard:
    result = task.result or {}
    decision = result.get("decision")
    return TaskCard(
        id=task.id,
        status=task.status,
        question=task.text,
        answer=_text(task.answer),
        certainty=task.ai_certainty,
        reward=_reward(task.payment),
        agent=_text(task.request.get("agentName")),
        required_voters=task.required_voters,
        threshold=task.threshold,
        phase=task.phase,
        max_phases=MAX_PHASES,
        yes=task.yes,
        no=task.no,
        decision=decision if decision in ("yes", "no") else None,
        message=_text(result.get("message")),
        comments=_comments(result.get("comments") or task.comments),
    )


def _text(value: Any) -> str | None:
    """A submitted value as text: strings as they are, anything else as JSON."""
    if value is None or isinstance(value, str):
        return value
    try:
        return json.dumps(jsonable(value), ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _reward(payment: Any) -> str:
    if not isinstance(payment, dict):
        return "unpaid"
    return f"{payment.get('amount', '?')} {payment.get('currency', '')}".strip()


def _comments(comments: Sequence[Any]) -> tuple[str, ...]:
    return tuple(c for c in comments if isinstance(c, str))
