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

# What getGenesisHash answers on each public cluster: the chain's identity, which no label can
# fake. Any other hash is a local chain (a test validator, the stub gateway).
GENESIS_HASHES: Final = MappingProxyType(
    {
        "mainnet-beta": "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d",
        "devnet": "EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG",
        "testnet": "4uhcVJyU9pJkvQyS88uRDiswHXSCkY3zQawwpjk2NsNY",
    }
)


def chain_name(genesis_hash: str) -> str:
    """A cluster's name for its genesis hash, or "a local chain (<hash>)"."""
    for cluster, known in GENESIS_HASHES.items():
        if known == genesis_hash:
            return cluster
    return f"a local chain ({genesis_hash})"


def genesis_problem(network: str, genesis_hash: str) -> str | None:
    """Why an agent pinned to ``network`` must not pay on the chain with ``genesis_hash``.

    A known cluster must be the agent's own; ``mainnet-beta`` must be mainnet itself; any
    other (unknown) hash is a local chain, which a devnet, testnet or localnet agent may use.
    """
    actual = next((c for c, known in GENESIS_HASHES.items() if known == genesis_hash), None)
    if actual == network:
        return None
    if actual is not None:
        return f"the RPC node serves {actual}, not {network}"
    if network == "mainnet-beta":
        return f"the RPC node serves {chain_name(genesis_hash)}, not mainnet-beta"
    return None


def symbol_for_mint(network: str, mint: str) -> str | None:
    """The well-known symbol of ``mint`` on ``network``, if it has one."""
    for symbol, known in KNOWN_MINTS.get(network, {}).items():
        if known == mint:
            return symbol
    return None


# x402 names Solana networks two ways: v1 names and CAIP-2 ids (genesis hash prefixes).
X402_V1_NAMES: Final = MappingProxyType(
    {"solana": "mainnet-beta", "solana-devnet": "devnet", "solana-testnet": "testnet"}
)
CAIP2_IDS: Final = MappingProxyType(
    {
        "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp": "mainnet-beta",
        "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1": "devnet",
        "solana:4uhcVJyU9pJkvQyS88uRDiswHXSCkY3z": "testnet",
    }
)


def cluster_of(x402_network: str) -> str | None:
    """Our cluster name for an x402 network (v1 name or CAIP-2 id); None if not Solana's."""
    return X402_V1_NAMES.get(x402_network) or CAIP2_IDS.get(x402_network)


def x402_names(cluster: str) -> tuple[str | None, str | None]:
    """The (v1 name, CAIP-2 id) of a cluster, where x402 defines them."""
    v1 = next((name for name, c in X402_V1_NAMES.items() if c == cluster), None)
    caip2 = next((name for name, c in CAIP2_IDS.items() if c == cluster), None)
    return v1, caip2
