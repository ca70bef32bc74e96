"""Human-verification tasks, as the deployed HumanRPC service runs them (PROTOCOL.md section A).

A task asks humans whether an AI's answer is right. Reviewers vote ``yes`` or ``no``. Consensus
needs ``requiredVoters`` votes and a majority share of at least ``consensusThreshold``; both grow
as the AI's confidence falls (the service's "inverse confidence sliding scale"), unless a fixed
rule is configured. A phase that gathers enough votes without consensus starts over; after three
such phases the task completes with ``decision: null`` (no consensus).

Reviewers can be simulated so tests and demos run unattended: ``approve``, ``reject``, a
``script`` of verdicts (one per task, the last one repeating), each after ``review_delay``
seconds, or ``manual`` (people vote through the API). Everything time-dependent is evaluated
lazily against the injected clock, so a fake clock drives it without threads or waiting.
"""

from __future__ import annotations

import copy
import math
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

__all__ = [
    "MAX_PHASES",
    "ConsensusRule",
    "ReviewPolicy",
    "Task",
    "TaskBoard",
    "VoteRejected",
    "consensus_params",
]

MAX_PHASES: Final = 3
VERDICTS: Final = ("approve", "reject", "split")
_COMMENTS: Final = {
    "yes": "Checked: the answer is correct.",
    "no": "Checked: the answer is wrong.",
}


def consensus_params(certainty: float) -> tuple[int, float]:
    """Required voters and threshold for an AI certainty, exactly as the deployed service.

    U = clamp((1 - c) / 0.5, 0, 1); N = 3 + ceil(12 U), made odd, within 3..15;
    T = 0.51 + 0.39 U, within 0.51..0.90.
    """
    clamped = max(0.5, min(1.0, certainty))
    uncertainty = max(0.0, min(1.0, (1.0 - clamped) / 0.5))
    voters = 3 + math.ceil(uncertainty * 12)
    voters = voters + 1 if voters % 2 == 0 else voters
    threshold = 0.51 + uncertainty * 0.39
    return max(3, min(15, voters)), max(0.51, min(0.90, threshold))


@dataclass(frozen=True)
class ConsensusRule:
    """Fixed ``voters`` and/or ``threshold``; what is None follows the confidence scale."""

    voters: int | None = None
    threshold: float | None = None

    def params(self, certainty: float) -> tuple[int, float]:
        scaled_voters, scaled_threshold = consensus_params(certainty)
        return self.voters or scaled_voters, self.threshold or scaled_threshold


@dataclass(frozen=True)
class ReviewPolicy:
    """How simulated reviewers vote: ``approve``, ``reject``, ``script`` or ``manual``."""

    kind: str = "approve"
    script: tuple[str, ...] = ()
    delay: float = 0.0

    @classmethod
    def parse(cls, text: str, delay: float = 0.0) -> ReviewPolicy:
        """``approve``, ``reject``, ``manual`` or ``script:reject,approve,split``."""
        if delay < 0 or not math.isfinite(delay):
            raise ValueError("review delay must be a non-negative number of seconds")
        if text in ("approve", "reject", "manual"):
            return cls(text, (), delay)
        if text.startswith("script:"):
            steps = tuple(s.strip() for s in text[len("script:") :].split(",") if s.strip())
            if not steps or any(s not in VERDICTS for s in steps):
                raise ValueError(f"a script is a comma-separated list of {', '.join(VERDICTS)}")
            return cls("script", steps, delay)
        raise ValueError("review policy must be approve, reject, manual or script:<verdicts>")


@dataclass
class Vote:
    decision: str
    user_id: str | None
    comment: str | None
    at: datetime


