"""Human verification: ``ask``, ``wait`` and ``tasks`` (paid tasks, from the journal)."""

from __future__ import annotations

import json
from typing import Any, Final

import click

from ..._money import format_amount
from ..._tasks import Verdict, reward_amount
from .output import Out
from .paying import only_in
from .session import session_of

__all__ = ["COMMANDS"]


@click.command(short_help="Ask humans to check an AI's answer (pays the task).")
@click.argument("question")
@click.option("--answer", required=True, help="the AI's answer that humans should check")
@click.option(
    "--confidence",
    type=click.FloatRange(0, 1),
    required=True,
    help="the AI's confidence in it, 0 to 1 (it sets how many reviewers vote)",
)
@click.option(
    "--reward",
    default=None,
    metavar="AMOUNT",
    help="what the task pays (default: the service's); the task service's invoice may ask no "
    "more than this, in --currency",
)
@click.option("--currency", default="USDC", show_default=True, help="the reward's token")
@click.option("--context", default=None, metavar="JSON", help="context for the reviewers")
@click.option(
    "--wait",
    "wait_seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    help="seconds to wait for the verdict (then `human-rpc wait TASK_ID` resumes)",
)
@click.option("--json", "as_json", is_flag=True, help="print the verdict as JSON")
@click.pass_context
def ask(
    ctx: click.Context,
    question: str,
    answer: str,
    confidence: float,
    reward: str | None,
    currency: str,
    context: str | None,
    wait_seconds: float,
    as_json: bool,
) -> None:
    """Ask humans to check ANSWER to QUESTION: pays the task, waits for the verdict."""
    session = session_of(ctx)
    session.out.as_json = as_json
    rules: dict[str, Any] = {}
    if reward is not None:  # the invoice may ask no more than the reward, in its currency
        amount = format_amount(reward_amount(reward))
        rules["max_payment"] = {currency.upper() if len(currency) < 32 else currency: amount}
        rules["approve"] = only_in(session.network, (amount, currency), [])
    agent = session.agent(**rules)
    with session.out.waiting("paying the task, then waiting for the reviewers' verdict"):
        verdict = agent.ask_human_rpc(
            question,
            answer=answer,
            confidence=confidence,
            reward=reward,
            currency=currency,
            context=_context(context),
            timeout=wait_seconds,
        )
    _show_verdict(session.out, verdict)


def _context(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise click.BadParameter(
            'must be a JSON object, such as \'{"source": "ticket 42"}\'', param_hint="--context"
        )
    return value


@click.command(short_help="Wait for the verdict of a task already paid for.")
@click.argument("task_id")
@click.option(
    "--timeout",
    "wait_seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    help="seconds to wait for the verdict (exit status 5 when none came)",
)
@click.option("--json", "as_json", is_flag=True, help="print the verdict as JSON")
@click.pass_context
def wait(ctx: click.Context, task_id: str, wait_seconds: float, as_json: bool) -> None:
    """Wait for the verdict of a task already paid for (nothing is paid)."""
    session = session_of(ctx)
    session.out.as_json = as_json
    agent = session.agent()
    with session.out.waiting(f"waiting for the verdict on task {task_id}"):
        verdict = agent.wait_for_verdict(task_id, timeout=wait_seconds)
    _show_verdict(session.out, verdict)


def _show_verdict(out: Out, verdict: Verdict) -> None:
    if out.as_json:
        out.data(dict(verdict))
        return
    payment = verdict.get("payment") or {}
    out.pairs(
        f"task {verdict['task_id']}",
        [
            ("outcome", verdict["outcome"]),
            ("decision", verdict["decision"]),
            ("confidence", verdict["confidence"]),
            ("comments", "; ".join(dict.fromkeys(verdict["comments"])) or None),
            ("consensus", json.dumps(verdict["consensus"]) if verdict["consensus"] else None),
            ("paid", json.dumps(payment) if payment else None),
        ],
    )
    style = "bold green" if verdict["decision"] == "approve" else "bold red"
    out.line(f"verdict: {verdict['outcome']}", style=style)


@click.command(short_help="List the human-verification tasks paid for.")
@click.option("--pending", is_flag=True, help="only tasks paid for but not decided yet")
@click.option("--json", "as_json", is_flag=True, help="print the tasks as JSON")
@click.pass_context
def tasks(ctx: click.Context, pending: bool, as_json: bool) -> None:
    """The human-verification tasks this wallet paid for, from the journal."""
    session = session_of(ctx)
    session.out.as_json = as_json
    agent = session.agent()
    if pending:
        listed = agent.pending_tasks()
    else:
        listed = [r for r in agent.payments if r.task_id is not None]
    if as_json:
        session.out.data(listed)
        return
    if not listed:
        session.out.note("no pending tasks" if pending else "no tasks paid for in the journal")
        return
    session.out.table(
        "tasks" + (" without a verdict" if pending else ""),
        ("task", "payment", "paid", "verdict", "time"),
        [
            (
                r.task_id,
                f"#{r.id} {r.state}",
                f"{format_amount(r.amount)} {r.currency}",
                r.task_outcome or "pending: `human-rpc wait TASK`",
                r.time,
            )
            for r in listed
        ],
    )


COMMANDS: Final = (ask, wait, tasks)
