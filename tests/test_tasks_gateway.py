"""The stub gateway's HumanRPC task API, in the deployed service's wire format."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent
from stub_gateway import Gateway, GatewayServer, serve_in_thread
from stub_gateway.tasks import consensus_params

from .conftest import FakeClock


def paying_agent(server: GatewayServer, **options: Any) -> AutoAgent:
    wallet = Keypair()
    server.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(10)})
    return AutoAgent(
        wallet, rpc_url=server.rpc_url, human_rpc_url=f"{server.url}/api/v1/tasks", **options
    )


def create(server: GatewayServer, agent: AutoAgent, **body: Any) -> requests.Response:
    return agent.post(f"{server.url}/api/v1/tasks", json={"text": "Is 2 + 2 = 4?", **body})


def read(server: GatewayServer, task_id: str) -> dict[str, Any]:
    reply = requests.get(f"{server.url}/api/v1/tasks/{task_id}", timeout=10)
    assert reply.status_code == 200
    document: dict[str, Any] = reply.json()
    return document


@pytest.fixture
def manual() -> Iterator[GatewayServer]:
    """A gateway whose reviewers are people voting through the API, 3 voters, simple majority."""
    with serve_in_thread(review_policy="manual", voters=3, consensus_threshold=0.51) as running:
        yield running


def test_creating_a_task_is_paid_with_its_reward(manual: GatewayServer) -> None:
    """Unpaid: 402 for the reward; paid: 202 with a task id; the reward moved on the ledger."""
    gateway = manual.gateway
    unpaid = requests.post(
        f"{manual.url}/api/v1/tasks", json={"text": "q", "rewardAmount": "0.25"}, timeout=10
    )
    assert unpaid.status_code == 402
    assert unpaid.json()["invoice"]["amount"] == 0.25
    assert unpaid.json()["invoice"]["currency"] == "USDC"
    agent = paying_agent(manual)
    before = gateway.balance(gateway.treasury, "USDC")
    created = create(manual, agent, rewardAmount="0.25", agentName="bot-1")
    assert created.status_code == 202
    body = created.json()
    assert body["status"] == "pending"
    assert body["task_id"].startswith("task_")
    assert gateway.balance(gateway.treasury, "USDC") - before == Decimal("0.25")
    assert agent.balance("USDC") == Decimal("9.75")
    task = read(manual, body["task_id"])
    assert task["status"] == "pending"
    assert task["agentName"] == "bot-1"
    assert task["payment"]["signature"] == agent.payments[0].signature


def test_reward_currency_and_default_price(manual: GatewayServer) -> None:
    """Without a reward the task costs the gateway's price; rewardCurrency picks the token."""
    default = requests.post(f"{manual.url}/api/v1/tasks", json={"text": "q"}, timeout=10).json()
    assert (default["invoice"]["amount"], default["invoice"]["currency"]) == (0.05, "USDC")
    sol = requests.post(
        f"{manual.url}/api/v1/tasks", json={"text": "q", "reward": "0.001 SOL"}, timeout=10
    ).json()
    assert (sol["invoice"]["amount"], sol["invoice"]["currency"]) == (0.001, "SOL")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({}, "bad_task"),
        ({"text": ""}, "bad_task"),
        ({"text": "x" * 20_001}, "bad_task"),
        ({"text": "q", "context": "not an object"}, "bad_task"),
        ({"text": "q", "rewardAmount": "-1"}, "bad_reward"),
        ({"text": "q", "rewardAmount": "5000"}, "bad_reward"),
        ({"text": "q", "rewardAmount": "1", "rewardCurrency": "DOGE"}, "bad_reward"),
    ],
)
def test_bad_tasks_are_refused_before_payment(
    manual: GatewayServer, body: dict[str, Any], reason: str
) -> None:
    """An invalid task answers 400 (never a 402: nothing to pay for)."""
    reply = requests.post(f"{manual.url}/api/v1/tasks", json=body, timeout=10)
    assert reply.status_code == 400
    assert reply.json()["reason"] == reason


