"""The types of the SDK's public parameters, so a type checker checks a caller's arguments."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Protocol, TypeAlias

from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

from .wallet import KeypairSigner

__all__ = ["Addresses", "SecretKey", "SignerLike"]

SecretKey: TypeAlias = (
    Keypair | KeypairSigner | str | bytes | bytearray | Sequence[int] | os.PathLike[str]
)
"""A payer's key: base58 text, a solana-keygen JSON array (text, bytes or a list of ints), the
path of a solana-keygen file, or a Keypair."""

Addresses: TypeAlias = Iterable[str | Pubkey]
"""Solana addresses (wallets, token accounts or mints), base58 or ``Pubkey``."""


class SignerLike(Protocol):
    """What ``AutoAgent(signer=...)`` takes: a KMS or hardware-wallet adapter, a Keypair, or a
    :class:`~human_rpc_sdk.Signer`."""

    def pubkey(self) -> Pubkey | str:
        """The payer's public key (a ``Pubkey`` or base58 text)."""
        ...

    def sign_message(self, message: bytes, /) -> Signature | bytes:
        """An ed25519 signature of ``message`` (a ``Signature`` or its 64 bytes)."""
        ...
