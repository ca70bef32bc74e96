"""AutoAgent.ask_human_rpc and the reiterator against the stub gateway, over real HTTP."""

from __future__ import annotations

import base64
import json
import logging
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from solders.keypair import Keypair

from human_rpc_sdk import (
    HumanVerificationError,
    ReiteratorRateLimitError,
    SDKConfigurationError,
)
from stub_gateway import GatewayServer, serve_in_thread
from stub_gateway.tasks import ReviewPolicy

from .conftest import FakeClock, human_driven
from .drivers import Driven, Maker
from .test_secrets import secret_forms

REWARD = Decimal("0.002")


def test_ask_returns_the_verdict_and_what_was_paid(reviewers: GatewayServer, driven: Maker) -> None:
    """An approved task: outcome, decision, comments, consensus and the payment's signature."""
    reviewers.gateway.tasks.set_policy(ReviewPolicy("approve"))
    agent = human_driven(driven, reviewers, usdc="1")
    verdict = agent.ask_human_rpc(
        "Is Paris the capital of France?", answer="yes", confidence=0.7, reward="0.1"
    )
    assert verdict["outcome"] == "approved"
    assert verdict["decision"] == "approve"
    assert verdict["confidence"] == 1.0
    assert verdict["sentiment"] == "POSITIVE"
    assert verdict["comments"] == ["Checked: the answer is correct."] * 11
    assert verdict["consensus"]["requiredVoters"] == 11
    (receipt,) = agent.payments
    assert verdict["payment"] is not None
    assert verdict["payment"]["signature"] == receipt.signature
    assert agent.balance("USDC") == Decimal("0.9")


def test_rejection_without_the_reiterator_is_reported_once(
    reviewers: GatewayServer, driven: Maker
) -> None:
    """Reiterator off: a rejection comes back as the verdict; one task, one payment."""
    reviewers.gateway.tasks.set_policy(ReviewPolicy("reject"))
    agent = human_driven(driven, reviewers)
    verdict = agent.ask_human_rpc("2 + 2 = 5?", answer="yes", confidence=0.3, reward=REWARD)
    assert (verdict["outcome"], verdict["decision"]) == ("rejected", "reject")
    assert len(agent.payments) == 1


def test_no_endpoint_is_a_configuration_error(driven: Maker) -> None:
    """Without human_rpc_url or HUMAN_RPC_URL, asking says how to configure it; nothing is sent."""
    agent = driven(Keypair(), rpc_url="http://127.0.0.1:9")
    with pytest.raises(SDKConfigurationError, match="HUMAN_RPC_URL"):
        agent.ask_human_rpc("q")


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"text": ""}, "text"),
        ({"confidence": 1.2}, "confidence"),
        ({"reward": "0"}, "reward"),
        ({"timeout": -1}, "timeout"),
    ],
)
def test_bad_questions_are_refused_before_paying(
    reviewers: GatewayServer, kwargs: dict[str, Any], parameter: str, driven: Maker
) -> None:
    """Invalid arguments: SDKConfigurationError naming them; no request, no payment."""
    agent = human_driven(driven, reviewers)
    arguments = {"text": "q", **kwargs}
    with pytest.raises(SDKConfigurationError) as caught:
        agent.ask_human_rpc(**arguments)
    assert caught.value.parameter == parameter
    assert agent.payments == []


def test_timeout_names_the_task_and_waiting_resumes(driven: Maker) -> None:
    """No verdict in time: the error carries the task id; wait_for_verdict picks it up, unpaid."""
    clock = FakeClock()
    with serve_in_thread(review_policy="approve", review_delay=120, clock=clock) as running:
        agent = human_driven(driven, running, clock=clock, sleep=clock.sleep)
        with pytest.raises(HumanVerificationError) as caught:
            agent.ask_human_rpc("q", reward=REWARD, timeout=30)
        error = caught.value
        assert error.reason == "timeout"
        assert error.task_id is not None
        assert f"wait_for_verdict({error.task_id!r})" in str(error)
        assert sum(clock.sleeps) == pytest.approx(30)
        # Waits grow (0.25 s, x1.5, capped at 5 s); the last one is cut to the deadline.
        assert clock.sleeps[:-1] == sorted(clock.sleeps[:-1])
        assert max(clock.sleeps) <= 5
        verdict = agent.wait_for_verdict(error.task_id, timeout=200)
        assert verdict["outcome"] == "approved"
        assert len(agent.payments) == 1


