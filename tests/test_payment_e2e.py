"""AutoAgent paying the stub gateway over loopback HTTP; every payment checked on the ledger."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest
import requests
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent, InvoiceValidationError, PaymentError
from human_rpc_sdk._headers import decode_payment_response
from human_rpc_sdk.solana_utils import associated_token_address
from stub_gateway import Gateway, GatewayServer, serve_in_thread

from .conftest import FakeClock, Funder, Shop
from .drivers import Driven, Maker

FEE = Decimal("0.000005")
AgentFor = Callable[..., AutoAgent]
DrivenFor = Callable[..., Driven]


def test_pays_a_sol_invoice(
    server: GatewayServer, gateway: Gateway, funded_wallet: Funder, driven_for: DrivenFor
) -> None:
    """SOL: the resource is served; payer loses price + fee, treasury gains the price."""
    wallet = funded_wallet(sol="1")
    agent = driven_for(wallet)
    treasury_before = gateway.balance(gateway.treasury)
    response = agent.get(f"{server.url}/api/v1/premium/sol")
    assert response.status_code == 200
    assert response.json()["content"] == "premium sol content, unlocked"
    assert gateway.balance(wallet.pubkey()) == 1 - Decimal("0.001") - FEE
    assert gateway.balance(gateway.treasury) - treasury_before == Decimal("0.001")
    (receipt,) = agent.payments
    assert (receipt.amount, receipt.currency, receipt.mint, receipt.network) == (
        Decimal("0.001"),
        "SOL",
        None,
        "devnet",
    )
    assert receipt.accepted
    assert receipt.recipient == str(gateway.treasury)
    settlement = decode_payment_response(response.headers["X-PAYMENT-RESPONSE"])
    assert settlement is not None
    assert settlement["transaction"] == receipt.signature == response.json()["paid"]["signature"]


@pytest.mark.parametrize(("symbol", "program"), [("USDC", "Tokenkeg"), ("PYUSD", "Tokenz")])
def test_pays_tokens_into_an_existing_token_account(
    server: GatewayServer,
    gateway: Gateway,
    funded_wallet: Funder,
    driven_for: DrivenFor,
    symbol: str,
    program: str,
) -> None:
    """USDC (Token) and PYUSD (Token-2022): tokens move exactly; SOL pays only the fee."""
    wallet = funded_wallet(sol="1", **{symbol.lower(): "1"})
    agent = driven_for(wallet)
    treasury_before = gateway.balance(gateway.treasury, symbol)
    assert agent.get(f"{server.url}/api/v1/premium/{symbol.lower()}").status_code == 200
    assert gateway.balance(wallet.pubkey(), symbol) == Decimal("0.95")
    assert gateway.balance(gateway.treasury, symbol) - treasury_before == Decimal("0.05")
    assert gateway.balance(wallet.pubkey()) == 1 - FEE
    (receipt,) = agent.payments
    assert receipt.rent_lamports == 0
    token = gateway.genesis.token(symbol)
    assert str(token.program_id).startswith(program)
    assert receipt.destination == str(
        associated_token_address(gateway.treasury, token.mint, token.program_id)
    )


def test_creates_the_payees_token_account_when_absent(
    shop: Shop, funded_wallet: Funder, driven: Maker
) -> None:
    """A payee without a USDC account gets one (the payer funds its rent) and the amount."""
    gateway = shop.gateway
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(2)})
    payee = Keypair().pubkey()
    agent = driven(
        wallet, rpc_url=shop.rpc_url, max_payment={"USDC": "2"}, create_token_accounts=True
    )
    response = agent.get(shop.price_url("USDC", "1.5", payee))
    assert response.status_code == 200
    assert gateway.balance(payee, "USDC") == Decimal("1.5")
    assert gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.5")
    rent = Decimal("0.00203928")
    assert agent.payments[0].rent_lamports == 2_039_280
    assert gateway.balance(wallet.pubkey()) == 1 - FEE - rent


@pytest.mark.parametrize(
    ("path", "currency", "price"), [("sol", "SOL", "0.001"), ("usdc", "USDC", "0.05")]
)
def test_pays_the_deployed_services_format(
    server: GatewayServer,
    gateway: Gateway,
    funded_wallet: Funder,
    driven_for: DrivenFor,
    path: str,
    currency: str,
    price: str,
) -> None:
    """?format=legacy: base-unit body, legacy transaction, plain Transfer; settled and served."""
    wallet = funded_wallet(sol="1", usdc="1")
    agent = driven_for(wallet)
    before = gateway.balance(gateway.treasury, currency)
    response = agent.get(f"{server.url}/api/v1/premium/{path}?format=legacy")
    assert response.status_code == 200
    assert gateway.balance(gateway.treasury, currency) - before == Decimal(price)
    assert agent.payments[0].format == "humanrpc-legacy"


def test_insufficient_funds_moves_nothing(
    server: GatewayServer, gateway: Gateway, funded_wallet: Funder, driven_for: DrivenFor
) -> None:
    """Too little USDC: PaymentError naming the wallet and the shortfall; no balance changes."""
    wallet = funded_wallet(sol="1", usdc="0.01")
    agent = driven_for(wallet)
    settled_before = len(gateway.desk.settlements)
    treasury_before = gateway.balance(gateway.treasury, "USDC")
    with pytest.raises(PaymentError) as caught:
        agent.get(f"{server.url}/api/v1/premium/usdc")
    assert caught.value.reason == "insufficient_funds"
    assert agent.address in str(caught.value)
    assert "0.04 USDC" in str(caught.value)
    assert gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.01")
    assert gateway.balance(wallet.pubkey()) == 1
    assert gateway.balance(gateway.treasury, "USDC") == treasury_before
    assert len(gateway.desk.settlements) == settled_before
    assert agent.payments == []


def test_a_replayed_payment_is_refused_unless_it_is_the_same_request(driven: Maker) -> None:
    """The same X-PAYMENT on another request is refused; the very same request within two
    minutes gets the very same answer (a client retrying a lost one); later it is refused.
    Money moves once."""
    clock = FakeClock()
    with serve_in_thread(clock=clock) as running:
        gateway = running.gateway
        wallet = Keypair()
        gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
        agent = driven(wallet, rpc_url=running.rpc_url, capture=True)
        first = agent.get(f"{running.url}/api/v1/premium/sol")
        assert first.status_code == 200
        (header,) = agent.sent_payments
        after_first = (gateway.balance(wallet.pubkey()), gateway.balance(gateway.treasury))

        def present(path: str) -> requests.Response:
            return requests.get(f"{running.url}{path}", headers={"X-PAYMENT": header}, timeout=10)

        same = present("/api/v1/premium/sol")
        assert (same.status_code, same.content) == (200, first.content)
        elsewhere = present("/api/v1/premium/usdc")
        assert elsewhere.status_code == 402
        assert elsewhere.json()["reason"] == "wrong_resource"
        other_query = present("/api/v1/premium/sol?page=2")
        assert other_query.status_code == 402
        assert other_query.json()["reason"] == "invoice_already_paid"
        clock.now += 121
        late = present("/api/v1/premium/sol")
        assert late.status_code == 402
        assert late.json()["reason"] == "invoice_already_paid"
        assert (gateway.balance(wallet.pubkey()), gateway.balance(gateway.treasury)) == after_first
        assert len(gateway.desk.settlements) == 1


def test_server_answering_402_after_payment_gets_paid_once(
    shop: Shop, funded_wallet: Funder, driven: Maker
) -> None:
    """Paid, then 402 again: PaymentError with the signature; exactly one payment on the ledger."""
    gateway = shop.gateway
    wallet = Keypair()
    gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    agent = driven(wallet, rpc_url=shop.rpc_url)
    with pytest.raises(PaymentError) as caught:
        agent.get(f"{shop.url}/hostile/still-402")
    error = caught.value
    assert error.reason == "payment_refused"
    assert "we_lost_it" in str(error)
    (receipt,) = agent.payments
    assert error.signature == receipt.signature
    assert not receipt.accepted
    assert gateway.balance(wallet.pubkey()) == 1 - Decimal("0.001") - FEE


def test_an_expired_blockhash_is_replaced_once_and_paid_once(
    funded_wallet: Funder, driven: Maker
) -> None:
    """Refused for an expired blockhash that provably never landed: re-signed once, paid once."""
    clock = FakeClock()
    with serve_in_thread(clock=clock) as running:
        gateway = running.gateway
        wallet = Keypair()
        gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
        agent = driven(wallet, rpc_url=running.rpc_url, journal_path=":memory:")
        assert agent.get(f"{running.url}/api/v1/premium/sol").status_code == 200
        clock.now += 61  # > 150 slots: the agent's cached blockhash is no longer valid
        assert agent.get(f"{running.url}/api/v1/premium/sol").status_code == 200
        assert gateway.balance(wallet.pubkey()) == 1 - 2 * (Decimal("0.001") + FEE)
        first, expired, replacement = agent.payments
        assert (first.state, expired.state, replacement.state) == ("accepted", "failed", "accepted")
        assert expired.landed is False
        assert expired.error_reason is not None
        assert "replaced" in expired.error_reason
        assert replacement.replaces == expired.id
        assert replacement.signature != expired.signature
        assert agent.budget["SOL"].spent == 2 * (Decimal("0.001") + FEE)


def test_memo_references_are_settled(funded_wallet: Funder, driven: Maker) -> None:
    """A gateway issuing text references (memo style) is paid through an SPL Memo."""
    with serve_in_thread(reference_style="memo") as running:
        gateway = running.gateway
        wallet = Keypair()
        gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(1)})
        agent = driven(wallet, rpc_url=running.rpc_url)
        for path in ("sol", "usdc"):
            response = agent.get(f"{running.url}/api/v1/premium/{path}")
            assert response.status_code == 200
            assert len(response.json()["paid"]["reference"]) == 32
        assert gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.95")


def test_wrong_network_is_refused_before_any_rpc(
    server: GatewayServer, funded_wallet: Funder, driven: Maker
) -> None:
    """An agent on mainnet-beta meets a devnet invoice: refused, no RPC call, nothing paid."""
    agent = driven(funded_wallet(sol="1"), rpc_url=server.rpc_url, network="mainnet-beta")
    with pytest.raises(InvoiceValidationError) as caught:
        agent.get(f"{server.url}/api/v1/premium/sol")
    assert caught.value.field == "invoice.network"
    assert agent.rpc_stats.round_trips == 0


def test_stream_body_that_cannot_be_replayed_is_not_paid(shop: Shop, funded_wallet: Funder) -> None:
    """A consumed generator body cannot be re-sent, so the 402 is not paid at all."""
    # Single driver: what counts as a one-shot stream body is each transport's own type.
    wallet = Keypair()
    shop.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    agent = AutoAgent(wallet, rpc_url=shop.rpc_url)

    def chunks() -> Iterator[bytes]:
        yield b"part one, "
        yield b"part two"

    with pytest.raises(PaymentError, match="stream"):
        agent.post(shop.price_url("SOL", "0.001"), data=chunks())
    assert shop.gateway.balance(wallet.pubkey()) == 1


def test_seekable_file_body_is_rewound_for_the_paid_retry(shop: Shop, tmp_path: object) -> None:
    """A file body is rewound and sent again in full with the payment."""
    # Single driver: a requests file body (httpx takes bytes or iterators as content=).
    import io

    wallet = Keypair()
    shop.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    agent = AutoAgent(wallet, rpc_url=shop.rpc_url)
    before = len(shop.seen)
    response = agent.post(f"{shop.url}/echo", data=io.BytesIO(b"file contents"))
    assert response.status_code == 200
    bodies = [r["body"] for r in shop.seen[before:]]
    assert bodies == [b"file contents", b"file contents"]


def test_concurrent_payments_from_one_agent(
    server: GatewayServer, gateway: Gateway, funded_wallet: Funder, agent_for: AgentFor
) -> None:
    """Eight threads paying at once: eight payments, each settled once, balances exact."""
    # Single driver: thread-level concurrency of the sync agent.
    wallet = funded_wallet(sol="1", usdc="1")
    agent = agent_for(wallet)
    statuses: list[int] = []

    def buy() -> None:
        statuses.append(agent.get(f"{server.url}/api/v1/premium/usdc").status_code)

    threads = [threading.Thread(target=buy) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 8
    assert len({p.signature for p in agent.payments}) == 8
    assert gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.6")
    assert gateway.balance(wallet.pubkey()) == 1 - 8 * FEE


def test_faucet_funds_a_new_wallet(server: GatewayServer, gateway: Gateway) -> None:
    """POST /api/v1/faucet gives SOL and USDC (creating the token account)."""
    address = str(Keypair().pubkey())
    reply = requests.post(
        f"{server.url}/api/v1/faucet",
        json={"address": address, "sol": "2.5", "usdc": 10},
        timeout=10,
    )
    assert reply.status_code == 200
    assert reply.json()["balances"] == {"SOL": "2.5", "USDC": "10", "PYUSD": "0"}
    assert gateway.balance(address) == Decimal("2.5")
    assert gateway.balance(address, "USDC") == 10


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"address": "nope"}, "bad_address"),
        ({"address": str(Keypair().pubkey()), "sol": "-1"}, "bad_amount"),
        ({"address": str(Keypair().pubkey()), "usdc": "99999999"}, "too_much"),
        ([], "bad_request"),
    ],
)
def test_faucet_refuses_bad_requests(server: GatewayServer, body: object, reason: str) -> None:
    """The faucet answers 400 with a reason for bad input."""
    reply = requests.post(f"{server.url}/api/v1/faucet", json=body, timeout=10)
    assert reply.status_code == 400
    assert reply.json()["reason"] == reason


def test_info_describes_the_network(server: GatewayServer, gateway: Gateway) -> None:
    """GET /api/v1/info: network, RPC URL, payee, mints and prices."""
    info = requests.get(f"{server.url}/api/v1/info", timeout=10).json()
    assert info["network"] == "devnet"
    assert info["rpc_url"] == server.rpc_url
    assert info["recipient"] == str(gateway.treasury)
    assert info["mints"]["USDC"]["mint"] == "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU"
    assert info["mints"]["PYUSD"]["program"] == "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb"
    assert info["prices"]["usdc"] == {
        "amount": "0.05",
        "currency": "USDC",
        "url": f"{server.url}/api/v1/premium/usdc",
    }


def test_unpaid_request_gets_a_fresh_design_document_invoice(
    server: GatewayServer, gateway: Gateway
) -> None:
    """Each unpaid request gets a 402 in the design document's format with a unique reference."""
    first = requests.get(f"{server.url}/api/v1/premium/usdc", timeout=10)
    second = requests.get(f"{server.url}/api/v1/premium/usdc", timeout=10)
    assert first.status_code == second.status_code == 402
    body = first.json()
    assert body["status"] == "payment_required"
    assert set(body["invoice"]) == {
        "amount",
        "currency",
        "mint",
        "recipient",
        "reference",
        "network",
    }
    assert body["invoice"]["amount"] == 0.05
    assert body["invoice"]["reference"] != second.json()["invoice"]["reference"]
    assert body["message"] == "0.05 USDC required to unlock /api/v1/premium/usdc"


