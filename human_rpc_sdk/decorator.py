"""``@guard``: send an AI function's low-confidence results to paid human verification.

>>> @guard(threshold=0.9, reward="0.05")          # doctest: +SKIP
... def classify(text: str) -> dict:
...     return {"answer": "positive", "confidence": 0.62}

At or above ``threshold`` the result comes back exactly as the function returned it, and
nothing touches the network. Below it, the question and the answer go to HumanRPC reviewers
(a paid task) and the decorator returns the design document's "Guard Decorator Response"::

    {"answer": "positive", "confidence": 0.62, "verified": True,
     "human_verdict": {"decision": "approve", "confidence": 1.0, "comment": "...",
                       "outcome": "approved", "task_id": "task_..."}}

What happens when the humans reject the answer, reach no consensus, take longer than
``timeout`` (or let the task expire on the service), or cannot be reached is up to the
caller: ``"raise"`` (the default) raises :class:`~human_rpc_sdk.HumanVerificationError`;
``"return"`` returns the response above with ``"verified": False`` and the reason.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import (
    TYPE_CHECKING,
    Any,
    Final,
    ParamSpec,
    Protocol,
    TypedDict,
    TypeGuard,
    TypeVar,
    cast,
    overload,
)

from ._checks import positive_seconds, show
from ._reasons import Reason
from ._tasks import (
    APPROVED,
    EXPIRED,
    NO_CONSENSUS,
    REJECTED,
    Verdict,
    is_confidence,
    reward_amount,
)
from .exceptions import HumanVerificationError, SDKConfigurationError

if TYPE_CHECKING:
    from .agent import AutoAgent

__all__ = ["AsyncHumanAgent", "GuardResponse", "HumanVerdict", "guard"]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
POLICIES: Final = ("raise", "return")
_MAX_QUESTION: Final = 2_000
_EVENTS: Final[dict[str, tuple[Reason, str]]] = {
    REJECTED: ("rejected", "on_reject"),
    NO_CONSENSUS: ("no_consensus", "on_no_consensus"),
    EXPIRED: ("timeout", "on_timeout"),
}
"""A verdict that is not an approval: the event it is and the option that decides it."""


class AsyncHumanAgent(Protocol):
    """An agent whose ``ask_human_rpc`` is a coroutine function (``AsyncAutoAgent``)."""

    @property
    def ask_human_rpc(self) -> Callable[..., Awaitable[Verdict]]: ...


class HumanVerdict(TypedDict):
    decision: str | None
    confidence: float | None
    comment: str | None
    outcome: str
    task_id: str | None


class GuardResponse(TypedDict):
    """What a guarded function returns when humans were asked."""

    answer: Any
    confidence: float
    human_verdict: HumanVerdict | None
    verified: bool
    reason: str | None


# The wrapped function returns either its own result (confident) or a GuardResponse (humans
# were asked), and for an ``async def`` a coroutine of those: parameters are kept exactly
# (ParamSpec) and the result type becomes ``R | GuardResponse``. (A function annotated
# ``-> Any`` matches both overloads, so type checkers make the guarded one ``Any``: annotate
# the real result type, or ``object``.)
class Guarded(Protocol):
    """What ``guard(threshold=...)`` returns: a decorator keeping the function's types."""

    @overload
    def __call__(
        self, func: Callable[P, Coroutine[Any, Any, R]], /
    ) -> Callable[P, Coroutine[Any, Any, R | GuardResponse]]: ...

    @overload
    def __call__(self, func: Callable[P, R], /) -> Callable[P, R | GuardResponse]: ...

    def __call__(self, func: Callable[P, Any], /) -> Callable[P, Any]:
        """Guard ``func`` (see :func:`guard`)."""
        ...


@overload
def guard(
    func: Callable[P, Coroutine[Any, Any, R]], /
) -> Callable[P, Coroutine[Any, Any, R | GuardResponse]]: ...


@overload
def guard(func: Callable[P, R], /) -> Callable[P, R | GuardResponse]: ...


