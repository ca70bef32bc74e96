"""Make docs/reviewer-console.png, the README's picture of the reviewer console.

    python docs/console_screenshot.py [--out docs/reviewer-console.png]

Starts a stub gateway with ``--review-policy manual`` and three voters per task, has an agent
pay for three tasks, votes on two of them (one to a verdict), and photographs ``/review`` in
headless Chromium (Debian's chromium and chromium-driver; ``make test`` installs them).
tests/test_console_browser.py runs it, so it keeps working.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from decimal import Decimal
from pathlib import Path

from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent
from stub_gateway import serve_in_thread
from tests.browser import start_chromium

log = logging.getLogger("console_screenshot")

DEFAULT_OUT = Path(__file__).resolve().parent / "reviewer-console.png"
TASKS = (
    ("Is 1 Ether worth more than 1 SOL today?", "Yes, about 20 times more.", 0.55),
    ("Translate 'Guten Morgen' into English.", "Good morning", 0.8),
    ("Does this invoice total match its lines (12.50 + 7.25)?", "19.75", 0.7),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)
    with (
        serve_in_thread(review_policy="manual", voters=3) as gateway,
        tempfile.TemporaryDirectory() as folder,
    ):
        wallet = Keypair()
        gateway.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(5)})
        journal = Path(folder) / "journal.sqlite3"
        with AutoAgent(wallet, rpc_url=gateway.rpc_url, journal_path=journal) as agent:
            ids = [_task(agent, gateway.url, *task) for task in TASKS]
            votes = f"{gateway.url}/api/v1/tasks/{{}}/votes"
            for comment in ("Correct.", "Checked the sum.", ""):
                vote = {"decision": "yes", "comment": comment}
                agent.post(votes.format(ids[2]), json=vote, timeout=30).raise_for_status()
            agent.post(votes.format(ids[0]), json={"decision": "no"}, timeout=30)
        browser = start_chromium(width=1000, height=1200)
        try:
            browser.get(f"{gateway.url}/review")
            wait = WebDriverWait(browser, 30)
            card = wait.until(
                ec.presence_of_element_located(("css selector", f'[data-task-id="{ids[1]}"]'))
            )
            browser.find_element("id", "reviewer").send_keys("ada")
            card.find_element("css selector", "textarea").send_keys("Right, a greeting.")
            card.find_element("css selector", "button.approve").click()
            wait.until(ec.text_to_be_present_in_element(("id", "notice"), "Vote recorded"))
            browser.save_screenshot(str(args.out))
        finally:
            browser.quit()
    log.info("wrote %s", args.out)


def _task(agent: AutoAgent, url: str, question: str, answer: str, confidence: float) -> str:
    body = {
        "text": question,
        "rewardAmount": "0.05",
        "rewardCurrency": "USDC",
        "agentName": "research-agent",
        "context": {"data": {"agentConclusion": answer, "aiConfidence": confidence}},
    }
    created = agent.post(f"{url}/api/v1/tasks", json=body, timeout=30)
    created.raise_for_status()
    task_id: str = created.json()["task_id"]
    return task_id


if __name__ == "__main__":
    main()
