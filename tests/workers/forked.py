"""A journal (PostgreSQL, or a SQLite file) opened and used before ``os.fork()``, then used
in the children (the way gunicorn --preload, Celery's prefork pool or multiprocessing's fork
start method run an agent built at import), for tests/test_fleet_fork.py.

    python -m tests.workers.forked '{"journal": ..., "children": 3, "attempts": 20}'

The parent opens the journal, reads through it (so its pool holds a connection and its
watchdog runs), forks "children" children, and starts them together; each child, and the
parent meanwhile, makes "attempts" reservations of 1 USDC against a budget of "budget" USDC,
then reports its journal's server session (``pg_backend_pid()``) and closes its journal. The
parent prints one JSON line: its session before the fork, whether that session is still open
once the children closed their journals, and each process's counts (reserved, refused by the
budget, anything else that went wrong).
"""

from __future__ import annotations

import json
import os
import sys
from decimal import Decimal
from typing import Any

from human_rpc_sdk import HumanRPCError
from human_rpc_sdk._io.journal import Journal
from human_rpc_sdk._io.postgres import PostgresJournal
from human_rpc_sdk._io.store import JournalStore, open_journal
from human_rpc_sdk._offer import PaymentOffer
from human_rpc_sdk._records import OverBudget, Reserved


def session(journal: JournalStore) -> int:
    """The server session (backend process id) the journal's reads run on; for a SQLite
    journal, its connection (an object id: the parent's stays alive in every process)."""
    if isinstance(journal, Journal):
        return id(journal._db)
    assert isinstance(journal, PostgresJournal)
    return int(journal._read("SELECT pg_backend_pid() AS pid", ())[0]["pid"])


def parent_alive(journal: JournalStore, before: int) -> int:
    """Whether the parent's connection still works once the children closed theirs."""
    if isinstance(journal, Journal):
        ok = journal._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return int(ok and id(journal._db) == before)
    assert isinstance(journal, PostgresJournal)
    return int(
        journal._read("SELECT count(*) AS n FROM pg_stat_activity WHERE pid = %s", (before,))[0][
            "n"
        ]
    )


def offer() -> PaymentOffer:
    return PaymentOffer(
        url="https://shop.example/a",
        amount=Decimal(1),
        currency="USDC",
        mint="mint",
        recipient="shop",
        destination="shop-ata",
        reference=None,
        network="devnet",
        payer="me",
        atomic_amount=10**6,
        format="x402-v2",
    )


def attempts(journal: JournalStore, job: dict[str, Any]) -> dict[str, Any]:
    counts: dict[str, Any] = {"reserved": 0, "budget": 0, "other": []}
    for _ in range(job["attempts"]):
        try:
            made = journal.reserve(
                offer(), currency_key="USDC", invoice_key=None, budget=Decimal(job["budget"])
            )
        except (HumanRPCError, Exception) as exc:  # noqa: BLE001 - reported to the test
            counts["other"].append(f"{type(exc).__name__}: {exc}"[:300])
            continue
        if isinstance(made, Reserved):
            counts["reserved"] += 1
        elif isinstance(made, OverBudget):
            counts["budget"] += 1
        else:
            counts["other"].append(repr(made)[:300])
    return counts


def main() -> None:
    job = json.loads(sys.argv[1])
    journal = open_journal(job["journal"])
    before = session(journal)
    children = []
    for _ in range(job["children"]):
        start_read, start_write = os.pipe()
        result_read, result_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(start_write)
                os.close(result_read)
                os.read(start_read, 1)  # every process starts at once
                report: dict[str, Any] = {"counts": attempts(journal, job)}
                try:
                    report["session"] = session(journal)
                except Exception as exc:  # noqa: BLE001 - reported to the test
                    report["session"] = f"{type(exc).__name__}: {exc}"
                journal.close()
                with os.fdopen(result_write, "w") as out:
                    out.write(json.dumps(report))
                code = 0
            finally:
                os._exit(code)
        os.close(start_read)
        os.close(result_write)
        children.append((pid, start_write, result_read))
    for _, start_write, _ in children:
        os.write(start_write, b"x")
        os.close(start_write)
    mine = attempts(journal, job)
    reports = []
    for pid, _, result_read in children:
        with os.fdopen(result_read) as results:
            text = results.read()
        _, status = os.waitpid(pid, 0)
        reports.append(json.loads(text) if text else {"exit": status})
    alive = parent_alive(journal, before)
    journal.close()
    print(json.dumps({"before": before, "alive": alive, "parent": mine, "children": reports}))


if __name__ == "__main__":
    main()
