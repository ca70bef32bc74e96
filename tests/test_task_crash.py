"""Paid human tasks survive a crash: the task id is journaled with its payment before the wait,
a new agent resumes it without paying again; expired tasks, 429s within the timeout, and the
gateway's task list for reviewers."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
from solders.keypair import Keypair

from human_rpc_sdk import (
    AutoAgent,
    HumanVerificationError,
    ReiteratorManager,
    ReiteratorRateLimitError,
    guard,
)
from stub_gateway import GatewayServer, serve_in_thread
from stub_gateway.tasks import ReviewPolicy

from .conftest import FakeClock, human_agent

ROOT = Path(__file__).resolve().parent.parent
REWARD = Decimal("0.02")
T = TypeVar("T")


@pytest.fixture
def manual() -> Iterator[GatewayServer]:
    """A gateway whose reviewers are people voting through the API (3 voters, majority)."""
    with serve_in_thread(review_policy="manual", voters=3, consensus_threshold=0.51) as running:
        yield running


def rows(path: Path) -> list[dict[str, Any]]:
    """The journal's rows, read as another process would."""
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM payments ORDER BY id")]


def eventually(probe: Callable[[], T | None], child: subprocess.Popen[str], seconds: float) -> T:
    """What ``probe`` finds within ``seconds`` while ``child`` runs (fails with its stderr)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        try:  # a short wait on the child between looks (and a check that it still runs)
            child.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"the asking process ended early: {child.communicate()}")
    child.kill()
    pytest.fail(f"not seen within {seconds} s: {child.communicate()[1][-2000:]}")


def vote(server: GatewayServer, task_id: str, decision: str, voters: int = 3) -> None:
    for n in range(voters):
        reply = requests.post(
            f"{server.url}/api/v1/tasks/{task_id}/votes",
            json={"decision": decision, "userId": f"person-{n}", "comment": "looked at it"},
            timeout=10,
        )
        assert reply.status_code == 200, reply.text


@pytest.mark.parametrize(
    ("how", "stop"),
    [
        ("ask", signal.SIGKILL),
        ("ask", signal.SIGINT),
        ("guard", signal.SIGKILL),
        ("guard", signal.SIGINT),
    ],
    ids=["ask-SIGKILL", "ask-SIGINT", "guard-SIGKILL", "guard-SIGINT"],
)
def test_a_task_paid_by_a_stopped_process_is_resumed_not_paid_again(
    manual: GatewayServer, tmp_path: Path, how: str, stop: signal.Signals
) -> None:
    """A process creates a paid task (ask_human_rpc or @guard) and is killed or interrupted
    while it waits; a new agent on its journal finds the task in pending_tasks(), and after
    people vote, wait_for_verdict gets the verdict. One payment on the ledger, one row."""
    gateway = manual.gateway
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(1)})
    treasury_before = gateway.balance(gateway.treasury, "USDC")
    journal = tmp_path / "journal.sqlite3"
    tasks_url = f"{manual.url}/api/v1/tasks"
    job = {
        "how": how,
        "rpc_url": manual.rpc_url,
        "tasks_url": tasks_url,
        "journal": str(journal),
        "reward": str(REWARD),
    }
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.workers.asker", json.dumps(job)],
        cwd=ROOT,
        env={**os.environ, "SOLANA_PRIVATE_KEY": str(wallet)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        (task,) = eventually(lambda: gateway.tasks.all() or None, child, 60)
        # The id is journaled with the payment as soon as the 202 is read, before the wait.
        row = eventually(
            lambda: next((r for r in rows(journal) if r.get("task_id")), None), child, 10
        )
        assert row["task_id"] == task.id
        child.send_signal(stop)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    if stop == signal.SIGINT:
        assert child.returncode == 130, err
        assert json.loads(out) == {"interrupted": True}
    else:
        assert child.returncode == -signal.SIGKILL
    assert gateway.tasks.get(task.id) is not None
    assert gateway.tasks.get(task.id).status == "pending"  # type: ignore[union-attr]

    agent = AutoAgent(wallet, rpc_url=manual.rpc_url, human_rpc_url=tasks_url, journal_path=journal)
    (pending,) = agent.pending_tasks()
    assert pending.task_id == task.id
    assert (pending.state, pending.amount, pending.currency) == ("accepted", REWARD, "USDC")
    assert pending.task_outcome is None
    assert agent.pending_payments() == []  # the payment itself is settled; the task is not

    vote(manual, task.id, "yes")
    verdict = agent.wait_for_verdict(pending.task_id, timeout=30)
    assert (verdict["task_id"], verdict["outcome"]) == (task.id, "approved")
    assert agent.pending_tasks() == []

    assert gateway.balance(gateway.treasury, "USDC") - treasury_before == REWARD
    assert agent.balance("USDC") == 1 - REWARD
    assert len(gateway.tasks.all()) == 1
    (only,) = rows(journal)
    assert (only["state"], only["task_id"], only["task_outcome"]) == (
        "accepted",
        task.id,
        "approved",
    )
    (receipt,) = agent.payments
    assert (receipt.task_id, receipt.task_outcome) == (task.id, "approved")
    agent.close()


def test_a_timed_out_task_stays_pending_until_its_verdict(tmp_path: Path) -> None:
    """A timeout leaves the paid task in pending_tasks (journaled before the wait); the verdict
    taken later with wait_for_verdict removes it. Without the reiterator a verdict is recorded
    on its own row: a task asked and answered in one call is never pending."""
    clock = FakeClock()
    with serve_in_thread(
        review_policy="manual", voters=3, consensus_threshold=0.51, clock=clock
    ) as running:
        agent = human_agent(
            running, clock=clock, sleep=clock.sleep, journal_path=tmp_path / "journal"
        )
        with pytest.raises(HumanVerificationError) as caught:
            agent.ask_human_rpc("Is 2 + 2 = 4?", answer="yes", reward=REWARD, timeout=5)
        assert caught.value.reason == "timeout"
        (pending,) = agent.pending_tasks()
        assert pending.task_id == caught.value.task_id
        vote(running, caught.value.task_id or "", "no")
        assert agent.wait_for_verdict(pending.task_id or "")["outcome"] == "rejected"
        assert agent.pending_tasks() == []
        running.gateway.tasks.set_policy(ReviewPolicy("approve"))
        assert agent.ask_human_rpc("Is 3 > 2?", reward=REWARD)["outcome"] == "approved"
        assert agent.pending_tasks() == []
        assert [(p.task_outcome, p.task_id is not None) for p in agent.payments] == [
            ("rejected", True),
            ("approved", True),
        ]


def test_each_resubmission_is_journaled_with_its_own_task(reviewers: GatewayServer) -> None:
    """Reiterator on, rejected then approved: two payments, each with its task and verdict."""
    reviewers.gateway.tasks.set_policy(ReviewPolicy("script", ("reject", "approve")))
    clock = FakeClock()
    agent = human_agent(reviewers, reiterator=True, clock=clock, sleep=clock.sleep)
    verdict = agent.ask_human_rpc("Is 2 + 2 = 4?", answer="yes", reward=REWARD)
    assert verdict["outcome"] == "approved"
    first, second = agent.payments
    assert (first.task_outcome, second.task_outcome) == ("rejected", "approved")
    assert second.task_id == verdict["task_id"] != first.task_id
    assert agent.pending_tasks() == []


# -- @guard: a task that expired on the server is a timeout -----------------------------------


@pytest.mark.parametrize("policy", ["raise", "return"])
def test_guard_routes_an_expired_task_to_on_timeout(policy: str) -> None:
    """Nobody votes and the task expires on the service: on_timeout decides (reason timeout),
    not on_no_consensus, whose opposite setting is given to tell them apart."""
    clock = FakeClock()
    other = "raise" if policy == "return" else "return"
    with serve_in_thread(review_policy="manual", task_ttl=5, clock=clock) as running:
        agent = human_agent(running, clock=clock, sleep=clock.sleep)

        @guard(
            threshold=0.9,
            reward=REWARD,
            agent=agent,
            timeout=60,
            on_timeout=policy,
            on_no_consensus=other,
        )
        def classify(text: str) -> dict[str, Any]:
            return {"answer": "positive", "confidence": 0.4}

        if policy == "raise":
            with pytest.raises(HumanVerificationError) as caught:
                classify("great film")
            assert caught.value.reason == "timeout"
            assert "expired" in str(caught.value)
        else:
            response = classify("great film")
            assert (response["verified"], response["reason"]) == (False, "timeout")
            assert response["human_verdict"] is not None
            assert response["human_verdict"]["outcome"] == "expired"
    assert clock.now < 60  # it ended when the task expired, not at the guard's timeout


# -- the reiterator: a 429 never outlasts the call's timeout ---------------------------------


def test_a_rate_limit_longer_than_the_timeout_raises_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Reiterator on, Retry-After 30 s, timeout 0.3 s: ReiteratorRateLimitError with
    retry_after, no waiting, nothing paid. With timeout 60 s it waits the 30 s (logged at
    INFO) and the task is created and paid."""
    clock = FakeClock()
    with serve_in_thread(rate_limit=(1, 30), clock=clock) as running:
        agent = human_agent(running, clock=clock, sleep=clock.sleep, reiterator=True)
        agent.ask_human_rpc("first", reward=REWARD)
        clock.sleeps.clear()
        with pytest.raises(ReiteratorRateLimitError) as caught:
            agent.ask_human_rpc("second", reward=REWARD, timeout=0.3)
        assert caught.value.retry_after == 30
        assert "timeout" in str(caught.value)
        assert clock.sleeps == []
        assert len(agent.payments) == 1
        with caplog.at_level(logging.INFO, logger="human_rpc_sdk"):
            assert agent.ask_human_rpc("third", reward=REWARD, timeout=60)["outcome"] == (
                "approved"
            )
        assert clock.sleeps[0] == 30
        assert sum(clock.sleeps) <= 60
        assert any(
            r.levelno == logging.INFO and "resubmitting in 30" in r.getMessage()
            for r in caplog.records
        )
        assert len(agent.payments) == 2


