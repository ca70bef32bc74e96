"""@guard: confident results pass untouched; unsure ones go to paid human review."""

from __future__ import annotations

import asyncio
import inspect
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent, HumanVerificationError, SDKConfigurationError, guard
from stub_gateway import GatewayServer, serve_in_thread
from stub_gateway.tasks import ReviewPolicy

from .conftest import FakeClock, human_agent

REWARD = Decimal("0.001")


class CountingAdapter(requests.adapters.HTTPAdapter):
    """Counts every HTTP request the agent sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent += 1
        return super().send(request, **kwargs)


@dataclass
class Prediction:
    answer: str
    confidence: float


def shaped(kind: str, answer: str, confidence: float) -> Any:
    if kind == "dict":
        return {"answer": answer, "confidence": confidence}
    if kind == "tuple":
        return (answer, confidence)
    return Prediction(answer, confidence)


# **Feature: human-rpc-python-sdk, Property 6: For any function decorated with @guard, results with
# confidence above threshold should return immediately while results below threshold should
# trigger human verification**
@given(
    threshold=st.floats(0, 1),
    confidence=st.floats(0, 1),
    kind=st.sampled_from(["dict", "tuple", "attribute"]),
)
def test_property_6_threshold_decides_who_answers(
    reviewers: GatewayServer, threshold: float, confidence: float, kind: str
) -> None:
    """At/above: the very same object, zero HTTP requests. Below: one paid task, human verdict."""
    reviewers.gateway.tasks.set_policy(ReviewPolicy("approve"))
    agent = _agent(reviewers)
    counter = CountingAdapter()
    agent.session.mount("http://", counter)
    paid_before = len(agent.payments)
    result = shaped(kind, "positive", confidence)

    @guard(threshold=threshold, agent=agent, reward=REWARD)
    def classify(text: str) -> object:
        return result

    out: Any = classify("a fine day")
    if confidence >= threshold:
        assert out is result
        assert counter.sent == 0
        assert len(agent.payments) == paid_before
    else:
        assert out == {
            "answer": "positive",
            "confidence": confidence,
            "human_verdict": {
                "decision": "approve",
                "confidence": 1.0,
                "comment": "Checked: the answer is correct.",
                "outcome": "approved",
                "task_id": out["human_verdict"]["task_id"],
            },
            "verified": True,
            "reason": None,
        }
        (payment,) = agent.payments[paid_before:]
        assert payment.amount == REWARD


_AGENTS: dict[int, AutoAgent] = {}


def _agent(server: GatewayServer) -> AutoAgent:
    """One funded agent per gateway, reused across examples."""
    agent = _AGENTS.get(id(server))
    if agent is None:
        agent = _AGENTS[id(server)] = human_agent(server, usdc="50")
    return agent


# **Feature: human-rpc-python-sdk, Property 7: For any guard decorator triggering human
# verification, the system should call HumanRPC API, wait for verdict, and combine results
# appropriately**
@given(
    question=st.text(min_size=1, max_size=80).filter(str.strip),
    answer=st.text(min_size=1, max_size=40),
    confidence=st.floats(0, 0.89),
    verdict=st.sampled_from(["approve", "reject"]),
    on_reject=st.sampled_from(["raise", "return"]),
)
def test_property_7_humans_are_asked_and_their_verdict_combined(
    reviewers: GatewayServer,
    question: str,
    answer: str,
    confidence: float,
    verdict: str,
    on_reject: str,
) -> None:
    """The task carries question, answer and confidence; the verdict and payment come back."""
    gateway = reviewers.gateway
    gateway.tasks.set_policy(ReviewPolicy(verdict))
    agent = _agent(reviewers)
    paid_before = len(agent.payments)
    before = gateway.balance(gateway.treasury, "USDC")

    @guard(threshold=0.9, agent=agent, reward=REWARD, on_reject=on_reject, agent_id="prop-7")
    def judge(text: str) -> dict[str, Any]:
        return {"answer": answer, "confidence": confidence}

    if verdict == "reject" and on_reject == "raise":
        with pytest.raises(HumanVerificationError) as caught:
            judge(question)
        assert caught.value.reason == "rejected"
        task_id = caught.value.task_id
    else:
        out = judge(question)
        human = out["human_verdict"]
        assert human is not None
        task_id = human["task_id"]
        assert (out["answer"], out["confidence"]) == (answer, confidence)
        assert human["decision"] == verdict
        assert out["verified"] is (verdict == "approve")
        assert human["comment"]
    assert task_id is not None
    task = gateway.tasks.get(task_id)
    assert task is not None
    data = task.request["context"]["data"]
    assert (task.text, data["agentConclusion"], data["aiConfidence"]) == (
        question,
        answer,
        confidence,
    )
    assert task.request["agentName"] == "prop-7"
    assert gateway.balance(gateway.treasury, "USDC") - before == REWARD
    (payment,) = agent.payments[paid_before:]
    assert task.payment is not None
    assert payment.signature == task.payment["signature"]


# -- reading the confidence ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "result",
    [
        {"answer": 1},
        {"confidence": 1.5},
        {"confidence": -0.1},
        {"confidence": math.nan},
        {"confidence": True},
        ("a",),
        "plain",
        None,
    ],
)
def test_unusable_confidence_is_a_clear_error_without_io(result: Any) -> None:
    """Missing, out of range, NaN or boolean confidence: a HumanVerificationError saying why."""
    agent = AutoAgent(
        Keypair(), rpc_url="http://127.0.0.1:9", human_rpc_url="http://127.0.0.1:9/api/v1/tasks"
    )
    counter = CountingAdapter()
    agent.session.mount("http://", counter)

    @guard(agent=agent)
    def f() -> object:
        return result

    with pytest.raises(HumanVerificationError) as caught:
        f()
    assert caught.value.reason == "invalid_confidence"
    assert "confidence" in str(caught.value)
    assert counter.sent == 0


def test_confidence_function_overrides() -> None:
    """guard(confidence=...) reads it from any shape."""

    @guard(threshold=0.5, confidence=lambda r: r["score"] / 100, agent=AutoAgent(Keypair()))
    def f() -> dict[str, int]:
        return {"score": 80}

    assert f() == {"score": 80}


# -- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "parameter"),
    [
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": -0.01}, "threshold"),
        ({"threshold": math.nan}, "threshold"),
        ({"threshold": True}, "threshold"),
        ({"threshold": "0.9"}, "threshold"),
        ({"timeout": 0}, "timeout"),
        ({"reward": "-1"}, "reward"),
        ({"on_reject": "ignore"}, "on_reject"),
        ({"on_timeout": None}, "on_timeout"),
        ({"agent": object()}, "agent"),
        ({"confidence": 0.5}, "confidence"),
    ],
)
def test_bad_guard_configuration_fails_at_decoration(
    options: dict[str, Any], parameter: str
) -> None:
    """Invalid settings raise SDKConfigurationError when decorating, not when called."""
    with pytest.raises(SDKConfigurationError) as caught:
        guard(**options)
    assert caught.value.parameter == parameter


def test_bare_decorator_and_metadata_are_kept() -> None:
    """@guard without arguments works; name, docstring, signature and __wrapped__ are kept."""

    def original(text: str, *, depth: int = 2) -> dict[str, float]:
        """Rate a text."""
        return {"answer": 1.0, "confidence": 0.99}

    guarded = guard(original)
    assert guarded.__name__ == "original"
    assert guarded.__doc__ == "Rate a text."
    assert inspect.signature(guarded) == inspect.signature(original)
    assert guarded.__wrapped__ is original  # type: ignore[attr-defined]
    assert guarded("x") == {"answer": 1.0, "confidence": 0.99}


def test_async_functions_are_guarded(reviewers: GatewayServer) -> None:
    """async def stays a coroutine function; unsure results are verified off the event loop."""
    reviewers.gateway.tasks.set_policy(ReviewPolicy("approve"))
    agent = human_agent(reviewers)

    @guard(threshold=0.9, agent=agent, reward=REWARD)
    async def classify(text: str) -> tuple[str, float]:
        await asyncio.sleep(0)
        return ("spam" if "win" in text else "ham", 0.5 if "?" in text else 0.95)

    assert inspect.iscoroutinefunction(classify)

    async def both() -> Any:
        return await asyncio.gather(classify("hello"), classify("win?"))

    confident, checked = asyncio.run(both())
    assert confident == ("ham", 0.95)
    assert checked["answer"] == "spam"
    assert checked["human_verdict"]["decision"] == "approve"
    assert len(agent.payments) == 1


def test_question_defaults_to_the_first_text_argument(reviewers: GatewayServer) -> None:
    """Without question=, reviewers see the first string argument; with it, its result."""
    reviewers.gateway.tasks.set_policy(ReviewPolicy("approve"))
    agent = human_agent(reviewers)

    @guard(agent=agent, reward=REWARD)
    def f(n: int, text: str) -> tuple[str, float]:
        return ("x", 0.1)

    @guard(agent=agent, reward=REWARD, question=lambda n: f"What is {n} squared?")
    def g(n: int) -> tuple[int, float]:
        return (n * n, 0.1)

    @guard(agent=agent, reward=REWARD)
    def h(n: int) -> tuple[int, float]:
        return (n, 0.1)

    texts = []
    outs: tuple[Any, ...] = (f(3, "the question"), g(4), h(5))
    for out in outs:
        task = reviewers.gateway.tasks.get(out["human_verdict"]["task_id"])
        assert task is not None
        texts.append(task.text)
    assert texts == [
        "the question",
        "What is 4 squared?",
        "Is this the right result of "
        "test_question_defaults_to_the_first_text_argument.<locals>.h(5)?",
    ]


# -- what the caller chose for unhappy endings -----------------------------------------------------


@pytest.mark.parametrize("policy", ["raise", "return"])
def test_timeout_policy(policy: str) -> None:
    """Humans slower than timeout: raise with the task id, or return unverified."""
    clock = FakeClock()
    with serve_in_thread(review_policy="approve", review_delay=1000, clock=clock) as running:
        agent = human_agent(running, clock=clock, sleep=clock.sleep)

        @guard(agent=agent, timeout=10, on_timeout=policy, reward=REWARD)
        def f() -> tuple[str, float]:
            return ("x", 0.2)

        if policy == "raise":
            with pytest.raises(HumanVerificationError) as caught:
                f()
            assert caught.value.reason == "timeout"
            assert caught.value.task_id is not None
        else:
            out: Any = f()
            assert (out["verified"], out["reason"], out["human_verdict"]) == (
                False,
                "timeout",
                None,
            )
    assert sum(clock.sleeps) == pytest.approx(10)


@pytest.mark.parametrize("policy", ["raise", "return"])
def test_unreachable_service_policy(policy: str) -> None:
    """No HumanRPC service at the URL: raise 'unavailable', or return unverified; nothing paid."""
    agent = AutoAgent(
        Keypair(), rpc_url="http://127.0.0.1:9", human_rpc_url="http://127.0.0.1:9/api/v1/tasks"
    )

    @guard(agent=agent, on_unavailable=policy)
    def f() -> tuple[str, float]:
        return ("x", 0.2)

    if policy == "raise":
        with pytest.raises(HumanVerificationError, match="could not reach"):
            f()
    else:
        unverified: Any = f()
        assert unverified["reason"] == "unavailable"
    assert agent.payments == []


@pytest.mark.parametrize("policy", ["raise", "return"])
def test_no_consensus_policy(policy: str) -> None:
    """Reviewers who never agree: decision None, outcome no_consensus; raise or return."""
    with serve_in_thread(
        review_policy="script:split", voters=3, consensus_threshold=0.9
    ) as running:
        agent = human_agent(running)

        @guard(agent=agent, on_no_consensus=policy, reward=REWARD)
        def f() -> tuple[str, float]:
            return ("x", 0.2)

        if policy == "raise":
            with pytest.raises(HumanVerificationError) as caught:
                f()
            assert caught.value.reason == "no_consensus"
        else:
            out: Any = f()
            assert out["verified"] is False
            assert out["human_verdict"] is not None
            assert (out["human_verdict"]["decision"], out["human_verdict"]["outcome"]) == (
                None,
                "no_consensus",
            )


def test_agent_is_built_from_the_environment_on_first_need(
    reviewers: GatewayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without agent=, the first unsure call builds an AutoAgent from the environment."""
    reviewers.gateway.tasks.set_policy(ReviewPolicy("approve"))
    wallet = Keypair()
    reviewers.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(1)})
    monkeypatch.setenv("SOLANA_PRIVATE_KEY", str(wallet))
    monkeypatch.setenv("SOLANA_RPC_URL", reviewers.rpc_url)
    monkeypatch.setenv("HUMAN_RPC_URL", f"{reviewers.url}/api/v1/tasks")

    @guard(reward=REWARD)
    def f() -> tuple[str, float]:
        return ("x", 0.2)

    verified: Any = f()
    assert verified["verified"] is True
    assert reviewers.gateway.balance(wallet.pubkey(), "USDC") == 1 - REWARD
