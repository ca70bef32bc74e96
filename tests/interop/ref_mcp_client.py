"""Call MCP tools with the reference x402 MCP client (mcp 1.x, x402MCPSession).

argv[1]: {"url", "secret", "rpc_url", "calls": [[tool, arguments], ...]}. Prints one JSON
line: per call, whether a payment was made, the error flag, the text and the settlement.
"""

import json
import sys

import anyio
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client
from solders.keypair import Keypair
from x402 import x402Client
from x402.mcp import x402MCPSession
from x402.mechanisms.svm.exact.register import register_exact_svm_client
from x402.mechanisms.svm.signers import KeypairSigner

args = json.loads(sys.argv[1])


async def main() -> list[dict]:
    client = x402Client()
    signer = KeypairSigner(Keypair.from_base58_string(args["secret"]))
    register_exact_svm_client(client, signer, rpc_url=args["rpc_url"])
    results = []
    async with (
        streamablehttp_client(args["url"]) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        paying = x402MCPSession(session, client)
        await paying.initialize()
        for tool, arguments in args["calls"]:
            result = await paying.call_tool(tool, arguments)
            settlement = result.payment_response
            if hasattr(settlement, "model_dump"):
                settlement = settlement.model_dump(by_alias=True, exclude_none=True)
            results.append(
                {
                    "payment_made": result.payment_made,
                    "is_error": result.is_error,
                    "text": [getattr(c, "text", None) for c in result.content],
                    "settlement": settlement,
                }
            )
    return results


print(json.dumps(anyio.run(main)))
