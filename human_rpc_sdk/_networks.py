"""Solana cluster names, their default RPC endpoints and well-known token mints."""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

NETWORKS: Final = ("mainnet-beta", "devnet", "testnet", "localnet")

DEFAULT_RPC_URLS: Final = MappingProxyType(
    {
        "mainnet-beta": "https://api.mainnet-beta.solana.com",
        "devnet": "https://api.devnet.solana.com",
        "testnet": "https://api.testnet.solana.com",
        "localnet": "http://127.0.0.1:8899",
    }
)

# Symbols an invoice may use without naming a mint, per network. An invoice that names one of
# these symbols *and* a different mint is refused: a valuable token must not be paid under a
# cheaper token's label. (Sources: Circle, Paxos and the x402 reference's default assets.)
KNOWN_MINTS: Final = MappingProxyType(
    {
        "mainnet-beta": MappingProxyType(
            {
                "USDC": "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
                "USDT": "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB",
                "PYUSD": "2b1kV6DkPAnxd5ixfnxCpjxmKwqjjaYmCZfHsFu24GXo",
                "USDG": "2u1tszSeqZ3qBWF3uNGPFc8TzMk2tdiwknnRMWGWjGWH",
            }
        ),
        "devnet": MappingProxyType(
            {
                "USDC": "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU",
                "PYUSD": "CXk2AMBfi3TwaEL2468s6zP8xq9NxTXjp9gjMgzeUynM",
                "USDG": "4F6PM96JJxngmHnZLBh9n58RH4aTVNWvDs2nuwrT5BP7",
            }
        ),
        "testnet": MappingProxyType({"USDC": "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU"}),
        "localnet": MappingProxyType({}),
    }
)

SOL_DECIMALS: Final = 9


def symbol_for_mint(network: str, mint: str) -> str | None:
    """The well-known symbol of ``mint`` on ``network``, if it has one."""
    for symbol, known in KNOWN_MINTS.get(network, {}).items():
        if known == mint:
            return symbol
    return None
