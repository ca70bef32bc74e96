"""Budgets per period against a model: random histories of payments, releases, replacements
(one reserved in one period replaced in another), raises for the current day and clock moves
(forward and back, across hours, days, weeks and months), in both
stores; every reservation is allowed or refused exactly as the spec says (the spending of each
line counted from the buckets of the reservation times: calendar periods exactly, a rolling
window from the bucket holding ``now - W`` on, buckets after now included)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from human_rpc_sdk._budgets import LineRule, Period, bucket_start, span
from human_rpc_sdk._io.store import JournalStore, open_journal
from human_rpc_sdk._records import OverBudget, Reserved

from .test_budget_periods import offer

START = int(datetime(2026, 12, 31, 22, 0, tzinfo=UTC).timestamp())  # a year's end, a Thursday
LIFETIME = Decimal(40)
LINES = (
    LineRule(Decimal(6), Period("hour")),
    LineRule(Decimal(12), Period("day")),
    LineRule(Decimal(20), Period("week")),
    LineRule(Decimal(30), Period("month")),
    LineRule(Decimal(5), Period("rolling", 5400)),
    LineRule(Decimal(9), Period("rolling", 3 * 3600)),
)
PERIODS = {"USDC": LINES}

operations = st.lists(
    st.one_of(
        st.tuples(st.just("pay"), st.integers(1, 4)),
        st.tuples(st.just("fail"), st.integers(0, 40)),
        st.tuples(st.just("replace"), st.integers(0, 40)),
        st.tuples(st.just("raise"), st.integers(1, 3)),
        st.tuples(
            st.just("move"),
            st.one_of(st.integers(-7200, 7200), st.sampled_from([86400, 3 * 86400, -86400])),
        ),
    ),
    max_size=40,
)


class Clock:
    def __init__(self) -> None:
        self.t = START

    def __call__(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)


def expected(alive: list[tuple[int, int]], raises: dict[int, int], now: int, amount: int) -> bool:
    """The spec: whether a payment of ``amount`` at ``now`` passes every line."""
    if sum(a for _, a in alive) + amount > LIFETIME:
        return False
    for line in LINES:
        assert line.per is not None
        level, first = span(line.per, now)
        spent = sum(a for t, a in alive if bucket_start(level, t) >= first)
        extra = raises.get(first, 0) if line.per == Period("day") else 0
        if spent + amount > line.limit + extra:
            return False
    return True


def check(journal: JournalStore, clock: Clock, scope: str, history: list[tuple[str, int]]) -> None:
    rows: list[tuple[int, int, int]] = []  # id, reservation time, amount
    failed: set[int] = set()
    raises: dict[int, int] = {}
    for op, value in history:
        if op == "move":
            clock.t += value
        elif op == "raise":
            journal.raise_budget("devnet", {"USDC": Decimal(value)}, per=Period("day"), scope=scope)
            day = bucket_start("day", clock.t)
            raises[day] = raises.get(day, 0) + value
        elif op == "fail":
            live = [row for row in rows if row[0] not in failed]
            if live:
                row = live[value % len(live)]
                assert journal.mark(row[0], "failed", {"error": "x"}) is not None
                failed.add(row[0])
        elif op == "replace":  # the same price again, replacing a live payment
            live = [row for row in rows if row[0] not in failed]
            if not live:
                continue
            old = live[value % len(live)]
            alive = [(t, a) for i, t, a in rows if i not in failed and i != old[0]]
            made = journal.reserve(
                replace(offer(str(old[2])), replaces=old[0]),
                currency_key="USDC",
                invoice_key=None,
                budget=LIFETIME,
                periods=PERIODS,
                scope=scope,
            )
            assert isinstance(made, Reserved) == expected(alive, raises, clock.t, old[2]), made
            if isinstance(made, Reserved):  # else rolled back: the old one stays live
                failed.add(old[0])
                rows.append((made.entry.id, clock.t, old[2]))
        else:
            alive = [(t, a) for i, t, a in rows if i not in failed]
            made = journal.reserve(
                offer(str(value)),
                currency_key="USDC",
                invoice_key=None,
                budget=LIFETIME,
                periods=PERIODS,
                scope=scope,
            )
            assert isinstance(made, Reserved | OverBudget)
            assert isinstance(made, Reserved) == expected(alive, raises, clock.t, value), (
                made,
                clock.t,
            )
            if isinstance(made, Reserved):
                rows.append((made.entry.id, clock.t, value))
    report = journal.budget("devnet", {"USDC": LIFETIME}, periods=PERIODS, scope=scope)
    alive = [(t, a) for i, t, a in rows if i not in failed]
    assert report["USDC"].lines[0].spent == sum(a for _, a in alive)
    for shown, line in zip(report["USDC"].lines[1:], LINES, strict=True):
        assert line.per is not None
        level, first = span(line.per, clock.t)
        assert shown.spent == sum(a for t, a in alive if bucket_start(level, t) >= first)
        assert shown.resets is None or shown.resets.timestamp() > clock.t


@pytest.fixture
def shared(store_location: str) -> Iterator[tuple[JournalStore, Clock]]:
    clock = Clock()
    journal = open_journal(store_location, clock=clock)
    yield journal, clock
    journal.close()


scopes = itertools.count()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=operations)
def test_lines_follow_the_spec(
    shared: tuple[JournalStore, Clock], history: list[tuple[str, int]]
) -> None:
    journal, clock = shared
    clock.t = START
    check(journal, clock, f"s{next(scopes)}", history)  # a scope of its own per example
