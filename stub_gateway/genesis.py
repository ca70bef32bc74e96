"""The gateway's starting state: its keys, its token mints and the payee (treasury) wallet.

Keys derive from a seed string, so addresses stay the same from run to run for a given seed.
The token mints sit at the addresses the real network uses for that token (devnet USDC is
``4zMMC9...``), written into the ledger as genesis accounts whose mint authority is the
gateway's own key, like ``solana-test-validator --clone`` with a local authority. Invoices the
gateway issues therefore name exactly the mint an agent would meet on the real network.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from solders.account import Account
from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.token.state import Mint
from spl.token.constants import TOKEN_2022_PROGRAM_ID, TOKEN_PROGRAM_ID
from spl.token.instructions import create_idempotent_associated_token_account

from human_rpc_sdk._networks import KNOWN_MINTS

from .ledger import Ledger

__all__ = [
    "DEFAULT_SEED",
    "Genesis",
    "Token",
    "create_genesis",
    "derive_keypair",
    "genesis_hash_for",
]

DEFAULT_SEED: Final = "human-rpc-stub"
_AUTHORITY_LAMPORTS: Final = 1_000 * 10**9
_TREASURY_LAMPORTS: Final = 10**9
_TOKENS: Final = (("USDC", TOKEN_PROGRAM_ID, 6), ("PYUSD", TOKEN_2022_PROGRAM_ID, 6))


@dataclass(frozen=True)
class Token:
    symbol: str
    mint: Pubkey
    program_id: Pubkey
    decimals: int


@dataclass(frozen=True)
class Genesis:
    seed: str
    network: str
    authority: Keypair
    """Mint authority of every token and fee payer of the gateway's own transactions."""
    treasury: Pubkey
    """The wallet the gateway's invoices ask to be paid."""
    fee_payer: Keypair
    """The x402 facilitator's fee payer (co-signs exact payments and pays their fees)."""
    tokens: dict[str, Token]

    def token(self, symbol: str) -> Token:
        return self.tokens[symbol.upper()]


def genesis_hash_for(seed: str) -> str:
    """The chain's genesis hash for ``seed``: the same seed, the same chain identity."""
    return str(Hash(hashlib.sha256(f"human-rpc-stub/{seed}/genesis".encode()).digest()))


def derive_keypair(seed: str, role: str) -> Keypair:
    """A keypair that depends only on ``seed`` and ``role``."""
    return Keypair.from_seed(hashlib.sha256(f"human-rpc-stub/{seed}/{role}".encode()).digest())


def create_genesis(
    ledger: Ledger,
    *,
    network: str,
    seed: str = DEFAULT_SEED,
    treasury_token_accounts: bool = True,
) -> Genesis:
    """Seed ``ledger`` with the gateway's accounts and return where everything is."""
    authority = derive_keypair(seed, "authority")
    treasury = derive_keypair(seed, "treasury").pubkey()
    fee_payer = derive_keypair(seed, "facilitator")
    for address, lamports in (
        (authority.pubkey(), _AUTHORITY_LAMPORTS),
        (treasury, _TREASURY_LAMPORTS),
        (fee_payer.pubkey(), _AUTHORITY_LAMPORTS),
    ):
        funded = ledger.airdrop(address, lamports)
        if not funded.ok:  # pragma: no cover - a broken runtime, not a user error
            raise RuntimeError(f"could not fund {address} at genesis: {funded.describe()}")
    tokens: dict[str, Token] = {}
    for symbol, program, decimals in _TOKENS:
        known = KNOWN_MINTS[network].get(symbol)
        address = (
            Pubkey.from_string(known) if known else derive_keypair(seed, f"mint/{symbol}").pubkey()
        )
        mint = Mint(
            mint_authority=authority.pubkey(), supply=0, decimals=decimals, is_initialized=True
        )
        data = bytes(mint)
        ledger.set_account(
            address,
            Account(
                lamports=ledger.minimum_balance(len(data)),
                data=data,
                owner=program,
                executable=False,
            ),
        )
        tokens[symbol] = Token(symbol=symbol, mint=address, program_id=program, decimals=decimals)
        if treasury_token_accounts:
            create = create_idempotent_associated_token_account(
                authority.pubkey(), treasury, address, program
            )
            result = ledger.run([create], authority)
            if not result.ok:  # pragma: no cover - a broken runtime, not a user error
                raise RuntimeError(
                    f"could not create the treasury's {symbol} account: {result.describe()}"
                )
    return Genesis(
        seed=seed,
        network=network,
        authority=authority,
        treasury=treasury,
        fee_payer=fee_payer,
        tokens=tokens,
    )
