"""Chain state ahead of time (issue 12): a payment whose chain state is fresh makes no RPC call.

The blockhash and the accounts payments use are kept by the agent's chain cache and refreshed
in the background (a thread for AutoAgent, an asyncio task for AsyncAutoAgent, each with its
own connection). Every test runs real parts: the stub gateway over loopback, its LiteSVM
ledger, real journals. ``agent.rpc_stats`` counts the critical path only (the payments' own
calls); the refresher counts its own.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from solders.account import Account
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from human_rpc_sdk import AsyncAutoAgent, AutoAgent, NetworkMismatchError, PaymentError
from human_rpc_sdk._chainstate import ChainCache, Debit
from human_rpc_sdk._networks import GENESIS_HASHES
from human_rpc_sdk.solana_utils import associated_token_address
from stub_gateway import Gateway, GatewayServer, serve_in_thread

from .conftest import FakeClock, Funder, Shop
from .lagging_rpc import LaggingRpc
from .test_attack_round2 import SwitchingRpc, recount, rows
from .test_replacement_proof import gateway_app, serve

PRICE = Decimal("0.001")
FEE = Decimal("0.000005")
THREAD_NAME = "human-rpc-sdk chain refresh"


@pytest.fixture
def make_agent(tmp_path: Path) -> Iterator[Callable[..., AutoAgent]]:
    """AutoAgents with their own journal; closed after the test."""
    made: list[AutoAgent] = []

    def make(wallet: Keypair, rpc_url: str, **options: object) -> AutoAgent:
        path = tmp_path / f"journal-{len(made)}.sqlite3"
        agent = AutoAgent(wallet, rpc_url=rpc_url, journal_path=path, **options)  # type: ignore[arg-type]
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.close()


def refresh_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME and t.is_alive()]


def test_a_second_payment_with_fresh_state_makes_no_rpc_call(
    server: GatewayServer,
    gateway: Gateway,
    funded_wallet: Funder,
    make_agent: Callable[..., AutoAgent],
) -> None:
    """The first payment reads the chain (one round trip); the second, its state fresh, none.
    Both are paid in full on the ledger."""
    wallet = funded_wallet(sol="1")
    agent = make_agent(wallet, server.rpc_url)
    assert agent.get(f"{server.url}/api/v1/premium/sol").status_code == 200
    assert agent.rpc_stats.round_trips == 1
    assert agent.get(f"{server.url}/api/v1/premium/sol").status_code == 200
    assert agent.rpc_stats.round_trips == 1  # nothing on the critical path
    assert gateway.balance(wallet.pubkey()) == 1 - 2 * (PRICE + FEE)
    assert [r.state for r in agent.payments] == ["accepted", "accepted"]


def test_own_debits_are_taken_from_the_cached_balance(
    server: GatewayServer,
    gateway: Gateway,
    funded_wallet: Funder,
    make_agent: Callable[..., AutoAgent],
) -> None:
    """A wallet holding two payments' worth of USDC pays twice from the cache, then the third
    payment's refusal (the cache says 0 after its own debits) is checked on a fresh read and
    stands: insufficient funds, nothing signed."""
    wallet = funded_wallet(sol="1", usdc="0.1")
    agent = make_agent(wallet, server.rpc_url)
    url = f"{server.url}/api/v1/premium/usdc"
    assert agent.get(url).status_code == 200
    assert agent.get(url).status_code == 200
    assert agent.rpc_stats.round_trips == 1
    with pytest.raises(PaymentError) as caught:
        agent.get(url)
    assert caught.value.reason == "insufficient_funds"
    assert agent.rpc_stats.round_trips == 2  # the refusal was checked on a fresh read
    assert gateway.balance(wallet.pubkey(), "USDC") == 0
    assert [r.state for r in agent.payments] == ["accepted", "accepted"]


def test_after_the_interval_the_refresher_not_the_payment_reads_the_chain(
    server: GatewayServer,
    gateway: Gateway,
    funded_wallet: Funder,
    make_agent: Callable[..., AutoAgent],
) -> None:
    """Past the accounts' freshness a payment would read the chain itself; a refresh (by the
    refresher's thread, over its own connection) comes first, so the payment makes no call."""
    clock = FakeClock(100.0)
    wallet = funded_wallet(sol="1")
    agent = make_agent(wallet, server.rpc_url, clock=clock)
    url = f"{server.url}/api/v1/premium/sol"
    assert agent.get(url).status_code == 200
    refresher = agent._refresher
    assert refresher.stats.round_trips == 0
    clock.now += agent._cache.account_ttl + 1  # the cached state is stale now
    refresher.refreshed.clear()
    refresher.wake()
    assert refresher.refreshed.wait(10), "the refresher did not run"
    assert refresher.stats.round_trips == 1
    assert agent.get(url).status_code == 200
    assert agent.rpc_stats.round_trips == 1  # the first payment's read only
    assert refresher.stats.calls == 3  # the accounts, a blockhash, the genesis hash
    assert gateway.balance(wallet.pubkey()) == 1 - 2 * (PRICE + FEE)


