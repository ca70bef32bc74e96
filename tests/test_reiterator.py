"""ReiteratorManager, driven by hand with scripted verdicts and a fake clock (never waits)."""

from __future__ import annotations

import logging
import math
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from human_rpc_sdk import (
    HumanVerificationError,
    ReiteratorConfigurationError,
    ReiteratorManager,
    ReiteratorMaxAttemptsError,
    ReiteratorRateLimitError,
)
from human_rpc_sdk._reasons import Reason

from .conftest import FakeClock

OUTCOMES = ["approved", "rejected", "no_consensus", "expired"]
outcomes = st.sampled_from(OUTCOMES)


class Script:
    """A task function that answers scripted outcomes and records how it was called."""

    def __init__(self, steps: list[Any], manager: ReiteratorManager | None = None) -> None:
        self.steps = list(steps)
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.statuses: list[dict[str, Any]] = []
        self.manager = manager

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if self.manager is not None:
            self.statuses.append(self.manager.get_status())
        self.calls.append((args, kwargs))
        step = self.steps[min(len(self.calls) - 1, len(self.steps) - 1)]
        if isinstance(step, BaseException):
            raise step
        decision = {"approved": "approve", "rejected": "reject"}.get(step)
        return {"task_id": f"task_{len(self.calls)}", "outcome": step, "decision": decision}


def manager(clock: FakeClock | None = None, **options: Any) -> ReiteratorManager:
    clock = clock or FakeClock()
    return ReiteratorManager(clock=clock, sleep=clock.sleep, random_source=lambda: 0.5, **options)


@st.composite
def _configs(draw: st.DrawFn) -> dict[str, Any]:
    base_delay = draw(st.floats(0, 10))
    return {
        "max_attempts": draw(st.integers(1, 8)),
        "backoff_strategy": draw(st.sampled_from(["exponential", "linear", "fixed"])),
        "base_delay": base_delay,
        "max_delay": draw(st.floats(base_delay, 120)),
    }


configs = _configs()


# **Feature: human-rpc-python-sdk, Property 11: For any reiterator configuration parameters, the
# system should accept valid configurations and reject invalid ones with descriptive error
# messages**
@given(config=configs, jitter=st.floats(0, 1), flags=st.tuples(st.booleans(), st.booleans()))
def test_property_11_valid_configurations_are_accepted(
    config: dict[str, Any], jitter: float, flags: tuple[bool, bool]
) -> None:
    """Valid settings build a manager whose status reports them."""
    built = manager(
        **config, jitter=jitter, retry_on_no_consensus=flags[0], raise_on_max_attempts=flags[1]
    )
    status = built.get_status()
    for key in ("max_attempts", "backoff_strategy", "base_delay", "max_delay"):
        assert status[key] == config[key]
    assert status["jitter"] == jitter


INVALID: dict[str, list[Any]] = {
    "max_attempts": [0, -1, 1.5, True, "3", None],
    "backoff_strategy": ["random", "", None, "EXPONENTIAL"],
    "base_delay": [-0.001, math.nan, math.inf, "1", None, False],
    "max_delay": [-1, math.nan, math.inf, "60"],
    "jitter": [-0.1, 1.5, math.nan, "0.1"],
    "retry_on_no_consensus": [1, "yes", None],
}


# **Feature: human-rpc-python-sdk, Property 11: For any reiterator configuration parameters, the
# system should accept valid configurations and reject invalid ones with descriptive error
# messages**
@given(config=configs, data=st.data())
def test_property_11_invalid_configurations_are_refused(
    config: dict[str, Any], data: st.DataObject
) -> None:
    """One invalid setting: ReiteratorConfigurationError naming it (constructor and configure)."""
    name = data.draw(st.sampled_from(sorted(INVALID)))
    value = data.draw(st.sampled_from(INVALID[name]))
    with pytest.raises(ReiteratorConfigurationError) as caught:
        manager(**{**config, name: value})
    assert caught.value.parameter == name
    assert name in str(caught.value)
    existing = manager(**config)
    with pytest.raises(ReiteratorConfigurationError):
        existing.configure(**{name: value})
    assert existing.config.max_attempts == config["max_attempts"]


def test_max_delay_below_base_delay_is_refused() -> None:
    """A cap smaller than the first delay is a contradiction, refused when built."""
    with pytest.raises(ReiteratorConfigurationError, match="max_delay"):
        ReiteratorManager(base_delay=10, max_delay=5)


