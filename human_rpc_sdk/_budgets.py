"""Budgets per period: the pure arithmetic of budget lines, periods and spending buckets.

A budget line is a ceiling over a span of time: a lifetime (``per`` omitted), a calendar
period in UTC (``"hour"``; ``"day"`` from 00:00 UTC; ``"week"``, the ISO week from Monday
00:00 UTC; ``"month"`` from the 1st 00:00 UTC), or a rolling window (a ``timedelta`` or a
duration such as ``"90m"``, ``"24h"``, ``"7d"``: everything paid in the last W).

The stores count spending in *buckets*: every reservation adds its cost to one bucket per
:data:`LEVELS` (minute, hour, day, week, month), keyed by the bucket's start (Unix seconds,
UTC), and a release takes it back from the buckets of the row's reservation time. A calendar
line reads one bucket (its level's, for the current period); a rolling window of W sums the
buckets overlapping ``[now - W, now]`` at one level (minute for W <= 2 h, hour for W <= 8 d,
day beyond: at most 121, 193 or 367 rows). The first of those buckets may hold spending from
just before the window, so a rolling line counts up to one bucket more than the exact
window: it refuses early, never late.

Everything here is pure (no clock, no I/O): times are integer Unix seconds passed in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Literal, cast

from ._money import MoneyError, format_amount, parse_decimal
from .exceptions import SDKConfigurationError

__all__ = [
    "CALENDAR",
    "LEVELS",
    "MAX_WINDOW",
    "Level",
    "LineRule",
    "Period",
    "bucket_start",
    "buckets_at",
    "next_start",
    "parse_lines",
    "parse_per",
    "span",
]

Level = Literal["minute", "hour", "day", "week", "month"]
LEVELS: Final[tuple[Level, ...]] = ("minute", "hour", "day", "week", "month")
"""The bucket levels every reservation is counted at."""
CALENDAR: Final[tuple[Level, ...]] = ("hour", "day", "week", "month")
"""The calendar periods a line may be ``per``."""
MAX_WINDOW: Final = timedelta(days=366)
"""The longest rolling window (a day's buckets: at most 367 rows summed)."""
_WIDTH: Final[Mapping[str, int]] = {"minute": 60, "hour": 3600, "day": 86400, "week": 604800}
_MONDAY_OFFSET: Final = 3 * 86400
"""1970-01-01 was a Thursday: Unix time plus 3 days is a multiple of a week on Mondays."""
_DURATION = re.compile(r"([1-9][0-9]{0,6})([smhdw])")
_UNIT_SECONDS: Final[Mapping[str, int]] = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
FORMS: Final = (
    'an amount ("20", a lifetime limit), None (no limit), a line {"limit": "20", "per": "day"} '
    '(per: "hour", "day", "week", "month", or a rolling window such as "90m", "24h", "7d" or '
    "a datetime.timedelta, up to 366 days; omitted: a lifetime), or a list of lines with at "
    'most one per period, e.g. [{"limit": "10", "per": "day"}, "200"]'
)
"""What ``budget`` accepts for one currency, for error messages."""


def bucket_start(level: str, t: int) -> int:
    """The start (Unix seconds) of the bucket of ``level`` holding time ``t``."""
    if level == "month":
        moment = datetime.fromtimestamp(t, UTC)
        return int(datetime(moment.year, moment.month, 1, tzinfo=UTC).timestamp())
    if level == "week":
        return t - (t + _MONDAY_OFFSET) % _WIDTH["week"]
    return t - t % _WIDTH[level]


def next_start(level: str, start: int) -> int:
    """The start of the bucket after the one starting at ``start`` (a bucket start)."""
    if level != "month":
        return start + _WIDTH[level]
    moment = datetime.fromtimestamp(start, UTC)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp())


def buckets_at(t: int) -> list[tuple[Level, int]]:
    """Every bucket a cost reserved at ``t`` is added to: one per level."""
    return [(level, bucket_start(level, t)) for level in LEVELS]


@dataclass(frozen=True, order=True)
class Period:
    """What a budget line spans besides a lifetime: a calendar period (``name``) or a rolling
    window of ``seconds`` (``name == "rolling"``)."""

    name: str
    seconds: int = 0

    @property
    def key(self) -> str:
        """How the journal names it (a raise per period): ``"day"``, or ``"rolling:5400"``."""
        return self.name if self.name != "rolling" else f"rolling:{self.seconds}"

    @property
    def public(self) -> str | timedelta:
        """As :class:`BudgetLine` reports it: the calendar name, or the window."""
        return self.name if self.name != "rolling" else timedelta(seconds=self.seconds)

    @property
    def level(self) -> Level:
        """The bucket level this period is counted at."""
        if self.name != "rolling":
            return cast(Level, self.name)  # one of CALENDAR
        if self.seconds <= 2 * 3600:
            return "minute"
        return "hour" if self.seconds <= 8 * 86400 else "day"

    def describe(self) -> str:
        """``"a day"``, ``"in any 90m"``."""
        if self.name != "rolling":
            return f"a{'n' if self.name == 'hour' else ''} {self.name}"
        return f"in any {_duration_text(self.seconds)}"

    def current(self) -> str:
        """How a message names the spending counted now: ``"today"``, ``"in the last 90m"``."""
        named = {"hour": "this hour", "day": "today", "week": "this week", "month": "this month"}
        return named.get(self.name) or f"in the last {_duration_text(self.seconds)}"


