"""ReiteratorManager: resubmit a human-verification task the humans rejected, with backoff.

``execute_with_retry(task_func, *args, **kwargs)`` calls ``task_func`` with exactly the same
arguments until the humans approve, the attempts run out, or an error stops it:

* approved: returned at once;
* rejected (negative consensus): resubmitted after ``calculate_delay(attempt)`` seconds, up to
  ``max_attempts`` submissions; then the last rejection is returned, or
  :class:`~human_rpc_sdk.ReiteratorMaxAttemptsError` raised with ``raise_on_max_attempts``;
* no consensus, or expired: returned as such (a paid resubmission only with
  ``retry_on_no_consensus``);
* rate limited (429): waits ``Retry-After`` and tries again, counting the attempt;
  :class:`~human_rpc_sdk.ReiteratorRateLimitError` when waiting would pass ``max_delay``, the
  attempts, or the call's deadline (:meth:`ReiteratorManager.execute_until`);
* any other error: re-raised unchanged.

Configuration changes (:meth:`ReiteratorManager.configure`) apply to the sequences that start
afterwards; a sequence in flight keeps the configuration it started with. Waits longer than a
second are logged at INFO (``human_rpc_sdk.reiterator``). The clock, sleep and
randomness are parameters, so tests never wait.

Every decision is taken by one :class:`Reiteration` per sequence (return, raise, or wait and
resubmit); ``execute_until`` and its asyncio twin ``aexecute_until`` are short loops over it.
"""

from __future__ import annotations

import inspect
import logging
import random
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, TypeAlias, TypeVar, get_args, overload

from ._checks import MAX_SECONDS, is_duration, show
from ._io.clock import async_sleep as real_async_sleep
from ._io.clock import monotonic
from ._io.clock import sleep as real_sleep
from ._tasks import APPROVED, EXPIRED, NO_CONSENSUS, REJECTED
from .exceptions import (
    HumanRPCError,
    ReiteratorConfigurationError,
    ReiteratorMaxAttemptsError,
    ReiteratorRateLimitError,
)

__all__ = [
    "BACKOFF_STRATEGIES",
    "BackoffStrategy",
    "Done",
    "Fail",
    "Reiteration",
    "ReiteratorConfig",
    "ReiteratorManager",
    "Resubmit",
    "Step",
]

logger = logging.getLogger(__name__)

BackoffStrategy: TypeAlias = Literal["exponential", "linear", "fixed"]
"""How the wait before each resubmission grows."""
BACKOFF_STRATEGIES: Final[tuple[BackoffStrategy, ...]] = get_args(BackoffStrategy)
R = TypeVar("R")


@dataclass(frozen=True)
class ReiteratorConfig:
    """A validated reiterator configuration (immutable; replaced as a whole on change)."""

    max_attempts: int = 3
    backoff_strategy: BackoffStrategy = "exponential"
    base_delay: float = 1.0
    max_delay: float = 60.0
    jitter: float = 0.0
    retry_on_no_consensus: bool = False
    raise_on_max_attempts: bool = False


def validate(config: ReiteratorConfig, names: Mapping[str, str] | None = None) -> None:
    """Raise ``ReiteratorConfigurationError`` naming the first invalid field.

    ``names`` maps a field to the caller's parameter name (``max_attempts`` is
    ``max_retry_attempts`` on ``AutoAgent``).
    """
    names = names or {}

    def fail(field: str, rule: str, value: Any) -> None:
        name = names.get(field, field)
        raise ReiteratorConfigurationError(
            f"{name} must be {rule} (got {show(value)})", parameter=name
        )

    attempts = config.max_attempts
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        fail("max_attempts", "a whole number of at least 1", attempts)
    if config.backoff_strategy not in BACKOFF_STRATEGIES:
        fail("backoff_strategy", f"one of {', '.join(BACKOFF_STRATEGIES)}", config.backoff_strategy)
    for field in ("base_delay", "max_delay"):
        value = getattr(config, field)
        if not is_duration(value):
            fail(field, f"a number of seconds between 0 and {MAX_SECONDS:.0f}", value)
    if config.max_delay < config.base_delay:
        fail("max_delay", f"at least base_delay ({config.base_delay})", config.max_delay)
    if not is_duration(config.jitter) or config.jitter > 1:
        fail("jitter", "a fraction between 0 and 1", config.jitter)
    for field in ("retry_on_no_consensus", "raise_on_max_attempts"):
        if not isinstance(getattr(config, field), bool):
            fail(field, "True or False", getattr(config, field))


