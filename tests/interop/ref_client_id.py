"""Pay a URL with the reference x402 client and a payment id, then send that very payment again
(a client that lost the first answer). argv[1]: {"url", "secret", "rpc_url"}.

Prints {"id", "answers": [{"status", "body", "settlement"}, ...]} for the two sends.
"""

import json
import sys

import requests
from solders.keypair import Keypair
from x402 import x402ClientSync
from x402.extensions.payment_identifier import (
    PAYMENT_IDENTIFIER,
    append_payment_identifier_to_extensions,
)
from x402.http import x402HTTPClientSync
from x402.mechanisms.svm.exact.register import register_exact_svm_client
from x402.mechanisms.svm.signers import KeypairSigner

args = json.loads(sys.argv[1])
client = x402ClientSync()
register_exact_svm_client(
    client, KeypairSigner(Keypair.from_base58_string(args["secret"])), rpc_url=args["rpc_url"]
)
http = x402HTTPClientSync(client)
challenge = requests.get(args["url"], timeout=60)
required = http.get_payment_required_response(challenge.headers.get, None)
extensions = dict(required.extensions or {})
append_payment_identifier_to_extensions(extensions)
payload = client.create_payment_payload(required, extensions=extensions)
headers = http.encode_payment_signature_header(payload)
answers = []
for _ in range(2):
    answer = requests.get(args["url"], headers=headers, timeout=60)
    answers.append(
        {
            "status": answer.status_code,
            "body": answer.text,
            "settlement": answer.headers.get("PAYMENT-RESPONSE"),
        }
    )
sent = (payload.extensions or {}).get(PAYMENT_IDENTIFIER, {})
print(json.dumps({"id": sent.get("info", {}).get("id"), "answers": answers}))
