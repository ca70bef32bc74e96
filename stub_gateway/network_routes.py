"""The network's own routes: JSON-RPC, the faucet and info, and the HumanRPC premium resources.

* ``POST /rpc`` (blueprint ``rpc``) - Solana JSON-RPC over the local ledger.
* ``POST /api/v1/faucet``, ``GET /api/v1/info`` (blueprint ``network``) - fund a wallet
  (``{"address", "sol", "usdc", "pyusd"}``); the network, RPC URL, payee, mints and prices.
* ``GET /api/v1/premium/<sol|usdc|pyusd>`` (blueprint ``premium``) - 402 with a fresh HumanRPC
  invoice, or, with ``?format=legacy``, the deployed service's ``payment`` body.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

from flask import Blueprint, Response, current_app, g, jsonify, request
from solders.pubkey import Pubkey

from human_rpc_sdk._money import MoneyError, format_amount, parse_decimal

from ._http import current_gateway, json_error
from .payments import Settlement
from .siwx import members_of

__all__ = ["FAUCET_DEFAULTS", "FAUCET_LIMITS", "network", "premium", "rpc"]

FAUCET_LIMITS: Final = {
    "SOL": Decimal(1000),
    "USDC": Decimal(1_000_000),
    "PYUSD": Decimal(1_000_000),
}
FAUCET_DEFAULTS: Final = {"SOL": Decimal(1), "USDC": Decimal(100), "PYUSD": Decimal(0)}

rpc = Blueprint("rpc", __name__)
network = Blueprint("network", __name__, url_prefix="/api/v1")
premium = Blueprint("premium", __name__, url_prefix="/api/v1/premium")


@rpc.post("/rpc")
def json_rpc() -> Response:
    gateway = current_gateway()
    failure = gateway.faults.take("fail_rpc")
    if failure is not None:
        return json_error(failure.status, "injected_fault", "the RPC node is unavailable")
    slow = gateway.faults.take("slow_rpc")
    if slow is not None:
        gateway.sleep(slow.seconds)
    return jsonify(gateway.rpc.handle(request.get_data()))


@network.post("/faucet")
def faucet() -> Any:
    gateway = current_gateway()
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return json_error(
            400,
            "bad_request",
            'send JSON such as {"address": "<base58>", "sol": "1", "usdc": "100"}',
        )
    try:
        address = Pubkey.from_string(str(body.get("address")))
    except (ValueError, TypeError):
        return json_error(400, "bad_address", "address must be a base58 Solana public key")
    amounts: dict[str, Decimal] = {}
    for currency, default in FAUCET_DEFAULTS.items():
        raw = body.get(currency.lower())
        try:
            amount = default if raw is None else _faucet_amount(raw)
        except MoneyError as exc:
            return json_error(400, "bad_amount", f"{currency.lower()} {exc}")
        try:
            if amount > 0:
                gateway.base_units(currency, amount)  # all checked before any is funded
        except MoneyError as exc:
            return json_error(400, "bad_amount", str(exc))
        if amount > FAUCET_LIMITS[currency]:
            return json_error(
                400,
                "too_much",
                f"the faucet gives at most {FAUCET_LIMITS[currency]} {currency} per request",
            )
        amounts[currency] = amount
    try:
        signatures = gateway.fund(address, amounts)
    except ValueError as exc:
        return json_error(400, "funding_failed", str(exc))
    return jsonify(
        {
            "address": str(address),
            "funded": {c: format_amount(a) for c, a in amounts.items() if a > 0},
            "balances": {c: format_amount(gateway.balance(address, c)) for c in amounts},
            "signatures": signatures,
        }
    )


@network.get("/info")
def info() -> Response:
    gateway = current_gateway()
    base = request.host_url.rstrip("/")
    return jsonify(
        {
            "network": gateway.network,
            "genesis_hash": gateway.genesis_hash,
            "rpc_url": f"{base}/rpc",
            "recipient": str(gateway.treasury),
            "mints": {
                t.symbol: {
                    "mint": str(t.mint),
                    "program": str(t.program_id),
                    "decimals": t.decimals,
                }
                for t in gateway.genesis.tokens.values()
            },
            "prices": {
                name: {
                    "amount": format_amount(p.amount),
                    "currency": p.currency,
                    "url": f"{base}/api/v1/premium/{name}",
                }
                for name, p in gateway.prices.items()
            },
            "faucet": f"{base}/api/v1/faucet",
            "sign_in": _sign_in(base),
            "x402": _x402_routes(base),
        }
    )


@premium.get("/<name>")
def premium_resource(name: str) -> Any:
    gateway = current_gateway()
    price = gateway.prices.get(name)
    if price is None:
        return json_error(
            404,
            "not_found",
            f"no premium resource {name!r}; try one of {', '.join(gateway.prices)}",
        )

    @gateway.require_payment(price)
    def content() -> Any:
        settlement: Settlement = g.settlement
        return jsonify(
            {
                "resource": name,
                "content": f"premium {name} content, unlocked",
                "paid": {
                    "amount": format_amount(price.amount),
                    "currency": price.currency,
                    "signature": settlement.signature,
                    "reference": settlement.invoice.reference if settlement.invoice else None,
                },
            }
        )

    return content()


def _faucet_amount(raw: Any) -> Decimal:
    if raw in (0, "0"):
        return Decimal(0)
    return parse_decimal(raw)


def _x402_routes(base: str) -> list[dict[str, Any]]:
    """The x402 routes, their price and the extensions their 402 declares (the v2 routes:
    ``payment-identifier``, optional unless ``--payment-id-required``; the members route
    also ``sign-in-with-x``)."""
    gateway = current_gateway()
    price = gateway.x402_price
    paid = {"amount": format_amount(price.amount), "currency": price.currency}
    ids = {"payment-identifier": {"required": gateway.payment_id_required}}
    return [
        {"url": f"{base}/x402/v1/premium", "x402Version": 1, **paid, "extensions": {}},
        {"url": f"{base}/x402/v2/premium", "x402Version": 2, **paid, "extensions": ids},
        {
            "url": f"{base}/x402/v2/members",
            "x402Version": 2,
            **paid,
            "extensions": {**ids, "sign-in-with-x": {"chainId": gateway.facilitator.caip2}},
        },
    ]


def _sign_in(base: str) -> dict[str, Any]:
    """Where sign-in-with-x is offered (see :mod:`.siwx`)."""
    ttl = members_of(current_app).ttl.total_seconds()
    return {"url": f"{base}/x402/v2/members", "ttl_seconds": ttl, "extension": "sign-in-with-x"}
