"""The payment journal: ``payments``, ``payment ID``, ``recover``, ``budget`` (and
``budget raise``)."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import click

from ..._budgets import per_text
from ..._money import format_amount
from ..._receipts import PaymentReceipt
from ..._records import PENDING, JournalEntry
from ..._settings import redacted_url
from ...exceptions import SDKConfigurationError
from ..store import open_journal
from .errors import Unsettled
from .output import Out, receipt_dict
from .session import session_of

__all__ = ["COMMANDS"]

_DURATION: Final = re.compile(r"(\d+)([smhdw])")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DECIDED: Final = {
    "accepted": "landed on chain (or served): counted as paid",
    "refused": "the server refused it; the chain shows whether money moved",
    "failed": "proven never landed: nothing moved, its budget is released",
}


@click.command(short_help="List the wallet's payments, from the journal.")
@click.option("--pending", is_flag=True, help="only payments whose outcome is unknown")
@click.option(
    "--since",
    default=None,
    metavar="WHEN",
    help="only payments made since WHEN: a date or time (ISO 8601, UTC unless it says) or "
    "an age such as 30m, 12h, 7d",
)
@click.option("--json", "as_json", is_flag=True, help="print the payments as JSON")
@click.option("--csv", "as_csv", is_flag=True, help="print the payments as CSV")
@click.pass_context
def payments(
    ctx: click.Context, pending: bool, since: str | None, as_json: bool, as_csv: bool
) -> None:
    """The wallet's payments, from its journal (oldest first)."""
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    session = session_of(ctx)
    session.out.as_json = as_json
    agent = session.agent()
    listed = agent.pending_payments() if pending else agent.payments
    if since is not None:
        start = _since(since)
        listed = [r for r in listed if r.time >= start]
    if as_json:
        session.out.data(listed)
    elif as_csv:
        click.echo(_csv(listed), nl=False)
    elif not listed:
        what = "pending payments" if pending else f"payments by {agent.address}"
        session.out.note(f"no {what} in {redacted_url(agent.journal_path)}")
    else:
        _table(session.out, listed, f"payments in {redacted_url(agent.journal_path)}")


def _table(out: Out, listed: list[PaymentReceipt], title: str) -> None:
    out.table(
        title,
        ("id", "time", "state", "amount", "fees (SOL)", "to", "url", "signature"),
        [
            (
                r.id,
                r.time,
                r.state,
                f"{format_amount(r.amount)} {r.currency}",
                format_amount(r.fee),
                _short(r.recipient),
                r.url,
                _short(r.signature),
            )
            for r in listed
        ],
    )


def _short(text: str | None) -> str | None:
    if not text:
        return None
    return text if len(text) <= 12 else f"{text[:5]}…{text[-5:]}"


def _since(text: str) -> datetime:
    match = _DURATION.fullmatch(text.strip())
    if match is not None:
        amount, unit = int(match[1]), _UNITS[match[2]]
        try:
            return datetime.now(UTC) - timedelta(**{unit: amount})
        except OverflowError:  # older than the calendar: every payment
            return datetime.min.replace(tzinfo=UTC)
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither a date or time (2026-11-26, 2026-11-26T08:00) nor an age "
            "(30m, 12h, 7d)",
            param_hint="--since",
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


_CSV_FIELDS: Final = (
    "id",
    "time",
    "state",
    "amount",
    "currency",
    "mint",
    "recipient",
    "destination",
    "url",
    "network",
    "format",
    "signature",
    "fee_lamports",
    "rent_lamports",
    "http_status",
    "landed",
    "replaces",
    "task_id",
    "payment_id",
)