def test_unknown_setting_in_configure_is_refused() -> None:
    """configure() names a setting it does not know."""
    with pytest.raises(ReiteratorConfigurationError, match="colour"):
        ReiteratorManager().configure(colour="blue")


# **Feature: human-rpc-python-sdk, Property 13: For any sequence of retry attempts, the system
# should implement proper exponential backoff with delays that increase according to the
# configured strategy**
@given(config=configs)
def test_property_13_backoff_follows_the_strategy(config: dict[str, Any]) -> None:
    """exponential: base*2^(n-1); linear: base*n; fixed: base; all capped, never decreasing."""
    built = manager(**config)
    base, cap = config["base_delay"], config["max_delay"]
    delays = [built.calculate_delay(n) for n in range(1, 12)]
    for n, delay in enumerate(delays, start=1):
        raw = {"exponential": base * 2 ** (n - 1), "linear": base * n, "fixed": base}[
            config["backoff_strategy"]
        ]
        assert delay == pytest.approx(min(raw, cap))
        assert 0 <= delay <= cap
    assert delays == sorted(delays)
    if config["backoff_strategy"] == "fixed":
        assert len(set(delays)) == 1


@given(config=configs, jitter=st.floats(0, 1), draw=st.floats(0, 1))
def test_jitter_only_shortens_delays(config: dict[str, Any], jitter: float, draw: float) -> None:
    """With jitter j, each delay lies in [(1 - j) d, d]: never past the cap."""
    plain = manager(**config)
    jittered = ReiteratorManager(**config, jitter=jitter, random_source=lambda: draw)
    for n in range(1, 6):
        d = plain.calculate_delay(n)
        assert d * (1 - jitter) - 1e-9 <= jittered.calculate_delay(n) <= d + 1e-9


def test_huge_attempt_numbers_do_not_overflow() -> None:
    """Attempt 5000 of an exponential backoff is the cap, not an OverflowError."""
    assert ReiteratorManager(base_delay=1, max_delay=60).calculate_delay(5000) == 60


# **Feature: human-rpc-python-sdk, Property 14: For any retry attempt, the new task submission
# should contain identical parameters to the original request**
@given(
    args=st.lists(st.text() | st.integers(), max_size=3),
    kwargs=st.dictionaries(
        st.sampled_from(["text", "reward", "context"]),
        st.text() | st.floats(allow_nan=False),
        max_size=3,
    ),
    attempts=st.integers(2, 6),
)
def test_property_14_every_submission_gets_the_same_parameters(
    args: list[Any], kwargs: dict[str, Any], attempts: int
) -> None:
    """Rejected until the last attempt: every call saw exactly the original arguments."""
    script = Script(["rejected"] * attempts)
    manager(max_attempts=attempts, base_delay=0).execute_with_retry(script, *args, **kwargs)
    assert len(script.calls) == attempts
    for called_args, called_kwargs in script.calls:
        assert called_args == tuple(args)
        assert called_kwargs == kwargs


# **Feature: human-rpc-python-sdk, Property 15: For any reiterator sequence that achieves positive
# consensus, the system should return the successful result and stop further retry attempts**
@given(rejections=st.integers(0, 6), extra=st.integers(1, 4), config=configs)
def test_property_15_approval_stops_at_once(
    rejections: int, extra: int, config: dict[str, Any]
) -> None:
    """k rejections then an approval: k + 1 calls, the approval returned, no wait after it."""
    clock = FakeClock()
    built = manager(clock, **{**config, "max_attempts": rejections + extra})
    script = Script(["rejected"] * rejections + ["approved"] * 5)
    result = built.execute_with_retry(script)
    assert result["outcome"] == "approved"
    assert len(script.calls) == rejections + 1
    assert len(clock.sleeps) == rejections
    assert clock.sleeps == [built.calculate_delay(n) for n in range(1, rejections + 1)]


# **Feature: human-rpc-python-sdk, Property 17: For any reiterator sequence that reaches maximum
# retry attempts, the system should return the final negative result and stop retrying**
@given(max_attempts=st.integers(1, 8), raise_it=st.booleans(), config=configs)
def test_property_17_max_attempts_ends_with_the_last_rejection(
    max_attempts: int, raise_it: bool, config: dict[str, Any]
) -> None:
    """Always rejected: max_attempts calls; the last verdict returned, or raised on request."""
    script = Script(["rejected"])
    clock = FakeClock()
    settings = {**config, "max_attempts": max_attempts, "raise_on_max_attempts": raise_it}
    built = manager(clock, **settings)
    if raise_it:
        with pytest.raises(ReiteratorMaxAttemptsError) as caught:
            built.execute_with_retry(script)
        assert caught.value.attempts == max_attempts
        assert caught.value.last_result == {
            "task_id": f"task_{max_attempts}",
            "outcome": "rejected",
            "decision": "reject",
        }
    else:
        result = built.execute_with_retry(script)
        assert result["task_id"] == f"task_{max_attempts}"
        assert result["outcome"] == "rejected"
    assert len(script.calls) == max_attempts
    assert built.get_status()["last_result"] == "negative"
    assert clock.sleeps == pytest.approx([_delay(config, n) for n in range(1, max_attempts)])