def test_an_idle_agent_refreshes_nothing(
    server: GatewayServer, funded_wallet: Funder, make_agent: Callable[..., AutoAgent]
) -> None:
    """The refresh reads only what a payment used in the last minute: after that, nothing."""
    clock = FakeClock(100.0)
    agent = make_agent(funded_wallet(sol="1"), server.rpc_url, clock=clock)
    assert agent.get(f"{server.url}/api/v1/premium/sol").status_code == 200
    clock.now += agent._cache.watch_for + 1
    assert agent._refresher.refresh_once() is False
    assert agent._refresher.stats.round_trips == 0


def test_a_deposit_the_cache_does_not_know_is_found_by_the_fresh_recheck(
    server: GatewayServer,
    gateway: Gateway,
    funded_wallet: Funder,
    make_agent: Callable[..., AutoAgent],
) -> None:
    """The cache says the wallet's USDC is spent; a deposit arrives; the next payment, refused on
    cached state, is checked on a fresh read (one round trip) and paid."""
    wallet = funded_wallet(sol="1", usdc="0.05")
    agent = make_agent(wallet, server.rpc_url)
    url = f"{server.url}/api/v1/premium/usdc"
    assert agent.get(url).status_code == 200
    gateway.fund(wallet.pubkey(), {"USDC": Decimal("0.05")})
    assert agent.get(url).status_code == 200
    assert agent.rpc_stats.round_trips == 2
    assert gateway.balance(wallet.pubkey(), "USDC") == 0
    assert [r.state for r in agent.payments] == ["accepted", "accepted"]


def test_a_payee_account_created_since_the_cache_read_is_found_by_the_recheck(
    shop: Shop, funded_wallet: Funder, make_agent: Callable[..., AutoAgent]
) -> None:
    """create_token_accounts is off: a payee without a USDC account is refused (read fresh).
    Once it has one, the cached "no account" refusal is checked on a fresh read and paid."""
    wallet = Keypair()
    shop.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(1)})
    payee = Keypair().pubkey()
    agent = make_agent(wallet, shop.rpc_url)
    url = shop.price_url("USDC", "0.01", payee)
    with pytest.raises(PaymentError) as caught:
        agent.get(url)
    assert caught.value.rule == "create_token_accounts"  # type: ignore[attr-defined]
    shop.gateway.fund(payee, {"USDC": Decimal("0.5")})
    assert agent.get(url).status_code == 200
    assert shop.gateway.balance(payee, "USDC") == Decimal("0.51")
    assert shop.gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.99")


def test_a_closed_payee_account_the_cache_thinks_open_loses_no_money(
    shop: Shop, funded_wallet: Funder, make_agent: Callable[..., AutoAgent]
) -> None:
    """The payee's USDC account is closed after the agent cached it: the transfer, signed on
    the cached state, fails on chain, so nothing moves (not even the fee); the server answers
    transaction_failed, the journal keeps the payment refused with its landing unknown (never
    paid again; recovery settles it once its blockhash expires). The refusal makes the agent
    forget the cached accounts: the next payment, on a fresh read, would create the account
    (create_token_accounts is off) and is refused unsigned."""
    gateway = shop.gateway
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(1)})
    payee = Keypair().pubkey()
    gateway.fund(payee, {"USDC": Decimal("0.5")})
    token = gateway.genesis.token("USDC")
    payee_account = associated_token_address(payee, token.mint, token.program_id)
    agent = make_agent(wallet, shop.rpc_url)
    url = shop.price_url("USDC", "0.01", payee)
    assert agent.get(url).status_code == 200
    sol_before = gateway.balance(wallet.pubkey())
    gateway.ledger.set_account(payee_account, Account(0, b"", Pubkey.default(), False, 0))
    assert gateway.ledger.account(payee_account) is None
    with pytest.raises(PaymentError) as caught:
        agent.get(url)
    assert caught.value.reason == "payment_refused"  # the server: transaction_failed
    assert "transaction_failed" in str(caught.value)
    assert gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.99")
    assert gateway.balance(wallet.pubkey()) == sol_before
    first, second = rows(Path(agent.journal_path))
    assert first["state"] == "accepted"
    assert second["rent_lamports"] == 0  # signed on the cached "the account exists"
    assert (second["state"], second["landed"]) == ("refused", None)  # never paid again
    recount(Path(agent.journal_path))
    with pytest.raises(PaymentError) as again:  # the refusal made the agent forget the state
        agent.get(url)
    assert again.value.rule == "create_token_accounts"  # type: ignore[attr-defined]
    assert len(rows(Path(agent.journal_path))) == 2
    assert gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.99")


