"""``jsonParsed`` account data, in the shape a Solana node (Agave) gives for SPL Token accounts.

Mints and token accounts of the Token and Token-2022 programs are parsed; for anything else
:func:`parse_account` answers None and the caller falls back to base64, as a node does. The
Token-2022 extensions the SDK and the gateway deal with are parsed with their state; any other
extension is listed as ``unparseableExtension``, Agave's name for one it cannot read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from solders.account import Account
from solders.pubkey import Pubkey
from solders.token.state import Mint, TokenAccount, TokenAccountState
from spl.token.constants import TOKEN_2022_PROGRAM_ID, TOKEN_PROGRAM_ID

from human_rpc_sdk._money import format_amount, from_base_units

__all__ = ["parse_account", "token_amount"]

MINT_SIZE: Final = 82
ACCOUNT_SIZE: Final = 165
_PROGRAM_NAMES: Final = {TOKEN_PROGRAM_ID: "spl-token", TOKEN_2022_PROGRAM_ID: "spl-token-2022"}
_ACCOUNT_TYPE_MINT: Final = 1
_ACCOUNT_TYPE_ACCOUNT: Final = 2
_STATES: Final = (
    (TokenAccountState.Initialized, "initialized"),
    (TokenAccountState.Frozen, "frozen"),
)
# Extensions without state, by type number (spl-token-2022 ExtensionType).
_UNIT_EXTENSIONS: Final = {
    7: "immutableOwner",
    9: "nonTransferable",
    13: "nonTransferableAccount",
    27: "pausableAccount",
}

MintDecimals = Callable[[Pubkey], int | None]


def token_amount(amount: int, decimals: int) -> dict[str, Any]:
    """Agave's ``UiTokenAmount``: the amount in base units, and in display units."""
    ui = from_base_units(amount, decimals)
    return {
        "amount": str(amount),
        "decimals": decimals,
        "uiAmount": float(ui),
        "uiAmountString": format_amount(ui),
    }


def parse_account(account: Account, mint_decimals: MintDecimals) -> dict[str, Any] | None:
    """The ``data`` of ``account`` under ``jsonParsed``, or None when it is not parsed.

    ``mint_decimals`` looks up a mint's decimals (None if there is no such mint), which a token
    account's amounts need; without them a node falls back to base64, and so does this.
    """
    program = _PROGRAM_NAMES.get(account.owner)
    if program is None:
        return None
    data = bytes(account.data)
    is_2022 = account.owner == TOKEN_2022_PROGRAM_ID
    parsed: dict[str, Any] | None
    if len(data) == MINT_SIZE or (
        is_2022 and len(data) > ACCOUNT_SIZE and data[ACCOUNT_SIZE] == _ACCOUNT_TYPE_MINT
    ):
        parsed = _mint(data)
    elif len(data) == ACCOUNT_SIZE or (
        is_2022 and len(data) > ACCOUNT_SIZE and data[ACCOUNT_SIZE] == _ACCOUNT_TYPE_ACCOUNT
    ):
        parsed = _token_account(data, mint_decimals)
    else:
        parsed = None
    if parsed is None:
        return None
    return {"program": program, "parsed": parsed, "space": len(data)}


def _mint(data: bytes) -> dict[str, Any] | None:
    try:
        mint = Mint.from_bytes(data[:MINT_SIZE])
    except ValueError:
        return None
    info: dict[str, Any] = {
        "mintAuthority": _key(mint.mint_authority),
        "supply": str(mint.supply),
        "decimals": mint.decimals,
        "isInitialized": mint.is_initialized,
        "freezeAuthority": _key(mint.freeze_authority),
    }
    extensions = _extensions(data, mint.decimals)
    if extensions is None:
        return None
    if extensions:
        info["extensions"] = extensions
    return {"type": "mint", "info": info}


