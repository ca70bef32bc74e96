"""The reviewer console in a real browser: headless Chromium driven by Selenium.

An agent asks for human verification in a thread (``ask_human_rpc``, paying the task on the
LiteSVM ledger); a person approves or rejects it by clicking in ``/review``, which shows the
task without a reload (the page polls); the agent gets that verdict. Waiting is Selenium's
``WebDriverWait`` on conditions, never a sleep. A failing test saves a screenshot of the page
in its pytest temporary folder (the path is added to the failure). Without chromium,
chromium-driver or selenium the tests skip, and fail under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from stub_gateway import GatewayServer, serve_in_thread

from .browser import missing, start_chromium
from .conftest import human_agent
from .test_console import HOSTILE, WORKERS_MANUAL, cli_gateway, paid_task

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement

ROOT = Path(__file__).resolve().parent.parent
WAIT = 60.0
"""Seconds a condition may take (a few polls of the page; generous for a loaded machine)."""


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    problem = missing()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    driver = start_chromium()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def one_vote() -> Iterator[GatewayServer]:
    """``--review-policy manual``, one vote decides: a click is the verdict."""
    with serve_in_thread(review_policy="manual", voters=1) as running:
        yield running


@contextlib.contextmanager
def screenshot_on_failure(browser: WebDriver, folder: Path) -> Iterator[None]:
    try:
        yield
    except BaseException as exc:
        shot = folder / "console.png"
        with contextlib.suppress(Exception):
            browser.save_screenshot(str(shot))
            exc.add_note(f"screenshot of the page: {shot}")
        raise


def waiting(browser: WebDriver) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # The live region is replaced as it refreshes: an element found just before may be gone.
    return WebDriverWait(browser, WAIT, ignored_exceptions=(StaleElementReferenceException,))


def pending_card(question: str) -> Callable[[WebDriver], WebElement | bool]:
    """A condition: the pending task whose question reads ``question``."""
    from selenium.webdriver.common.by import By

    def find(driver: WebDriver) -> WebElement | bool:
        for card in driver.find_elements(By.CSS_SELECTOR, '[data-task-id][data-status="pending"]'):
            if card.find_element(By.CSS_SELECTOR, ".question").text == question:
                return card
        return False

    return find


def decided(task_id: str, decision: str) -> Callable[[WebDriver], WebElement | bool]:
    from selenium.webdriver.common.by import By

    def find(driver: WebDriver) -> WebElement | bool:
        selector = f'[data-task-id="{task_id}"][data-status="completed"]'
        cards = driver.find_elements(By.CSS_SELECTOR, selector)
        return cards[0] if cards and cards[0].get_attribute("data-decision") == decision else False

    return find


def button(card: WebElement, label: str) -> WebElement:
    from selenium.webdriver.common.by import By

    return card.find_element(By.XPATH, f".//button[normalize-space()='{label}']")


def test_approving_in_the_page_answers_the_waiting_agent(
    browser: WebDriver, one_vote: GatewayServer, tmp_path: Path
) -> None:
    """ask_human_rpc waits in a thread; Approve clicked in /review is the agent's verdict."""
    gateway = one_vote.gateway
    treasury_before = gateway.balance(gateway.treasury, "USDC")
    question = "Is Paris the capital of France?"
    with (
        human_agent(one_vote, usdc="1") as agent,
        ThreadPoolExecutor(1) as pool,
        screenshot_on_failure(browser, tmp_path),
    ):
        asked = pool.submit(
            agent.ask_human_rpc,
            question,
            answer="Paris",
            confidence=0.8,
            reward="0.01",
            timeout=WAIT,
        )
        browser.get(f"{one_vote.url}/review")
        card = waiting(browser).until(pending_card(question))
        task_id = card.get_attribute("data-task-id")
        assert task_id is not None
        assert "Paris" in card.text
        assert "0.01 USDC" in card.text
        button(card, "Approve").click()
        waiting(browser).until(decided(task_id, "yes"))
        verdict = asked.result(timeout=WAIT)
        notice = browser.find_element("id", "notice").text
        assert f"Vote recorded on {task_id}" in notice
        assert "Consensus reached: YES" in notice
        assert agent.balance("USDC") == Decimal("0.99")
    assert (verdict["outcome"], verdict["decision"], verdict["task_id"]) == (
        "approved",
        "approve",
        task_id,
    )
    assert gateway.balance(gateway.treasury, "USDC") == treasury_before + Decimal("0.01")


def test_rejecting_with_a_comment_sends_both_to_the_agent(
    browser: WebDriver, one_vote: GatewayServer, tmp_path: Path
) -> None:
    """Reject with a comment typed in the card: the agent's verdict is a rejection with it."""
    question = "Is Lyon the capital of France?"
    comment = "No: the capital is Paris."
    with (
        human_agent(one_vote, usdc="1") as agent,
        ThreadPoolExecutor(1) as pool,
        screenshot_on_failure(browser, tmp_path),
    ):
        asked = pool.submit(
            agent.ask_human_rpc,
            question,
            answer="Lyon",
            confidence=0.6,
            reward="0.01",
            timeout=WAIT,
        )
        browser.get(f"{one_vote.url}/review")
        card = waiting(browser).until(pending_card(question))
        task_id = card.get_attribute("data-task-id")
        assert task_id is not None
        card.find_element("css selector", "textarea").send_keys(comment)
        button(card, "Reject").click()
        done = waiting(browser).until(decided(task_id, "no"))
        assert comment in done.text
        verdict = asked.result(timeout=WAIT)
    assert (verdict["outcome"], verdict["decision"]) == ("rejected", "reject")
    assert verdict["comments"] == [comment]


