"""What bench_payment.py and its probes share: counters read off an agent, whatever its version.

The client is being made faster while this benchmark measures it, so the counters it reads
may or may not exist yet: each reader returns None when the agent has no such counter, and
the benchmark says so rather than printing a zero that was never counted.
"""

from __future__ import annotations

import inspect
from typing import Any

from human_rpc_sdk import AutoAgent

_NAMES = ("refresh", "background", "prefetch")


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


def _attributes(holder: Any) -> list[tuple[str, Any]]:
    try:
        return list(vars(holder).items())
    except TypeError:  # no __dict__ (slots, builtins)
        return []


def background_trips(agent: AutoAgent) -> int | None:
    """RPC round trips made by the agent's background refresher, if it has one that counts.

    Looked for as ``agent.background_rpc_stats``, else as an attribute (of the agent, or of
    one of its attributes, such as its chain cache) whose name or type mentions a refresher
    and that counts ``round_trips`` itself or in its ``stats``/``rpc_stats``/RPC client.
    The agent's own RPC client (``agent.rpc_stats``) is never taken for the refresher's.
    """
    stats = getattr(agent, "background_rpc_stats", None)
    if stats is not None and isinstance(getattr(stats, "round_trips", None), int):
        return int(stats.round_trips)
    own = agent.rpc_stats
    level = _attributes(agent)
    for _ in range(2):
        deeper = []
        for name, value in level:
            kind = type(value).__name__.lower()
            if value is not None and any(w in name.lower() or w in kind for w in _NAMES):
                found = _trips_of(value)
                if found is not None and found[1] is not own:
                    return found[0]
            deeper += _attributes(value) if type(value).__module__.startswith("human_rpc") else []
        level = deeper
    return None
