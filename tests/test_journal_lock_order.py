"""The PostgreSQL journal's one lock order holds when an outcome kept from a failed write is
written at the next write: that outcome's totals are not held while the next write takes its
own. Here the kept outcome releases a USDC payment (locking USDC's and SOL's totals) and the
next write reserves PYUSD (PYUSD's, then SOL's); another transaction holds PYUSD's and then
asks for SOL's. Written in the same transaction, the kept outcome made the reservation hold
SOL while it waited for PYUSD: a deadlock, the reservation aborted as journal_unavailable.
A real server; the other transaction is a second connection that holds the locks."""

from __future__ import annotations

import dataclasses
import threading
from decimal import Decimal

import psycopg

from human_rpc_sdk import PaymentError
from human_rpc_sdk._io.postgres import _NEVER_CONFIRMED, _UNKNOWN_RESERVATION, PostgresJournal
from human_rpc_sdk._io.store import open_journal
from human_rpc_sdk._records import Reserved

from .workers.forked import offer


def reserve(journal: PostgresJournal, currency: str) -> Reserved:
    made = journal.reserve(
        dataclasses.replace(offer(), currency=currency, fee_lamports=5000),
        currency_key=currency,
        invoice_key=None,
        budget=Decimal(100),
        sol_budget=Decimal(1),
    )
    assert isinstance(made, Reserved)
    return made


def test_a_kept_outcome_is_not_held_while_the_next_write_takes_its_locks(journal_url: str) -> None:
    journal = open_journal(journal_url)
    assert isinstance(journal, PostgresJournal)
    try:
        usdc = reserve(journal, "USDC")
        reserve(journal, "PYUSD")  # PYUSD's totals exist
        # As a reservation whose commit answer was lost: released at the next write.
        journal._deferred[usdc.entry.id] = (
            _UNKNOWN_RESERVATION,
            [_NEVER_CONFIRMED, "2026-01-01T00:00:00+00:00"],
            ("reserved",),
        )
        outcome: list[object] = []

        def pay() -> None:
            try:
                outcome.append(reserve(journal, "PYUSD"))
            except PaymentError as exc:
                outcome.append(exc)

        with psycopg.connect(journal_url) as other:
            other.execute("SELECT 1 FROM totals WHERE currency_key = 'PYUSD' FOR UPDATE")
            paying = threading.Thread(target=pay, daemon=True)
            paying.start()
            with psycopg.connect(journal_url, autocommit=True) as watch:
                while not watch.execute(  # until the reservation waits for PYUSD's totals
                    "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> %s",
                    (other.info.backend_pid,),
                ).fetchone():
                    assert paying.is_alive(), outcome
            other.execute("SELECT 1 FROM totals WHERE currency_key = 'SOL' FOR UPDATE")
            other.commit()
            paying.join()
        assert [type(made).__name__ for made in outcome] == ["Reserved"], outcome
        with psycopg.connect(journal_url) as db:
            states: dict[int, str] = dict(db.execute("SELECT id, state FROM payments").fetchall())
            totals: dict[str, Decimal] = dict(
                db.execute("SELECT currency_key, spent FROM totals").fetchall()
            )
        assert states[usdc.entry.id] == "failed"  # the kept outcome was written
        assert totals["USDC"] == 0
        assert totals["PYUSD"] == 2
    finally:
        journal.close()
