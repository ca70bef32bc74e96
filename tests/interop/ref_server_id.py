"""A resource server behind the reference x402 Flask middleware that *requires* a payment id
(declared with the reference's own helper) and keeps answers by id, as the reference's
payment-identifier example server does: the same id and payload get the first answer (with
its PAYMENT-RESPONSE) without a second settlement; another payload under a used id gets 409.

argv[1]: {"port", "facilitator_url", "pay_to", "asset", "amount", "network"}. Prints
{"ready": true} once listening and serves until killed.
"""

import base64
import hashlib
import json
import sys
import threading

from flask import Flask, Response, jsonify, request
from werkzeug.serving import make_server
from x402 import x402ResourceServerSync
from x402.extensions.payment_identifier import (
    PAYMENT_IDENTIFIER,
    declare_payment_identifier_extension,
    is_valid_payment_id,
)
from x402.http import FacilitatorConfig, HTTPFacilitatorClientSync
from x402.http.middleware.flask import payment_middleware
from x402.http.utils import encode_payment_response_header
from x402.mechanisms.svm.exact.register import register_exact_svm_server
from x402.schemas.hooks import GrantAccessResult

args = json.loads(sys.argv[1])
app = Flask("reference-resource-server-with-ids")
lock = threading.Lock()
first_seen: dict[str, str] = {}  # id -> fingerprint of the payload first seen with it
answered: dict[str, dict] = {}  # id -> {"fingerprint", "body", "settlement"}
settlements = {"count": 0}


def identified(header: str | None) -> tuple[str, str] | None:
    """(id, fingerprint of the exact payload) of a payment header, or None."""
    if not header:
        return None
    try:
        payload = json.loads(base64.b64decode(header))
        payment_id = payload["extensions"][PAYMENT_IDENTIFIER]["info"]["id"]
    except (ValueError, KeyError, TypeError):
        return None
    if not is_valid_payment_id(payment_id):
        return None
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return payment_id, hashlib.sha256(canonical).hexdigest()


@app.get("/paid")
def paid() -> object:
    found = identified(request.headers.get("PAYMENT-SIGNATURE"))
    if found is not None:
        payment_id, fingerprint = found
        with lock:
            done = answered.get(payment_id)
        if done is not None and done["fingerprint"] != fingerprint:
            body = {"error": "payment identifier already used with different payload"}
            return Response(json.dumps({**body, "paymentId": payment_id}), 409)
        if done is not None:
            cached = jsonify({**done["body"], "cached": True})
            cached.headers["PAYMENT-RESPONSE"] = done["settlement"]
            return cached
    return jsonify({"content": "served by the reference middleware", "cached": False})


def protected(context, route_config):
    found = identified(context.adapter.get_header("PAYMENT-SIGNATURE"))
    if found is None:
        return None
    payment_id, fingerprint = found
    with lock:
        first_seen.setdefault(payment_id, fingerprint)
        if payment_id in answered:
            return GrantAccessResult()  # the view answers from the cache, or 409
    return None


def settled(context) -> None:
    settlements["count"] += 1
    extensions = context.payment_payload.extensions or {}
    payment_id = (extensions.get(PAYMENT_IDENTIFIER) or {}).get("info", {}).get("id")
    if not isinstance(payment_id, str):
        return
    with lock:
        answered[payment_id] = {
            "fingerprint": first_seen[payment_id],
            "body": {"content": "served by the reference middleware"},
            "settlement": encode_payment_response_header(context.result),
        }


@app.get("/settlements")
def count() -> object:
    return jsonify(settlements)


server = x402ResourceServerSync(
    HTTPFacilitatorClientSync(FacilitatorConfig(url=args["facilitator_url"]))
)
register_exact_svm_server(server)
server.on_after_settle(settled)
price = {"amount": args["amount"], "asset": args["asset"], "extra": {}}
routes = {
    "GET /paid": {
        "accepts": {
            "scheme": "exact",
            "payTo": args["pay_to"],
            "price": price,
            "network": args["network"],
        },
        "description": "interop with payment ids",
        "mimeType": "application/json",
        "extensions": {PAYMENT_IDENTIFIER: declare_payment_identifier_extension(required=True)},
    }
}
middleware = payment_middleware(app, routes, server)
middleware._http_server.on_protected_request(protected)
http = make_server("127.0.0.1", args["port"], app, threaded=True)
print(json.dumps({"ready": True}), flush=True)
http.serve_forever()
