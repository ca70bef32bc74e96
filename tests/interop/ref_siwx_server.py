"""A resource server whose route is protected by the reference sign-in-with-x server extension.

argv[1]: {"port", "facilitator_url", "pay_to", "asset", "amount", "network", "fee_payer"}.
``GET /paid`` answers 402 with x402 v2 requirements and the ``sign-in-with-x`` declaration the
reference extension builds (``create_siwx_resource_server_extension``, its
``enrich_payment_required_response``: fresh nonce, issuedAt, expirationTime, domain and uri of
the configured origin). A ``PAYMENT-SIGNATURE`` is settled through the facilitator (the stub
gateway's) and recorded by the reference settle hook (``create_siwx_settle_hook``). A
``SIGN-IN-WITH-X`` header goes through the reference request hook (``create_siwx_request_hook``:
parse, validate against the configured origin, verify the ed25519 signature, the nonce once,
``has_paid``). ``GET /events`` lists the hooks' events. Prints {"ready": true} once listening.
"""

import asyncio
import json
import sys
from types import SimpleNamespace
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.serving import make_server
from x402.extensions.sign_in_with_x import (
    SIGN_IN_WITH_X,
    CreateSIWxRequestHookOptions,
    DeclareSIWxOptions,
    InMemorySIWxStorage,
    create_siwx_request_hook,
    create_siwx_resource_server_extension,
    create_siwx_settle_hook,
    declare_siwx_extension,
)
from x402.http import FacilitatorConfig, HTTPFacilitatorClientSync
from x402.http.types import HTTPRequestContext, PaymentOption, RouteConfig
from x402.http.utils import (
    decode_payment_signature_header,
    encode_payment_required_header,
    encode_payment_response_header,
)
from x402.schemas import PaymentRequired, PaymentRequirements, ResourceInfo
from x402.schemas.hooks import ServerPaymentRequiredContext

args = json.loads(sys.argv[1])
origin = f"http://127.0.0.1:{args['port']}"


class Storage(InMemorySIWxStorage):
    """The reference in-memory storage, with the optional nonce tracking."""

    def __init__(self) -> None:
        super().__init__()
        self.nonces: set[str] = set()

    def has_used_nonce(self, nonce: str) -> bool:
        return nonce in self.nonces

    def record_nonce(self, nonce: str) -> None:
        self.nonces.add(nonce)

    # x402 2.25.0's create_siwx_request_hook looks for ``has_record_nonce`` (not the protocol's
    # ``record_nonce``) to tell nonce tracking is on, then calls ``record_nonce``: both exist.
    has_record_nonce = record_nonce


events: list[dict[str, Any]] = []
options = CreateSIWxRequestHookOptions(storage=Storage(), origin=origin, on_event=events.append)
extension = create_siwx_resource_server_extension(options)
request_hook = create_siwx_request_hook(options)
settle_hook = create_siwx_settle_hook(options)
declaration = declare_siwx_extension(
    DeclareSIWxOptions(network=args["network"], statement="Sign in", expiration_seconds=300)
)[SIGN_IN_WITH_X]
requirements = PaymentRequirements(
    scheme="exact",
    network=args["network"],
    asset=args["asset"],
    amount=args["amount"],
    pay_to=args["pay_to"],
    max_timeout_seconds=300,
    extra={"feePayer": args["fee_payer"]},
)
route = RouteConfig(
    accepts=PaymentOption(
        scheme="exact", pay_to=args["pay_to"], price=args["amount"], network=args["network"]
    )
)
facilitator = HTTPFacilitatorClientSync(FacilitatorConfig(url=args["facilitator_url"]))
app = Flask("reference-siwx-server")


class Adapter:
    def get_header(self, name: str) -> str | None:
        return request.headers.get(name)

    def get_method(self) -> str:
        return request.method

    def get_path(self) -> str:
        return request.path


def challenge() -> Response:
    resource = ResourceInfo(url=f"{origin}{request.path}", description="interop")
    required = PaymentRequired(error="Payment required", resource=resource, accepts=[requirements])
    context = ServerPaymentRequiredContext(
        requirements=[requirements],
        resource_info=resource,
        error=None,
        payment_required_response=required,
    )
    enriched = asyncio.run(extension.enrich_payment_required_response(declaration, context))
    required.extensions = {SIGN_IN_WITH_X: enriched}
    response = jsonify({})
    response.status_code = 402
    response.headers["PAYMENT-REQUIRED"] = encode_payment_required_header(required)
    return response


@app.get("/paid")
def paid() -> Response:
    if request.headers.get(SIGN_IN_WITH_X):
        context = HTTPRequestContext(adapter=Adapter(), path=request.path, method="GET")
        if asyncio.run(request_hook(context, route)) is not None:
            return jsonify({"content": "served by the reference SIWX server", "signed_in": True})
    payment = request.headers.get("PAYMENT-SIGNATURE")
    if not payment:
        return challenge()
    payload = decode_payment_signature_header(payment)
    settled = facilitator.settle(payload, requirements)
    if not settled.success:
        return challenge()
    asyncio.run(settle_hook(SimpleNamespace(result=settled, payment_payload=payload)))
    response = jsonify({"content": "served by the reference SIWX server", "signed_in": False})
    response.headers["PAYMENT-RESPONSE"] = encode_payment_response_header(settled)
    return response


@app.get("/events")
def listed() -> Response:
    return jsonify(events)


http = make_server("127.0.0.1", args["port"], app, threaded=True)
print(json.dumps({"ready": True}), flush=True)
http.serve_forever()