def _csv(listed: list[PaymentReceipt]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, _CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for receipt in listed:
        writer.writerow({k: ("" if v is None else v) for k, v in receipt_dict(receipt).items()})
    return buffer.getvalue()


@click.command(short_help="Show one payment as the journal keeps it.")
@click.argument("payment_id", metavar="ID", type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="print the payment as JSON")
@click.pass_context
def payment(ctx: click.Context, payment_id: int, as_json: bool) -> None:
    """One payment, as the journal keeps it: its state and when it was last written, the
    transaction (signature, blockhash and its last valid block height, fee payer), fees and
    rent, what the server and the chain said, and the payments it replaced or was replaced by.
    The signed payment itself is never shown."""
    session = session_of(ctx)
    session.out.as_json = as_json
    agent = session.agent()
    journal = open_journal(agent._journal_location)
    try:
        entries = journal.entries()
    finally:
        journal.close()
    entry = next((e for e in entries if e.id == payment_id), None)
    if entry is None:
        raise SDKConfigurationError(
            f"the journal {redacted_url(agent.journal_path)} has no payment #{payment_id}; "
            "`human-rpc payments` lists them",
            parameter="id",
        )
    replaced_by = [e.id for e in entries if e.receipt.replaces == payment_id]
    shown = _entry_fields(entry, replaced_by)
    if as_json:
        session.out.data(shown)
        return
    session.out.pairs(f"payment #{payment_id}", [(k, v) for k, v in shown.items()])
    advice = _advice(entry)
    if advice:
        session.out.note(advice, style="yellow")


def _entry_fields(entry: JournalEntry, replaced_by: list[int]) -> dict[str, Any]:
    fields = receipt_dict(entry.receipt)
    fields.update(
        {
            "last_written_seconds_ago": round(entry.age, 1),
            "invoice_key": entry.invoice_key,
            "blockhash": entry.blockhash,
            "last_valid_block_height": entry.last_valid_block_height,
            "blockhash_slot": entry.blockhash_slot,
            "fee_payer": entry.fee_payer,
            "landed_proof": entry.landed_proof,
            "genesis_hash": entry.genesis_hash,
            "process": None if entry.pid is None else f"{entry.process} pid {entry.pid}",
            "host": entry.host,
            "replaced_by": replaced_by or None,
        }
    )
    return fields


def _advice(entry: JournalEntry) -> str | None:
    if entry.state in PENDING:
        return (
            f"payment #{entry.id} is {entry.state}: its outcome is unknown; "
            "`human-rpc recover` settles it from the chain"
        )
    if entry.receipt.task_id and entry.receipt.task_outcome is None:
        return f"its task has no verdict yet: `human-rpc wait {entry.receipt.task_id}`"
    return None


@click.command(short_help="Settle payments of unknown outcome against the chain.")
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
@click.pass_context
def recover(ctx: click.Context, as_json: bool) -> None:
    """Settle payments of unknown outcome against the chain, and say what was decided.

    A payment found on chain becomes accepted; one proven never landed becomes failed (its
    budget released); the rest stay open (exit status 5: run it again later).
    """
    session = session_of(ctx)
    session.out.as_json = as_json
    agent = session.agent()
    before = {r.id: r.state for r in agent.pending_payments()}
    with session.out.waiting("looking the open payments up on chain"):
        examined = agent.recover_payments()
    rows = [
        {
            "id": r.id,
            "before": before.get(r.id, r.state),
            "after": r.state,
            "landed": r.landed,
            "amount": f"{format_amount(r.amount)} {r.currency}",
            "signature": r.signature or None,
            "decision": _DECIDED.get(r.state or "", "still unknown: run recover again later"),
        }
        for r in examined
    ]
    still_open = [r for r in examined if r.state in PENDING]
    tasks = agent.pending_tasks()
    if as_json:
        session.out.data(
            {
                "examined": rows,
                "still_open": [r.id for r in still_open],
                "pending_tasks": [r.task_id for r in tasks],
            }
        )
    elif not rows:
        session.out.line("nothing to recover: every payment in the journal has a known outcome")
    else:
        session.out.table(
            f"recovered from {agent.rpc_url}",
            ("id", "was", "now", "landed", "amount", "decision"),
            [
                (r["id"], r["before"], r["after"], r["landed"], r["amount"], r["decision"])
                for r in rows
            ],
        )
        settled = len(rows) - len(still_open)
        session.out.line(f"{settled} settled, {len(still_open)} still open")
    for receipt in tasks:
        session.out.note(
            f"task {receipt.task_id} (payment #{receipt.id}) has no verdict yet: "
            f"`human-rpc wait {receipt.task_id}`"
        )
    if still_open:
        ids = ", ".join(f"#{r.id}" for r in still_open)
        raise Unsettled(
            f"payments {ids} are still of unknown outcome (the chain cannot tell yet); "
            "run `human-rpc recover` again in a minute"
        )


@click.group(
    short_help="Show the budgets (budget raise AMOUNT TOKEN lifts one).",
    invoke_without_command=True,
)
@click.option("--json", "as_json", is_flag=True, help="print the budget as JSON")
@click.pass_context
def budget(ctx: click.Context, as_json: bool) -> None:
    """Each currency's budget: its limit (the SDK's default plus every raise journaled), what
    the journal counts as spent, and what is left."""
    if ctx.invoked_subcommand is not None:
        return
    session = session_of(ctx)
    session.out.as_json = as_json
    agent = session.agent()
    _show_budget(session.out, agent.budget, _where(agent), as_json)


def _where(agent: Any) -> str:
    """The journal, and the budget scope when not the default ($HUMAN_RPC_BUDGET_SCOPE): the
    figures are that scope's only."""
    scope: str = agent._rules.scope
    where = redacted_url(agent.journal_path)
    return f"{where}, scope {scope!r}" if scope else where


def _show_budget(out: Out, lines: dict[str, Any], where: str, as_json: bool) -> None:
    """Each currency's budget: the binding line's figures, and every line with its reset."""
    if as_json:
        out.data(
            {
                key: {
                    "limit": b.limit,
                    "spent": b.spent,
                    "remaining": b.remaining,
                    "lines": [
                        {
                            "per": per_text(line.per),
                            "limit": line.limit,
                            "spent": line.spent,
                            "remaining": line.remaining,
                            "resets": line.resets,
                        }
                        for line in b
                    ],
                }
                for key, b in lines.items()
            }
        )
        return
    out.table(
        f"budget in {where}",
        ("currency", "per", "limit", "spent", "remaining", "resets"),
        [
            (
                key,
                per_text(line.per) or "total",
                "no limit" if line.limit is None else format_amount(line.limit),
                format_amount(line.spent),
                None if line.remaining is None else format_amount(line.remaining),
                None if line.resets is None else line.resets.strftime("%Y-%m-%d %H:%M UTC"),
            )
            for key, b in lines.items()
            for line in b
        ],
    )


@budget.command(name="raise")
@click.argument("amount")
@click.argument("token")
@click.option("--json", "as_json", is_flag=True, help="print the new budget as JSON")
@click.pass_context
def raise_(ctx: click.Context, amount: str, token: str, as_json: bool) -> None:
    """Add AMOUNT to TOKEN's budget (budget raise 5 USDC: from 10 to 15), in the journal: it
    lasts, and every agent sharing the journal gets it."""
    session = session_of(ctx)
    session.out.as_json = as_json
    agent = session.agent()
    lines = agent.raise_budget({token.upper() if len(token) < 32 else token: amount})
    if not as_json:
        session.out.note(f"raised the {token} budget by {amount}")
    _show_budget(session.out, lines, _where(agent), as_json)


COMMANDS: Final = (payments, payment, recover, budget)
