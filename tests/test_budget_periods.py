"""Budgets per period: the pure period arithmetic (``_budgets``), then the lines per period and
the budget scopes in both stores (SQLite and PostgreSQL), with the journal's clock injected."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from human_rpc_sdk import SDKConfigurationError
from human_rpc_sdk._budgets import (
    CALENDAR,
    LEVELS,
    LineRule,
    Period,
    bucket_start,
    buckets_at,
    next_start,
    parse_lines,
    parse_per,
    resets,
    span,
)
from human_rpc_sdk._io.store import JournalStore, open_journal
from human_rpc_sdk._limits import SpendingRules
from human_rpc_sdk._offer import PaymentOffer
from human_rpc_sdk._records import Existing, OverBudget, Reserved

D = Decimal
DAY = Period("day")
HOUR = Period("hour")
START = datetime(2026, 11, 26, 23, 0, tzinfo=UTC)  # an hour before a day's end
times = st.integers(min_value=0, max_value=int(datetime(2200, 1, 1, tzinfo=UTC).timestamp()))
windows = st.integers(min_value=1, max_value=366 * 86400)


def at(moment: datetime) -> int:
    return int(moment.timestamp())


# -- the pure arithmetic ----------------------------------------------------------------------


@given(times, st.sampled_from(LEVELS))
def test_a_bucket_holds_its_time(t: int, level: str) -> None:
    """bucket_start <= t < the next bucket's start, at every level (months, ISO weeks, leap
    years), and a bucket's start is its own bucket's."""
    start = bucket_start(level, t)
    assert start <= t < next_start(level, start)
    assert bucket_start(level, start) == start


@given(st.dates(min_value=datetime(1971, 1, 1).date(), max_value=datetime(2199, 1, 1).date()))
def test_calendar_buckets_start_on_utc_boundaries(day: date) -> None:
    """A day from 00:00 UTC, a week from Monday 00:00 UTC, a month from the 1st 00:00 UTC."""
    noon = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=12)
    t = at(noon)
    assert datetime.fromtimestamp(bucket_start("day", t), UTC) == noon - timedelta(hours=12)
    week = datetime.fromtimestamp(bucket_start("week", t), UTC)
    assert (week.weekday(), week.hour, week.minute) == (0, 0, 0)
    assert timedelta(0) <= noon - week < timedelta(days=7)
    month = datetime.fromtimestamp(bucket_start("month", t), UTC)
    assert (month.year, month.month, month.day, month.hour) == (noon.year, noon.month, 1, 0)


def test_a_leap_february_ends_on_the_29th() -> None:
    feb = at(datetime(2028, 2, 10, tzinfo=UTC))
    assert next_start("month", bucket_start("month", feb)) == at(datetime(2028, 3, 1, tzinfo=UTC))


@given(times, windows)
def test_a_window_counts_its_span_and_at_most_one_bucket_more(now: int, seconds: int) -> None:
    """The buckets a rolling window sums cover [now - W, now]; only the first may start before
    now - W, and it holds now - W (so at most one bucket more than the exact window)."""
    period = Period("rolling", seconds)
    level, first = span(period, now)
    assert first <= now - seconds < next_start(level, first)
    width = next_start(level, first) - first
    rows = (now - first) // width + 1
    assert rows <= {"minute": 121, "hour": 193, "day": 367}[level]


@given(times, st.sampled_from(CALENDAR), windows, st.integers(0, 400))
def test_a_reset_is_after_now(now: int, name: str, seconds: int, back: int) -> None:
    """A calendar line resets at its period's end; a window when its oldest counted bucket
    leaves it: both after now."""
    reset = resets(Period(name), now, None)
    assert reset is not None
    assert reset > now
    window = Period("rolling", seconds)
    level, first = span(window, now)
    oldest = first
    for _ in range(back):  # any bucket the window counts
        following = next_start(level, oldest)
        if following > now:
            break
        oldest = following
    reset = resets(window, now, oldest)
    assert reset is not None
    assert reset > now


payments = st.lists(
    st.tuples(st.integers(0, 40 * 86400), st.integers(1, 1000)), min_size=0, max_size=40
)


@given(payments, st.integers(0, 40 * 86400), st.one_of(windows, st.sampled_from(CALENDAR)))
def test_buckets_never_undercount_a_history(
    history: list[tuple[int, int]], offset: int, per: int | str
) -> None:
    """Random payments counted in buckets: a line's sum is at least the exact sum over its
    span (exactly it for a calendar period), and more only by payments in its first bucket."""
    base = at(datetime(2026, 1, 30, tzinfo=UTC))
    now = base + offset
    past = [(base + t, a) for t, a in history if base + t <= now]  # paid by now
    buckets: dict[tuple[str, int], int] = {}
    for t, amount in past:
        for key in buckets_at(t):
            buckets[key] = buckets.get(key, 0) + amount
    period = Period(per) if isinstance(per, str) else Period("rolling", per)
    level, first = span(period, now)
    counted = sum(v for (lvl, s), v in buckets.items() if lvl == level and first <= s <= now)
    if isinstance(per, str):
        assert counted == sum(a for t, a in past if t >= first)
        return
    exact = sum(a for t, a in past if t > now - per)
    assert counted >= exact
    assert counted - exact <= sum(a for t, a in past if first <= t <= now - per)


def test_lines_are_parsed() -> None:
    """An amount, a line, a rolling window (text or timedelta) and a list of them."""
    assert parse_lines("20") == (LineRule(Decimal(20)),)
    assert parse_lines(None) is None
    assert parse_lines({"limit": "10", "per": "Day"}) == (LineRule(Decimal(10), DAY),)
    assert parse_lines([{"limit": "10", "per": "day"}, "200"]) == (
        LineRule(Decimal(10), DAY),
        LineRule(Decimal(200)),
    )
    assert parse_per("90m") == Period("rolling", 5400)
    assert parse_per(timedelta(hours=24)) == parse_per("24h") == Period("rolling", 86400)
    assert parse_per("7d") == Period("rolling", 7 * 86400)


@pytest.mark.parametrize(
    "value",
    [
        {"limit": "10", "per": "fortnight"},
        {"limit": "10", "per": "0m"},
        {"limit": "10", "per": timedelta(seconds=-5)},
        {"limit": "10", "per": timedelta(0)},
        {"limit": "10", "per": timedelta(days=367)},
        {"limit": "10", "per": "367d"},
        {"limit": "-1", "per": "day"},
        {"limit": "lots"},
        {"per": "day"},
        {"limit": "1", "every": "day"},
        [{"limit": "1", "per": "day"}, {"limit": "2", "per": "day"}],
        ["1", "2"],
        [],
        True,
    ],
)
def test_a_bad_line_is_a_configuration_error_showing_the_forms(value: object) -> None:
    with pytest.raises(SDKConfigurationError) as caught:
        SpendingRules.build("devnet", budget={"USDC": value})
    assert caught.value.parameter == "budget"
    assert '{"limit": "20", "per": "day"}' in str(caught.value)


def test_a_currency_given_lines_loses_its_default_line() -> None:
    rules = SpendingRules.build("devnet", budget={"USDC": {"limit": "10", "per": "day"}})
    assert rules.budget["USDC"] is None  # no lifetime line: the caller's lines replace it
    assert rules.periods["USDC"] == (LineRule(Decimal(10), DAY),)
    assert rules.budget["SOL"] == Decimal(1)  # other currencies keep their defaults


@pytest.mark.parametrize(
    "label",
    [
        "x" * 65,
        " crawler",
        "a\nb",
        "tab\there",
        5,
        "\u0441rawler",  # a Cyrillic es: "crawler" to the eye, another scope to the database
        "\uff43rawler",  # a full-width c
        "crawl\u200ber",  # a zero-width space
    ],
)
def test_a_bad_scope_label_is_refused(label: object) -> None:
    with pytest.raises(SDKConfigurationError, match="budget_scope") as caught:
        SpendingRules.build("devnet", budget_scope=label)
    assert caught.value.parameter == "budget_scope"


# -- both stores ------------------------------------------------------------------------------


class Clock:
    """The journal's wall clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def store(store_location: str, clock: Clock) -> Iterator[JournalStore]:
    journal = open_journal(store_location, clock=clock)
    yield journal
    journal.close()


