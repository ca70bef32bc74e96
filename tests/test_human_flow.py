"""The human-verification flows and the reiteration decisions, driven by hand; then the async
runners (AsyncHumanClient, aexecute_until, an async @guard) against the stub gateway."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Generator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import requests
from requests.structures import CaseInsensitiveDict
from solders.keypair import Keypair

from human_rpc_sdk import (
    HumanVerificationError,
    PaymentError,
    ReiteratorManager,
    ReiteratorMaxAttemptsError,
    ReiteratorRateLimitError,
    SDKConfigurationError,
    guard,
)
from human_rpc_sdk._effects import HttpReply, NoAnswer, Pause, Record
from human_rpc_sdk._human import (
    HumanAnswer,
    HumanHttp,
    OpenTasks,
    TaskApi,
    ask_once,
    created_task,
    poll_answer,
    retry_after_seconds,
    wait_for_verdict,
)
from human_rpc_sdk._io.human import AsyncHumanClient
from human_rpc_sdk._io.journal import Journal
from human_rpc_sdk._receipts import PaymentReceipt
from human_rpc_sdk._records import JournalEntry
from human_rpc_sdk._tasks import Verdict, task_body
from human_rpc_sdk.reiterator import Done, Fail, Resubmit
from stub_gateway import GatewayServer
from stub_gateway.tasks import ReviewPolicy

from .conftest import FakeClock, human_agent

URL = "http://tasks.test/api/v1/tasks"
NOW = datetime(2030, 1, 1, tzinfo=UTC)
REWARD = Decimal("0.002")
PENDING = {"status": "pending", "consensus": {"currentVoteCount": 3}}
APPROVED = {"status": "completed", "result": {"decision": "yes", "confidence": 1.0}}


def reply(
    status: int, body: bytes | dict[str, Any] = b"", headers: dict[str, str] | None = None
) -> HttpReply:
    data = body if isinstance(body, bytes) else httpx.Response(200, json=body).content
    return HttpReply(status, CaseInsensitiveDict(headers or {}), data, URL)


def receipt(**fields: Any) -> PaymentReceipt:
    base = PaymentReceipt(
        url=URL,
        amount=Decimal("0.05"),
        currency="USDC",
        mint=None,
        recipient="payee",
        reference=None,
        network="localnet",
        signature="sig1",
        time=NOW,
        atomic_amount=50_000,
        payer="payer",
        destination="dest",
        fee_lamports=5000,
        id=7,
        state="accepted",
    )
    return dataclasses.replace(base, **fields)


def api(clock: FakeClock | None = None) -> TaskApi:
    return TaskApi(URL, 10.0, clock or FakeClock(), lambda: NOW)


def step(flow: Generator[Any, Any, Any], answer: Any) -> Any:
    try:
        return flow.send(answer)
    except StopIteration as stop:
        return ("returned", stop.value)


# -- the flows, by hand -----------------------------------------------------------------------


def test_ask_once_pays_journals_the_task_polls_and_journals_the_verdict() -> None:
    """POST (paying), the task id on the payment's row, GETs with pauses, then the verdict."""
    clock = FakeClock()
    flow = ask_once(api(clock), {"text": "q"}, deadline=60.0)
    post = next(flow)
    assert post == HumanHttp("POST", URL, {"text": "q"}, 10.0, paying=True)
    paid = receipt()
    mark = step(flow, HumanAnswer(reply(201, {"task_id": "t1"}), paid))
    assert mark == Record(7, "accepted", {"task_id": "t1"}, expect=("accepted",))
    named = JournalEntry(dataclasses.replace(paid, task_id="t1"))
    get = step(flow, named)
    assert get == HumanHttp("GET", f"{URL}/t1", None, 10.0)
    assert step(flow, HumanAnswer(reply(200, PENDING))) == Pause(0.25)
    assert step(flow, None) == get
    verdict_mark = step(flow, HumanAnswer(reply(200, APPROVED)))
    assert verdict_mark == Record(7, "accepted", {"task_outcome": "approved"}, expect=("accepted",))
    done, verdict = step(flow, named)
    assert done == "returned"
    assert verdict["outcome"] == "approved"
    assert verdict["payment"]["signature"] == "sig1"