def test_a_lagging_node_s_blockhash_keeps_its_facts_for_the_proofs(tmp_path: Path) -> None:
    """Through a node 3 slots behind, the refresher fetches the blockhash the next payment uses
    (no call on the critical path): that payment is journaled with the lastValidBlockHeight
    and slot the node gave with it, which a later expiry proof is checked against."""
    clock = FakeClock()
    with (
        gateway_app(clock) as (gateway, app),
        serve(app) as server,
        LaggingRpc(server.rpc_url, gateway.ledger, lag=3) as node,
    ):
        wallet = Keypair()
        gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
        agent = AutoAgent(wallet, rpc_url=node.url, journal_path=tmp_path / "j.sqlite3")
        url = f"{server.url}/api/v1/premium/sol"
        assert agent.get(url).status_code == 200
        clock.now += 5  # the chain moves on
        gateway.ledger.slot()
        assert agent._refresher.refresh_once() is True
        blockhash = agent._cache.blockhash(agent._clock())
        assert blockhash is not None
        facts = agent._cache.fetched(blockhash)
        assert facts is not None
        assert agent.get(url).status_code == 200
        assert agent.rpc_stats.round_trips == 1
        first, second = rows(tmp_path / "j.sqlite3")
        assert second["blockhash"] == str(blockhash) != first["blockhash"]
        assert second["last_valid_block_height"] == facts.last_valid_block_height
        assert second["blockhash_slot"] == facts.slot
        assert facts.slot < gateway.ledger.slot()  # what the lagging node had reached
        assert second["genesis_hash"] == gateway.genesis_hash
        assert gateway.balance(wallet.pubkey()) == 1 - 2 * (PRICE + FEE)
        agent.close()


def test_a_node_switched_to_another_chain_stops_payments_at_the_next_refresh(
    server: GatewayServer,
    gateway: Gateway,
    funded_wallet: Funder,
    make_agent: Callable[..., AutoAgent],
) -> None:
    """The load balancer moves the agent's RPC to a mainnet node between two refreshes: the
    refresh sees mainnet's genesis hash and forgets the cache, so the next payment reads the
    chain itself and is refused (NetworkMismatchError) before anything is signed."""
    wallet = funded_wallet(sol="1")
    with (
        serve_in_thread(genesis_hash=GENESIS_HASHES["mainnet-beta"]) as mainnet,
        SwitchingRpc(server.rpc_url) as balancer,
    ):
        agent = make_agent(wallet, balancer.url)
        url = f"{server.url}/api/v1/premium/sol"
        assert agent.get(url).status_code == 200
        balancer.upstream[0] = mainnet.rpc_url
        assert agent._refresher.refresh_once() is False
        assert agent._cache.blockhash(agent._clock()) is None
        with pytest.raises(NetworkMismatchError) as caught:
            agent.get(url)
        assert caught.value.reason == "wrong_chain"
        assert agent.rpc_stats.round_trips == 2
        assert len(agent.payments) == 1
        assert gateway.balance(wallet.pubkey()) == 1 - PRICE - FEE


def test_close_stops_the_refresh_thread(
    server: GatewayServer, funded_wallet: Funder, tmp_path: Path
) -> None:
    """An agent that never paid has no refresh thread; the first payment starts one; close()
    stops it (no thread left)."""
    agent = AutoAgent(
        funded_wallet(sol="1"), rpc_url=server.rpc_url, journal_path=tmp_path / "j.sqlite3"
    )
    assert agent._refresher.thread is None
    assert agent.get(f"{server.url}/api/v1/premium/sol").status_code == 200
    thread = agent._refresher.thread
    assert thread is not None
    assert thread.is_alive()
    agent.close()
    assert not thread.is_alive()
    assert thread not in refresh_threads()