def offer(amount: str = "1", fee: int = 0) -> PaymentOffer:
    return PaymentOffer(
        url="https://shop.example/a",
        amount=Decimal(amount),
        currency="USDC",
        mint="mint",
        recipient="shop",
        destination="shop-ata",
        reference=None,
        network="devnet",
        payer="me",
        atomic_amount=int(Decimal(amount) * 10**6),
        format="x402-v2",
        fee_lamports=fee,
    )


def lines(*rules: tuple[str, Period | None]) -> dict[str, tuple[LineRule, ...]]:
    return {"USDC": tuple(LineRule(Decimal(limit), per) for limit, per in rules)}


def pay(
    store: JournalStore,
    amount: str = "1",
    periods: dict[str, tuple[LineRule, ...]] | None = None,
    *,
    budget: str | None = None,
    scope: str = "",
) -> Reserved | Existing | OverBudget:
    return store.reserve(
        offer(amount),
        currency_key="USDC",
        invoice_key=None,
        budget=None if budget is None else Decimal(budget),
        periods=periods,
        scope=scope,
    )


def test_a_day_line_refuses_at_its_limit_and_allows_again_the_next_day(
    store: JournalStore, clock: Clock
) -> None:
    """3 a day: three payments of 1 pass, the fourth is refused, naming the line and the next
    midnight; after midnight (the journal's clock moved) it passes."""
    day = lines(("3", DAY))
    for _ in range(3):
        assert isinstance(pay(store, "1", day), Reserved)
    over = pay(store, "1", day)
    assert isinstance(over, OverBudget)
    midnight = at(datetime(2026, 11, 27, tzinfo=UTC))
    assert (over.spent, over.limit, over.per, over.resets) == (D(3), D(3), DAY, midnight)
    clock.now = datetime(2026, 11, 27, 0, 0, 1, tzinfo=UTC)
    assert isinstance(pay(store, "1", day), Reserved)
    (line,) = store.budget("devnet", {"USDC": None}, periods=day)["USDC"]
    assert (line.limit, line.spent, line.per) == (D(3), D(1), "day")
    assert line.resets == datetime(2026, 11, 28, tzinfo=UTC)


