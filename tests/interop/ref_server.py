"""A resource server protected by the reference x402 Flask middleware.

argv[1]: {"port", "facilitator_url", "pay_to", "asset", "amount", "network"}, and optionally
"payment_id_required": the route then declares the payment-identifier extension (required as
given) with the reference's helper, and keeps no ids (the declaration is all the reference's
server side does). It uses the given facilitator (the stub gateway's /facilitator), prints
{"ready": true} once listening and serves until killed.
"""

import json
import sys

from flask import Flask, jsonify
from werkzeug.serving import make_server
from x402 import x402ResourceServerSync
from x402.http import FacilitatorConfig, HTTPFacilitatorClientSync
from x402.http.middleware.flask import payment_middleware
from x402.mechanisms.svm.exact.register import register_exact_svm_server

args = json.loads(sys.argv[1])
app = Flask("reference-resource-server")


@app.get("/paid")
def paid() -> object:
    return jsonify({"content": "served by the reference middleware"})


server = x402ResourceServerSync(
    HTTPFacilitatorClientSync(FacilitatorConfig(url=args["facilitator_url"]))
)
register_exact_svm_server(server)
price = {"amount": args["amount"], "asset": args["asset"], "extra": {}}
routes = {
    "GET /paid": {
        "accepts": {
            "scheme": "exact",
            "payTo": args["pay_to"],
            "price": price,
            "network": args["network"],
        },
        "description": "interop",
        "mimeType": "application/json",
    }
}
if "payment_id_required" in args:
    from x402.extensions.payment_identifier import (
        PAYMENT_IDENTIFIER,
        declare_payment_identifier_extension,
    )

    declared = declare_payment_identifier_extension(required=args["payment_id_required"])
    routes["GET /paid"]["extensions"] = {PAYMENT_IDENTIFIER: declared}
payment_middleware(app, routes, server)
http = make_server("127.0.0.1", args["port"], app, threaded=True)
print(json.dumps({"ready": True}), flush=True)
http.serve_forever()
