"""A paid MCP tool behind the reference x402 MCP payment wrapper (mcp 1.x FastMCP).

argv[1]: {"port", "facilitator_url", "pay_to", "asset", "amount", "network"}. The tool
``paid_weather`` is paid through the given facilitator (the stub gateway's /facilitator);
``free_ping`` is free. Serves streamable HTTP at /mcp; prints {"ready": true} once listening
and serves until killed.
"""

import json
import socket
import sys

import anyio
import uvicorn
from mcp.server.fastmcp import FastMCP
from x402 import x402ResourceServer
from x402.http import FacilitatorConfig, HTTPFacilitatorClient
from x402.mcp import create_payment_wrapper
from x402.mechanisms.svm.exact.register import register_exact_svm_server
from x402.schemas import ResourceConfig

args = json.loads(sys.argv[1])
resource_server = x402ResourceServer(
    HTTPFacilitatorClient(FacilitatorConfig(url=args["facilitator_url"]))
)
register_exact_svm_server(resource_server)
resource_server.initialize()
accepts = resource_server.build_payment_requirements(
    ResourceConfig(
        scheme="exact",
        pay_to=args["pay_to"],
        price={"amount": args["amount"], "asset": args["asset"], "extra": {}},
        network=args["network"],
    )
)
paid = create_payment_wrapper(resource_server, accepts=accepts)
mcp = FastMCP("reference-paid-tools", stateless_http=True, json_response=True)


@mcp.tool(name="paid_weather", description="The weather (paid)")
@paid
async def paid_weather(city: str) -> dict:
    return {"city": city, "weather": "sunny", "served_by": "reference"}


@mcp.tool(name="free_ping", description="pong (free)")
async def free_ping() -> str:
    return "pong"


listening = socket.create_server(("127.0.0.1", args["port"]))
app = mcp.streamable_http_app()
server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
print(json.dumps({"ready": True}), flush=True)
anyio.run(lambda: server.serve(sockets=[listening]))