def test_a_journal_that_cannot_be_written_does_not_stop_the_task() -> None:
    """A PaymentError from the journal: the task is still waited for; the verdict is looked up
    by task id among the open tasks, and only that task's row is marked."""
    flow = ask_once(api(), {"text": "q"}, deadline=60.0)
    next(flow)
    step(flow, HumanAnswer(reply(201, {"task_id": "t1"}), receipt()))
    get = flow.throw(PaymentError("the journal is locked", reason="journal_unavailable"))
    assert isinstance(get, HumanHttp)
    assert get.method == "GET"
    assert step(flow, HumanAnswer(reply(200, APPROVED))) == OpenTasks()
    rows = [
        JournalEntry(receipt(id=1, task_id="other")),
        JournalEntry(receipt(id=2, task_id="t1")),
    ]
    mark = step(flow, rows)
    assert mark == Record(2, "accepted", {"task_outcome": "approved"}, expect=("accepted",))
    assert step(flow, JournalEntry(receipt(id=2, task_id="t1")))[0] == "returned"


def test_a_row_naming_another_task_keeps_it() -> None:
    """A payment sent again that got a second task: its row is not rewritten."""
    flow = ask_once(api(), {"text": "q"}, deadline=60.0)
    next(flow)
    first = receipt(task_id="t0")
    assert step(flow, HumanAnswer(reply(201, {"task_id": "t1"}), first)).method == "GET"


def test_waiting_stops_at_the_timeout_with_the_task_id() -> None:
    """Polls pause with growing waits, never past the timeout; then timeout, resumable."""
    clock = FakeClock()
    flow = wait_for_verdict(api(clock), "t9", timeout=1.0)
    pauses: list[float] = []

    def poll_forever() -> None:
        effect = next(flow)
        while True:
            assert isinstance(effect, HumanHttp)
            pause = flow.send(HumanAnswer(reply(200, PENDING)))
            assert isinstance(pause, Pause)
            pauses.append(pause.seconds)
            clock.sleep(pause.seconds)
            effect = flow.send(None)

    with pytest.raises(HumanVerificationError) as caught:
        poll_forever()
    assert caught.value.reason == "timeout"
    assert caught.value.task_id == "t9"
    assert sum(pauses) == pytest.approx(1.0)
    assert pauses[:2] == [0.25, 0.375]


# -- classifying answers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "reason", "said"),
    [
        (HumanAnswer(NoAnswer("ConnectTimeout")), "unavailable", "ConnectTimeout"),
        (HumanAnswer(reply(503)), "unavailable", "Nothing was paid"),
        (HumanAnswer(reply(503), receipt()), "unavailable", "payment sig1 was sent"),
        (HumanAnswer(reply(429), receipt()), "unavailable", "asking again pays again"),
        (HumanAnswer(reply(400, {"error": {"message": "too long"}})), "task_refused", "too long"),
        (HumanAnswer(reply(403)), "task_refused", "Forbidden"),
        (HumanAnswer(reply(201, b"{not json")), "malformed_answer", "no task_id"),
        (HumanAnswer(reply(201, {"task_id": ""})), "malformed_answer", "no task_id"),
    ],
)
def test_creation_answers_are_classified(answer: HumanAnswer, reason: str, said: str) -> None:
    """Each refusal of a creating POST has its reason code and says what happened."""
    with pytest.raises(HumanVerificationError) as caught:
        created_task(answer, URL, lambda: NOW)
    assert caught.value.reason == reason
    assert said in str(caught.value)