def test_unknown_task_is_reported(reviewers: GatewayServer, driven: Maker) -> None:
    """Waiting on a task the service does not know: HumanVerificationError task_not_found."""
    with pytest.raises(HumanVerificationError) as caught:
        human_driven(driven, reviewers).wait_for_verdict("task_does_not_exist", timeout=5)
    assert caught.value.reason == "task_not_found"


def _encoded(document: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode()


@pytest.mark.parametrize(
    "document",
    [
        ["not", "an", "object"],
        {"no": "status"},
        {"status": "completed"},
        {"status": "completed", "result": {"decision": "maybe"}},
        {"status": 7},
    ],
)
def test_malformed_answers_are_reported(responder: str, document: object, driven: Maker) -> None:
    """A task answer of the wrong shape: HumanVerificationError malformed_answer."""
    agent = driven(
        Keypair(),
        rpc_url="http://127.0.0.1:9",
        human_rpc_url=f"{responder}/fixed/200/{_encoded(document)}",
    )
    with pytest.raises(HumanVerificationError) as caught:
        agent.wait_for_verdict("task_1", timeout=5)
    assert caught.value.reason == "malformed_answer"


def test_transient_failures_are_retried(responder: str, driven: Maker) -> None:
    """Three 503s, then the verdict: polling retries (with growing waits) and succeeds."""
    clock = FakeClock()
    done = {
        "status": "completed",
        "result": {"decision": "yes", "confidence": 1.0},
        "consensus": {},
    }
    url = f"{responder}/flaky/transient-{id(clock)}/3/{_encoded(done)}"
    agent = driven(
        Keypair(), rpc_url="http://127.0.0.1:9", human_rpc_url=url, clock=clock, sleep=clock.sleep
    )
    assert agent.wait_for_verdict("task_9", timeout=60)["outcome"] == "approved"
    assert len(clock.sleeps) == 3
    assert clock.sleeps == sorted(clock.sleeps)


def test_rate_limit_without_the_reiterator_is_an_error_with_retry_after(driven: Maker) -> None:
    """Past the creation limit: HumanVerificationError rate_limited with retry_after; not paid."""
    clock = FakeClock()
    with serve_in_thread(rate_limit=(1, 45), clock=clock) as running:
        agent = human_driven(driven, running, clock=clock, sleep=clock.sleep)
        agent.ask_human_rpc("first", reward=REWARD)
        with pytest.raises(HumanVerificationError) as caught:
            agent.ask_human_rpc("second", reward=REWARD)
    assert caught.value.reason == "rate_limited"
    assert caught.value.details["retry_after"] == 45
    assert len(agent.payments) == 1


def test_reiterator_waits_out_a_rate_limit_and_counts_it(driven: Maker) -> None:
    """Reiterator on: a 429 waits Retry-After, then tries again; past max_delay it gives up."""
    clock = FakeClock()
    with serve_in_thread(rate_limit=(1, 30), clock=clock) as running:
        agent = human_driven(
            driven, running, clock=clock, sleep=clock.sleep, reiterator=True, base_delay=1
        )
        agent.ask_human_rpc("first", reward=REWARD)
        clock.sleeps.clear()
        assert agent.ask_human_rpc("second", reward=REWARD)["outcome"] == "approved"
        assert clock.sleeps[0] == 30
        assert len(agent.payments) == 2
        agent.reiterator.configure(max_delay=10)
        with pytest.raises(ReiteratorRateLimitError) as caught:
            agent.ask_human_rpc("third", reward=REWARD)
        assert caught.value.retry_after == 30
        assert len(agent.payments) == 2


# **Feature: human-rpc-python-sdk, Property 12: For any human-RPC task that completes with negative
# consensus, the reiterator should automatically trigger when enabled and remain inactive when
# disabled**
@given(
    enabled=st.booleans(),
    max_attempts=st.integers(1, 4),
    script=st.lists(st.sampled_from(["reject", "approve", "split"]), min_size=1, max_size=4),
)
def test_property_12_rejections_resubmit_only_when_enabled(
    reviewers: GatewayServer, enabled: bool, max_attempts: int, script: list[str], shared: Driven
) -> None:
    """Tasks created = 1 when disabled; else one per rejection up to max_attempts; each paid."""
    gateway = reviewers.gateway
    gateway.tasks.set_policy(ReviewPolicy("script", tuple(script)))
    agent = shared
    agent.reiterator.configure(max_attempts=max_attempts, base_delay=0.0)
    (agent.enable_reiterator if enabled else agent.disable_reiterator)()
    paid_before = len(agent.payments)
    treasury_before = gateway.balance(gateway.treasury, "USDC")
    verdict = agent.ask_human_rpc("Is the sky green?", answer="no", confidence=0.4, reward=REWARD)
    steps = (script + [script[-1]] * 8)[: max_attempts if enabled else 1]
    expected = 1
    while enabled and expected < len(steps) and steps[expected - 1] == "reject":
        expected += 1
    paid = agent.payments[paid_before:]
    assert len(paid) == expected
    assert gateway.balance(gateway.treasury, "USDC") - treasury_before == REWARD * expected
    outcome = {"reject": "rejected", "approve": "approved"}.get(steps[expected - 1])
    if outcome is not None:
        assert verdict["outcome"] == outcome
    # Property 14 end to end: every resubmission carried exactly the original task.
    bodies = [
        t.request
        for t in gateway.tasks.all()
        if t.payment and t.payment["signature"] in {p.signature for p in paid}
    ]
    assert len(bodies) == expected
    assert all(body == bodies[0] for body in bodies)


@pytest.fixture
def shared(driven: Maker, reviewers: GatewayServer) -> Driven:
    """One payer of the current driver kind for every example of a property."""
    return human_driven(driven, reviewers, usdc="50")


def test_reiterator_controls_and_status(reviewers: GatewayServer, driven: Maker) -> None:
    """enable/disable and get_reiterator_status reflect the agent's reiterator."""
    agent = human_driven(
        driven,
        reviewers,
        reiterator=False,
        max_retry_attempts=4,
        backoff_strategy="linear",
        base_delay=0.5,
    )
    status = agent.get_reiterator_status()
    assert (
        status["enabled"],
        status["max_attempts"],
        status["backoff_strategy"],
        status["base_delay"],
    ) == (False, 4, "linear", 0.5)
    agent.enable_reiterator()
    assert agent.get_reiterator_status()["enabled"] is True
    assert set(status) >= {
        "active",
        "current_task_id",
        "attempt_count",
        "max_attempts",
        "next_retry_time",
        "total_retries_session",
        "last_result",
    }


# **Feature: human-rpc-python-sdk, Property 20: For any reiterator operation with debug logging
# enabled, the system should generate appropriate log messages without exposing sensitive
# information**
@given(seed=st.binary(min_size=32, max_size=32), rejections=st.integers(0, 2))
def test_property_20_end_to_end_debug_logs_hold_no_secrets(
    reviewers: GatewayServer,
    seed: bytes,
    rejections: int,
    caplog: pytest.LogCaptureFixture,
    driven: Maker,
) -> None:
    """A reiterated, paid task at DEBUG: every retry and verdict logged; no key, no payload."""
    keypair = Keypair.from_seed(seed)
    reviewers.gateway.fund(keypair.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(1)})
    reviewers.gateway.tasks.set_policy(
        ReviewPolicy("script", ("reject",) * rejections + ("approve",))
    )
    agent = driven(
        str(keypair),
        rpc_url=reviewers.rpc_url,
        human_rpc_url=f"{reviewers.url}/api/v1/tasks",
        reiterator=True,
        base_delay=0.0,
        capture=True,
    )
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        agent.ask_human_rpc(
            "What is the launch code?", answer="0000", confidence=0.2, reward=REWARD
        )
    messages = [r.getMessage() for r in caplog.records]
    reiterator_lines = [m for m in messages if m.startswith("reiterator:")]
    assert (
        len(
            [m for m in reiterator_lines if "attempt" in m and ":" in m and "resubmitting" not in m]
        )
        == rejections + 1
    )
    assert len([m for m in reiterator_lines if "resubmitting" in m]) == rejections
    for text in messages + [repr(r.args) for r in caplog.records]:
        for form in secret_forms(keypair):
            assert form not in text
        for header in agent.sent_payments:
            assert header not in text
        assert "launch code" not in text
    agent.close()


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, 1.0),
        ("", 1.0),
        ("7", 7.0),
        ("2.5", 2.5),
        ("-3", 1.0),
        ("nan", 1.0),
        ("soon", 1.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 1.0),
    ],
)
def test_retry_after_header_parsing(header: str | None, seconds: float) -> None:
    """Delta-seconds are used as given; past dates, junk and negatives fall back to 1 s."""
    from human_rpc_sdk._io.human import retry_after_seconds

    assert retry_after_seconds(header) == seconds
