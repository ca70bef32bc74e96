"""What bench_payment.py and its probes share: counters read off an agent, whatever its version.

The client is being made faster while this benchmark measures it, so the counters it reads
may or may not exist yet: each reader returns None when the agent has no such counter, and
the benchmark says so rather than printing a zero that was never counted.
"""

from __future__ import annotations

import inspect
from typing import Any

from human_rpc_sdk import AutoAgent

_REFRESHER_NAMES = ("refresher", "chain_refresher", "background", "prefetcher", "prepared")


def accepts_prepay() -> bool:
    """Whether this AutoAgent takes ``prepay=`` (payments prepared ahead)."""
    return "prepay" in inspect.signature(AutoAgent).parameters


def full_syncs(agent: AutoAgent) -> int | None:
    """The journal's count of fully synced commits, when it keeps one."""
    for name in ("_journal", "journal"):
        count = getattr(getattr(agent, name, None), "full_syncs", None)
        if isinstance(count, int):
            return count
    return None


def _trips_of(holder: Any) -> tuple[int, Any] | None:
    """(round trips, the stats object) of a refresher-like object, looked for a level down."""
    for path in ((), ("stats",), ("rpc_stats",), ("_rpc", "stats"), ("rpc", "stats")):
        target = holder
        for part in path:
            target = getattr(target, part, None)
        count = getattr(target, "round_trips", None)
        if isinstance(count, int):
            return count, target
    return None


def background_trips(agent: AutoAgent) -> int | None:
    """RPC round trips made by the agent's background refresher, if it has one that counts.

    Looked for as an attribute of the agent whose name or type mentions refreshing (or
    ``background_rpc_stats``); trips made through the agent's own RPC client are not the
    refresher's own count and are left out.
    """
    stats = getattr(agent, "background_rpc_stats", None)
    if stats is not None and isinstance(getattr(stats, "round_trips", None), int):
        return int(stats.round_trips)
    for name, value in vars(agent).items():
        kind = type(value).__name__.lower()
        wanted = any(word in name.lower() or word in kind for word in _REFRESHER_NAMES)
        if not wanted or value is None:
            continue
        found = _trips_of(value)
        if found is not None and found[1] is not agent.rpc_stats:
            return found[0]
    return None