def test_a_429_before_paying_is_rate_limited_with_retry_after_from_the_injected_now() -> None:
    """An HTTP-date Retry-After is read against the injected wall clock."""
    later = (NOW + timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    with pytest.raises(HumanVerificationError) as caught:
        created_task(HumanAnswer(reply(429, headers={"Retry-After": later})), URL, lambda: NOW)
    assert caught.value.reason == "rate_limited"
    assert caught.value.details["retry_after"] == 90
    assert retry_after_seconds(later, None) == 1.0


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (NoAnswer("ReadTimeout"), 0.5),
        (reply(503), 0.5),
        (reply(429, headers={"Retry-After": "7"}), 7.0),
        (reply(429, headers={"Retry-After": "0.1"}), 0.5),
        (reply(200, PENDING), 0.5),
    ],
)
def test_transient_poll_answers_say_how_long_to_wait(
    answer: HttpReply | NoAnswer, expected: float
) -> None:
    """No answer, 5xx, 429 and an open task mean poll again (a longer Retry-After wins)."""
    assert poll_answer(answer, "t1", 0.5, lambda: NOW) == expected


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (reply(404), "task_not_found"),
        (reply(418, {"error": "teapot"}), "bad_answer"),
        (reply(200, b"[]"), "malformed_answer"),
        (reply(200, {"status": "completed", "result": {"decision": "maybe"}}), "malformed_answer"),
    ],
)
def test_final_poll_answers_raise(answer: HttpReply, reason: str) -> None:
    """404, other statuses and malformed tasks stop the polling with their reason."""
    with pytest.raises(HumanVerificationError) as caught:
        poll_answer(answer, "t1", 0.5)
    assert caught.value.reason == reason
    assert caught.value.task_id == "t1"


# -- the reiteration decisions, by hand -------------------------------------------------------


def verdict(outcome: str) -> dict[str, Any]:
    return {"task_id": f"task_{outcome}", "outcome": outcome}


def test_reiteration_resubmits_a_rejection_with_backoff_then_returns_the_approval() -> None:
    """Rejected: wait the backoff and resubmit; approved: return it; status follows."""
    clock = FakeClock()
    manager = ReiteratorManager(base_delay=2, clock=clock, sleep=clock.sleep)
    with manager.reiteration(None, print) as sequence:
        sequence.start()
        assert sequence.returned(verdict("rejected")) == Resubmit(2.0)
        assert manager.get_status()["next_retry_time"] is not None
        sequence.start()
        assert sequence.returned(verdict("approved")) == Done(verdict("approved"))
        assert manager.get_status()["active"] is True
    status = manager.get_status()
    assert (status["active"], status["attempt_count"], status["total_retries_session"]) == (
        False,
        2,
        1,
    )
    assert status["last_result"] == "positive"


def test_reiteration_out_of_attempts_returns_or_raises_the_last_rejection() -> None:
    """The last rejection is returned, or ReiteratorMaxAttemptsError with raise_on_max_attempts."""
    for raising in (False, True):
        manager = ReiteratorManager(max_attempts=1, raise_on_max_attempts=raising)
        with manager.reiteration(None, print) as sequence:
            sequence.start()
            decided = sequence.returned(verdict("rejected"))
        if raising:
            assert isinstance(decided, Fail)
            assert isinstance(decided.error, ReiteratorMaxAttemptsError)
            assert decided.error.last_result == verdict("rejected")
        else:
            assert decided == Done(verdict("rejected"))


def test_reiteration_waits_out_rate_limits_within_the_deadline_only() -> None:
    """A 429 waits Retry-After; one that would pass the deadline fails at once; other errors
    are raised unchanged."""
    clock = FakeClock()
    manager = ReiteratorManager(max_attempts=3, clock=clock)
    limited = HumanVerificationError("429", reason="rate_limited", details={"retry_after": 5})
    with manager.reiteration(10.0, print) as sequence:
        sequence.start()
        assert sequence.failed(limited) == Resubmit(5.0)
        clock.now = 6.0
        sequence.start()
        decided = sequence.failed(limited)
        assert isinstance(decided, Fail)
        assert isinstance(decided.error, ReiteratorRateLimitError)
        assert decided.error.retry_after == 5
        other = ValueError("boom")
        assert sequence.failed(other) == Fail(other)
    assert manager.get_status()["last_result"] == "error"


def test_reiteration_returns_a_rejection_whose_backoff_would_pass_the_deadline() -> None:
    """No wait passes the deadline: the rejection is the answer."""
    manager = ReiteratorManager(base_delay=5, clock=FakeClock())
    with manager.reiteration(4.0, print) as sequence:
        sequence.start()
        assert sequence.returned(verdict("rejected")) == Done(verdict("rejected"))