def span(period: Period, now: int) -> tuple[Level, int]:
    """The level and the first bucket start counted by ``period`` at ``now``: the buckets of
    that level starting in ``[first, now]`` hold its spending (a calendar period: one)."""
    level = period.level
    if period.name != "rolling":
        return level, bucket_start(level, now)
    return level, bucket_start(level, now - period.seconds)


def resets(period: Period, now: int, oldest: int | None) -> int | None:
    """When the line's spending drops (Unix seconds, after ``now``): a calendar period's end;
    for a rolling window the moment the oldest bucket counted (``oldest``, its start) leaves
    the window; None for a rolling window counting nothing."""
    level, first = span(period, now)
    if period.name != "rolling":
        return next_start(level, first)
    if oldest is None:
        return None
    return next_start(level, oldest) + period.seconds


@dataclass(frozen=True)
class LineRule:
    """One configured budget line: ``limit`` over ``per`` (None: a lifetime)."""

    limit: Decimal
    per: Period | None = None


def parse_per(value: Any, name: str = "budget") -> Period | None:
    """A line's ``per``: None, a calendar name, a ``timedelta`` or a duration such as ``"90m"``.

    :raises SDKConfigurationError: anything else, a window of zero or less, or over 366 days.
    """
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in CALENDAR:
        return Period(value.strip().lower())
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str) and (found := _DURATION.fullmatch(value.strip().lower())):
        seconds = int(found[1]) * _UNIT_SECONDS[found[2]]
    else:
        raise _bad(name, f"per={_show(value)} is not a period")
    if seconds != int(seconds) or seconds <= 0:
        raise _bad(name, f"per={_show(value)} must be a whole number of seconds above zero")
    if seconds > MAX_WINDOW.total_seconds():
        raise _bad(name, f"per={_show(value)} is longer than 366 days")
    return Period("rolling", int(seconds))


def parse_lines(value: Any, name: str = "budget") -> tuple[LineRule, ...] | None:
    """One currency's ``budget`` entry: its lines (None: no limit at all).

    :raises SDKConfigurationError: naming ``name``, with the accepted forms.
    """
    if value is None:
        return None
    items = list(value) if isinstance(value, list | tuple) else [value]
    if not items:
        raise _bad(name, "an empty list of lines")
    lines = tuple(_line(item, name) for item in items)
    pers = [line.per for line in lines]
    if len(set(pers)) != len(pers):
        raise _bad(name, "two lines for one period")
    return lines


def _line(item: Any, name: str) -> LineRule:
    if isinstance(item, Mapping):
        unknown = sorted(str(key)[:20] for key in item if key not in ("limit", "per"))
        if unknown or "limit" not in item:
            what = f"unknown key(s) {', '.join(unknown)}" if unknown else "a line without limit"
            raise _bad(name, what)
        return LineRule(_limit(item["limit"], name), parse_per(item.get("per"), name))
    return LineRule(_limit(item, name))


def _limit(value: Any, name: str) -> Decimal:
    try:
        return parse_decimal(value)
    except MoneyError as exc:
        raise _bad(name, f"a limit that {exc}") from None


def _bad(name: str, what: str) -> SDKConfigurationError:
    return SDKConfigurationError(
        f"{name} holds {what}; each currency takes {FORMS}",
        parameter=name.partition("[")[0],  # budget['USDC'] -> budget
    )


def _show(value: Any) -> str:
    return repr(value)[:40]


def _duration_text(seconds: int) -> str:
    for unit, width in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % width == 0:
            return f"{seconds // width}{unit}"
    return f"{seconds}s"


def per_text(per: str | timedelta | None) -> str | None:
    """A :class:`BudgetLine`'s ``per`` for output (the CLI, the MCP tool): the calendar name,
    a rolling window as ``"rolling 90m"``, None for a lifetime."""
    if per is None or isinstance(per, str):
        return per
    return f"rolling {_duration_text(int(per.total_seconds()))}"


def when(t: int) -> str:
    """A reset time for messages: ``2026-11-27 00:00 UTC``."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def line_label(limit: Decimal, label: str, period: Period | None) -> str:
    """``"10 USDC a day"``; ``"10 USDC in total"`` for a lifetime."""
    return f"{format_amount(limit)} {label} {'in total' if period is None else period.describe()}"
