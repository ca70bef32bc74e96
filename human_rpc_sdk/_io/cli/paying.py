"""Paying: ``get`` and ``request`` (a curl that pays) and ``quote`` (what a 402 asks and what
the agent's rules decide, with nothing signed).

``quote`` runs the agent's own payment flow with an ``approve`` callback that records the
offer and declines it: every rule that comes before ``approve`` (the network, accepted assets,
``max_payment``, trusted recipients, the balance with fees and rent) is the agent's, and the
budget is read from the journal's running totals as the reservation would read them. A
declined payment is never reserved or signed.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO, Final

import click

from ..._budgets import per_text
from ..._checks import is_pubkey
from ..._limits import currency_key
from ..._money import MoneyError, format_amount, parse_decimal
from ..._offer import PaymentOffer
from ..._receipts import PaymentReceipt
from ...exceptions import PaymentError, PaymentPolicyError
from ..agent import AutoAgent
from ..journal import MEMORY
from .errors import EXIT_ERROR, EXIT_HTTP, EXIT_REFUSED
from .output import Out
from .session import Session, session_of

__all__ = ["COMMANDS", "describe_payment", "only_in"]

Command = Callable[..., Any]


def _max_option(command: Command) -> Command:
    return click.option(
        "--max",
        "max_payment",
        nargs=2,
        type=(str, str),
        default=None,
        metavar="AMOUNT TOKEN",
        help="the most this one payment may cost, such as --max 0.05 USDC; nothing in another "
        "token is paid then (default: the SDK's ceilings, 0.1 SOL or 1 of a stablecoin)",
    )(command)


def _request_options(command: Command) -> Command:
    for decorate in reversed(
        (
            click.option(
                "-H",
                "--header",
                "headers",
                multiple=True,
                metavar="'NAME: VALUE'",
                help="a request header (repeatable)",
            ),
            click.option(
                "-o",
                "--output",
                type=click.Path(dir_okay=False, path_type=Path),
                default=None,
                help="write the body to this file instead of stdout",
            ),
            _max_option,
            click.option(
                "--dry-run",
                is_flag=True,
                help="do not pay: show what the 402 asks and what the rules decide (as quote)",
            ),
        )
    ):
        command = decorate(command)
    return command


@click.command(short_help="GET a URL, paying its 402: a curl that pays.")
@click.argument("url")
@_request_options
@click.pass_context
def get(
    ctx: click.Context,
    url: str,
    headers: tuple[str, ...],
    output: Path | None,
    max_payment: tuple[str, str] | None,
    dry_run: bool,
) -> None:
    """GET URL, paying its 402 once: the body to stdout, what was paid to stderr."""
    _fetch(session_of(ctx), "GET", url, headers, None, output, max_payment, dry_run)


@click.command(short_help="Send METHOD URL, paying its 402.")
@click.argument("method")
@click.argument("url")
@click.option(
    "-d",
    "--data",
    default=None,
    metavar="TEXT|@FILE",
    help="the request body: text, @FILE for a file's bytes, @- for stdin",
)
@_request_options
@click.pass_context
def request(
    ctx: click.Context,
    method: str,
    url: str,
    data: str | None,
    headers: tuple[str, ...],
    output: Path | None,
    max_payment: tuple[str, str] | None,
    dry_run: bool,
) -> None:
    """Send METHOD URL (POST, PUT, ...), paying its 402 once, as get does."""
    body = _body(data)
    _fetch(session_of(ctx), method.upper(), url, headers, body, output, max_payment, dry_run)


@click.command(short_help="What a URL's 402 asks and what the rules decide (signs nothing).")
@click.argument("url")
@click.option("-X", "--method", default="GET", show_default=True, help="the request's method")
@click.option("-H", "--header", "headers", multiple=True, metavar="'NAME: VALUE'")
@_max_option
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@click.pass_context
def quote(
    ctx: click.Context,
    url: str,
    method: str,
    headers: tuple[str, ...],
    max_payment: tuple[str, str] | None,
    as_json: bool,
) -> None:
    """What URL's 402 asks, and what this wallet's rules would decide: nothing is signed.

    Exit status 0: it would be paid; 3: a spending rule would refuse it; 1: it cannot be paid
    (the balance, a malformed 402).
    """
    session = session_of(ctx)
    session.out.as_json = as_json
    _quote(session, method.upper(), url, _headers(headers), None, max_payment)


def _fetch(
    session: Session,
    method: str,
    url: str,
    headers: tuple[str, ...],
    body: bytes | None,
    output: Path | None,
    max_payment: tuple[str, str] | None,
    dry_run: bool,
) -> None:
    sent = _headers(headers)
    if dry_run:
        _quote(session, method, url, sent, body, max_payment)
        return
    other: list[PaymentOffer] = []
    only = only_in(session.network, max_payment, other)
    agent = session.agent(**_rules(max_payment), approve=only)
    before = _last_id(agent)
    sink = _Sink(output)  # before paying: a body paid for must have somewhere to go
    try:
        try:
            with session.out.waiting(f"{method} {url}"):
                response = agent.request(method, url, headers=sent, data=body)
                content = response.content
        except PaymentPolicyError as exc:
            if exc.rule == "approve" and other and max_payment is not None:
                raise _other_token(other[-1], max_payment, exc) from None
            raise
        for receipt in agent.payments_since(before):
            note = describe_payment(receipt)
            session.out.note(note, style="green" if receipt.accepted else "red")
        sink.write(content)
    finally:
        sink.discard()
    if response.status_code >= 400:
        session.out.note(f"HTTP {response.status_code} {response.reason} from {url}", style="red")
        raise click.exceptions.Exit(EXIT_HTTP)


class _Sink:
    """Where the body goes: stdout, or ``--output``, opened before anything is paid.

    A new file beside ``--output`` is created first (so a missing directory or a read-only
    one is refused with nothing signed), the body is written to it, and it is renamed over
    ``--output``: a symlink there is replaced, not written through, and a failure leaves no
    half-written file.
    """

    def __init__(self, output: Path | None) -> None:
        self._output = output
        self._part: Path | None = None
        self._descriptor: int | None = None
        if output is None:
            return
        part = output.with_name(f".{output.name}.{secrets.token_hex(8)}.part")
        try:
            self._descriptor = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as exc:
            raise click.BadParameter(
                f"cannot write {output}: {exc.strerror or exc}; nothing was paid. Choose an "
                "--output in a directory that exists and is writable",
                param_hint="--output",
            ) from None
        self._part = part

    def write(self, content: bytes) -> None:
        if self._output is None:
            stream: BinaryIO = sys.stdout.buffer
            stream.write(content)
            stream.flush()
            return
        descriptor, part = self._descriptor, self._part
        if descriptor is None or part is None:  # pragma: no cover - written once
            raise click.FileError(str(self._output), hint="the body was already written")
        try:
            with os.fdopen(descriptor, "wb") as file:
                self._descriptor = None
                file.write(content)
            os.replace(part, self._output)
            self._part = None
        except OSError as exc:
            raise click.FileError(str(self._output), hint=exc.strerror or str(exc)) from None

    def discard(self) -> None:
        """Remove the new file when the body never reached ``--output``."""
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None
        if self._part is not None:
            self._part.unlink(missing_ok=True)
            self._part = None


def describe_payment(receipt: PaymentReceipt) -> str:
    """One line about a payment: what, to whom, how it ended, where to look it up."""
    how = receipt.state or ("accepted" if receipt.accepted else "unknown")
    signature = receipt.signature or "(no signature yet)"
    return (
        f"paid {format_amount(receipt.amount)} {receipt.currency} to {receipt.recipient} "
        f"(+{format_amount(receipt.fee)} SOL fees): {how}, journal #{receipt.id}, "
        f"signature {signature}"
    )


def _last_id(agent: AutoAgent) -> int:
    paid = agent.payments
    return (paid[-1].id or 0) if paid else 0


@dataclass(frozen=True)
class _Decision:
    would_pay: bool
    rule: str | None
    message: str


def _quote(
    session: Session,
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes | None,
    max_payment: tuple[str, str] | None,
) -> None:
    offers: list[PaymentOffer] = []

    def decline(offer: PaymentOffer) -> bool:
        offers.append(offer)
        return False  # nothing is reserved or signed: the flow stops here

    other: list[PaymentOffer] = []
    only = only_in(session.network, max_payment, other)

    agent = session.agent(**_rules(max_payment))  # the wallet's journal: its budget
    # The price is asked by an agent with a journal of its own, in memory: a payment this
    # wallet's journal holds with no known outcome is never resumed or re-sent by a quote
    # (that is `recover`'s, or the next `get`'s, to do), and nothing is written there.
    asking = session.agent(approve=decline, journal_path=MEMORY, **_rules(max_payment))
    before = _last_id(asking)
    try:
        with session.out.waiting(f"asking {url} for its price"):
            response = asking.request(method, url, headers=headers, data=body)
    except PaymentPolicyError as exc:
        if exc.rule != "approve" or not offers:
            _show_refusal(session.out, url, exc.rule, exc.message, exc.reason, EXIT_REFUSED)
        if max_payment is not None and not only(offers[-1]):
            wrong = _other_token(other[-1], max_payment, exc)
            decision = _Decision(False, wrong.rule, wrong.message)
        else:
            decision = _budget_decision(agent, offers[-1])
    except PaymentError as exc:
        _show_refusal(session.out, url, None, exc.message, exc.reason, EXIT_ERROR)
    else:
        again = asking.payments_since(before)
        _show_no_offer(session.out, url, response.status_code, again)
        return
    _show_offer(session.out, agent, offers[-1], decision)
    if not decision.would_pay:
        raise click.exceptions.Exit(EXIT_REFUSED)


def _budget_decision(agent: AutoAgent, offer: PaymentOffer) -> _Decision:
    """The budget's verdict on ``offer``, from the journal's running totals (as reserving it
    would decide): the payment in its currency, and its fees against the SOL budget."""
    key = currency_key(agent.network, offer.currency, offer.mint)
    costs = {key: offer.amount}
    costs["SOL"] = costs.get("SOL", Decimal(0)) + offer.fee
    lines = agent.budget
    for name, cost in costs.items():
        budget = lines.get(name)
        for line in () if budget is None or cost == 0 else budget:
            if line.limit is None or line.spent + cost <= line.limit:
                continue
            per = "" if line.per is None else f" ({per_text(line.per)})"  # (day), (rolling 90m)
            return _Decision(
                False,
                "budget",
                f"the {name} budget{per} would be exceeded: {format_amount(line.spent)} of "
                f"{format_amount(line.limit)} spent, this needs {format_amount(cost)} more "
                "(`human-rpc budget raise AMOUNT TOKEN` lifts it)",
            )
    return _Decision(True, None, "every spending rule and the budget allow it")


def _show_offer(out: Out, agent: AutoAgent, offer: PaymentOffer, decision: _Decision) -> None:
    key = currency_key(agent.network, offer.currency, offer.mint)
    line = agent.budget.get(key)
    if out.as_json:
        out.data(
            {
                "url": offer.url,
                "status": 402,
                "offer": {name: getattr(offer, name) for name in PaymentOffer.__dataclass_fields__}
                | {"fee": offer.fee},
                "budget": None
                if line is None
                else {"currency": key, "limit": line.limit, "spent": line.spent},
                "decision": "pay" if decision.would_pay else "refuse",
                "rule": decision.rule,
                "message": decision.message,
            }
        )
        return
    out.pairs(
        f"{offer.url} asks ({offer.format})",
        [
            ("amount", f"{format_amount(offer.amount)} {offer.currency}"),
            ("fees and rent", f"{format_amount(offer.fee)} SOL"),
            ("recipient", offer.recipient),
            ("credited account", offer.destination),
            ("mint", offer.mint),
            ("network", offer.network),
            ("for", offer.description or None),
            (
                f"budget {key}",
                None
                if line is None
                else f"{format_amount(line.spent)} spent of "
                + ("no limit" if line.limit is None else format_amount(line.limit)),
            ),
        ],
    )
    verdict = "would pay" if decision.would_pay else f"would refuse (rule {decision.rule})"
    out.line(f"{verdict}: {decision.message}; nothing was signed", style=_style(decision))


def _style(decision: _Decision) -> str:
    return "bold green" if decision.would_pay else "bold red"


def _show_refusal(
    out: Out, url: str, rule: str | None, message: str, reason: str, code: int
) -> None:
    if out.as_json:
        out.data(
            {
                "url": url,
                "status": 402,
                "decision": "refuse",
                "rule": rule,
                "reason": reason,
                "message": message,
            }
        )
    else:
        what = f"would refuse (rule {rule})" if rule else "cannot pay"
        out.line(f"{what}: {message}", style="bold red")
    raise click.exceptions.Exit(code)


def _show_no_offer(out: Out, url: str, status: int, again: list[PaymentReceipt]) -> None:
    if out.as_json:
        out.data({"url": url, "status": status, "decision": None, "payments": again})
        return
    if again:  # the journal held a payment of this very invoice: it was sent again
        for receipt in again:
            out.note(f"already {describe_payment(receipt)} (sent again, not paid again)")
    out.line(f"HTTP {status} from {url}: no payment asked")


def only_in(
    network: str, max_payment: tuple[str, str] | None, other: list[PaymentOffer]
) -> Callable[[PaymentOffer], bool]:
    """An ``approve`` callback: with ``--max AMOUNT TOKEN``, only payments in TOKEN go ahead
    (the SDK's defaults would let another token be paid up to its own ceiling); the offers
    in another token are kept in ``other``."""

    def approve(offer: PaymentOffer) -> bool:
        if max_payment is None:
            return True
        token = max_payment[1]
        wanted = currency_key(network, token, token) if is_pubkey(token) else token.upper()
        if currency_key(network, offer.currency, offer.mint) == wanted:
            return True
        other.append(offer)
        return False

    return approve


def _other_token(
    offer: PaymentOffer, max_payment: tuple[str, str], cause: PaymentPolicyError
) -> PaymentPolicyError:
    amount, token = max_payment
    return PaymentPolicyError(
        f"--max {amount} {token} allows payments in {token} only, and {offer.url} asks "
        f"{format_amount(offer.amount)} {offer.currency}. Nothing was signed or paid; pass "
        f"--max with a ceiling in {offer.currency} to pay it",
        rule="max_payment",
        invoice=cause.invoice,
    )


def _rules(max_payment: tuple[str, str] | None) -> dict[str, Any]:
    if max_payment is None:
        return {}
    amount, token = max_payment
    try:
        parse_decimal(amount)
    except MoneyError:
        raise click.BadParameter(
            f"takes AMOUNT TOKEN, such as --max 0.05 USDC (got {amount!r} {token!r})",
            param_hint="--max",
        ) from None
    return {"max_payment": {token.upper() if len(token) < 32 else token: amount}}


def _headers(given: tuple[str, ...]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for text in given:
        name, colon, value = text.partition(":")
        if not colon or not name.strip():
            raise click.BadParameter(
                f"{text!r} is not NAME: VALUE (such as -H 'Accept: application/json')",
                param_hint="--header",
            )
        headers[name.strip()] = value.strip()
    return headers


def _body(data: str | None) -> bytes | None:
    if data is None:
        return None
    if data == "@-":
        return sys.stdin.buffer.read()
    if data.startswith("@"):
        path = Path(data[1:])
        try:
            return path.read_bytes()
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {path}: {exc.strerror or exc}", param_hint="--data"
            ) from None
    return data.encode("utf-8")


COMMANDS: Final = (get, request, quote)
