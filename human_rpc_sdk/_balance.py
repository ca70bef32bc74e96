"""The wallet's balance, as a flow: one ``getMultipleAccounts`` read, decided here.

Both agents run it with their driver (``AutoAgent.balance`` and ``AsyncAutoAgent.balance``).
"""

from __future__ import annotations

from decimal import Decimal

from solders.pubkey import Pubkey

from ._effects import Flow, RpcCall, perform
from ._jsonrpc import multiple_accounts_request
from ._money import from_base_units
from ._networks import KNOWN_MINTS, SOL_DECIMALS
from .exceptions import SDKConfigurationError
from .solana_utils import TOKEN_PROGRAMS, associated_token_address, parse_mint, parse_token_account

__all__ = ["balance"]


def balance(
    payer: Pubkey, network: str, currency: object = "SOL", mint: object = None
) -> Flow[Decimal]:
    """The balance of ``payer`` in display units: SOL, a token known on ``network`` by its
    symbol, or the token of ``mint``.

    :raises SDKConfigurationError: for a currency or mint that is not text, an unknown symbol
        without ``mint``, or a mint address that is not a mint.
    """
    symbol = _text(currency, "currency")
    mint_text = None if mint is None else _text(mint, "mint")
    if mint_text is None and symbol.upper() == "SOL":
        (reply,) = yield from perform(RpcCall((multiple_accounts_request([payer]),)))
        account = reply.value[0]
        return from_base_units(0 if account is None else account.lamports, SOL_DECIMALS)
    address = mint_text or KNOWN_MINTS[network].get(symbol.upper())
    if address is None:
        raise SDKConfigurationError(
            f"{symbol!r} is not a token this SDK knows on {network}; pass mint=",
            parameter="currency",
        )
    mint_key = _pubkey(address, "mint")
    holders = [associated_token_address(payer, mint_key, p) for p in TOKEN_PROGRAMS]
    (reply,) = yield from perform(RpcCall((multiple_accounts_request([mint_key, *holders]),)))
    try:
        info = parse_mint(mint_key, reply.value[0])
    except ValueError as exc:
        raise SDKConfigurationError(str(exc), parameter="mint") from None
    held = parse_token_account(
        reply.value[1 + TOKEN_PROGRAMS.index(info.program_id)], info.program_id
    )
    return from_base_units(0 if held is None else held.amount, info.decimals)


def _text(value: object, name: str) -> str:
    if not isinstance(value, str) or "\x00" in value:
        raise SDKConfigurationError(
            f"{name} must be text without NUL characters (got a {type(value).__name__})",
            parameter=name,
        )
    return value


def _pubkey(value: str, name: str) -> Pubkey:
    try:
        return Pubkey.from_string(value)
    except ValueError:
        raise SDKConfigurationError(
            f"{name} is not a valid Solana address", parameter=name
        ) from None