def _token_account(data: bytes, mint_decimals: MintDecimals) -> dict[str, Any] | None:
    try:
        token = TokenAccount.from_bytes(data[:ACCOUNT_SIZE])
    except ValueError:
        return None
    decimals = mint_decimals(token.mint)
    if decimals is None:
        return None
    info: dict[str, Any] = {
        "isNative": token.is_native is not None,
        "mint": str(token.mint),
        "owner": str(token.owner),
        "state": next((name for state, name in _STATES if token.state == state), "uninitialized"),
        "tokenAmount": token_amount(token.amount, decimals),
    }
    if token.delegate is not None:
        info["delegate"] = str(token.delegate)
        info["delegatedAmount"] = token_amount(token.delegated_amount, decimals)
    if token.is_native is not None:
        info["rentExemptReserve"] = token_amount(token.is_native, 9)
    if token.close_authority is not None:
        info["closeAuthority"] = str(token.close_authority)
    extensions = _extensions(data, decimals)
    if extensions is None:
        return None
    if extensions:
        info["extensions"] = extensions
    return {"type": "account", "info": info}


def _extensions(data: bytes, decimals: int) -> list[dict[str, Any]] | None:
    """Token-2022 TLV extensions after the account-type byte; None if they are malformed."""
    if len(data) <= ACCOUNT_SIZE:
        return []
    found: list[dict[str, Any]] = []
    start = ACCOUNT_SIZE + 1
    while start + 4 <= len(data):
        kind = int.from_bytes(data[start : start + 2], "little")
        length = int.from_bytes(data[start + 2 : start + 4], "little")
        if kind == 0:
            break
        value = data[start + 4 : start + 4 + length]
        if len(value) != length:
            return None
        found.append(_extension(kind, value, decimals))
        start += 4 + length
    return found


def _extension(kind: int, value: bytes, decimals: int) -> dict[str, Any]:
    if kind in _UNIT_EXTENSIONS:
        return {"extension": _UNIT_EXTENSIONS[kind]}
    if kind == 1 and len(value) == 108:
        return {
            "extension": "transferFeeConfig",
            "state": {
                "transferFeeConfigAuthority": _optional(value[0:32]),
                "withdrawWithheldAuthority": _optional(value[32:64]),
                "withheldAmount": _u64(value[64:72]),
                "olderTransferFee": _fee(value[72:90]),
                "newerTransferFee": _fee(value[90:108]),
            },
        }
    if kind == 2 and len(value) == 8:
        return {"extension": "transferFeeAmount", "state": {"withheldAmount": _u64(value)}}
    if kind == 6 and len(value) == 1:
        state = {1: "initialized", 2: "frozen"}.get(value[0], "uninitialized")
        return {"extension": "defaultAccountState", "state": {"accountState": state}}
    if kind == 12 and len(value) == 32:
        return {"extension": "permanentDelegate", "state": {"delegate": _optional(value)}}
    if kind == 14 and len(value) == 64:
        return {
            "extension": "transferHook",
            "state": {"authority": _optional(value[0:32]), "programId": _optional(value[32:64])},
        }
    if kind == 15 and len(value) == 1:
        return {"extension": "transferHookAccount", "state": {"transferring": value[0] != 0}}
    if kind == 26 and len(value) == 33:
        return {
            "extension": "pausableConfig",
            "state": {"authority": _optional(value[0:32]), "paused": value[32] != 0},
        }
    return {"extension": "unparseableExtension"}


def _fee(raw: bytes) -> dict[str, int]:
    return {
        "epoch": _u64(raw[0:8]),
        "maximumFee": _u64(raw[8:16]),
        "transferFeeBasisPoints": int.from_bytes(raw[16:18], "little"),
    }


def _u64(raw: bytes) -> int:
    return int.from_bytes(raw, "little")


def _optional(raw: bytes) -> str | None:
    return None if not any(raw) else str(Pubkey.from_bytes(raw))


def _key(value: Pubkey | None) -> str | None:
    return None if value is None else str(value)
