"""The stub gateway's Flask application: a HumanRPC network in one process.

Routes:

* ``POST /rpc`` - Solana JSON-RPC over the local ledger.
* ``POST /api/v1/faucet`` - fund a wallet: ``{"address", "sol", "usdc", "pyusd"}``.
* ``GET /api/v1/info`` - network, RPC URL, payee, mints and prices.
* ``GET /api/v1/premium/<sol|usdc|pyusd>`` - paywalled resources: 402 with a fresh HumanRPC
  invoice, or, with ``?format=legacy``, the deployed service's ``payment`` body.
* ``GET|POST|DELETE /api/v1/faults`` - arm injected failures (see :mod:`.faults`).

Any Flask view can be paywalled the same way with :meth:`Gateway.require_payment`.
"""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final, TypeVar

from flask import Flask, Response, g, jsonify, make_response, request
from solders.hash import Hash
from solders.pubkey import Pubkey
from spl.token.instructions import create_idempotent_associated_token_account, mint_to_checked
from spl.token.models import MintToCheckedParams
from werkzeug.exceptions import HTTPException

from human_rpc_sdk._headers import PAYMENT_HEADER, PAYMENT_RESPONSE_HEADER, encode_payment_response
from human_rpc_sdk._money import (
    MoneyError,
    format_amount,
    from_base_units,
    parse_decimal,
    to_base_units,
)
from human_rpc_sdk._networks import NETWORKS
from human_rpc_sdk.solana_utils import associated_token_address, parse_token_account

from ._http import MAX_BODY, JsonProvider, json_error, jsonable
from .fault_routes import add_fault_routes, after_payment, challenge_fault, redirect_fault
from .faults import Faults
from .genesis import DEFAULT_SEED, Genesis, create_genesis, genesis_hash_for
from .ledger import Ledger
from .payments import PaymentDesk, Price, Refusal, Settlement
from .replies import PaidReplies
from .rpc import RpcDispatcher
from .task_routes import add_task_routes
from .tasks import ConsensusRule, ReviewPolicy, TaskBoard
from .x402 import ExactFacilitator
from .x402_routes import add_x402_routes, require_x402

__all__ = ["DEFAULT_PRICES", "Gateway", "create_app"]

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_PRICES: Final = {
    "sol": Price(Decimal("0.001"), "SOL"),
    "usdc": Price(Decimal("0.05"), "USDC"),
    "pyusd": Price(Decimal("0.05"), "PYUSD"),
}
DEFAULT_TASK_PRICE: Final = Price(Decimal("0.05"), "USDC")
DEFAULT_X402_PRICE: Final = Price(Decimal("0.01"), "USDC")
FAUCET_LIMITS: Final = {
    "SOL": Decimal(1000),
    "USDC": Decimal(1_000_000),
    "PYUSD": Decimal(1_000_000),
}
FAUCET_DEFAULTS: Final = {"SOL": Decimal(1), "USDC": Decimal(100), "PYUSD": Decimal(0)}
_LEGACY_CURRENCIES: Final = ("SOL", "USDC")


