"""The reviewer console's pages (``/``, ``/review``, ``/payments``) over real loopback HTTP.

Tasks are created and paid by a real agent; votes from the page go through the task API's own
view, behind the console's cross-site check; the payments pages read the LiteSVM ledger. The
browser itself is driven in tests/test_console_browser.py.
"""

from __future__ import annotations

import contextlib
import html
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st
from solders.keypair import Keypair
from solders.signature import Signature

from human_rpc_sdk import AutoAgent
from stub_gateway import GatewayServer, create_app, serve_in_thread
from stub_gateway.console.guard import TOKEN_EXTENSION, TOKEN_HEADER

from .conftest import FakeClock, human_agent

HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=1">"\'&amp;'


class Page(HTMLParser):
    """The text of each element carrying ``data-task-id`` (and of its ``.question``), the
    attributes of those elements, and the page's meta tags."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tasks: dict[str, dict[str, str | None]] = {}
        self.questions: dict[str, str] = {}
        self.meta: dict[str, str] = {}
        self._task: str | None = None
        self._in_question = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "meta" and found.get("name"):
            self.meta[str(found["name"])] = str(found.get("content"))
        if found.get("data-task-id"):
            self._task = str(found["data-task-id"])
            self.tasks[self._task] = found
            self.questions[self._task] = ""
        if self._task and tag == "p" and found.get("class") == "question":
            self._in_question = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "p":
            self._in_question = False
        if tag == "article":
            self._task = None

    def handle_data(self, data: str) -> None:
        if self._task and self._in_question:
            self.questions[self._task] += data


def paid_task(agent: AutoAgent, url: str, text: str, **extra: Any) -> str:
    """Create a task through the API, paying its 402 like any agent; its id."""
    body = {
        "text": text,
        "rewardAmount": "0.01",
        "rewardCurrency": "USDC",
        "agentName": "console-test",
        "context": {"data": {"agentConclusion": "Paris", "aiConfidence": 0.7}},
        **extra,
    }
    answer = agent.post(f"{url}/api/v1/tasks", json=body, timeout=30)
    assert answer.status_code == 202, answer.text
    task_id: str = answer.json()["task_id"]
    return task_id


@pytest.fixture(scope="module")
def manual() -> Iterator[GatewayServer]:
    """A gateway whose tasks only people decide, three votes each."""
    with serve_in_thread(review_policy="manual", voters=3) as running:
        yield running


@pytest.fixture(scope="module")
def payer(manual: GatewayServer, journal_home: Path) -> Iterator[AutoAgent]:
    """An agent for the module (its journal under the tests' folder: module fixtures are made
    before the autouse fixture that points XDG_STATE_HOME there)."""
    agent = human_agent(manual, usdc="10", journal_path=journal_home / "console-payer.sqlite3")
    yield agent
    agent.close()


def token_of(url: str) -> str:
    """The console token, read from the review page as the page's own script does."""
    return Page(requests.get(f"{url}/review", timeout=30).text).meta["console-token"]


def page_vote(url: str, task_id: str, body: dict[str, Any], **headers: str) -> requests.Response:
    return requests.post(
        f"{url}/review/tasks/{task_id}/votes", json=body, headers=headers, timeout=30
    )


# -- the index ---------------------------------------------------------------------------------


def test_the_index_names_the_chain_and_every_route(manual: GatewayServer) -> None:
    """GET / shows the network, genesis hash, RPC URL, treasury, links and every route."""
    answer = requests.get(f"{manual.url}/", timeout=30)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/html")
    page = answer.text
    gateway = manual.gateway
    for shown in (gateway.genesis_hash, str(gateway.treasury), f"{manual.url}/rpc", "devnet"):
        assert shown in page
    for link in ('href="/review"', 'href="/payments"', 'href="/api/v1/info"'):
        assert link in page
    app_rules = {r.rule for r in manual.app.url_map.iter_rules() if "static" not in r.endpoint}
    shown_rules = {html.unescape(r) for r in re.findall(r"<tr><td><code>([^<]+)</code>", page)}
    assert shown_rules == app_rules
    assert "/api/v1/tasks/&lt;task_id&gt;/votes" in page