@dataclass
class Task:
    """One human-verification task."""

    id: str
    text: str
    request: dict[str, Any]
    ai_certainty: float
    required_voters: int
    threshold: float
    created: datetime
    created_clock: float
    expires_clock: float
    verdict: str | None
    """What the simulated reviewers will say (None: manual)."""
    review_at: float
    payment: dict[str, Any] | None = None
    status: str = "pending"
    phase: int = 1
    votes: list[Vote] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    result: dict[str, Any] | None = None
    updated: datetime | None = None
    reviewed: bool = False

    @property
    def yes(self) -> int:
        return sum(v.decision == "yes" for v in self.votes)

    @property
    def no(self) -> int:
        return sum(v.decision == "no" for v in self.votes)

    @property
    def answer(self) -> Any:
        """The AI's answer as submitted (``context.data.agentConclusion``), for reviewers."""
        return self._data().get("agentConclusion")

    @property
    def submitted_confidence(self) -> Any:
        """The AI's confidence as submitted (``aiConfidence`` or ``confidence``), or None."""
        for source in (self._data(), self.request):
            for key in ("aiConfidence", "confidence"):
                if source.get(key) is not None:
                    return source[key]
        return None

    def _data(self) -> Mapping[str, Any]:
        context = self.request.get("context")
        data = context.get("data") if isinstance(context, Mapping) else None
        return data if isinstance(data, Mapping) else {}

    def consensus_json(self) -> dict[str, Any]:
        return {
            "aiCertainty": self.ai_certainty,
            "requiredVoters": self.required_voters,
            "consensusThreshold": self.threshold,
            "currentVoteCount": len(self.votes),
            "yesVotes": self.yes,
            "noVotes": self.no,
            "phase": self.phase,
        }

    def to_json(self) -> dict[str, Any]:
        """The task as ``GET /api/v1/tasks/<id>`` returns it (the deployed service's shape)."""
        return {
            "id": self.id,
            "status": self.status,
            "result": self.result,
            "text": self.text,
            "answer": self.answer,
            "aiConfidence": self.submitted_confidence,
            "context": self.request.get("context"),
            "agentName": self.request.get("agentName"),
            "createdAt": _iso(self.created),
            "updatedAt": _iso(self.updated or self.created),
            "consensus": self.consensus_json(),
            "payment": self.payment,
        }