def test_legacy_unpaid_body_matches_the_deployed_service(
    server: GatewayServer, gateway: Gateway
) -> None:
    """?format=legacy answers the deployed service's payment body, amounts in base units."""
    body = requests.get(f"{server.url}/api/v1/premium/usdc?format=legacy", timeout=10).json()
    payment = body["payment"]
    assert payment["amount"] == 50_000
    assert payment["amountUSDC"] == 0.05
    assert payment["cluster"] == "devnet"
    assert payment["recipientWallet"] == str(gateway.treasury)
    token = requests.get(f"{server.url}/api/v1/premium/pyusd?format=legacy", timeout=10)
    assert token.status_code == 400


def test_x_payment_header_is_the_design_document_format(
    server: GatewayServer, funded_wallet: Funder, driven_for: DrivenFor
) -> None:
    """The header is base64 JSON: x402Version 1, scheme solana, network, serializedTransaction."""
    agent = driven_for(funded_wallet(sol="1"), capture=True)
    agent.get(f"{server.url}/api/v1/premium/sol")
    document = json.loads(base64.b64decode(agent.sent_payments[0]))
    assert set(document) == {"x402Version", "scheme", "network", "payload"}
    assert (document["x402Version"], document["scheme"], document["network"]) == (
        1,
        "solana",
        "devnet",
    )
    assert set(document["payload"]) == {"serializedTransaction"}