def test_the_banner_points_people_to_the_console(manual: GatewayServer) -> None:
    """The CLI's banner names the review and payments pages and the index."""
    line = next(x for x in manual.banner().splitlines() if x.startswith("  console "))
    for path in ("/review", "/payments", "/"):
        assert f"{manual.url}{path} " in line or line.endswith(f"{manual.url}{path})")


def test_console_pages_forbid_framing_and_foreign_scripts(manual: GatewayServer) -> None:
    """Every page: a CSP allowing only this origin's script, no framing, no sniffing."""
    for path in ("/", "/review", "/review/live", "/payments", "/payments?q=nonsense"):
        headers = requests.get(f"{manual.url}{path}", timeout=30).headers
        policy = headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        assert headers["X-Content-Type-Options"] == "nosniff"


# -- the review page ---------------------------------------------------------------------------


def test_review_lists_what_a_reviewer_needs(manual: GatewayServer, payer: AutoAgent) -> None:
    """A pending task: question, the AI's answer and confidence, reward, voters, votes."""
    task_id = paid_task(payer, manual.url, "What is the capital of France?")
    page = requests.get(f"{manual.url}/review", timeout=30).text
    parsed = Page(page)
    assert parsed.tasks[task_id]["data-status"] == "pending"
    assert parsed.questions[task_id] == "What is the capital of France?"
    card = page[page.index(f'data-task-id="{task_id}"') :]
    card = card[: card.index("</article>")]
    assert '<dd class="answer">Paris</dd>' in card
    assert '<dd class="confidence">70%</dd>' in card
    assert '<dd class="reward">0.01 USDC</dd>' in card
    assert "0 of 3 needed · 0 yes, 0 no" in card
    assert ">Approve</button>" in card
    assert ">Reject</button>" in card


def test_hostile_task_text_is_escaped(manual: GatewayServer, payer: AutoAgent) -> None:
    """Question, answer and agent name with markup: shown as text, never as markup."""
    task_id = paid_task(
        payer,
        manual.url,
        HOSTILE,
        agentName=HOSTILE,
        context={"data": {"agentConclusion": HOSTILE, "aiConfidence": "<b>1</b>"}},
    )
    page = requests.get(f"{manual.url}/review", timeout=30).text
    assert Page(page).questions[task_id] == HOSTILE
    assert "<script>window" not in page
    assert "<img" not in page
    assert page.count("<script") == 1  # the console's own script
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in page


@pytest.fixture(scope="module")
def console_app() -> Flask:
    """An app without a server (the Flask test client renders its pages); one vote decides."""
    return create_app(review_policy="manual", voters=1)


@given(text=st.text(min_size=1))
def test_any_question_comes_back_as_the_same_text(console_app: Flask, text: str) -> None:
    """Whatever the question, the page's question element reads exactly as submitted, pending
    and decided (decided, so that the pending list never outgrows what the page shows)."""
    board = console_app.extensions["stub_gateway"].tasks
    task = board.create({"text": text}, 0.5, None, "h")
    client = console_app.test_client()
    assert Page(client.get("/review/live").get_data(as_text=True)).questions[task.id] == text
    board.vote(task.id, "yes", comment=text)
    page = client.get("/review/live").get_data(as_text=True)
    assert Page(page).questions[task.id] == text
    assert Page(page).tasks[task.id]["data-status"] == "completed"