class Gateway:
    """The stub HumanRPC network: a ledger, its genesis accounts, a payment desk and RPC."""

    def __init__(
        self,
        *,
        network: str = "devnet",
        seed: str | None = None,
        prices: Mapping[str, Price] | None = None,
        invoice_ttl: float = 300.0,
        reference_style: str = "pubkey",
        treasury_token_accounts: bool = True,
        review_policy: str = "approve",
        review_delay: float = 0.0,
        voters: int | None = None,
        consensus_threshold: float | None = None,
        task_ttl: float = 600.0,
        rate_limit: tuple[int, float] | None = None,
        task_price: Price = DEFAULT_TASK_PRICE,
        x402_price: Price = DEFAULT_X402_PRICE,
        genesis_hash: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,  # noqa: TID251 - slow answers must wait
    ) -> None:
        if network not in NETWORKS:
            raise ValueError(f"network must be one of {', '.join(NETWORKS)}")
        self.network = network
        self.faults = Faults()
        self.replies = PaidReplies(clock)
        self.sleep = sleep
        # A chain of its own, never devnet's: stable for an explicit seed (the same addresses,
        # the same chain identity), otherwise new for every ledger, like a fresh local
        # validator, so clients can tell one gateway's chain from another's.
        if genesis_hash is None:
            fresh = str(Hash(secrets.token_bytes(32)))
            genesis_hash = genesis_hash_for(seed) if seed is not None else fresh
        self.genesis_hash = genesis_hash
        self.ledger = Ledger(clock=clock, chain=bytes(Hash.from_string(genesis_hash)))
        self.genesis: Genesis = create_genesis(
            self.ledger,
            network=network,
            seed=seed or DEFAULT_SEED,
            treasury_token_accounts=treasury_token_accounts,
        )
        self.desk = PaymentDesk(
            self.ledger,
            self.genesis,
            invoice_ttl=invoice_ttl,
            reference_style=reference_style,
            clock=clock,
        )
        self.rpc = RpcDispatcher(self.ledger, network, self.genesis_hash)
        self.prices = dict(prices or DEFAULT_PRICES)
        if voters is not None and (voters < 1 or voters > 101):
            raise ValueError("voters must be between 1 and 101")
        if consensus_threshold is not None and not 0.5 < consensus_threshold <= 1:
            raise ValueError("consensus_threshold must be above 0.5 and at most 1")
        self.task_price = task_price
        self.x402_price = x402_price
        for price in (*self.prices.values(), task_price, x402_price):
            self.base_units(price.currency, price.amount)
        self.facilitator = ExactFacilitator(
            self.ledger, self.genesis.fee_payer, network, clock=clock
        )
        self.tasks = TaskBoard(
            policy=ReviewPolicy.parse(review_policy, review_delay),
            rule=ConsensusRule(voters, consensus_threshold),
            task_ttl=task_ttl,
            rate_limit=rate_limit,
            clock=clock,
        )

    @property
    def treasury(self) -> Pubkey:
        return self.genesis.treasury

    # -- balances and funding ---------------------------------------------------------------

    def balance(self, owner: Pubkey | str, currency: str = "SOL") -> Decimal:
        """``owner``'s balance in display units: SOL, or a token held in its associated account."""
        owner_key = Pubkey.from_string(owner) if isinstance(owner, str) else owner
        if currency.upper() == "SOL":
            return from_base_units(self.ledger.balance(owner_key), 9)
        token = self.genesis.token(currency)
        address = associated_token_address(owner_key, token.mint, token.program_id)
        account = parse_token_account(self.ledger.account(address), token.program_id)
        return from_base_units(0 if account is None else account.amount, token.decimals)

    def base_units(self, currency: str, amount: Decimal) -> int:
        """``amount`` of ``currency`` (SOL or a token) in base units.

        Raises ``MoneyError`` (a ``ValueError``) naming the currency when the amount is finer
        than the currency's smallest unit, or ``ValueError`` for an unknown currency.
        """
        symbol = currency.upper()
        if symbol != "SOL" and symbol not in self.genesis.tokens:
            raise ValueError(
                f"unknown currency {currency!r}; SOL, {', '.join(self.genesis.tokens)}"
            )
        decimals = 9 if symbol == "SOL" else self.genesis.token(symbol).decimals
        try:
            return to_base_units(amount, decimals)
        except MoneyError as exc:
            raise MoneyError(f"{symbol} {exc}") from None

    def fund(self, address: Pubkey, amounts: Mapping[str, Decimal]) -> list[str]:
        """Give ``address`` these amounts (SOL by airdrop, tokens by MintTo); signatures back.

        Every amount is checked before anything is funded: a bad one raises ``ValueError``
        and funds none of them.
        """
        units = {c.upper(): self.base_units(c, a) for c, a in amounts.items() if a > 0}
        signatures = []
        for currency, amount in units.items():
            if currency == "SOL":
                result = self.ledger.airdrop(address, amount)
            else:
                token = self.genesis.token(currency)
                authority = self.genesis.authority
                destination = associated_token_address(address, token.mint, token.program_id)
                result = self.ledger.run(
                    [
                        create_idempotent_associated_token_account(
                            authority.pubkey(), address, token.mint, token.program_id
                        ),
                        mint_to_checked(
                            MintToCheckedParams(
                                program_id=token.program_id,
                                mint=token.mint,
                                dest=destination,
                                mint_authority=authority.pubkey(),
                                amount=amount,
                                decimals=token.decimals,
                            )
                        ),
                    ],
                    authority,
                )
            if not result.ok:
                raise ValueError(f"funding {currency} failed: {result.describe()}")
            signatures.append(str(result.signature))
        return signatures

    # -- paywalls ---------------------------------------------------------------------------

    def require_payment(self, price: Price | Callable[[], Price]) -> Callable[[F], F]:
        """Paywall a Flask view: 402 with an invoice until a valid ``X-PAYMENT`` settles.

        The settlement is available to the view as ``flask.g.settlement``. The very same paid
        request sent again within two minutes gets the same answer, and one sent while the
        first is still being served waits for that answer (see :mod:`.replies`).
        """

        def decorator(view: F) -> F:
            @functools.wraps(view)
            def wrapped(*args: Any, **kwargs: Any) -> Any:
                current = price() if callable(price) else price
                legacy = request.args.get("format") == "legacy"
                if legacy and current.currency.upper() not in _LEGACY_CURRENCIES:
                    return json_error(
                        400,
                        "legacy_unsupported",
                        "the deployed service's payment format supports SOL and USDC only",
                    )
                header = request.headers.get(PAYMENT_HEADER)
                if header is None:
                    return challenge_fault(self) or self._challenge(current, legacy)
                moved = redirect_fault(self)
                if moved is not None:
                    return moved
                with self.replies.serving(self.replies.key(header)) as serving:
                    response = serving.reply
                    if response is None:
                        outcome = (
                            self.desk.settle_legacy(header, current)
                            if legacy
                            else self.desk.settle(header, request.path, current)
                        )
                        if isinstance(outcome, Refusal):
                            return self._refuse(outcome, current, legacy)
                        g.settlement = outcome
                        response = make_response(view(*args, **kwargs))
                        response.headers[PAYMENT_RESPONSE_HEADER] = encode_payment_response(
                            success=True,
                            transaction=outcome.signature,
                            network=self.network,
                            payer=outcome.payer,
                        )
                        serving.keep(response)
                return after_payment(self, response, lambda: self._challenge(current, legacy))

            return wrapped  # type: ignore[return-value]

        return decorator

    def require_x402(
        self, price: Price, *, version: int = 2, description: str = ""
    ) -> Callable[[F], F]:
        """Paywall a Flask view with standard x402 ``exact`` (v1 or v2), settled here.

        The settlement response is available to the view as ``flask.g.x402_settlement``.
        """
        return require_x402(self, price, version=version, description=description)

    def _challenge(self, price: Price, legacy: bool) -> Response:
        if legacy:
            body = self.desk.legacy_body(price)
        else:
            overcharge = self.faults.take("overcharge")
            if overcharge is not None:
                price = Price(price.amount * overcharge.factor, price.currency, price.recipient)
            invoice = self.desk.issue(price, request.path, overcharged=overcharge is not None)
            body = invoice.body(self.network)
        response = jsonify(jsonable(body))
        response.status_code = 402
        return response

    def _refuse(self, refusal: Refusal, price: Price, legacy: bool) -> Response:
        if legacy:
            body: dict[str, Any] = {
                "error": "Payment verification failed",
                "details": refusal.message,
            }
        else:
            body = self.desk.issue(price, request.path).body(self.network, message=refusal.message)
            body["error"] = {"reason": refusal.reason, "message": refusal.message}
        body["reason"] = refusal.reason
        response = jsonify(jsonable(body))
        response.status_code = 402
        response.headers[PAYMENT_RESPONSE_HEADER] = encode_payment_response(
            success=False,
            transaction="",
            network=self.network,
            payer=refusal.payer,
            error_reason=refusal.reason,
        )
        return response


