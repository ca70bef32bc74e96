"""Pay a URL with the reference x402 client. argv[1]: {"url", "secret", "rpc_url"}."""

import json
import sys

from solders.keypair import Keypair
from x402 import x402ClientSync
from x402.http import x402HTTPClientSync
from x402.http.clients import x402_requests
from x402.mechanisms.svm.exact.register import register_exact_svm_client
from x402.mechanisms.svm.signers import KeypairSigner

args = json.loads(sys.argv[1])
client = x402ClientSync()
signer = KeypairSigner(Keypair.from_base58_string(args["secret"]))
register_exact_svm_client(client, signer, rpc_url=args["rpc_url"])
response = x402_requests(client).get(args["url"], timeout=60)
try:
    settled = x402HTTPClientSync(client).get_payment_settle_response(response.headers.get)
    settlement = settled.model_dump(by_alias=True, exclude_none=True)
except Exception as exc:  # noqa: BLE001 - report, do not hide, a missing settlement header
    settlement = {"error": repr(exc)}
print(json.dumps({"status": response.status_code, "body": response.text, "settlement": settlement}))
