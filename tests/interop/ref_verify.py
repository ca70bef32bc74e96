"""Verify a payment with the reference SVM facilitator.

argv[1]: {"rpc_url", "fee_payer_secret", "network", "payload", "requirements"}.
"""

import json
import sys

from solders.keypair import Keypair
from x402 import x402FacilitatorSync
from x402.mechanisms.svm.exact.register import register_exact_svm_facilitator
from x402.mechanisms.svm.signers import FacilitatorKeypairSigner
from x402.schemas import parse_payment_payload, parse_payment_requirements

args = json.loads(sys.argv[1])
fee_payer = Keypair.from_base58_string(args["fee_payer_secret"])
facilitator = x402FacilitatorSync()
signer = FacilitatorKeypairSigner(fee_payer, rpc_url=args["rpc_url"])
register_exact_svm_facilitator(facilitator, signer, networks=args["network"])
payload = parse_payment_payload(args["payload"])
requirements = parse_payment_requirements(payload.x402_version, args["requirements"])
result = facilitator.verify(payload, requirements)
print(json.dumps(result.model_dump(by_alias=True, exclude_none=True)))