def test_votes_reach_consensus_in_the_deployed_format(manual: GatewayServer) -> None:
    """Votes count up; the deciding vote completes the task with decision, sentiment, confidence."""
    agent = paying_agent(manual)
    task_id = create(manual, agent).json()["task_id"]
    url = f"{manual.url}/api/v1/tasks/{task_id}/votes"
    first = requests.post(
        url, json={"decision": "yes", "userId": "u1", "comment": "fine"}, timeout=10
    ).json()
    assert first["status"] == "Vote submitted"
    assert first["consensus"]["reached"] is False
    requests.post(url, json={"decision": "no", "userId": "u2"}, timeout=10)
    last = requests.post(
        url, json={"decision": "yes", "userId": "u3", "comment": "correct"}, timeout=10
    ).json()
    assert last["status"] == "Vote submitted - Consensus reached"
    assert last["result"] == {"sentiment": "POSITIVE", "confidence": 1.0, "decision": "yes"}
    task = read(manual, task_id)
    assert task["status"] == "completed"
    assert task["result"]["decision"] == "yes"
    assert task["result"]["comments"] == ["fine", "correct"]
    assert task["consensus"]["yesVotes"] == 2


@pytest.mark.parametrize(
    ("vote", "status"),
    [({"decision": "maybe"}, 400), ({"decision": "yes", "userId": "dup"}, 409)],
)
def test_bad_votes_are_refused(manual: GatewayServer, vote: dict[str, Any], status: int) -> None:
    """Only yes/no; one vote per user."""
    agent = paying_agent(manual)
    task_id = create(manual, agent).json()["task_id"]
    url = f"{manual.url}/api/v1/tasks/{task_id}/votes"
    requests.post(url, json={"decision": "no", "userId": "dup"}, timeout=10)
    assert requests.post(url, json=vote, timeout=10).status_code == status


def test_unknown_task_is_404(manual: GatewayServer) -> None:
    """Reading or voting on a task that does not exist: 404."""
    assert requests.get(f"{manual.url}/api/v1/tasks/task_nope", timeout=10).status_code == 404
    assert (
        requests.post(
            f"{manual.url}/api/v1/tasks/task_nope/votes", json={"decision": "yes"}, timeout=10
        ).status_code
        == 404
    )


def test_split_votes_end_without_consensus_after_three_phases() -> None:
    """A 2-1 split under a 90% threshold: three phases, then completed with decision null."""
    with serve_in_thread(
        review_policy="script:split", voters=3, consensus_threshold=0.9
    ) as running:
        agent = paying_agent(running)
        task = read(running, create(running, agent).json()["task_id"])
    assert task["status"] == "completed"
    assert task["result"]["decision"] is None
    assert task["result"]["message"] == "Consensus was not reached after three voting phases."
    assert task["consensus"]["phase"] == 3
    completed = requests.Session()
    completed.close()


def test_completed_tasks_refuse_more_votes() -> None:
    """A decided task answers 409 to further votes, with its result."""
    with serve_in_thread(review_policy="approve") as running:
        task_id = create(running, paying_agent(running)).json()["task_id"]
        late = requests.post(
            f"{running.url}/api/v1/tasks/{task_id}/votes", json={"decision": "no"}, timeout=10
        )
    assert late.status_code == 409
    assert late.json()["result"]["decision"] == "yes"


def test_reviewers_wait_for_the_review_delay() -> None:
    """With a review delay, the task stays pending until the clock passes it."""
    clock = FakeClock()
    with serve_in_thread(review_policy="reject", review_delay=30, clock=clock) as running:
        task_id = create(running, paying_agent(running)).json()["task_id"]
        assert read(running, task_id)["status"] == "pending"
        clock.now += 29.9
        assert read(running, task_id)["status"] == "pending"
        clock.now += 0.2
        task = read(running, task_id)
    assert task["status"] == "completed"
    assert task["result"]["decision"] == "no"
    assert task["result"]["sentiment"] == "NEGATIVE"