def test_a_vote_from_the_page_is_the_api_vote(manual: GatewayServer, payer: AutoAgent) -> None:
    """Page and API votes count together toward consensus; both answer alike, refuse alike."""
    task_id = paid_task(payer, manual.url, "Is 7 prime?")
    auth = {TOKEN_HEADER: token_of(manual.url)}
    first = page_vote(manual.url, task_id, {"decision": "yes", "userId": "ann"}, **auth)
    assert first.status_code == 200, first.text
    assert first.json()["consensus"]["currentVoteCount"] == 1
    again = page_vote(manual.url, task_id, {"decision": "yes", "userId": "ann"}, **auth)
    api_again = requests.post(
        f"{manual.url}/api/v1/tasks/{task_id}/votes",
        json={"decision": "yes", "userId": "ann"},
        timeout=30,
    )
    assert (again.status_code, again.json()) == (api_again.status_code, api_again.json())
    assert again.status_code == 409
    requests.post(
        f"{manual.url}/api/v1/tasks/{task_id}/votes", json={"decision": "yes"}, timeout=30
    ).raise_for_status()
    last = page_vote(
        manual.url,
        task_id,
        {"decision": "yes", "comment": "Only 1 and 7 divide it."},
        **auth,
    )
    answer = last.json()
    assert answer["status"] == "Vote submitted - Consensus reached"
    assert answer["consensus"]["decision"] == "yes"
    assert set(answer) == {"status", "task_id", "vote_id", "consensus", "result"}
    task = manual.gateway.tasks.get(task_id)
    assert task is not None
    assert task.result is not None
    assert task.result["comments"] == ["Only 1 and 7 divide it."]
    after = page_vote(manual.url, task_id, {"decision": "no"}, **auth)
    assert after.status_code == 409
    decided = Page(requests.get(f"{manual.url}/review", timeout=30).text).tasks[task_id]
    assert (decided["data-status"], decided["data-decision"]) == ("completed", "yes")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {TOKEN_HEADER: "guessed"},
        {TOKEN_HEADER: "", "Origin": "OWN"},
        {"Origin": "https://evil.example"},
        {TOKEN_HEADER: "REAL", "Origin": "https://evil.example"},
        {TOKEN_HEADER: "REAL", "Origin": "null"},
        {TOKEN_HEADER: "REAL", "Sec-Fetch-Site": "cross-site"},
        {TOKEN_HEADER: "REAL", "Sec-Fetch-Site": "same-site"},
    ],
)
def test_cross_site_votes_are_refused_and_count_for_nothing(
    manual: GatewayServer, payer: AutoAgent, headers: dict[str, str]
) -> None:
    """No token, a wrong one, another origin or site: 403 cross_site_request, no vote."""
    task_id = paid_task(payer, manual.url, "Is the sky green?")
    real = {
        k: v.replace("REAL", token_of(manual.url)).replace("OWN", manual.url)
        for k, v in headers.items()
    }
    answer = page_vote(manual.url, task_id, {"decision": "no"}, **real)
    assert answer.status_code == 403
    assert answer.json()["reason"] == "cross_site_request"
    task = manual.gateway.tasks.get(task_id)
    assert task is not None
    assert task.votes == []