def create_app(gateway: Gateway | None = None, **options: Any) -> Flask:
    """The Flask app of a stub gateway; ``options`` go to :class:`Gateway` when none is given."""
    gateway = gateway or Gateway(**options)
    app = Flask("stub_gateway")
    app.json = JsonProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.extensions["stub_gateway"] = gateway

    @app.post("/rpc")
    def rpc() -> Response:
        failure = gateway.faults.take("fail_rpc")
        if failure is not None:
            return json_error(failure.status, "injected_fault", "the RPC node is unavailable")
        slow = gateway.faults.take("slow_rpc")
        if slow is not None:
            gateway.sleep(slow.seconds)
        return jsonify(gateway.rpc.handle(request.get_data()))

    @app.post("/api/v1/faucet")
    def faucet() -> Any:
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

    @app.get("/api/v1/info")
    def info() -> Response:
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
            }
        )

    @app.get("/api/v1/premium/<name>")
    def premium(name: str) -> Any:
        price = gateway.prices.get(name)
        if price is None:
            return json_error(
                404,
                "not_found",
                f"no premium resource {name!r}; try one of {', '.join(gateway.prices)}",
            )
        return _premium_view(name, price)()

    def _premium_view(name: str, price: Price) -> Callable[[], Any]:
        @gateway.require_payment(price)
        def view() -> Any:
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

        return view

    add_task_routes(app, gateway)
    add_x402_routes(app, gateway)
    add_fault_routes(app, gateway)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return json_error(
            exc.code or 500, (exc.name or "error").lower().replace(" ", "_"), exc.description or ""
        )

    return app


def _faucet_amount(raw: Any) -> Decimal:
    if raw in (0, "0"):
        return Decimal(0)
    return parse_decimal(raw)