def test_a_hostile_question_is_shown_as_text(
    browser: WebDriver, one_vote: GatewayServer, tmp_path: Path
) -> None:
    """A question full of markup reads literally in the page; none of it runs."""
    with human_agent(one_vote, usdc="1") as agent, screenshot_on_failure(browser, tmp_path):
        task_id = paid_task(agent, one_vote.url, HOSTILE, agentName=HOSTILE)
        browser.get(f"{one_vote.url}/review")
        card = waiting(browser).until(pending_card(HOSTILE))
        assert card.get_attribute("data-task-id") == task_id
        assert browser.execute_script("return window.pwned === undefined") is True
        assert card.find_elements("css selector", "img, script") == []
        button(card, "Approve").click()
        waiting(browser).until(decided(task_id, "yes"))
        assert browser.execute_script("return window.pwned === undefined") is True


def test_consensus_forms_in_the_page_as_votes_arrive(browser: WebDriver, tmp_path: Path) -> None:
    """Three votes needed: the page counts the person's votes and another reviewer's (arriving
    through the API, shown without a reload, a comment being typed kept), then the verdict."""
    from selenium.webdriver.support import expected_conditions as ec

    with (
        serve_in_thread(review_policy="manual", voters=3) as running,
        human_agent(running, usdc="1") as agent,
        screenshot_on_failure(browser, tmp_path),
    ):
        task_id = paid_task(agent, running.url, "Is 13 prime?")
        browser.get(f"{running.url}/review")
        card = waiting(browser).until(pending_card("Is 13 prime?"))
        button(card, "Approve").click()
        waiting(browser).until(ec.text_to_be_present_in_element(("id", "notice"), "1 of 3 votes"))
        waiting(browser).until(
            ec.text_to_be_present_in_element(
                ("css selector", f'[data-task-id="{task_id}"] .votes'), "1 of 3 needed"
            )
        )
        card = waiting(browser).until(pending_card("Is 13 prime?"))
        card.find_element("css selector", "textarea").send_keys("Only 1 and 13 divide it.")
        requests.post(
            f"{running.url}/api/v1/tasks/{task_id}/votes", json={"decision": "yes"}, timeout=30
        ).raise_for_status()
        waiting(browser).until(
            ec.text_to_be_present_in_element(
                ("css selector", f'[data-task-id="{task_id}"] .votes'), "2 of 3 needed"
            )
        )
        card = waiting(browser).until(pending_card("Is 13 prime?"))
        field = card.find_element("css selector", "textarea")
        assert field.get_attribute("value") == "Only 1 and 13 divide it."
        button(card, "Approve").click()
        done = waiting(browser).until(decided(task_id, "yes"))
        assert "Consensus reached: YES" in browser.find_element("id", "notice").text
        assert "Only 1 and 13 divide it." in done.text
        assert agent.balance("USDC") == Decimal("0.99")


def test_approving_through_worker_processes(browser: WebDriver, tmp_path: Path) -> None:
    """``python -m stub_gateway --workers 2 --review-policy manual``: the page, its script, its
    polling and the browser's own vote (its Origin and Sec-Fetch-Site) pass through the
    workers to the ledger process; the agent gets the verdict."""
    from solders.keypair import Keypair

    from human_rpc_sdk import AutoAgent

    with cli_gateway(*WORKERS_MANUAL) as url, screenshot_on_failure(browser, tmp_path):
        wallet = Keypair()
        requests.post(
            f"{url}/api/v1/faucet", json={"address": str(wallet.pubkey()), "usdc": "1"}, timeout=30
        ).raise_for_status()
        with (
            AutoAgent(wallet, rpc_url=f"{url}/rpc", human_rpc_url=f"{url}/api/v1/tasks") as agent,
            ThreadPoolExecutor(1) as pool,
        ):
            asked = pool.submit(
                agent.ask_human_rpc, "Through workers?", answer="yes", reward="0.01", timeout=WAIT
            )
            browser.get(f"{url}/review")
            card = waiting(browser).until(pending_card("Through workers?"))
            task_id = card.get_attribute("data-task-id")
            assert task_id is not None
            button(card, "Approve").click()
            waiting(browser).until(decided(task_id, "yes"))
            verdict = asked.result(timeout=WAIT)
    assert (verdict["outcome"], verdict["task_id"]) == ("approved", task_id)


def test_a_failure_leaves_a_screenshot_and_says_where(
    browser: WebDriver, one_vote: GatewayServer, tmp_path: Path
) -> None:
    """What these tests do when they fail: a PNG of the page in the test's temporary folder,
    its path added to the error."""
    browser.get(f"{one_vote.url}/review")
    with pytest.raises(AssertionError) as caught, screenshot_on_failure(browser, tmp_path):
        raise AssertionError("a check failed")
    shot = tmp_path / "console.png"
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert caught.value.__notes__ == [f"screenshot of the page: {shot}"]


def test_the_readme_screenshot_script_runs(tmp_path: Path) -> None:
    """docs/console_screenshot.py (which made docs/reviewer-console.png) still makes a PNG."""
    problem = missing()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    out = tmp_path / "console.png"
    subprocess.run(
        [sys.executable, str(ROOT / "docs" / "console_screenshot.py"), "--out", str(out)],
        check=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
