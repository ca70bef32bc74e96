"""The stub HumanRPC network, without HTTP: a ledger, its genesis accounts, the payments desk,
the x402 facilitator, the task board, JSON-RPC and the armed faults.

The Flask application (:mod:`.app`) serves it; this module imports no Flask, so the domain
objects can be driven and tested directly. Its paywalls (:meth:`Gateway.require_payment`,
:meth:`Gateway.require_x402`) are Flask decorators, imported from :mod:`.paywall` on use.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final, TypeVar

from solders.hash import Hash
from solders.pubkey import Pubkey
from spl.token.instructions import create_idempotent_associated_token_account, mint_to_checked
from spl.token.models import MintToCheckedParams

from human_rpc_sdk._money import MoneyError, from_base_units, to_base_units
from human_rpc_sdk._networks import NETWORKS
from human_rpc_sdk.solana_utils import associated_token_address, parse_token_account

from .faults import Faults
from .genesis import DEFAULT_SEED, Genesis, create_genesis, genesis_hash_for
from .ledger import Ledger
from .payments import PaymentDesk, Price
from .replies import PaidReplies, PaymentIds
from .rpc import RpcDispatcher
from .tasks import ConsensusRule, ReviewPolicy, TaskBoard
from .x402 import ExactFacilitator

__all__ = ["DEFAULT_PRICES", "DEFAULT_TASK_PRICE", "DEFAULT_X402_PRICE", "Gateway"]

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_PRICES: Final = {
    "sol": Price(Decimal("0.001"), "SOL"),
    "usdc": Price(Decimal("0.05"), "USDC"),
    "pyusd": Price(Decimal("0.05"), "PYUSD"),
}
DEFAULT_TASK_PRICE: Final = Price(Decimal("0.05"), "USDC")
DEFAULT_X402_PRICE: Final = Price(Decimal("0.01"), "USDC")


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
        payment_id_required: bool = False,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if network not in NETWORKS:
            raise ValueError(f"network must be one of {', '.join(NETWORKS)}")
        self.network = network
        self.faults = Faults()
        self.replies = PaidReplies(clock)
        self.payment_ids = PaymentIds(clock)
        self.payment_id_required = payment_id_required
        """Whether its x402 v2 routes require a payment id (``payment-identifier``)."""
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
        self.facilitator.payment_ids = self.payment_ids  # ids bind as their payments settle
        self.tasks = TaskBoard(
            policy=ReviewPolicy.parse(review_policy, review_delay),
            rule=ConsensusRule(voters, consensus_threshold),
            task_ttl=task_ttl,
            rate_limit=rate_limit,
            clock=clock,
        )

    @property
    def treasury(self) -> Pubkey:
        """The wallet the gateway's paywalls are paid to (the payee of its invoices)."""
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

    # -- paywalls (Flask decorators) --------------------------------------------------------

    def require_payment(self, price: Price | Callable[[], Price]) -> Callable[[F], F]:
        """Paywall a Flask view: 402 with an invoice until a valid ``X-PAYMENT`` settles.

        The settlement is available to the view as ``flask.g.settlement``. The very same paid
        request sent again within two minutes gets the same answer, and one sent while the
        first is still being served waits for that answer (see :mod:`.replies`).
        """
        from .paywall import require_payment

        return require_payment(self, price)

    def require_x402(
        self, price: Price, *, version: int = 2, description: str = ""
    ) -> Callable[[F], F]:
        """Paywall a Flask view with standard x402 ``exact`` (v1 or v2), settled here.

        The settlement response is available to the view as ``flask.g.x402_settlement``.
        """
        from .paywall import require_x402

        return require_x402(self, price, version=version, description=description)