def test_undecided_task_expires() -> None:
    """A task without consensus past its time to live becomes expired."""
    clock = FakeClock()
    with serve_in_thread(review_policy="manual", task_ttl=60, clock=clock) as running:
        task_id = create(running, paying_agent(running)).json()["task_id"]
        clock.now += 61
        task = read(running, task_id)
    assert task["status"] == "expired"
    assert task["result"]["decision"] is None


def test_scripted_verdicts_run_in_order_then_repeat() -> None:
    """script:reject,approve: first task rejected, then approved, then approved again."""
    with serve_in_thread(review_policy="script:reject,approve") as running:
        agent = paying_agent(running)
        decisions = [
            read(running, create(running, agent).json()["task_id"])["result"]["decision"]
            for _ in range(3)
        ]
    assert decisions == ["no", "yes", "yes"]


def test_rate_limit_answers_429_before_any_payment() -> None:
    """Past the rate limit, task creation answers 429 with Retry-After, and nothing is paid."""
    clock = FakeClock()
    with serve_in_thread(rate_limit=(2, 60), clock=clock) as running:
        agent = paying_agent(running)
        assert create(running, agent, agentName="a").status_code == 202
        assert create(running, agent, agentName="a").status_code == 202
        limited = create(running, agent, agentName="a")
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == "60"
        assert len(agent.payments) == 2
        assert create(running, agent, agentName="someone-else").status_code == 202
        clock.now += 60
        assert create(running, agent, agentName="a").status_code == 202


def test_payment_for_a_cheaper_task_does_not_buy_a_dearer_one(manual: GatewayServer) -> None:
    """Invoiced at 0.01, then sent with a 5 USDC reward: refused (price_changed), nothing moves."""
    from .conftest import PaymentCapture

    agent = paying_agent(manual)
    capture = PaymentCapture()
    agent.session.mount("http://", capture)
    assert create(manual, agent, rewardAmount="0.01").status_code == 202
    before = manual.gateway.balance(manual.gateway.treasury, "USDC")
    invoice = requests.post(
        f"{manual.url}/api/v1/tasks", json={"text": "q", "rewardAmount": "0.01"}, timeout=10
    )
    assert invoice.status_code == 402
    dearer = requests.post(
        f"{manual.url}/api/v1/tasks",
        json={"text": "q", "rewardAmount": "5"},
        headers={"X-PAYMENT": capture.headers[0]},
        timeout=10,
    )
    assert dearer.status_code == 402
    assert dearer.json()["reason"] in ("price_changed", "invoice_already_paid")
    assert manual.gateway.balance(manual.gateway.treasury, "USDC") == before


# -- the deployed service's consensus parameters -------------------------------------------------


@pytest.mark.parametrize(
    ("certainty", "voters", "threshold"),
    [(0.95, 5, 0.549), (0.70, 11, 0.744), (0.50, 15, 0.90), (1.0, 3, 0.51), (0.2, 15, 0.90)],
)
def test_consensus_parameters_match_the_service(
    certainty: float, voters: int, threshold: float
) -> None:
    """The examples of the service's consensus-algorithm.ts."""
    n, t = consensus_params(certainty)
    assert n == voters
    assert t == pytest.approx(threshold, abs=1e-3)


@given(st.floats(min_value=0, max_value=1))
def test_consensus_parameters_are_bounded_and_odd(certainty: float) -> None:
    """Voters are odd in 3..15, thresholds in 0.51..0.90, both non-increasing in certainty."""
    n, t = consensus_params(certainty)
    assert n % 2 == 1
    assert 3 <= n <= 15
    assert 0.51 <= t <= 0.90
    higher_n, higher_t = consensus_params(min(1.0, certainty + 0.05))
    assert higher_n <= n
    assert higher_t <= t + 1e-12


def test_scaled_rule_uses_the_ai_confidence(gateway: Gateway, server: GatewayServer) -> None:
    """Without a fixed rule, the task's voters and threshold follow context.data.aiConfidence."""
    agent = paying_agent(server)
    body = {"context": {"data": {"aiConfidence": 0.7}}}
    task = read(server, create(server, agent, **body).json()["task_id"])
    assert task["consensus"]["requiredVoters"] == 11
    assert task["consensus"]["aiCertainty"] == 0.7