def test_of_several_lines_the_tighter_refuses_and_is_named(
    store: JournalStore, clock: Clock
) -> None:
    """2 an hour, 10 a day and 4 in total: the hour line refuses the third payment of an
    hour; in the next hour the lifetime line refuses the fifth; the report shows all three
    lines and binds on the least remaining."""
    both = lines(("2", HOUR), ("10", DAY))
    assert isinstance(pay(store, "1", both, budget="4"), Reserved)
    assert isinstance(pay(store, "1", both, budget="4"), Reserved)
    over = pay(store, "1", both, budget="4")
    assert isinstance(over, OverBudget)
    assert over.per == HOUR
    clock.now = START + timedelta(minutes=30)  # 23:30, same hour
    assert isinstance(pay(store, "1", both, budget="4"), OverBudget)
    clock.now = START + timedelta(hours=1, minutes=1)  # the next hour (and day)
    assert isinstance(pay(store, "1", both, budget="4"), Reserved)
    assert isinstance(pay(store, "1", both, budget="4"), Reserved)
    lifetime = pay(store, "1", both, budget="4")
    assert isinstance(lifetime, OverBudget)
    assert (lifetime.per, lifetime.spent, lifetime.limit) == (None, D(4), D(4))
    budget = store.budget("devnet", {"USDC": Decimal(4)}, periods=both)["USDC"]
    assert [(x.per, x.limit, x.spent) for x in budget] == [
        (None, D(4), D(4)),
        ("hour", D(2), D(2)),
        ("day", D(10), D(2)),
    ]
    assert budget.remaining == 0
    assert [x.resets for x in budget] == [
        None,
        datetime(2026, 11, 27, 1, tzinfo=UTC),
        datetime(2026, 11, 28, tzinfo=UTC),
    ]


