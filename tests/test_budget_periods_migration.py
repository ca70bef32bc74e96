"""Journals written before budgets per period: a SQLite journal of schema 5 (as the previous
release made it, from tests/journal_schema5.sql) and a PostgreSQL journal of schema 1 are
migrated with their payments, totals and raises intact, their history counted in the spending
buckets; rows an older release writes later are still counted."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from human_rpc_sdk._budgets import LineRule, Period
from human_rpc_sdk._io.journal import SCHEMA_VERSION, Journal
from human_rpc_sdk._io.store import JournalStore, open_journal
from human_rpc_sdk._offer import PaymentOffer
from human_rpc_sdk._records import OverBudget, Reserved

SCHEMA_5 = (Path(__file__).parent / "journal_schema5.sql").read_text()
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DAY = {"USDC": (LineRule(Decimal(5), Period("day")),)}
ROWS = [
    # state, created, amount, fee lamports, landed_proof
    ("accepted", "2026-11-25T10:00:00+00:00", "2", 5000, None),  # yesterday
    ("accepted", "2026-11-26T09:00:00.250000+00:00", "1", 5000, None),  # today
    ("reserved", "2026-11-26T10:00:00+00:00", "1.5", 5000, None),  # today, open
    ("failed", "2026-11-26T10:30:00+00:00", "4", 5000, None),  # released
    ("failed", "2026-11-26T11:00:00+00:00", "3", 5000, "failed on chain: custom error"),
]
"""USDC spent: 2 yesterday, 2.5 today (a failed payment counts nothing, one failed on chain
only its fee); SOL: the fees of four payments."""


def insert_old_row(db: Any, row: tuple[object, ...]) -> None:
    """A payment row as an older release wrote it: no scope, no reservation time."""
    state, created, amount, fee, proof = row
    db.execute(
        "INSERT INTO payments (state, created, updated, updated_unix, url, network, format, "
        "currency, currency_key, amount, atomic_amount, recipient, destination, payer, "
        "fee_lamports, landed_proof) VALUES (%s, %s, %s, 0, 'http://x', 'devnet', 'x402-v2', "
        "'USDC', 'USDC', %s, 1, 'r', 'd', 'p', %s, %s)".replace(
            "%s", "?" if isinstance(db, sqlite3.Connection) else "%s"
        ),
        (state, created, created, amount, fee, proof),
    )


def offer(amount: str) -> PaymentOffer:
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
    )


def check_migrated(journal: JournalStore) -> None:
    """The history's lifetime spending, its raise, today's spending per day line; a release of
    an old open reservation gives back to its own day; the next payment counts on."""
    fees = 4 * Decimal("0.000005")
    budget = journal.budget("devnet", {"USDC": Decimal(10), "SOL": Decimal(1)}, periods=DAY)
    lifetime, today = budget["USDC"]
    assert (lifetime.limit, lifetime.spent) == (Decimal(15), Decimal("4.5"))  # 10 + raise 5
    assert (today.per, today.limit, today.spent) == ("day", Decimal(5), Decimal("2.5"))
    assert budget["SOL"].spent == fees
    over = journal.reserve(
        offer("3"), currency_key="USDC", invoice_key=None, budget=Decimal(15), periods=DAY
    )
    assert isinstance(over, OverBudget)  # 2.5 + 3 > 5 a day
    assert over.per == Period("day")
    (opened,) = journal.entries(["reserved"])
    assert journal.mark(opened.id, "failed", {"error": "x"}) is not None
    made = journal.reserve(
        offer("2.5"), currency_key="USDC", invoice_key=None, budget=Decimal(15), periods=DAY
    )
    assert isinstance(made, Reserved)
    lifetime, today = journal.budget("devnet", {"USDC": Decimal(10)}, periods=DAY)["USDC"]
    assert (lifetime.spent, today.spent) == (Decimal("5.5"), Decimal("3.5"))


def test_a_schema_5_sqlite_journal_migrates_with_its_budgets(tmp_path: Path) -> None:
    path = tmp_path / "v5.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_5)
        for row in ROWS:
            insert_old_row(db, row)
        db.execute("INSERT INTO totals VALUES ('devnet', 'USDC', '4.5')")
        db.execute("INSERT INTO totals VALUES ('devnet', 'SOL', '0.00002')")
        db.execute(
            "INSERT INTO budget_raises VALUES ('devnet', 'USDC', '5', '2026-11-20T00:00:00')"
        )
        db.execute("PRAGMA user_version=5")
    db.close()
    path.chmod(0o600)
    journal = Journal(path, clock=lambda: NOW)
    try:
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
            unset = db.execute("SELECT count(*) FROM payments WHERE reserved_unix IS NULL")
            assert unset.fetchone()[0] == 0
            assert db.execute("SELECT DISTINCT scope FROM payments").fetchall() == [("",)]
        db.close()
        check_migrated(journal)
    finally:
        journal.close()


def test_a_row_an_older_release_writes_is_counted_in_the_buckets(tmp_path: Path) -> None:
    """A row written without the totals (a process of an older release, a hand edit; no
    scope, no reservation time) is counted by the triggers, and recounted into the lifetime
    total and the buckets of the day it was created before the next payment is decided."""
    path = tmp_path / "journal.sqlite3"
    journal = Journal(path, clock=lambda: NOW)
    try:
        assert journal.budget("devnet", {}, periods=DAY)["USDC"].spent == 0
        with sqlite3.connect(path) as db:
            insert_old_row(db, ("accepted", "2026-11-26T08:00:00+00:00", "4", 0, None))
            insert_old_row(db, ("accepted", "2026-11-20T08:00:00+00:00", "7", 0, None))
        db.close()
        over = journal.reserve(
            offer("2"), currency_key="USDC", invoice_key=None, budget=None, periods=DAY
        )
        assert isinstance(over, OverBudget)
        assert (over.per, over.spent) == (Period("day"), Decimal(4))
        made = journal.reserve(
            offer("1"), currency_key="USDC", invoice_key=None, budget=None, periods=DAY
        )
        assert isinstance(made, Reserved)  # its transaction keeps the recount
        (lifetime, today) = journal.budget("devnet", {"USDC": Decimal(20)}, periods=DAY)["USDC"]
        assert (lifetime.spent, today.spent) == (Decimal(12), Decimal(5))
    finally:
        journal.close()


def test_a_schema_1_postgres_journal_migrates_with_its_budgets(journal_url: str) -> None:
    import psycopg

    from human_rpc_sdk._io.postgres import _SCHEMA_1, SCHEMA_VERSION

    with psycopg.connect(journal_url) as db:
        db.execute(_SCHEMA_1)
        db.execute("CREATE TABLE human_rpc_schema (version INTEGER NOT NULL)")
        db.execute("INSERT INTO human_rpc_schema VALUES (1)")
        for row in ROWS:
            insert_old_row(db, row)
        db.execute("INSERT INTO totals VALUES ('', 'devnet', 'USDC', 4.5)")
        db.execute("INSERT INTO totals VALUES ('', 'devnet', 'SOL', 0.00002)")
        db.execute("INSERT INTO budget_raises VALUES ('', 'devnet', 'USDC', 5, '2026-11-20')")
    journal = open_journal(journal_url, clock=lambda: NOW)
    try:
        with psycopg.connect(journal_url) as db:
            assert db.execute("SELECT version FROM human_rpc_schema").fetchall() == [
                (SCHEMA_VERSION,)
            ]
            days = db.execute(
                "SELECT bucket_start, spent FROM spending WHERE currency_key = 'USDC' "
                "AND level = 'day' ORDER BY bucket_start"
            ).fetchall()
        day = int(datetime(2026, 11, 26, tzinfo=UTC).timestamp())
        assert days == [(day - 86400, Decimal(2)), (day, Decimal("2.5"))]
        check_migrated(journal)
    finally:
        journal.close()


@pytest.mark.parametrize("hours", [0, 30])
def test_a_migrated_journal_counts_from_the_reservation_time(tmp_path: Path, hours: int) -> None:
    """After migration, the day line at a later time sees only that day's spending."""
    path = tmp_path / "v5.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_5)
        for row in ROWS:
            insert_old_row(db, row)
        db.execute("PRAGMA user_version=5")
    db.close()
    path.chmod(0o600)
    journal = Journal(path, clock=lambda: NOW + timedelta(hours=hours))
    try:
        (_, today) = journal.budget("devnet", {"USDC": Decimal(10)}, periods=DAY)["USDC"]
        assert today.spent == (Decimal("2.5") if hours == 0 else Decimal(0))
    finally:
        journal.close()


def test_a_hand_edit_of_the_buckets_is_recounted(tmp_path: Path) -> None:
    """The SQLite buckets are a cache of the payments, watched by the write counter: zeroed by
    hand, they are counted again from the rows before the next payment is decided."""
    path = tmp_path / "journal.sqlite3"
    journal = Journal(path, clock=lambda: NOW)
    try:
        made = journal.reserve(
            offer("4"), currency_key="USDC", invoice_key=None, budget=None, periods=DAY
        )
        assert isinstance(made, Reserved)
        with sqlite3.connect(path) as db:
            db.execute("UPDATE spending SET spent = '0'")
        db.close()
        over = journal.reserve(
            offer("2"), currency_key="USDC", invoice_key=None, budget=None, periods=DAY
        )
        assert isinstance(over, OverBudget)
        assert over.spent == 4
    finally:
        journal.close()