def test_a_same_origin_vote_with_the_token_is_accepted(
    manual: GatewayServer, payer: AutoAgent
) -> None:
    """What a browser sends from the page itself (Origin and Sec-Fetch-Site same-origin)."""
    task_id = paid_task(payer, manual.url, "Is water wet?")
    answer = page_vote(
        manual.url,
        task_id,
        {"decision": "yes"},
        **{
            TOKEN_HEADER: token_of(manual.url),
            "Origin": manual.url,
            "Sec-Fetch-Site": "same-origin",
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["consensus"]["currentVoteCount"] == 1


def test_the_api_still_takes_votes_without_a_token(manual: GatewayServer, payer: AutoAgent) -> None:
    """The JSON API is for programs and stays as it was: no console token needed."""
    task_id = paid_task(payer, manual.url, "Is ice cold?")
    answer = requests.post(
        f"{manual.url}/api/v1/tasks/{task_id}/votes", json={"decision": "yes"}, timeout=30
    )
    assert answer.status_code == 200


def test_the_live_region_is_304_until_something_changes(
    manual: GatewayServer, payer: AutoAgent
) -> None:
    """Polling costs a 304 while nothing changed; a vote changes the answer and its ETag."""
    task_id = paid_task(payer, manual.url, "Is 9 prime?")
    first = requests.get(f"{manual.url}/review/live", timeout=30)
    etag = first.headers["ETag"]
    assert f'data-task-id="{task_id}"' in first.text
    unchanged = requests.get(
        f"{manual.url}/review/live", headers={"If-None-Match": etag}, timeout=30
    )
    assert (unchanged.status_code, unchanged.content) == (304, b"")
    requests.post(
        f"{manual.url}/api/v1/tasks/{task_id}/votes", json={"decision": "no"}, timeout=30
    ).raise_for_status()
    changed = requests.get(f"{manual.url}/review/live", headers={"If-None-Match": etag}, timeout=30)
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag
    assert "1 of 3 needed · 0 yes, 1 no" in changed.text


def test_the_review_page_embeds_the_live_region_and_its_etag(manual: GatewayServer) -> None:
    """The page starts from the same content the poll returns, so the first poll is a 304."""
    page = requests.get(f"{manual.url}/review", timeout=30).text
    etag = re.search(r'data-etag="([^"]+)"', page)
    assert etag is not None
    tag = etag.group(1).replace("&#34;", '"')
    again = requests.get(f"{manual.url}/review/live", headers={"If-None-Match": tag}, timeout=30)
    assert again.status_code == 304


def test_simulated_reviewers_and_a_person_decide_together() -> None:
    """With simulated reviewers, a person's vote counts first; the page then shows the verdict
    the simulated reviewers completed, the person's comment among the comments."""
    clock = FakeClock()
    with serve_in_thread(review_policy="approve", review_delay=60, voters=3, clock=clock) as gw:
        agent = human_agent(gw, usdc="1", clock=clock, sleep=clock.sleep)
        try:
            task_id = paid_task(agent, gw.url, "Is 2 + 2 = 4?")
            auth = {TOKEN_HEADER: token_of(gw.url)}
            vote = page_vote(
                gw.url,
                task_id,
                {"decision": "yes", "comment": "Yes, by counting."},
                **auth,
            )
            assert vote.json()["consensus"]["currentVoteCount"] == 1
            assert (
                Page(requests.get(f"{gw.url}/review", timeout=30).text).tasks[task_id][
                    "data-status"
                ]
                == "pending"
            )
            clock.sleep(61)  # the simulated reviewers' delay passes
            page = requests.get(f"{gw.url}/review/live", timeout=30).text
            decided = Page(page).tasks[task_id]
            assert (decided["data-status"], decided["data-decision"]) == ("completed", "yes")
            assert "Yes, by counting." in page
            assert "Consensus reached: YES" in page
        finally:
            agent.close()


# -- payments ----------------------------------------------------------------------------------


def test_payments_show_the_treasury_and_each_settlement(
    manual: GatewayServer, payer: AutoAgent
) -> None:
    """A paid resource, an x402 payment and a paid task: rows with amount, payer (the agent,
    not the facilitator that paid the x402 fee), purpose, signature; the treasury's balances
    as the ledger holds them."""
    paid = payer.get(f"{manual.url}/api/v1/premium/usdc", timeout=30)
    assert paid.status_code == 200
    resource_signature = paid.json()["paid"]["signature"]
    x402 = payer.get(f"{manual.url}/x402/v2/premium", timeout=30)
    assert x402.status_code == 200
    x402_signature = payer.payments[-1].signature
    task_id = paid_task(payer, manual.url, "Is this paid?")
    task = manual.gateway.tasks.get(task_id)
    assert task is not None
    assert task.payment is not None
    page = requests.get(f"{manual.url}/payments", timeout=30).text
    payer_prefix = payer.address[:8]
    for signature, amount, purpose in (
        (resource_signature, "0.05 USDC", "invoice for /api/v1/premium/usdc"),
        (x402_signature, "0.01 USDC", "x402 exact payment"),
        (
            task.payment["signature"],
            "0.01 USDC",
            f"human verification task (<code>{task_id}</code>)",
        ),
    ):
        row = page[page.index(f'<tr data-signature="{signature}">') :]
        row = row[: row.index("</tr>")]
        assert f"<td>{amount}</td>" in row
        assert purpose in row
        assert payer_prefix in row
        assert f'href="/payments/tx/{signature}"' in row
    usdc = manual.gateway.balance(manual.gateway.treasury, "USDC")
    assert f'<li data-currency="USDC">{usdc.normalize():f} USDC</li>' in page


def test_a_transaction_is_found_by_its_signature(manual: GatewayServer, payer: AutoAgent) -> None:
    """?q=<signature> leads to the transaction: succeeded, its fee, who lost and got what."""
    paid = payer.get(f"{manual.url}/api/v1/premium/usdc", timeout=30)
    signature = paid.json()["paid"]["signature"]
    found = requests.get(f"{manual.url}/payments", params={"q": f" {signature} "}, timeout=30)
    assert found.url == f"{manual.url}/payments/tx/{signature}"
    page = found.text
    assert '<dd class="status">succeeded</dd>' in page
    assert "<td>-0.05 USDC</td>" in page
    assert "<td>0.05 USDC</td>" in page
    execution = manual.gateway.ledger.status(Signature.from_string(signature))
    assert execution is not None
    assert f"{Decimal(execution.fee) / 10**9:f}".rstrip("0") in page


def test_an_account_is_found_by_its_address(manual: GatewayServer, payer: AutoAgent) -> None:
    """?q=<address> leads to the account: SOL, token holdings, latest transactions."""
    address = payer.address
    found = requests.get(f"{manual.url}/payments", params={"q": address}, timeout=30)
    assert found.url == f"{manual.url}/payments/account/{address}"
    usdc = manual.gateway.balance(address, "USDC")
    assert f'data-currency="USDC">{usdc.normalize():f} USDC</dd>' in found.text
    treasury = requests.get(
        f"{manual.url}/payments/account/{manual.gateway.treasury}", timeout=30
    ).text
    assert "the gateway&#39;s treasury" in treasury


@pytest.mark.parametrize("query", ["nonsense", "<script>x</script>", "1" * 200, ""])
def test_a_lookup_of_nothing_known_says_so(manual: GatewayServer, query: str) -> None:
    """Neither a signature nor an address: 400, the query shown back as text."""
    answer = requests.get(f"{manual.url}/payments", params={"q": query}, timeout=30)
    assert answer.status_code == 400
    assert "Not a transaction signature or an account address" in answer.text
    assert "<script>x" not in answer.text


def test_an_unknown_signature_or_bad_address_is_404(manual: GatewayServer) -> None:
    missing = "1" * 64
    assert requests.get(f"{manual.url}/payments/tx/{missing}", timeout=30).status_code == 404
    assert requests.get(f"{manual.url}/payments/account/xyz", timeout=30).status_code == 404


# -- with worker processes ---------------------------------------------------------------------


@contextlib.contextmanager
def cli_gateway(*options: str) -> Iterator[str]:
    """``python -m stub_gateway`` on a free port with ``options``: its URL, until SIGTERM."""
    command = [sys.executable, "-m", "stub_gateway", "--port", "0", "--quiet", *options]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            # The banner's first line: the socket listens before it is printed.
            yield process.stdout.readline().split(" on ", 1)[1].split()[0]
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


WORKERS_MANUAL = ("--workers", "2", "--review-policy", "manual", "--voters", "1")


@pytest.fixture(scope="module")
def workers() -> Iterator[str]:
    with cli_gateway(*WORKERS_MANUAL) as url:
        yield url


def test_the_console_works_through_worker_processes(workers: str) -> None:
    """--workers 2: pages, script, the live region and a page vote all reach the ledger
    process (the console's routes are forwarded like every non-paid route)."""
    wallet = Keypair()
    funded = requests.post(
        f"{workers}/api/v1/faucet", json={"address": str(wallet.pubkey()), "usdc": "1"}, timeout=30
    )
    funded.raise_for_status()
    with AutoAgent(wallet, rpc_url=f"{workers}/rpc") as agent:
        task_id = paid_task(agent, workers, "Through workers?")
    assert requests.get(f"{workers}/", timeout=30).status_code == 200
    script = requests.get(f"{workers}/console/static/console.js", timeout=30)
    assert script.status_code == 200
    assert "X-Console-Token" in script.text
    assert f'data-task-id="{task_id}"' in requests.get(f"{workers}/review/live", timeout=30).text
    token = token_of(workers)
    assert token == token_of(workers)  # the same from whichever worker answers
    vote = page_vote(
        workers, task_id, {"decision": "yes"}, **{TOKEN_HEADER: token, "Origin": workers}
    )
    assert vote.status_code == 200, vote.text
    assert vote.json()["consensus"]["reached"] is True
    assert requests.get(f"{workers}/api/v1/tasks/{task_id}", timeout=30).json()["status"] == (
        "completed"
    )
    assert task_id in requests.get(f"{workers}/payments", timeout=30).text


def test_the_token_lives_in_the_app(manual: GatewayServer) -> None:
    """Each app has its own token, the one its pages carry."""
    assert token_of(manual.url) == manual.app.extensions[TOKEN_EXTENSION]
    assert create_app().extensions[TOKEN_EXTENSION] != manual.app.extensions[TOKEN_EXTENSION]