def test_a_rolling_window_counts_the_last_minutes(store: JournalStore, clock: Clock) -> None:
    """2 in any 90 minutes: payments at 23:00 and 23:30 fill it; at 00:15 it still refuses
    (resets when the 23:00 minute leaves the window, 00:31); at 00:31 one passes."""
    window = Period("rolling", 5400)
    rolling = lines(("2", window))
    assert isinstance(pay(store, "1", rolling), Reserved)
    clock.now = START + timedelta(minutes=30)
    assert isinstance(pay(store, "1", rolling), Reserved)
    clock.now = START + timedelta(minutes=75)
    over = pay(store, "1", rolling)
    assert isinstance(over, OverBudget)
    assert over.resets == at(START + timedelta(minutes=91))
    (line,) = store.budget("devnet", {}, periods=rolling)["USDC"]
    assert (line.per, line.spent, line.resets) == (
        timedelta(minutes=90),
        D(2),
        START + timedelta(minutes=91),
    )
    clock.now = START + timedelta(minutes=91)
    assert isinstance(pay(store, "1", rolling), Reserved)


def test_a_release_gives_back_to_the_period_it_was_reserved_in(
    store: JournalStore, clock: Clock
) -> None:
    """A payment reserved yesterday and failed today gives its amount back to yesterday's
    buckets and to the lifetime total, not to today's line."""
    day = lines(("2", DAY))
    yesterday = pay(store, "2", day)
    assert isinstance(yesterday, Reserved)
    clock.now = START + timedelta(hours=2)  # 01:00 the next day
    assert isinstance(pay(store, "2", day), Reserved)
    week = lines(("100", Period("week")))  # Thursday and Friday: one week
    assert store.budget("devnet", {}, periods=week)["USDC"].spent == 4
    assert store.mark(yesterday.entry.id, "failed", {"error": "x"}) is not None
    assert isinstance(pay(store, "1", day), OverBudget)  # today's 2 still count
    report = store.budget("devnet", {"USDC": None}, periods=day)["USDC"]
    assert [(x.per, x.spent) for x in report] == [("day", D(2))]
    assert store.budget("devnet", {"USDC": Decimal(100)})["USDC"].spent == 2
    assert store.budget("devnet", {}, periods=week)["USDC"].spent == 2


def test_scopes_have_separate_budgets(store: JournalStore) -> None:
    """Two scopes in one journal: each spends its own lifetime and day lines, and raises of
    one do not lift the other."""
    day = lines(("2", DAY))
    for scope in ("crawler", "writer"):
        assert isinstance(pay(store, "2", day, budget="3", scope=scope), Reserved)
        assert isinstance(pay(store, "1", day, budget="3", scope=scope), OverBudget)
    store.raise_budget("devnet", {"USDC": Decimal(1)}, per=DAY, scope="crawler")
    assert isinstance(pay(store, "1", day, budget="3", scope="crawler"), Reserved)
    assert isinstance(pay(store, "1", day, budget="3", scope="writer"), OverBudget)
    crawler = store.budget("devnet", {"USDC": Decimal(3)}, periods=day, scope="crawler")
    writer = store.budget("devnet", {"USDC": Decimal(3)}, periods=day, scope="writer")
    assert [(x.limit, x.spent) for x in crawler["USDC"]] == [(D(3), D(3)), (D(3), D(3))]
    assert [(x.limit, x.spent) for x in writer["USDC"]] == [(D(3), D(2)), (D(2), D(2))]
    assert store.budget("devnet", {"USDC": Decimal(3)})["USDC"].spent == 0  # scope ""