class VoteRejected(Exception):
    """A vote the task does not accept; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str, body: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = dict(body or {})


class TaskBoard:
    """The tasks of one gateway, with simulated reviewers, expiry and a creation rate limit.

    :param rate_limit: at most ``n`` task creations per ``seconds`` per agent, or None.
    """

    def __init__(
        self,
        *,
        policy: ReviewPolicy,
        rule: ConsensusRule,
        task_ttl: float,
        rate_limit: tuple[int, float] | None,
        clock: Callable[[], float],
    ) -> None:
        self.policy = policy
        self.rule = rule
        self.task_ttl = task_ttl
        self.rate_limit = rate_limit
        self._clock = clock
        self._lock = threading.RLock()
        self._tasks: dict[str, Task] = {}
        self._created_at: dict[str, list[float]] = {}
        self._script_position = 0

    def export(self) -> tuple[list[Task], int]:
        """A copy of every task and how far the review script has gone (to keep them)."""
        with self._lock:
            return copy.deepcopy(list(self._tasks.values())), self._script_position

    def restore_tasks(self, tasks: Iterable[Task], script_position: int) -> None:
        """Know these tasks again (kept across a restart); the review script goes on."""
        with self._lock:
            self._tasks.update((task.id, task) for task in tasks)
            self._script_position = max(self._script_position, script_position)

    def set_policy(self, policy: ReviewPolicy) -> None:
        """Switch the simulated reviewers for tasks created from now on (a script restarts)."""
        with self._lock:
            self.policy = policy
            self._script_position = 0

    # -- creation ------------------------------------------------------------------------

    def retry_after(self, agent: str) -> float | None:
        """Seconds until ``agent`` may create another task, or None when it may now."""
        if self.rate_limit is None:
            return None
        count, window = self.rate_limit
        now = self._clock()
        with self._lock:
            recent = [t for t in self._created_at.get(agent, []) if now - t < window]
            self._created_at[agent] = recent
            if len(recent) < count:
                return None
            return max(0.001, recent[0] + window - now)

    def create(
        self,
        request: Mapping[str, Any],
        certainty: float,
        payment: dict[str, Any] | None,
        agent: str,
    ) -> Task:
        now = self._clock()
        voters, threshold = self.rule.params(certainty)
        with self._lock:
            task = Task(
                id="task_" + secrets.token_hex(8),
                text=str(request["text"]),
                request=dict(request),
                ai_certainty=certainty,
                required_voters=voters,
                threshold=threshold,
                created=datetime.now(UTC),
                created_clock=now,
                expires_clock=now + self.task_ttl,
                verdict=self._next_verdict(),
                review_at=now + self.policy.delay,
                payment=payment,
            )
            self._tasks[task.id] = task
            self._created_at.setdefault(agent, []).append(now)
            return task

    def _next_verdict(self) -> str | None:
        if self.policy.kind == "manual":
            return None
        if self.policy.kind != "script":
            return self.policy.kind
        steps = self.policy.script
        verdict = steps[min(self._script_position, len(steps) - 1)]
        self._script_position += 1
        return verdict

    # -- reading and voting --------------------------------------------------------------

    def get(self, task_id: str) -> Task | None:
        with self._lock:
            task = self._tasks.get(task_id)
            if task is not None:
                self._advance(task)
            return task

    def all(self, status: str | None = None) -> list[Task]:
        """Every task (``status``: only those in it), oldest first."""
        with self._lock:
            for task in self._tasks.values():
                self._advance(task)
            return [t for t in self._tasks.values() if status is None or t.status == status]

    def vote(
        self, task_id: str, decision: Any, user_id: Any = None, comment: Any = None
    ) -> dict[str, Any]:
        """Record a vote; the answer is the deployed service's vote response."""
        if decision not in ("yes", "no"):
            raise VoteRejected(400, "Decision must be 'yes' or 'no'")
        with self._lock:
            task = self.get(task_id)
            if task is None:
                raise VoteRejected(404, "Task not found")
            if task.status != "pending":
                raise VoteRejected(409, f"Task is already {task.status}", {"result": task.result})
            if user_id is not None and any(v.user_id == user_id for v in task.votes):
                raise VoteRejected(409, "User has already voted on this task")
            vote_id = self._cast(task, decision, None if user_id is None else str(user_id), comment)
            return self._vote_answer(task, vote_id)

    def _advance(self, task: Task) -> None:
        """Apply what the clock says has happened: simulated reviews, then expiry."""
        now = self._clock()
        if (
            task.status == "pending"
            and task.verdict
            and not task.reviewed
            and now >= task.review_at
        ):
            task.reviewed = True
            self._simulate_reviews(task)
        if task.status == "pending" and now >= task.expires_clock:
            task.status = "expired"
            task.updated = datetime.now(UTC)
            task.result = {
                "decision": None,
                "message": "The task expired before the reviewers reached consensus.",
                "timestamp": _iso(task.updated),
                "consensus": {**task.consensus_json(), "reached": False},
                "comments": list(task.comments),
            }

    def _simulate_reviews(self, task: Task) -> None:
        # Reviewers vote phase after phase until the task completes (3 phases at most).
        for _ in range(MAX_PHASES + 1):
            if task.status != "pending":
                return
            needed = task.required_voters - len(task.votes)
            if task.verdict == "split":
                yes_share = math.ceil(task.required_voters / 2)
                decisions = ["yes"] * yes_share + ["no"] * (task.required_voters - yes_share)
                decisions = decisions[len(task.votes) :]
            else:
                decisions = ["yes" if task.verdict == "approve" else "no"] * needed
            for index, decision in enumerate(decisions):
                self._cast(
                    task, decision, f"reviewer-{task.phase}-{index + 1}", _COMMENTS[decision]
                )

    def _cast(self, task: Task, decision: str, user_id: str | None, comment: Any) -> str:
        vote_id = "vote_" + secrets.token_hex(6)
        task.votes.append(
            Vote(
                decision, user_id, comment if isinstance(comment, str) else None, datetime.now(UTC)
            )
        )
        if isinstance(comment, str) and comment:
            task.comments.append(comment[:1000])
        task.updated = datetime.now(UTC)
        self._decide(task)
        return vote_id

    def _decide(self, task: Task) -> None:
        now = task.updated or datetime.now(UTC)
        count = len(task.votes)
        if count < task.required_voters:
            return
        majority = max(task.yes, task.no) / count
        if majority >= task.threshold:
            decision = "yes" if task.yes > task.no else "no"
            task.status = "completed"
            task.result = {
                "sentiment": "POSITIVE" if decision == "yes" else "NEGATIVE",
                "confidence": 1.0,
                "decision": decision,
                "timestamp": _iso(now),
                "message": (
                    f"Consensus reached: {decision.upper()} with {majority * 100:.1f}% agreement"
                ),
                "consensus": {
                    **task.consensus_json(),
                    "majorityPercentage": majority,
                    "reached": True,
                },
                "comments": list(task.comments),
            }
        elif task.phase < MAX_PHASES:
            task.phase += 1
            task.votes.clear()
        else:
            task.status = "completed"
            task.result = {
                "consensus": {
                    **task.consensus_json(),
                    "majorityPercentage": majority,
                    "reached": False,
                    "finalPhase": MAX_PHASES,
                },
                "decision": None,
                "message": "Consensus was not reached after three voting phases.",
                "timestamp": _iso(now),
                "comments": list(task.comments),
            }

    def _vote_answer(self, task: Task, vote_id: str) -> dict[str, Any]:
        consensus = {
            **task.consensus_json(),
            "reached": task.status == "completed"
            and task.result is not None
            and task.result.get("decision") is not None,
        }
        answer: dict[str, Any] = {
            "status": "Vote submitted - Consensus reached"
            if consensus["reached"]
            else "Vote submitted",
            "task_id": task.id,
            "vote_id": vote_id,
            "consensus": consensus,
        }
        if consensus["reached"] and task.result is not None:
            answer["consensus"]["decision"] = task.result["decision"]
            answer["result"] = {k: task.result[k] for k in ("sentiment", "confidence", "decision")}
        return answer


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
