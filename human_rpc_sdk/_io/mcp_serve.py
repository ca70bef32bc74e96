"""Serving an MCP server over streamable HTTP on a socket bound first (its port known)."""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
from typing import Any

__all__ = ["serve_http"]

logger = logging.getLogger("human_rpc_sdk")


async def serve_http(server: Any, host: str, port: int, *, prog: str) -> int:
    """Serve ``server`` (an ``MCPServer``) at ``http://host:port/mcp`` until stopped; say
    where on stderr once listening (``port`` 0: any free port). The exit status."""
    import uvicorn

    try:
        listening = socket.create_server((host, port))
    except OSError as exc:
        sys.stderr.write(f"{prog}: cannot listen on {host}:{port}: {exc}\n")
        return 1
    bound_host, bound_port = listening.getsockname()[:2]
    if not _loopback(bound_host):
        logger.warning(
            "the agent's MCP server listens on %s, beyond this machine, with no authentication: "
            "whoever reaches it can spend this agent's budget (within its limits). Serve it on "
            "127.0.0.1 behind an authenticating proxy instead",
            bound_host,
        )
    app = server.streamable_http_app(json_response=True, host=bound_host)
    sys.stderr.write(f"human-rpc agent MCP server at http://{bound_host}:{bound_port}/mcp\n")
    sys.stderr.flush()
    config = uvicorn.Config(app, log_level="warning")
    with listening:
        await uvicorn.Server(config).serve(sockets=[listening])
    return 0


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