@pytest.mark.asyncio
async def test_the_async_agent_pays_from_the_cache_and_aclose_stops_its_task(
    server: GatewayServer, gateway: Gateway, funded_wallet: Funder, tmp_path: Path
) -> None:
    """AsyncAutoAgent: the second payment makes no RPC call; its refresh task refreshes over its
    own connection (the payments' count unchanged); aclose() ends the task."""
    wallet = funded_wallet(sol="1")
    agent = AsyncAutoAgent(wallet, rpc_url=server.rpc_url, journal_path=tmp_path / "j.sqlite3")
    url = f"{server.url}/api/v1/premium/sol"
    assert (await agent.get(url)).status_code == 200
    assert (await agent.get(url)).status_code == 200
    assert agent.rpc_stats.round_trips == 1
    refresher = agent._refresher
    task = refresher.task
    assert task is not None
    assert not task.done()
    refresher.refreshed.clear()
    refresher.wake()
    await asyncio.wait_for(refresher.refreshed.wait(), 10)  # the task ran
    assert refresher.stats.round_trips == 1
    assert agent.rpc_stats.round_trips == 1
    await agent.aclose()
    assert task.done()
    names = [t.get_name() for t in asyncio.all_tasks()]
    assert THREAD_NAME not in names
    assert gateway.balance(wallet.pubkey()) == 1 - 2 * (PRICE + FEE)


def test_own_debits_outlive_a_read_that_began_before_them() -> None:
    """A debit is taken from the cached balance when signed, and again from a read that began
    before it (the node may not have seen the payment yet), not from one that began after."""
    cache = ChainCache()
    wallet, tokens = Pubkey.new_unique(), Pubkey.new_unique()
    data = bytes(64) + (500).to_bytes(8, "little") + bytes(93)  # a token account holding 500

    def read(at: float, lamports: int, held: int) -> None:
        token_data = data[:64] + held.to_bytes(8, "little") + data[72:]
        accounts = [
            Account(lamports, b"", Pubkey.default(), False, 0),
            Account(1, token_data, Pubkey.default(), False, 0),
        ]
        cache.remember_accounts([wallet, tokens], accounts, at, used=True)

    def held(now: float) -> tuple[int, int]:
        found = cache.accounts([wallet, tokens], now)
        assert found is not None
        sol, token = found
        assert sol is not None
        assert token is not None
        return sol.lamports, int.from_bytes(bytes(token.data)[64:72], "little")

    read(1.0, 10_000, 500)
    cache.debit([Debit(wallet, lamports=3_000), Debit(tokens, tokens=200)], 2.0)
    assert held(2.0) == (7_000, 300)
    read(1.5, 10_000, 500)  # began before the payment: the node had not seen it
    assert held(2.5) == (7_000, 300)
    read(3.0, 7_000, 300)  # began after: the node's word stands
    assert held(3.0) == (7_000, 300)
    assert cache.accounts([wallet], 3.0 + cache.account_ttl) is None  # stale: read again


def test_an_x402_refusal_on_cached_state_is_rechecked(
    server: GatewayServer,
    gateway: Gateway,
    funded_wallet: Funder,
    make_agent: Callable[..., AutoAgent],
) -> None:
    """x402 exact: the cache says the USDC is spent; after a deposit the offer, refused on
    cached state, is evaluated again on a fresh read and paid; without one, refused."""
    wallet = funded_wallet(sol="1", usdc="0.01")
    agent = make_agent(wallet, server.rpc_url)
    url = f"{server.url}/x402/v2/premium"
    assert agent.get(url).status_code == 200
    gateway.fund(wallet.pubkey(), {"USDC": Decimal("0.01")})
    assert agent.get(url).status_code == 200
    assert agent.rpc_stats.round_trips == 2
    with pytest.raises(PaymentError) as caught:
        agent.get(url)
    assert caught.value.reason == "no_payable_offer"
    assert agent.rpc_stats.round_trips == 3
    assert gateway.balance(wallet.pubkey(), "USDC") == 0
    assert len(agent.payments) == 2


def test_an_agent_never_closed_stops_its_thread_when_collected(
    server: GatewayServer, funded_wallet: Funder, tmp_path: Path
) -> None:
    """An agent dropped without close(): once collected, its refresh thread ends too."""
    agent = AutoAgent(
        funded_wallet(sol="1"), rpc_url=server.rpc_url, journal_path=tmp_path / "j.sqlite3"
    )
    assert agent.get(f"{server.url}/api/v1/premium/sol").status_code == 200
    thread = agent._refresher.thread
    assert thread is not None
    agent.session.close()
    agent._journal.close()
    del agent
    gc.collect()
    thread.join(10)
    assert not thread.is_alive()