@overload
def guard(
    func: None = None,
    /,
    *,
    threshold: float = 0.9,
    agent_id: str | None = None,
    reward: Any = None,
    timeout: float = 300,
    agent: AutoAgent | AsyncHumanAgent | None = None,
    confidence: Callable[[Any], float] | None = None,
    question: Callable[..., str] | None = None,
    currency: str = "USDC",
    on_reject: str = "raise",
    on_no_consensus: str = "raise",
    on_timeout: str = "raise",
    on_unavailable: str = "raise",
) -> Guarded: ...


def guard(
    func: Callable[..., Any] | None = None,
    /,
    *,
    threshold: float = 0.9,
    agent_id: str | None = None,
    reward: Any = None,
    timeout: float = 300,
    agent: AutoAgent | AsyncHumanAgent | None = None,
    confidence: Callable[[Any], float] | None = None,
    question: Callable[..., str] | None = None,
    currency: str = "USDC",
    on_reject: str = "raise",
    on_no_consensus: str = "raise",
    on_timeout: str = "raise",
    on_unavailable: str = "raise",
) -> Any:
    """Guard an AI function (plain or ``async def``) with human verification below ``threshold``.

    :param threshold: confidence in [0, 1] at or above which results are returned untouched.
    :param agent_id: the agent name shown to reviewers (default: the function's name).
    :param reward: what each task pays reviewers, in ``currency`` (default: the service's price).
    :param timeout: seconds to wait for a verdict.
    :param agent: the agent that pays and asks: an :class:`~human_rpc_sdk.AutoAgent`, or for an
        ``async def`` also an ``AsyncAutoAgent`` (awaited, no thread). When None: an
        ``AutoAgent`` built from the environment on first need, or for an ``async def`` an
        ``AsyncAutoAgent`` built from the environment for each check and closed after it (an
        async client belongs to one event loop); pass ``agent=`` to reuse one.
    :param confidence: reads the confidence from a result; by default a ``"confidence"`` key,
        an ``(answer, confidence)`` tuple, or a ``.confidence`` attribute.
    :param question: builds the reviewers' question from the call's arguments; by default the
        first string argument, else the call itself.
    :param on_reject, on_no_consensus, on_timeout, on_unavailable: ``"raise"`` or ``"return"``.
        ``on_timeout`` covers both no verdict within ``timeout`` and a task that expired on
        the service (``reason="timeout"``).
    :raises SDKConfigurationError: at decoration, for any invalid argument, or an async agent
        given for a plain function.
    """
    settings = _Settings(
        threshold=_threshold(threshold),
        agent_id=agent_id,
        reward=None if reward is None else reward_amount(reward),
        timeout=positive_seconds(timeout, "timeout"),
        agent=_agent(agent),
        confidence=_callable(confidence, "confidence"),
        question=_callable(question, "question"),
        currency=currency,
        policies={
            "rejected": _policy(on_reject, "on_reject"),
            "no_consensus": _policy(on_no_consensus, "on_no_consensus"),
            "timeout": _policy(on_timeout, "on_timeout"),
            "unavailable": _policy(on_unavailable, "on_unavailable"),
        },
    )

    def decorate(target: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(target):
            raise SDKConfigurationError("@guard decorates a function", parameter="func")
        checker = _Checker(target, settings)
        if inspect.iscoroutinefunction(target):

            @functools.wraps(target)
            async def async_guarded(*args: Any, **kwargs: Any) -> Any:
                result = await target(*args, **kwargs)
                level = checker.confidence_of(result)
                if level >= settings.threshold:
                    return result
                return await checker.averify(result, level, args, kwargs)

            return async_guarded
        if _is_async(settings.agent):
            raise SDKConfigurationError(
                f"guard(agent=...) got an async agent ({type(settings.agent).__name__}) for the "
                f"plain function {checker.name}(), which cannot await it: make it an async def, "
                "or pass an AutoAgent",
                parameter="agent",
            )

        @functools.wraps(target)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            result = target(*args, **kwargs)
            level = checker.confidence_of(result)
            if level >= settings.threshold:
                return result
            return checker.verify(result, level, args, kwargs)

        return guarded

    return decorate(func) if func is not None else decorate


class _Settings:
    def __init__(self, **values: Any) -> None:
        self.threshold: float = values["threshold"]
        self.agent_id: str | None = values["agent_id"]
        self.reward: Any = values["reward"]
        self.timeout: float = values["timeout"]
        self.agent: AutoAgent | AsyncHumanAgent | None = values["agent"]
        self.confidence: Callable[[Any], float] | None = values["confidence"]
        self.question: Callable[..., str] | None = values["question"]
        self.currency: str = values["currency"]
        self.policies: dict[str, str] = values["policies"]


class _Checker:
    """Reads confidences and runs the human verification for one guarded function."""

    def __init__(self, func: Callable[..., Any], settings: _Settings) -> None:
        self.func = func
        self.settings = settings
        self.name = getattr(func, "__qualname__", getattr(func, "__name__", "function"))
        self._agent = settings.agent
        self._lock = threading.Lock()

    def confidence_of(self, result: Any) -> float:
        level: object
        if self.settings.confidence is not None:
            level = self.settings.confidence(result)
            where = "the confidence= function"
        elif isinstance(result, Mapping):
            level, where = result.get("confidence"), "the result's 'confidence' key"
        elif isinstance(result, tuple) and len(result) == 2:
            level, where = result[1], "the second item of the (answer, confidence) tuple"
        else:
            level, where = getattr(result, "confidence", None), "the result's .confidence attribute"
        if not is_confidence(level):
            raise HumanVerificationError(
                f"{self.name}() returned no usable confidence: {where} is {show(level)}, not a "
                "number between 0 and 1. Return {'answer': ..., 'confidence': 0.7}, (answer, 0.7), "
                "an object with .confidence, or pass guard(confidence=...) to read it",
                reason="invalid_confidence",
            )
        return float(level)

    def answer_of(self, result: Any) -> Any:
        if isinstance(result, Mapping):
            return result.get("answer", result)
        if isinstance(result, tuple) and len(result) == 2:
            return result[0]
        return getattr(result, "answer", result)

    def question_of(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        if self.settings.question is not None:
            return str(self.settings.question(*args, **kwargs))[:_MAX_QUESTION]
        for value in (*args, *kwargs.values()):
            if isinstance(value, str) and value.strip():
                return value[:_MAX_QUESTION]
        shown = ", ".join([*map(_repr, args), *(f"{k}={_repr(v)}" for k, v in kwargs.items())])
        return f"Is this the right result of {self.name}({shown})?"[:_MAX_QUESTION]

    def agent(self) -> AutoAgent | AsyncHumanAgent:
        """The agent given, or an ``AutoAgent`` built from the environment on first need."""
        with self._lock:
            if self._agent is None:
                from .agent import AutoAgent

                self._agent = AutoAgent()
            return self._agent

    def verify(
        self, result: Any, level: float, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> GuardResponse:
        # Only a sync agent gets here: decoration refuses an async one for a plain function,
        # and averify awaits an async one itself.
        agent = cast("AutoAgent", self.agent())
        answer = self.answer_of(result)
        try:
            verdict = agent.ask_human_rpc(**self._question(answer, level, args, kwargs))
        except HumanVerificationError as exc:
            return self._failed(exc, answer, level)
        return self._judge(verdict, answer, level)

    async def averify(
        self, result: Any, level: float, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> GuardResponse:
        """:meth:`verify` for an ``async def``: an async agent is awaited; a sync one runs in a
        thread, as does building the agent (it opens its journal)."""
        import asyncio  # running already; a synchronous guard never imports it

        agent = self._agent
        if agent is None:
            # An AsyncAutoAgent from the environment, for this check only: its httpx client
            # belongs to the running event loop, and a program may run several loops in turn
            # (asyncio.run per job). Building it opens the journal: in a thread.
            from .async_agent import AsyncAutoAgent

            async with await asyncio.to_thread(AsyncAutoAgent) as own:
                return await self._ask_async(own, result, level, args, kwargs)
        if not _is_async(agent):
            return await asyncio.to_thread(self.verify, result, level, args, kwargs)
        return await self._ask_async(agent, result, level, args, kwargs)

    async def _ask_async(
        self,
        agent: AsyncHumanAgent,
        result: Any,
        level: float,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> GuardResponse:
        answer = self.answer_of(result)
        try:
            verdict = await agent.ask_human_rpc(**self._question(answer, level, args, kwargs))
        except HumanVerificationError as exc:
            return self._failed(exc, answer, level)
        return self._judge(verdict, answer, level)

    def _question(
        self, answer: Any, level: float, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        settings = self.settings
        logger.debug(
            "%s: confidence %.3f below %.3f; asking humans", self.name, level, settings.threshold
        )
        return {
            "text": self.question_of(args, kwargs),
            "answer": answer,
            "confidence": level,
            "reward": settings.reward,
            "currency": settings.currency,
            "agent_id": settings.agent_id or self.name,
            "timeout": settings.timeout,
        }

    def _failed(self, exc: HumanVerificationError, answer: Any, level: float) -> GuardResponse:
        if exc.reason in ("timeout", "unavailable"):
            return self._settle(exc.reason, answer, level, None, exc)
        raise exc

    def _judge(self, verdict: Mapping[str, Any], answer: Any, level: float) -> GuardResponse:
        human: HumanVerdict = {
            "decision": verdict["decision"],
            "confidence": verdict["confidence"],
            "comment": verdict["comment"],
            "outcome": verdict["outcome"],
            "task_id": verdict["task_id"],
        }
        if verdict["outcome"] == APPROVED:
            return GuardResponse(
                answer=answer, confidence=level, human_verdict=human, verified=True, reason=None
            )
        event, option = _EVENTS.get(verdict["outcome"], ("no_consensus", "on_no_consensus"))
        said = f", {verdict['comment']!r}" if verdict["comment"] else ""
        why = (
            "the task expired on the service before the reviewers decided"
            if verdict["outcome"] == EXPIRED
            else "the human reviewers did not approve the answer"
        )
        error = HumanVerificationError(
            f"{why} of {self.name}() (task "
            f"{verdict['task_id']}: {verdict['outcome']}{said}). Pass {option}='return' to get "
            "the answer marked unverified instead",
            task_id=verdict["task_id"],
            reason=event,
            details={"verdict": dict(verdict)},
        )
        return self._settle(event, answer, level, human, error)

    def _settle(
        self,
        event: str,
        answer: Any,
        level: float,
        human: HumanVerdict | None,
        error: HumanVerificationError,
    ) -> GuardResponse:
        if self.settings.policies[event] == "raise":
            raise error
        logger.debug("%s: returning the answer unverified (%s)", self.name, event)
        return GuardResponse(
            answer=answer, confidence=level, human_verdict=human, verified=False, reason=event
        )


# -- argument validation --------------------------------------------------------------------


def _repr(value: Any) -> str:
    """``repr(value)``, or its type when it cannot be printed (an int of 5000 digits)."""
    try:
        return repr(value)
    except ValueError:
        return f"<{type(value).__name__} too long to print>"


def _threshold(threshold: Any) -> float:
    if not is_confidence(threshold):
        raise SDKConfigurationError(
            f"threshold must be a number between 0 and 1 (got {show(threshold)})",
            parameter="threshold",
        )
    return float(threshold)


def _policy(value: Any, name: str) -> str:
    if value not in POLICIES:
        raise SDKConfigurationError(
            f"{name} must be 'raise' or 'return' (got {show(value)})", parameter=name
        )
    return str(value)


def _callable(value: Any, name: str) -> Any:
    if value is not None and not callable(value):
        raise SDKConfigurationError(f"{name} must be a function or None", parameter=name)
    return value


def _is_async(agent: object) -> TypeGuard[AsyncHumanAgent]:
    """Whether ``agent.ask_human_rpc`` is a coroutine function (an async agent)."""
    return inspect.iscoroutinefunction(getattr(agent, "ask_human_rpc", None))


def _agent(value: Any) -> Any:
    if value is not None and not callable(getattr(value, "ask_human_rpc", None)):
        raise SDKConfigurationError(
            "agent must be an AutoAgent or an AsyncAutoAgent (or None to build one from the "
            "environment)",
            parameter="agent",
        )
    return value
