"""The stub gateway's Flask application factory: a HumanRPC network in one process.

:func:`create_app` serves a :class:`.gateway.Gateway` (the network, without HTTP) through one
Blueprint per route group:

* ``rpc``, ``network``, ``premium`` (:mod:`.network_routes`) - ``POST /rpc`` (Solana JSON-RPC),
  ``POST /api/v1/faucet``, ``GET /api/v1/info``, ``GET /api/v1/premium/<sol|usdc|pyusd>``.
* ``x402``, ``facilitator`` (:mod:`.x402_routes`) - ``/x402/v1|v2/premium`` and the x402
  facilitator API under ``/facilitator``.
* ``tasks`` (:mod:`.task_routes`) - the HumanRPC task API under ``/api/v1/tasks``.
* ``members`` (:mod:`.siwx`) - ``GET /x402/v2/members``: x402 v2, paid once, then reachable by
  signing in (sign-in-with-x) for ``siwx_ttl`` seconds.
* ``faults`` (:mod:`.fault_routes`) - ``GET|POST|DELETE /api/v1/faults`` (see :mod:`.faults`).
* ``console`` (:mod:`.console`) - pages for people: ``GET /`` (an index of the gateway),
  ``/review`` (approve or reject pending tasks), ``/payments`` (settlements, look-ups).

Any Flask view can be paywalled the same way with :meth:`Gateway.require_payment` or
:func:`.paywall.require_x402` (one skeleton for both, in :mod:`.paywall`).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from ._http import EXTENSION, MAX_BODY, JsonProvider, json_error
from .console import console
from .fault_routes import faults
from .gateway import DEFAULT_PRICES, Gateway
from .network_routes import network, premium, rpc
from .siwx import EXTENSION as SIWX_EXTENSION
from .siwx import Members, members
from .task_routes import tasks
from .x402_routes import facilitator, x402

__all__ = ["DEFAULT_PRICES", "Gateway", "create_app"]

BLUEPRINTS = (rpc, network, premium, tasks, x402, facilitator, faults, console)
SIWX_OPTIONS = {"siwx_ttl": "ttl", "siwx_origin": "origin", "siwx_now": "now"}
"""create_app options for ``/x402/v2/members`` (:class:`.siwx.Members`), not the Gateway's."""


def create_app(gateway: Gateway | None = None, **options: Any) -> Flask:
    """The Flask app of a stub gateway; ``options`` go to :class:`Gateway` when none is given,
    but ``siwx_ttl``, ``siwx_origin`` and ``siwx_now``, which go to :class:`.siwx.Members`."""
    siwx = {SIWX_OPTIONS[k]: options.pop(k) for k in list(options) if k in SIWX_OPTIONS}
    app = Flask("stub_gateway")
    app.json = JsonProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.extensions[EXTENSION] = gateway or Gateway(**options)
    app.extensions[SIWX_EXTENSION] = Members(**siwx)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    app.register_blueprint(members)
    app.register_error_handler(HTTPException, _http_error)
    return app


def _http_error(exc: HTTPException) -> Response:
    return json_error(
        exc.code or 500, (exc.name or "error").lower().replace(" ", "_"), exc.description or ""
    )