@given(
    steps=st.lists(outcomes, min_size=1, max_size=8),
    max_attempts=st.integers(1, 8),
    opt_in=st.booleans(),
)
def test_no_consensus_is_its_own_outcome(steps: list[str], max_attempts: int, opt_in: bool) -> None:
    """No consensus or expiry ends the sequence unless the caller opted in; rejection retries."""
    script = Script(steps)
    result = manager(
        max_attempts=max_attempts, base_delay=0, retry_on_no_consensus=opt_in
    ).execute_with_retry(script)
    retried = {"rejected"} | ({"no_consensus", "expired"} if opt_in else set())
    expected_calls = 1
    for step in (steps + [steps[-1]] * 8)[: max_attempts - 1]:
        if step not in retried:
            break
        expected_calls += 1
    assert len(script.calls) == expected_calls
    assert result["outcome"] == (steps + [steps[-1]] * 8)[expected_calls - 1]


# **Feature: human-rpc-python-sdk, Property 16: For any reiterator operation, status queries should
# return accurate information about current iteration count, active state, and configuration**
@given(
    sequences=st.lists(st.lists(outcomes, min_size=1, max_size=5), min_size=1, max_size=4),
    max_attempts=st.integers(1, 5),
)
def test_property_16_status_is_accurate(sequences: list[list[str]], max_attempts: int) -> None:
    """During a sequence: active, attempt n; after: inactive, counts, last result, total retries."""
    built = manager(max_attempts=max_attempts, base_delay=0.25, retry_on_no_consensus=True)
    retries = 0
    for steps in sequences:
        script = Script(steps, built)
        result = built.execute_with_retry(script)
        for number, status in enumerate(script.statuses, start=1):
            assert status["active"] is True
            assert status["attempt_count"] == number
            assert status["max_attempts"] == max_attempts
        retries += len(script.calls) - 1
        status = built.get_status()
        assert status["active"] is False
        assert status["attempt_count"] == len(script.calls)
        assert status["current_task_id"] == result["task_id"]
        assert status["total_retries_session"] == retries
        expected = {
            "approved": "positive",
            "rejected": "negative",
            "no_consensus": "no_consensus",
            "expired": "expired",
        }
        assert status["last_result"] == expected[result["outcome"]]
        assert status["next_retry_time"] is None
        assert status["backoff_strategy"] == "exponential"
    built.reset()
    assert built.get_status()["total_retries_session"] == 0
    assert built.get_status()["last_result"] is None


def test_status_shows_the_next_retry_time_while_waiting() -> None:
    """While waiting to resubmit, next_retry_time is set (ISO 8601)."""
    seen: list[Any] = []
    built = ReiteratorManager(
        base_delay=2, sleep=lambda s: seen.append(built.get_status()["next_retry_time"])
    )
    built.execute_with_retry(Script(["rejected", "approved"]))
    assert len(seen) == 1
    assert seen[0].endswith("Z")


ERROR_KINDS = ["unavailable", "timeout", "task_refused", "bug"]


def _error(kind: str, text: str) -> Exception:
    """An error a task function may raise: the SDK's own, or a plain bug."""
    if kind == "bug":
        return ValueError(text)
    reason = cast(Reason, kind)
    return HumanVerificationError(text, reason=reason, task_id="t" if kind == "timeout" else None)


# **Feature: human-rpc-python-sdk, Property 18: For any API error encountered during retry attempts,
# the system should handle failures gracefully while continuing to respect rate limits**
@given(
    failing_at=st.integers(1, 6),
    extra=st.integers(0, 3),
    error=st.builds(_error, st.sampled_from(ERROR_KINDS), st.text(max_size=30)),
)
def test_property_18_errors_are_reraised_unchanged(
    failing_at: int, extra: int, error: Exception
) -> None:
    """An error at attempt k: the same exception object surfaces; no attempt after it."""
    script = Script(["rejected"] * (failing_at - 1) + [error])
    built = manager(max_attempts=failing_at + extra, base_delay=0.1)
    with pytest.raises(type(error)) as caught:
        built.execute_with_retry(script)
    assert caught.value is error
    assert len(script.calls) == failing_at
    assert built.get_status()["last_result"] == "error"
    assert built.get_status()["active"] is False


