"""Agents on the fleet's PostgreSQL journal dropped without ``close()`` (an agent made per
request in a web handler, a notebook's cells run again): no thread of theirs outlives them,
however many there were (each journal's watchdog thread ran forever)."""

from __future__ import annotations

import gc
import threading

from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent


def journal_threads() -> int:
    return sum(thread.name.startswith("human-rpc-journal") for thread in threading.enumerate())


def test_agents_dropped_unclosed_leave_no_journal_thread(journal_url: str) -> None:
    before = journal_threads()
    for _ in range(8):
        agent = AutoAgent(Keypair(), journal_url=journal_url, rpc_url="http://127.0.0.1:9")
        assert agent.budget["SOL"].spent == 0  # the journal used: its watchdog runs
        del agent
    gc.collect()
    for thread in threading.enumerate():  # the threads told to stop end (none left waiting)
        if thread.name.startswith("human-rpc-journal"):
            thread.join(timeout=30)
    assert journal_threads() == before