def test_balance_reads_the_wallet(
    server: GatewayServer, gateway: Gateway, funded_wallet: Funder, driven_for: DrivenFor
) -> None:
    """agent.balance() reads SOL and token balances from the chain, matching the ledger."""
    wallet = funded_wallet(sol="1.25", usdc="3.5", pyusd="2")
    agent = driven_for(wallet)
    assert agent.balance() == Decimal("1.25")
    assert agent.balance("usdc") == Decimal("3.5")
    assert agent.balance(mint=str(gateway.genesis.token("PYUSD").mint)) == 2
    assert driven_for(Keypair()).balance("USDC") == 0


def test_balance_of_an_unknown_symbol_asks_for_the_mint(
    server: GatewayServer, driven_for: DrivenFor
) -> None:
    """An unknown symbol without a mint is a configuration error that says to pass mint=."""
    from human_rpc_sdk import SDKConfigurationError

    with pytest.raises(SDKConfigurationError, match="mint="):
        driven_for(Keypair()).balance("DOGE")


def test_receipt_fee_counts_network_fee_and_rent() -> None:
    """receipt.fee is the SOL spent beyond the amount: network fee plus account rent."""
    from datetime import UTC, datetime

    from human_rpc_sdk import PaymentReceipt

    receipt = PaymentReceipt(
        url="u", amount=Decimal(1), currency="USDC", mint=None, recipient="r", reference=None,
        network="devnet", signature="s", time=datetime.now(UTC), atomic_amount=1, payer="p",
        destination="d", fee_lamports=5_000, rent_lamports=2_039_280,
    )  # fmt: skip
    assert receipt.fee == Decimal("0.00204428")
    assert not receipt.accepted


def test_cookies_set_by_the_402_go_with_the_paid_retry(shop: Shop, driven: Maker) -> None:
    """A server that binds its invoice to a session cookie gets that cookie back with payment."""
    wallet = Keypair()
    shop.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    agent = driven(wallet, rpc_url=shop.rpc_url)
    cookies = {"mine": "1"}
    response = agent.get(f"{shop.url}/session-bound", cookies=cookies)
    assert response.status_code == 200
    assert response.json() == {"session": "s-42"}
    assert cookies == {"mine": "1"}
    assert shop.gateway.balance(wallet.pubkey()) == 1 - Decimal("0.000001") - FEE
