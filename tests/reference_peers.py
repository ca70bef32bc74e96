"""The reference x402 package's servers (tests/interop/*.py in ``.venv-x402``) as peers.

:func:`reference_process` starts one of those scripts on a free loopback port with the
arguments every one of them takes (the gateway as facilitator, its treasury as payee, 0.025 USDC
on devnet) and yields its base URL once it printed ``{"ready": true}``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stub_gateway import GatewayServer

INTEROP = Path(__file__).resolve().parent / "interop"
DEVNET = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"
PRICE_UNITS = "25000"
"""What every reference route asks: 0.025 USDC in base units."""


@contextlib.contextmanager
def reference_process(
    x402_python: str,
    script: str,
    server: GatewayServer,
    options: dict[str, Any] | None = None,
    *,
    stop_within: float = 10,
) -> Iterator[str]:
    """``tests/interop/<script>`` serving on a free port until the block ends; its base URL."""
    gateway = server.gateway
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    arguments = {
        **(options or {}),
        "port": port,
        "facilitator_url": f"{server.url}/facilitator",
        "pay_to": str(gateway.treasury),
        "asset": str(gateway.genesis.token("USDC").mint),
        "amount": PRICE_UNITS,
        "network": DEVNET,
    }
    process = subprocess.Popen(
        [x402_python, str(INTEROP / script), json.dumps(arguments)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert json.loads(process.stdout.readline()) == {"ready": True}
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.communicate(timeout=stop_within)
