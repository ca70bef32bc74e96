"""The stub gateway is a chain of its own, never devnet: its genesis hash says so."""

from __future__ import annotations

from decimal import Decimal

import requests

from human_rpc_sdk._networks import GENESIS_HASHES
from stub_gateway import Gateway, GatewayServer, serve_in_thread


def test_a_seed_gives_a_stable_chain_identity() -> None:
    """The same seed, the same genesis hash (and addresses); another seed, another chain."""
    assert Gateway(seed="a").genesis_hash == Gateway(seed="a").genesis_hash
    assert Gateway(seed="a").genesis_hash != Gateway(seed="b").genesis_hash


def test_without_a_seed_every_ledger_is_a_new_chain() -> None:
    """No seed: a fresh genesis hash per ledger, like a fresh local validator; never one of
    the public clusters', whatever network name the gateway claims."""
    hashes = {Gateway(network=network).genesis_hash for network in ("devnet", "mainnet-beta")}
    hashes |= {Gateway().genesis_hash for _ in range(3)}
    assert len(hashes) == 5
    assert not hashes & set(GENESIS_HASHES.values())


def test_the_genesis_hash_is_announced(server: GatewayServer) -> None:
    """getGenesisHash and /api/v1/info tell the same hash."""
    rpc = requests.post(
        server.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "getGenesisHash"}, timeout=5
    ).json()
    info = requests.get(f"{server.url}/api/v1/info", timeout=5).json()
    assert rpc["result"] == info["genesis_hash"] == server.gateway.genesis_hash


def test_a_seeded_server_keeps_its_chain_across_restarts() -> None:
    """Two runs with one seed announce one chain (the ledger itself starts anew)."""
    hashes = []
    for _ in range(2):
        with serve_in_thread(seed="restart") as running:
            hashes.append(requests.get(f"{running.url}/api/v1/info", timeout=5).json())
    assert hashes[0]["genesis_hash"] == hashes[1]["genesis_hash"]
    assert hashes[0]["recipient"] == hashes[1]["recipient"]


def test_one_chain_never_runs_another_chains_transaction() -> None:
    """Two ledgers issue blockhashes of their own (as two clusters do), so a transfer signed
    for one is refused by the other: blockhash not found, nothing moved there."""
    from solders.keypair import Keypair
    from solders.message import MessageV0
    from solders.system_program import TransferParams, transfer
    from solders.transaction import VersionedTransaction

    first, second = Gateway(), Gateway()
    assert not {first.ledger.latest_blockhash()[0]} & {second.ledger.latest_blockhash()[0]}
    payer, payee = Keypair(), Keypair()
    for gateway in (first, second):
        gateway.fund(payer.pubkey(), {"SOL": Decimal(1)})
    move = transfer(
        TransferParams(from_pubkey=payer.pubkey(), to_pubkey=payee.pubkey(), lamports=10**6)
    )
    message = MessageV0.try_compile(payer.pubkey(), [move], [], first.ledger.latest_blockhash()[0])
    transaction = VersionedTransaction(message, [payer])
    refused = second.ledger.execute(transaction)
    assert not refused.ok
    assert "blockhash" in refused.describe()
    assert second.balance(payee.pubkey()) == 0
    assert first.ledger.execute(transaction).ok
    assert first.balance(payee.pubkey()) == Decimal("0.001")