# **Feature: human-rpc-python-sdk, Property 18: For any API error encountered during retry attempts,
# the system should handle failures gracefully while continuing to respect rate limits**
@given(
    waits=st.lists(st.floats(0, 90), min_size=1, max_size=4),
    max_attempts=st.integers(1, 6),
    max_delay=st.floats(1, 60),
)
def test_property_18_rate_limits_wait_retry_after_and_count(
    waits: list[float], max_attempts: int, max_delay: float
) -> None:
    """429s wait Retry-After and count as attempts; past the limits, ReiteratorRateLimitError."""
    limited = [
        HumanVerificationError("429", reason="rate_limited", details={"retry_after": w})
        for w in waits
    ]
    clock = FakeClock()
    script = Script([*limited, "approved"])
    built = manager(clock, max_attempts=max_attempts, base_delay=0, max_delay=max_delay)
    fits = all(w <= max_delay for w in waits) and len(waits) < max_attempts
    if fits:
        assert built.execute_with_retry(script)["outcome"] == "approved"
        assert clock.sleeps == waits
    else:
        with pytest.raises(ReiteratorRateLimitError) as caught:
            built.execute_with_retry(script)
        stop = next(i for i, w in enumerate(waits) if w > max_delay or i + 1 >= max_attempts)
        assert caught.value.retry_after == waits[stop]
        assert clock.sleeps == waits[:stop]
        assert built.get_status()["last_result"] == "rate_limited"
    assert all(s <= max_delay for s in clock.sleeps)


# **Feature: human-rpc-python-sdk, Property 19: For any dynamic reiterator configuration change, the
# system should apply changes to subsequent tasks while preserving ongoing iterations**
@given(before=configs, after=configs)
def test_property_19_changes_apply_to_the_next_sequence_only(
    before: dict[str, Any], after: dict[str, Any]
) -> None:
    """configure() mid-sequence: that sequence keeps its settings; the next uses the new ones."""
    clock = FakeClock()
    built = manager(clock, **before)

    class Reconfigures(Script):
        def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            if not self.calls:
                built.configure(**after)
            return super().__call__(*args, **kwargs)

    first = Reconfigures(["rejected"])
    built.execute_with_retry(first)
    assert len(first.calls) == before["max_attempts"]
    assert clock.sleeps == pytest.approx(
        [_delay(before, n) for n in range(1, before["max_attempts"])]
    )
    clock.sleeps.clear()
    second = Script(["rejected"])
    built.execute_with_retry(second)
    assert len(second.calls) == after["max_attempts"]
    assert clock.sleeps == pytest.approx(
        [_delay(after, n) for n in range(1, after["max_attempts"])]
    )
    assert built.get_status()["max_attempts"] == after["max_attempts"]


def _delay(config: dict[str, Any], n: int) -> float:
    raw = {
        "exponential": config["base_delay"] * 2 ** (n - 1),
        "linear": config["base_delay"] * n,
        "fixed": config["base_delay"],
    }
    return float(min(raw[config["backoff_strategy"]], config["max_delay"]))


# **Feature: human-rpc-python-sdk, Property 20: For any reiterator operation with debug logging
# enabled, the system should generate appropriate log messages without exposing sensitive
# information**
@given(
    steps=st.lists(outcomes, min_size=1, max_size=5),
    secret=st.text(min_size=8, max_size=30).map(lambda t: "sk-" + t),
)
def test_property_20_each_attempt_and_retry_is_logged_without_secrets(
    steps: list[str], secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    """One DEBUG line per verdict and per resubmission; the task's text and arguments never."""
    caplog.clear()
    script = Script(steps)
    with caplog.at_level(logging.DEBUG, logger="human_rpc_sdk"):
        manager(max_attempts=5, base_delay=0.1).execute_with_retry(script, secret, question=secret)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("human_rpc_sdk")]
    verdicts = [m for m in messages if "attempt" in m and "of 5:" in m]
    retries = [m for m in messages if "resubmitting in" in m]
    assert len(verdicts) == len(script.calls)
    assert len(retries) == len(script.calls) - 1
    assert all(
        r.levelno == logging.DEBUG for r in caplog.records if r.name.startswith("human_rpc_sdk")
    )
    for text in messages + [repr(r.args) for r in caplog.records]:
        assert secret not in text
