"""``python -m stub_gateway`` with one more route for the benchmark: ``GET /_bench/stats``.

The gateway runs exactly as its command line runs it (same server, same options); the extra
route answers ``{"rpc_calls": <JSON-RPC calls served so far>}`` when the gateway keeps that
count (``rpc.calls_served``), else ``{"rpc_calls": null}``. The benchmark reads the process's
CPU time from ``/proc/<pid>/stat`` itself.

    python benchmarks/gateway_process.py --port 8402 --quiet
"""

from __future__ import annotations

import sys
from typing import Any

import stub_gateway.app
from stub_gateway.__main__ import main

_create_app = stub_gateway.app.create_app


def _with_stats(*args: Any, **kwargs: Any) -> Any:
    app = _create_app(*args, **kwargs)
    gateway = app.extensions["stub_gateway"]

    def stats() -> Any:
        calls = getattr(getattr(gateway, "rpc", None), "calls_served", None)
        return {"rpc_calls": calls if isinstance(calls, int) else None}

    app.add_url_rule("/_bench/stats", "bench_stats", stats)
    return app


stub_gateway.app.create_app = _with_stats

if __name__ == "__main__":
    sys.exit(main())