def test_a_raise_per_period_lapses_at_the_reset(store: JournalStore, clock: Clock) -> None:
    """raise_budget(per="day") lifts today's line only: tomorrow the line is back to its
    configured limit; a lifetime raise lasts."""
    day = lines(("1", DAY))
    assert isinstance(pay(store, "1", day), Reserved)
    assert isinstance(pay(store, "1", day), OverBudget)
    store.raise_budget("devnet", {"USDC": Decimal(2)}, per=DAY)
    store.raise_budget("devnet", {"USDC": Decimal("0.5")}, per=DAY)  # raises add up
    assert isinstance(pay(store, "2", day), Reserved)
    (line,) = store.budget("devnet", {}, periods=day)["USDC"]
    assert (line.limit, line.spent) == (Decimal("3.5"), D(3))
    clock.now = START + timedelta(hours=2)
    (line,) = store.budget("devnet", {}, periods=day)["USDC"]
    assert (line.limit, line.spent) == (D(1), D(0))
    assert isinstance(pay(store, "2", day), OverBudget)


def test_fees_count_against_the_sol_lines_per_period(store: JournalStore) -> None:
    """A USDC payment's network fee counts against SOL's day line, in SOL's buckets."""
    sol_day = {"SOL": (LineRule(Decimal("0.00001"), DAY),)}
    made = store.reserve(
        offer("1", fee=5000),
        currency_key="USDC",
        invoice_key=None,
        budget=None,
        periods=sol_day,
    )
    assert isinstance(made, Reserved)
    again = store.reserve(
        offer("1", fee=6000), currency_key="USDC", invoice_key=None, budget=None, periods=sol_day
    )
    assert isinstance(again, OverBudget)
    assert (again.currency_key, again.spent, again.cost) == (
        "SOL",
        Decimal("0.000005"),
        Decimal("0.000006"),
    )


def test_a_clock_gone_back_still_counts_what_was_spent(store: JournalStore, clock: Clock) -> None:
    """Spending recorded at a later time than the clock now shows (the clock was set back)
    still counts against a rolling window and the current period: refused early, not late."""
    window = lines(("2", Period("rolling", 3600)))
    clock.now = START + timedelta(minutes=30)
    assert isinstance(pay(store, "2", window), Reserved)
    clock.now = START + timedelta(minutes=10)  # set back 20 minutes
    assert isinstance(pay(store, "1", window), OverBudget)
    assert isinstance(pay(store, "1", lines(("2", HOUR))), OverBudget)


def test_postgres_periods_follow_the_database_clock(journal_url: str) -> None:
    """Without an injected clock, the PostgreSQL journal decides periods on the database
    server's clock, read inside the reservation: the row's reservation time is the server's,
    and a day line resets at the server's next midnight UTC."""
    import psycopg

    journal = open_journal(journal_url)
    try:
        with psycopg.connect(journal_url) as db:
            row = db.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
        assert row is not None
        before = float(row[0])
        day = lines(("1", DAY))
        assert isinstance(pay(store=journal, amount="1", periods=day), Reserved)
        over = pay(store=journal, amount="1", periods=day)
        assert isinstance(over, OverBudget)
        assert over.resets is not None
        assert over.resets % 86400 == 0
        assert before < over.resets <= before + 86400 + 60
        with psycopg.connect(journal_url) as db:
            (reserved,) = db.execute("SELECT reserved_unix FROM payments").fetchone() or (0,)
        assert before - 1 <= reserved <= before + 60
    finally:
        journal.close()