def test_a_rejection_is_not_resubmitted_past_the_deadline() -> None:
    """execute_until: a backoff that would pass the deadline returns the rejection unwaited;
    a 429 whose wait would pass it raises ReiteratorRateLimitError; none of it sleeps."""
    clock = FakeClock()
    manager = ReiteratorManager(5, "fixed", base_delay=10, clock=clock, sleep=clock.sleep)
    calls: list[int] = []

    def rejected() -> dict[str, Any]:
        calls.append(1)
        return {"outcome": "rejected", "task_id": "task_1"}

    assert manager.execute_until(clock() + 5, rejected)["outcome"] == "rejected"
    assert (len(calls), clock.sleeps) == (1, [])
    assert manager.execute_until(clock() + 25, rejected)["outcome"] == "rejected"
    assert clock.sleeps == [10, 10]

    def limited() -> dict[str, Any]:
        raise HumanVerificationError("429", reason="rate_limited", details={"retry_after": 8})

    clock.sleeps.clear()
    with pytest.raises(ReiteratorRateLimitError) as caught:
        manager.execute_until(clock() + 5, limited)
    assert (caught.value.retry_after, clock.sleeps) == (8, [])


# -- the gateway shows reviewers what to judge ------------------------------------------------


def test_reviewers_can_list_pending_tasks_and_see_the_answer(manual: GatewayServer) -> None:
    """GET /api/v1/tasks?status=pending lists the open tasks; each shows the question, the
    AI's answer and its confidence as submitted; a decided task leaves the pending list."""
    agent = human_agent(manual)
    tasks_url = f"{manual.url}/api/v1/tasks"
    with pytest.raises(HumanVerificationError):
        agent.ask_human_rpc(
            "Is Paris the capital of France?",
            answer="yes",
            confidence=0.62,
            reward=REWARD,
            timeout=0.01,
        )
    listed = requests.get(tasks_url, params={"status": "pending"}, timeout=10)
    assert listed.status_code == 200
    (task,) = listed.json()["tasks"]
    assert task["text"] == "Is Paris the capital of France?"
    assert (task["answer"], task["aiConfidence"], task["status"]) == ("yes", 0.62, "pending")
    one = requests.get(f"{tasks_url}/{task['id']}", timeout=10).json()
    assert (one["answer"], one["aiConfidence"]) == ("yes", 0.62)
    assert requests.get(tasks_url, timeout=10).json()["total"] == 1

    vote(manual, task["id"], "yes")
    assert requests.get(tasks_url, params={"status": "pending"}, timeout=10).json()["tasks"] == []
    (done,) = requests.get(tasks_url, params={"status": "completed"}, timeout=10).json()["tasks"]
    assert done["id"] == task["id"]
    bad = requests.get(tasks_url, params={"status": "open"}, timeout=10)
    assert (bad.status_code, bad.json()["reason"]) == (400, "bad_status")
