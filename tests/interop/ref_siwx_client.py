"""The reference x402 client with its sign-in-with-x client extension: GET a URL twice.

argv[1]: {"url", "secret", "rpc_url"}. The async reference client (x402HttpxClient) tries the
SIWX hook before paying, as the reference does for any 402 declaring the extension: the first
request (never paid) is refused sign-in and pays; the second signs in. Prints one JSON line.
"""

import asyncio
import json
import sys

from solders.keypair import Keypair
from x402 import x402Client
from x402.extensions.sign_in_with_x import (
    CreateSIWxClientExtensionOptions,
    create_siwx_client_extension,
)
from x402.http.clients import x402HttpxClient
from x402.mechanisms.svm.exact.register import register_exact_svm_client
from x402.mechanisms.svm.signers import KeypairSigner


class SiwsSigner:
    """A Solana wallet as the reference SIWX helpers read one: address and sign_message."""

    def __init__(self, keypair: Keypair) -> None:
        self.keypair = keypair
        self.address = str(keypair.pubkey())

    def sign_message(self, message: bytes) -> bytes:
        return bytes(self.keypair.sign_message(message))


async def main() -> None:
    args = json.loads(sys.argv[1])
    keypair = Keypair.from_base58_string(args["secret"])
    client = x402Client()
    register_exact_svm_client(client, KeypairSigner(keypair), rpc_url=args["rpc_url"])
    siwx = CreateSIWxClientExtensionOptions(signers=[SiwsSigner(keypair)])
    client.register_extension(create_siwx_client_extension(siwx))
    answers = []
    async with x402HttpxClient(client, timeout=60) as http:
        for _ in range(2):
            response = await http.get(args["url"])
            answers.append({"status": response.status_code, "body": response.text})
    print(json.dumps({"answers": answers}))


asyncio.run(main())
