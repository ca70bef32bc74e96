"""Serving an MCP server over streamable HTTP on a socket bound first (its port known)."""

from __future__ import annotations

import socket
import sys
from typing import Any

__all__ = ["serve_http"]


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
    app = server.streamable_http_app(json_response=True, host=bound_host)
    sys.stderr.write(f"human-rpc agent MCP server at http://{bound_host}:{bound_port}/mcp\n")
    sys.stderr.flush()
    config = uvicorn.Config(app, log_level="warning")
    with listening:
        await uvicorn.Server(config).serve(sockets=[listening])
    return 0