# -- the async loops and runner over loopback --------------------------------------------------


class Sleeps:
    """An async sleep that only moves a fake clock."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    async def __call__(self, seconds: float) -> None:
        self.clock.sleep(seconds)


@pytest.mark.asyncio
async def test_aexecute_until_awaits_the_task_and_waits_with_the_async_sleep() -> None:
    """An async task function is awaited; backoff goes to the injected async sleep."""
    clock = FakeClock()
    manager = ReiteratorManager(base_delay=1, clock=clock, async_sleep=Sleeps(clock))
    answers = iter([verdict("rejected"), verdict("rejected"), verdict("approved")])
    calls: list[str] = []

    async def task(text: str) -> dict[str, Any]:
        calls.append(text)
        return next(answers)

    assert (await manager.aexecute_until(100.0, task, "q"))["outcome"] == "approved"
    assert calls == ["q"] * 3
    assert clock.sleeps == [1.0, 2.0]


@pytest.mark.asyncio
async def test_aexecute_with_retry_reraises_errors_unchanged_and_takes_sync_functions() -> None:
    """A plain function works too; its own error comes back as it was raised."""
    manager = ReiteratorManager(async_sleep=Sleeps(FakeClock()))
    error = KeyError("x")

    def task() -> dict[str, Any]:
        raise error

    with pytest.raises(KeyError) as caught:
        await manager.aexecute_with_retry(task)
    assert caught.value is error


class LoopbackAsyncAgent:
    """A real async agent for the tests: AsyncHumanClient over an httpx.AsyncClient on loopback,
    paying through a real AutoAgent (in a thread) on the stub gateway's ledger, with a real
    Journal on the agent's journal file."""

    def __init__(self, server: GatewayServer, *, reiterator: bool = False) -> None:
        self.clock = FakeClock()
        self.payer = human_agent(server)
        self.client = httpx.AsyncClient()
        self.journal = Journal(self.payer.journal_path)
        self.threads: list[int] = []
        self._paid: PaymentReceipt | None = None
        self.reiterator = ReiteratorManager(
            base_delay=1, enabled=reiterator, clock=self.clock, async_sleep=Sleeps(self.clock)
        )
        self.human = AsyncHumanClient(
            f"{server.url}/api/v1/tasks",
            post=self.post,
            get=self.client.get,
            last_payment=lambda: self._paid,
            journal=self.journal,
            timeout=10.0,
            clock=self.clock,
            sleep=Sleeps(self.clock),
        )

    async def post(self, url: str, *, json: Any, timeout: float) -> requests.Response:
        def paying() -> tuple[requests.Response, PaymentReceipt | None]:
            before = len(self.payer.payments)
            response = self.payer.post(url, json=json, timeout=timeout)
            after = self.payer.payments
            return response, after[-1] if len(after) > before else None

        response, self._paid = await asyncio.to_thread(paying)
        return response

    async def ask_human_rpc(self, text: str, **options: Any) -> Verdict:
        self.threads.append(threading.get_ident())
        timeout = options.pop("timeout", 300.0)
        body = task_body(text, **options)
        return await self.human.ask(body, self.clock() + timeout, self.reiterator)

    async def aclose(self) -> None:
        await self.client.aclose()
        self.journal.close()
        self.payer.close()


@pytest.mark.asyncio
async def test_async_client_pays_the_task_and_journals_its_verdict(
    reviewers: GatewayServer,
) -> None:
    """AsyncHumanClient: one paid task on the ledger, its id and verdict on the journal row."""
    reviewers.gateway.tasks.set_policy(ReviewPolicy("approve"))
    agent = LoopbackAsyncAgent(reviewers)
    try:
        verdict = await agent.ask_human_rpc("Is 2 + 2 = 4?", answer="yes", reward=REWARD)
        assert verdict["outcome"] == "approved"
        (paid,) = agent.payer.payments
        assert verdict["payment"] is not None
        assert verdict["payment"]["signature"] == paid.signature
        assert (paid.task_id, paid.task_outcome) == (verdict["task_id"], "approved")
        assert agent.payer.pending_tasks() == []
        assert agent.payer.balance("USDC") == Decimal(20) - REWARD
    finally:
        await agent.aclose()


