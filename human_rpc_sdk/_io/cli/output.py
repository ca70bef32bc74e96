"""What the commands show: rich tables and colour on a terminal, plain text in a pipe, JSON for
scripts (``--json``), a spinner on stderr while something waits."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..._receipts import PaymentReceipt

__all__ = ["Out", "jsonable", "receipt_dict", "safe_text"]

_PIPE_WIDTH = 240
"""Columns in a pipe or a file: wide enough that an address or a signature stays on its line."""


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""Control characters (but newline and tab): a server's text carrying terminal escapes could
otherwise erase the lines above it (what was paid) or retitle the window."""


def safe_text(text: str) -> str:
    """``text`` for a terminal: no rich markup, and each control character shown as ``\\xNN``."""
    return escape(_CONTROL.sub(lambda found: f"\\x{ord(found[0]):02x}", text))


def _console(stderr: bool) -> Console:
    console = Console(stderr=stderr, soft_wrap=False, highlight=False)
    if not console.is_terminal:
        console = Console(stderr=stderr, soft_wrap=False, highlight=False, width=_PIPE_WIDTH)
    return console


@dataclass
class Out:
    """The two streams of a command: results on stdout, news about money on stderr."""

    as_json: bool = False
    out: Console = field(default_factory=lambda: _console(stderr=False))
    err: Console = field(default_factory=lambda: _console(stderr=True))

    def data(self, value: Any) -> None:
        """Print ``value`` as one JSON document (``--json``) on stdout."""
        click.echo(json.dumps(jsonable(value), indent=2, sort_keys=True))

    def line(self, text: str, *, style: str | None = None) -> None:
        self.out.print(safe_text(text), style=style)

    def note(self, text: str, *, style: str | None = None) -> None:
        """A line on stderr (what was paid, what to do next)."""
        self.err.print(safe_text(text), style=style)

    def warn(self, text: str) -> None:
        self.err.print(f"[bold yellow]warning:[/] {safe_text(text)}")

    def error(self, text: str, reason: str | None) -> None:
        tag = f" [dim]({safe_text(reason)})[/]" if reason else ""
        self.err.print(f"[bold red]error:[/] {safe_text(text)}{tag}")

    def table(
        self, title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> None:
        self._title(title)
        table = Table(header_style="bold")
        for name in columns:
            table.add_column(name, overflow="fold")
        for row in rows:
            table.add_row(*(safe_text(_cell(value)) for value in row))
        self.out.print(table)

    def pairs(self, title: str | None, rows: Iterable[tuple[str, Any]]) -> None:
        """A two-column table: name, value."""
        self._title(title)
        table = Table(show_header=False)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for name, value in rows:
            table.add_row(safe_text(name), safe_text(_cell(value)))
        self.out.print(table)

    def _title(self, title: str | None) -> None:
        if title:
            self.out.print(safe_text(title), style="bold")

    @contextlib.contextmanager
    def waiting(self, text: str) -> Iterator[None]:
        """A spinner on stderr while the body runs (on a terminal only)."""
        if not self.err.is_terminal:
            yield
            return
        with self.err.status(safe_text(text)):
            yield


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def jsonable(value: Any) -> Any:
    """``value`` with Decimals as strings, datetimes in ISO 8601 and receipts as objects."""
    if isinstance(value, PaymentReceipt):
        return receipt_dict(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def receipt_dict(receipt: PaymentReceipt) -> dict[str, Any]:
    """A receipt as JSON: its fields, plus its fee in SOL and whether it was accepted."""
    fields = {name: getattr(receipt, name) for name in receipt.__dataclass_fields__}
    return {**jsonable(fields), "fee_sol": format(receipt.fee, "f"), "accepted": receipt.accepted}