def outcome_of(result: Mapping[str, Any]) -> str:
    """``approved``, ``rejected``, ``no_consensus`` or ``expired`` for a verdict mapping.

    Reads ``outcome`` when present, else ``decision`` (``approve``/``yes`` or ``reject``/``no``).
    """
    outcome = result.get("outcome")
    if outcome in (APPROVED, REJECTED, NO_CONSENSUS, EXPIRED):
        return str(outcome)
    decision = result.get("decision")
    if decision in ("approve", "yes"):
        return APPROVED
    if decision in ("reject", "no"):
        return REJECTED
    return NO_CONSENSUS


_LAST_RESULT: Final = {
    APPROVED: "positive",
    REJECTED: "negative",
    NO_CONSENSUS: "no_consensus",
    EXPIRED: "expired",
}


class ReiteratorManager:
    """Resubmits rejected human-verification tasks with backoff (see the module docstring).

    :param max_attempts: submissions at most, the first included.
    :param backoff_strategy: ``exponential`` (base, 2 base, 4 base...), ``linear`` (base,
        2 base, 3 base...) or ``fixed``.
    :param base_delay: seconds before the first resubmission.
    :param max_delay: cap on any single wait, backoff or ``Retry-After``.
    :param jitter: fraction of each delay to randomise downwards (0 disables).
    :param retry_on_no_consensus: also resubmit (and pay again) when there was no consensus.
    :param raise_on_max_attempts: raise ``ReiteratorMaxAttemptsError`` instead of returning the
        last rejection.
    :param enabled: whether :class:`~human_rpc_sdk.AutoAgent` routes tasks through it.
    :param sleep: waits of :meth:`execute_until`; ``async_sleep``: of :meth:`aexecute_until`.
    :raises ReiteratorConfigurationError: for any invalid value, at construction.
    """

    def __init__(
        self,
        max_attempts: int = 3,
        backoff_strategy: BackoffStrategy = "exponential",
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        *,
        jitter: float = 0.0,
        retry_on_no_consensus: bool = False,
        raise_on_max_attempts: bool = False,
        enabled: bool = True,
        clock: Callable[[], float] = monotonic,
        sleep: Callable[[float], None] = real_sleep,
        async_sleep: Callable[[float], Awaitable[None]] = real_async_sleep,
        random_source: Callable[[], float] = random.random,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._config = ReiteratorConfig(
            max_attempts=max_attempts,
            backoff_strategy=backoff_strategy,
            base_delay=base_delay,
            max_delay=max_delay,
            jitter=jitter,
            retry_on_no_consensus=retry_on_no_consensus,
            raise_on_max_attempts=raise_on_max_attempts,
        )
        validate(self._config)
        if not isinstance(enabled, bool):
            raise ReiteratorConfigurationError(
                f"enabled must be True or False (got {enabled!r})", parameter="enabled"
            )
        self.enabled = enabled
        self._clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._random = random_source
        self._now = now
        self._lock = threading.Lock()
        self._in_flight = 0
        self._attempt = 0
        self._task_id: str | None = None
        self._next_retry: datetime | None = None
        self._last_retry: datetime | None = None
        self._last_result: str | None = None
        self._total_retries = 0

    # -- configuration ---------------------------------------------------------------------

    @property
    def config(self) -> ReiteratorConfig:
        """The configuration sequences starting now use (change it with :meth:`configure`)."""
        return self._config

    def configure(self, **changes: Any) -> None:
        """Change the configuration for the sequences that start from now on.

        Accepts the constructor's parameters (``max_attempts``, ``backoff_strategy``,
        ``base_delay``, ``max_delay``, ``jitter``, ``retry_on_no_consensus``,
        ``raise_on_max_attempts``). A sequence in flight is not affected.
        """
        unknown = set(changes) - set(ReiteratorConfig.__dataclass_fields__)
        if unknown:
            name = sorted(unknown)[0]
            raise ReiteratorConfigurationError(
                f"{name} is not a reiterator setting", parameter=name
            )
        new = replace(self._config, **changes)
        validate(new)
        with self._lock:
            self._config = new
        logger.debug("reiterator configuration changed: %s", sorted(changes))

    # -- decisions ---------------------------------------------------------------------------

    def should_retry(self, result: Mapping[str, Any], attempt_count: int) -> bool:
        """Whether ``result`` (after ``attempt_count`` submissions) calls for another one."""
        if not isinstance(result, Mapping):
            raise ReiteratorConfigurationError(
                f"result must be a verdict mapping (got a {type(result).__name__})",
                parameter="result",
            )
        return self._should_retry(self._config, result, _attempt(attempt_count))

    @staticmethod
    def _should_retry(
        config: ReiteratorConfig, result: Mapping[str, Any], attempt_count: int
    ) -> bool:
        if attempt_count >= config.max_attempts:
            return False
        outcome = outcome_of(result)
        if outcome == REJECTED:
            return True
        return outcome in (NO_CONSENSUS, EXPIRED) and config.retry_on_no_consensus

    def calculate_delay(self, attempt_count: int) -> float:
        """Seconds to wait after submission ``attempt_count`` (1-based), capped at max_delay."""
        return self._delay(self._config, _attempt(attempt_count))

    def _delay(self, config: ReiteratorConfig, attempt_count: int) -> float:
        attempt = max(1, attempt_count)
        if config.backoff_strategy == "exponential":
            # 2 ** n overflows float beyond ~1024; the cap applies long before.
            delay = config.base_delay * (2.0 ** min(attempt - 1, 1023))
        elif config.backoff_strategy == "linear":
            delay = config.base_delay * attempt
        else:
            delay = config.base_delay
        delay = min(delay, config.max_delay)
        if config.jitter:
            delay *= 1.0 - config.jitter * self._random()
        return delay

    # -- running -------------------------------------------------------------------------------

    def execute_with_retry(self, task_func: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """Run ``task_func(*args, **kwargs)`` until approved or out of attempts (see module)."""
        return self.execute_until(None, task_func, *args, **kwargs)

    def execute_until(
        self, deadline: float | None, task_func: Callable[..., R], *args: Any, **kwargs: Any
    ) -> R:
        """:meth:`execute_with_retry`, finished by ``deadline`` (on the manager's clock).

        No wait passes the deadline: a ``Retry-After`` longer than the time left raises
        :class:`~human_rpc_sdk.ReiteratorRateLimitError` at once (with ``retry_after``), and a
        rejection whose backoff would pass it is returned as the result (no resubmission).
        ``None``: no deadline.
        """
        with self.reiteration(deadline, task_func) as sequence:
            while True:
                sequence.start()
                try:
                    step = sequence.returned(task_func(*args, **kwargs))
                except Exception as exc:
                    step = sequence.failed(exc)
                    if isinstance(step, Fail):
                        if step.error is exc:
                            raise  # unchanged: the caller sees the original error
                        raise step.error from exc
                if isinstance(step, Done):
                    return step.result  # type: ignore[no-any-return]
                if isinstance(step, Fail):
                    raise step.error
                self._sleep(step.seconds)

    @overload
    async def aexecute_with_retry(
        self, task_func: Callable[..., Awaitable[R]], *args: Any, **kwargs: Any
    ) -> R: ...

    @overload
    async def aexecute_with_retry(
        self, task_func: Callable[..., R], *args: Any, **kwargs: Any
    ) -> R: ...

    async def aexecute_with_retry(
        self, task_func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        """:meth:`execute_with_retry` for asyncio: ``task_func`` may be an ``async def``, and
        waits use the manager's ``async_sleep``."""
        return await self.aexecute_until(None, task_func, *args, **kwargs)

    @overload
    async def aexecute_until(
        self,
        deadline: float | None,
        task_func: Callable[..., Awaitable[R]],
        *args: Any,
        **kwargs: Any,
    ) -> R: ...

    @overload
    async def aexecute_until(
        self, deadline: float | None, task_func: Callable[..., R], *args: Any, **kwargs: Any
    ) -> R: ...

    async def aexecute_until(
        self,
        deadline: float | None,
        task_func: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """:meth:`execute_until` for asyncio (see :meth:`aexecute_with_retry`)."""
        with self.reiteration(deadline, task_func) as sequence:
            while True:
                sequence.start()
                try:
                    result = task_func(*args, **kwargs)
                    if inspect.isawaitable(result):
                        result = await result
                    step = sequence.returned(result)
                except Exception as exc:
                    step = sequence.failed(exc)
                    if isinstance(step, Fail):
                        if step.error is exc:
                            raise  # unchanged: the caller sees the original error
                        raise step.error from exc
                if isinstance(step, Done):
                    return step.result
                if isinstance(step, Fail):
                    raise step.error
                await self._async_sleep(step.seconds)

    @contextmanager
    def reiteration(self, deadline: float | None, task_func: object) -> Iterator[Reiteration]:
        """The decisions of one sequence of submissions, counted in :meth:`get_status` while
        the ``with`` block runs. The sequence keeps the configuration it started with."""
        if not callable(task_func):
            raise ReiteratorConfigurationError(
                f"task_func must be a function (got a {type(task_func).__name__})",
                parameter="task_func",
            )
        with self._lock:
            self._in_flight += 1
            self._attempt = 0
        try:
            yield Reiteration(self, self._config, deadline)
        finally:
            with self._lock:
                self._in_flight -= 1
                self._next_retry = None

    def _start_attempt(self, attempt: int) -> None:
        with self._lock:
            self._attempt = attempt
            if attempt > 1:
                self._total_retries += 1
                self._last_retry = self._now()
            self._next_retry = None

    def _record(self, result: Any, outcome: str, attempt: int, config: ReiteratorConfig) -> None:
        task_id = result.get("task_id") if isinstance(result, Mapping) else None
        with self._lock:
            self._task_id = task_id if isinstance(task_id, str) else self._task_id
            self._last_result = _LAST_RESULT[outcome]
        logger.debug(
            "reiterator: task %s, attempt %d of %d: %s",
            task_id,
            attempt,
            config.max_attempts,
            outcome,
        )

    def _schedule(self, delay: float, attempt: int, config: ReiteratorConfig, why: str) -> None:
        with self._lock:
            self._next_retry = self._now() + timedelta(seconds=delay)
        logger.log(
            logging.INFO if delay > 1 else logging.DEBUG,
            "reiterator: %s; resubmitting in %.3f s (attempt %d of %d next)",
            why,
            delay,
            attempt + 1,
            config.max_attempts,
        )

    def _set_last(self, what: str) -> None:
        with self._lock:
            self._last_result = what

    # -- status --------------------------------------------------------------------------------

    def get_status(self) -> dict[str, Any]:
        """The design document's "Reiterator Status Response", plus the configuration."""
        config = self._config
        with self._lock:
            return {
                "active": self._in_flight > 0,
                "enabled": self.enabled,
                "current_task_id": self._task_id,
                "attempt_count": self._attempt,
                "max_attempts": config.max_attempts,
                "next_retry_time": _iso(self._next_retry),
                "total_retries_session": self._total_retries,
                "last_result": self._last_result,
                "last_retry_time": _iso(self._last_retry),
                "backoff_strategy": config.backoff_strategy,
                "base_delay": config.base_delay,
                "max_delay": config.max_delay,
                "jitter": config.jitter,
                "retry_on_no_consensus": config.retry_on_no_consensus,
            }

    def reset(self) -> None:
        """Forget the counters and the last result (the configuration stays)."""
        with self._lock:
            self._attempt = 0
            self._task_id = None
            self._next_retry = None
            self._last_retry = None
            self._last_result = None
            self._total_retries = 0

    def __repr__(self) -> str:
        c = self._config
        return (
            f"ReiteratorManager(max_attempts={c.max_attempts}, "
            f"backoff_strategy={c.backoff_strategy!r}, base_delay={c.base_delay}, "
            f"max_delay={c.max_delay}, enabled={self.enabled})"
        )


@dataclass(frozen=True)
class Done:
    """Decision: return ``result`` to the caller."""

    result: Any


@dataclass(frozen=True)
class Fail:
    """Decision: raise ``error`` (the task's own error is re-raised unchanged)."""

    error: Exception


@dataclass(frozen=True)
class Resubmit:
    """Decision: wait ``seconds``, then submit the task again."""

    seconds: float


Step = Done | Fail | Resubmit
"""What a :class:`Reiteration` decides after an attempt."""


class Reiteration:
    """The decisions of one sequence of submissions, with no waiting and no I/O.

    A loop calls :meth:`start` before each submission, then :meth:`returned` with its result
    or :meth:`failed` with its error, and does what the :data:`Step` says: return, raise, or
    wait and submit again. The manager's status (:meth:`ReiteratorManager.get_status`) is kept
    on the way. Build one with :meth:`ReiteratorManager.reiteration`.
    """

    def __init__(
        self, manager: ReiteratorManager, config: ReiteratorConfig, deadline: float | None
    ) -> None:
        self._manager = manager
        self.config = config
        self.deadline = deadline
        self.attempt = 0

    def start(self) -> None:
        """A submission starts."""
        self.attempt += 1
        self._manager._start_attempt(self.attempt)

    def returned(self, result: Any) -> Step:
        """The submission answered ``result`` (a verdict mapping; anything else is final)."""
        manager, config, attempt = self._manager, self.config, self.attempt
        outcome = outcome_of(result) if isinstance(result, Mapping) else APPROVED
        manager._record(result, outcome, attempt, config)
        if outcome == APPROVED or not manager._should_retry(config, result, attempt):
            return self._finish(result, outcome)
        delay = manager._delay(config, attempt)
        if self.deadline is not None and delay >= self.deadline - manager._clock():
            logger.info(
                "reiterator: %s after attempt %d, but resubmitting in %.3g s would pass "
                "the call's timeout; returning it",
                outcome,
                attempt,
                delay,
            )
            return Done(result)
        manager._schedule(delay, attempt, config, "negative consensus")
        return Resubmit(delay)

    def failed(self, error: Exception) -> Step:
        """The submission raised ``error``: a rate limit is waited out, the rest re-raised."""
        if not (isinstance(error, HumanRPCError) and error.reason == "rate_limited"):
            self._manager._set_last("error")
            return Fail(error)
        return self._rate_limited(error)

    def _finish(self, result: Any, outcome: str) -> Step:
        config, attempt = self.config, self.attempt
        if outcome == REJECTED and config.raise_on_max_attempts:
            logger.debug("reiterator: still rejected after %d attempts; raising", attempt)
            return Fail(
                ReiteratorMaxAttemptsError(
                    f"the humans rejected the answer in all {attempt} submissions (max_attempts="
                    f"{config.max_attempts}); the last verdict is in .last_result. Raise "
                    "max_attempts or improve the answer before asking again",
                    attempts=attempt,
                    last_result=result if isinstance(result, Mapping) else None,
                )
            )
        return Done(result)

    def _rate_limited(self, error: HumanRPCError) -> Step:
        manager, config, attempt = self._manager, self.config, self.attempt
        retry_after = error.details.get("retry_after")
        wait = float(retry_after) if is_duration(retry_after) else config.base_delay
        manager._set_last("rate_limited")
        left = None if self.deadline is None else self.deadline - manager._clock()
        if left is not None and wait >= left:
            return Fail(
                ReiteratorRateLimitError(
                    f"the HumanRPC service is rate limiting task creation (HTTP 429, Retry-After "
                    f"{wait:g} s) and waiting would pass the call's timeout ({max(left, 0):.3g} s "
                    f"left); nothing was paid for this attempt. Try again after {wait:g} s, or "
                    "pass a longer timeout",
                    retry_after=wait,
                )
            )
        if attempt >= config.max_attempts or wait > config.max_delay:
            why = (
                f"all {config.max_attempts} attempts are used"
                if attempt >= config.max_attempts
                else f"Retry-After {wait:g} s is longer than max_delay {config.max_delay:g} s"
            )
            return Fail(
                ReiteratorRateLimitError(
                    f"the HumanRPC service is rate limiting task creation and waiting would pass "
                    f"the reiterator's limits ({why}); try again after {wait:g} s or raise the "
                    "limits",
                    retry_after=wait,
                )
            )
        manager._schedule(wait, attempt, config, "rate limited (429)")
        return Resubmit(wait)


def _attempt(count: Any) -> int:
    if isinstance(count, bool) or not isinstance(count, int):
        raise ReiteratorConfigurationError(
            f"attempt_count must be a whole number (got a {type(count).__name__})",
            parameter="attempt_count",
        )
    return count


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")