@pytest.mark.asyncio
async def test_async_client_resubmits_a_rejection_with_the_reiterator(
    reviewers: GatewayServer,
) -> None:
    """Reject then approve: two paid tasks, one backoff through the async sleep."""
    reviewers.gateway.tasks.set_policy(ReviewPolicy("script", ("reject", "approve")))
    agent = LoopbackAsyncAgent(reviewers, reiterator=True)
    try:
        verdict = await agent.ask_human_rpc("Is 3 > 2?", reward=REWARD)
        assert verdict["outcome"] == "approved"
        assert [p.task_outcome for p in agent.payer.payments] == ["rejected", "approved"]
        assert agent.payer.balance("USDC") == Decimal(20) - 2 * REWARD
        assert agent.clock.sleeps[-1] == 1.0
        assert agent.reiterator.get_status()["total_retries_session"] == 1
    finally:
        await agent.aclose()


@pytest.mark.asyncio
async def test_async_wait_for_an_unknown_task_is_task_not_found(reviewers: GatewayServer) -> None:
    """A plain GET answered 404: task_not_found; nothing is paid."""
    agent = LoopbackAsyncAgent(reviewers)
    try:
        with pytest.raises(HumanVerificationError) as caught:
            await agent.human.wait("task_nope", 5.0)
        assert caught.value.reason == "task_not_found"
        assert agent.payer.payments == []
    finally:
        await agent.aclose()


@pytest.mark.asyncio
async def test_async_guard_awaits_an_async_agent_on_the_event_loop(
    reviewers: GatewayServer,
) -> None:
    """@guard on an async def with an async agent: asked on the loop's thread, no worker."""
    reviewers.gateway.tasks.set_policy(ReviewPolicy("approve"))
    agent = LoopbackAsyncAgent(reviewers)

    @guard(threshold=0.9, reward=REWARD, agent=agent)
    async def classify(text: str) -> dict[str, Any]:
        return {"answer": "positive", "confidence": 0.5}

    try:
        response = await classify("I love it")
        assert isinstance(response, dict)
        assert response["verified"] is True
        assert agent.threads == [threading.get_ident()]
        assert len(agent.payer.payments) == 1
    finally:
        await agent.aclose()


def test_guard_refuses_an_async_agent_for_a_plain_function(reviewers: GatewayServer) -> None:
    """A plain function cannot await an async agent: refused at decoration, saying what to do."""

    class AsyncAgent:
        async def ask_human_rpc(self, text: str, **options: Any) -> Verdict:
            raise AssertionError("never asked")

    with pytest.raises(SDKConfigurationError) as caught:

        @guard(agent=AsyncAgent())
        def classify(text: str) -> dict[str, Any]:
            return {"answer": "x", "confidence": 0.1}

    assert caught.value.parameter == "agent"
    assert "async def" in str(caught.value)


@pytest.mark.asyncio
async def test_async_guard_builds_its_agent_from_the_environment(
    reviewers: GatewayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without agent=, an async def's first unsure call builds an agent (an AsyncAutoAgent
    where the SDK has one) from the environment, and the task is paid and approved."""
    reviewers.gateway.tasks.set_policy(ReviewPolicy("approve"))
    wallet = Keypair()
    reviewers.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(1)})
    monkeypatch.setenv("SOLANA_PRIVATE_KEY", str(wallet))
    monkeypatch.setenv("SOLANA_RPC_URL", reviewers.rpc_url)
    monkeypatch.setenv("HUMAN_RPC_URL", f"{reviewers.url}/api/v1/tasks")

    @guard(reward=REWARD)
    async def classify() -> tuple[str, float]:
        return ("x", 0.2)

    verified: Any = await classify()
    assert verified["verified"] is True
    assert reviewers.gateway.balance(wallet.pubkey(), "USDC") == 1 - REWARD
