"""Hostile input to every gateway route: a 4xx JSON error (or a 2xx), never a 5xx, and a
refused request moves nothing on the ledger.

The specific cases are the inputs that once answered 500; the properties throw Hypothesis at
each route's body, query and payment header.
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from human_rpc_sdk._headers import b64json, encode_payment_header
from stub_gateway import Gateway, GatewayServer, serve_in_thread
from stub_gateway.faults import MODES

# -- the gateway under attack, and what "nothing moved" means ---------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[GatewayServer]:
    """A gateway of its own (the properties arm faults and create tasks); people vote."""
    with serve_in_thread(review_policy="manual") as running:
        yield running


@pytest.fixture(scope="module")
def owners(server: GatewayServer) -> list[Pubkey]:
    """Two funded wallets and an empty one, whose addresses the hostile bodies use."""
    made = [Keypair().pubkey() for _ in range(3)]
    for owner in made[:2]:
        server.gateway.fund(owner, {"SOL": Decimal(1), "USDC": Decimal(5), "PYUSD": Decimal(5)})
    return made


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as made:
        yield made


@pytest.fixture(autouse=True)
def _disarm(server: GatewayServer) -> Iterator[None]:
    yield
    server.gateway.faults.clear()


def snapshot(gateway: Gateway, owners: list[Pubkey]) -> dict[str, Any]:
    """Balances of the wallets, treasury and fee payer, the mints' supplies, settlements."""
    keys = [*owners, gateway.treasury, gateway.genesis.fee_payer.pubkey()]
    state: dict[str, Any] = {
        f"{key} {currency}": gateway.balance(key, currency)
        for key in keys
        for currency in ("SOL", "USDC", "PYUSD")
    }
    for token in gateway.genesis.tokens.values():
        account = gateway.ledger.account(token.mint)  # an SPL mint: u64 supply at 36..44
        assert account is not None
        state[f"{token.symbol} supply"] = int.from_bytes(account.data[36:44], "little")
    state["settlements"] = len(gateway.desk.settlements)
    state["tasks"] = len(gateway.tasks.all())
    return state


def assert_refused_as_json(response: requests.Response) -> dict[str, Any]:
    """A 4xx whose body is a JSON object (the gateway's error shape when it is an error)."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict)
    return body


def assert_json_error(response: requests.Response, status: int = 400) -> str:
    body = assert_refused_as_json(response)
    assert response.status_code == status, (response.status_code, body)
    reason = body["error"]["reason"] if isinstance(body["error"], dict) else body["reason"]
    assert isinstance(reason, str)
    assert reason
    return reason


# -- hostile parts ----------------------------------------------------------------------------


def _transfer_message(payer: Pubkey) -> MessageV0:
    instruction = transfer(
        TransferParams(from_pubkey=payer, to_pubkey=Pubkey.new_unique(), lamports=1000)
    )
    return MessageV0.try_compile(payer, [instruction], [], Hash.new_unique())


def unsigned_transaction() -> VersionedTransaction:
    """A well-formed transfer with zero signatures (its message wants one)."""
    return VersionedTransaction.populate(_transfer_message(Keypair().pubkey()), [])


def zero_signature_b64() -> str:
    return base64.b64encode(bytes(unsigned_transaction())).decode()


def signed_b64(trailing: bytes = b"") -> str:
    payer = Keypair()
    transaction = VersionedTransaction(_transfer_message(payer.pubkey()), [payer])
    return base64.b64encode(bytes(transaction) + trailing).decode()


DEEP_JSON = b"[" * 200_000 + b"]" * 200_000
DEEP_OBJECT = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
HOSTILE_AMOUNTS = ["²", "١٢٣", "1" * 5000, "9" * 30, "-1", "0", "1e9", "0x10", "NaN", "", " 1"]
HOSTILE_STRINGS = [
    *HOSTILE_AMOUNTS,
    "\x00",
    "\x1b[31mred",
    "0.0000000001",
    "../../etc/passwd",
    "A" * 300,
    "exact",
    "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1",
    "solana-devnet",
]


def _keys(gateway: Gateway, owners: list[Pubkey]) -> list[str]:
    return [
        *map(str, owners),
        str(gateway.treasury),
        str(gateway.genesis.fee_payer.pubkey()),
        *(str(t.mint) for t in gateway.genesis.tokens.values()),
    ]


def scalars(keys: list[str]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=-(10**30), max_value=10**30),
        st.floats(),  # NaN and Infinity too: Python's json reads them
        st.text(max_size=30),
        st.sampled_from(HOSTILE_STRINGS),
        st.sampled_from(keys),
        st.sampled_from(["0.5", "1", 1, "100", "0.000001", "0.0000001", "1000001"]),
    )


def json_values(keys: list[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars(keys),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
        ),
        max_leaves=12,
    )


def maybe(strategy: st.SearchStrategy[Any], keys: list[str]) -> st.SearchStrategy[Any]:
    """Mostly the plausible value, sometimes anything at all."""
    return st.one_of(strategy, strategy, json_values(keys))


def transactions() -> st.SearchStrategy[str]:
    return st.one_of(
        st.just(zero_signature_b64()),
        st.just(signed_b64()),
        st.just(signed_b64(trailing=b"\x00junk")),
        st.binary(max_size=300).map(lambda raw: base64.b64encode(raw).decode()),
        st.sampled_from(["", "not base64!", "AAAA", "AQ=="]),
    )


def requirements(gateway: Gateway, keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    facilitator = gateway.facilitator
    return st.fixed_dictionaries(
        {},
        optional={
            "scheme": maybe(st.just("exact"), keys),
            "network": maybe(st.sampled_from(facilitator.networks()), keys),
            "amount": maybe(st.sampled_from([*HOSTILE_AMOUNTS, "10000"]), keys),
            "maxAmountRequired": maybe(st.sampled_from([*HOSTILE_AMOUNTS, "10000"]), keys),
            "asset": maybe(st.sampled_from(keys), keys),
            "payTo": maybe(st.sampled_from(keys), keys),
            "maxTimeoutSeconds": maybe(st.integers(), keys),
            "extra": maybe(
                st.fixed_dictionaries({"feePayer": st.just(facilitator.fee_payer_address)}), keys
            ),
        },
    )


def payloads(gateway: Gateway, keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "x402Version": maybe(st.sampled_from([1, 2]), keys),
            "scheme": maybe(st.just("exact"), keys),
            "network": maybe(st.sampled_from(gateway.facilitator.networks()), keys),
            "accepted": maybe(requirements(gateway, keys), keys),
            "payload": maybe(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "transaction": maybe(transactions(), keys),
                        "serializedTransaction": maybe(transactions(), keys),
                    },
                ),
                keys,
            ),
        },
    )


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: bytes | None = None
    query: dict[str, str] | None = None
    headers: dict[str, str] | None = None


def as_json(value: Any) -> bytes:
    return json.dumps(value).encode()


def bodies(structured: st.SearchStrategy[Any], keys: list[str]) -> st.SearchStrategy[bytes]:
    """The route's own shape (mostly), any JSON, or bytes that are not JSON at all."""
    return st.one_of(
        structured.map(as_json),
        structured.map(as_json),
        structured.map(as_json),
        json_values(keys).map(as_json),
        st.binary(max_size=200),
    )


def route_calls(route: str, gateway: Gateway, keys: list[str]) -> st.SearchStrategy[Call]:
    """Hostile requests to one route group of the README's table."""
    headers_x402 = st.one_of(
        payloads(gateway, keys).map(b64json),
        st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=50),
        st.just(encode_payment_header(unsigned_transaction(), "devnet")),
    )
    if route == "rpc":
        request = st.fixed_dictionaries(
            {},
            optional={
                "jsonrpc": maybe(st.just("2.0"), keys),
                "id": maybe(st.integers(0, 9), keys),
                "method": maybe(
                    st.sampled_from(
                        [
                            "getBalance",
                            "getAccountInfo",
                            "getMultipleAccounts",
                            "sendTransaction",
                            "simulateTransaction",
                            "getSignatureStatuses",
                            "getSignaturesForAddress",
                            "getTokenAccountBalance",
                            "getLatestBlockhash",
                            "isBlockhashValid",
                            "getMinimumBalanceForRentExemption",
                            "requestAirdrop",
                            "getEpochInfo",
                        ]
                    ),
                    keys,
                ),
                "params": maybe(
                    st.lists(
                        st.one_of(transactions(), scalars(keys), json_values(keys)), max_size=3
                    ),
                    keys,
                ),
            },
        )
        return bodies(request | st.lists(request, max_size=3), keys).map(
            lambda body: Call("POST", "/rpc", body)
        )
    if route == "faucet":
        amount = maybe(st.sampled_from(["1", 1, "0.5", "100", "0", 0, "0.0000001"]), keys)
        faucet = st.fixed_dictionaries(
            {},
            optional={
                "address": maybe(st.sampled_from(keys), keys),
                "sol": amount,
                "usdc": amount,
                "pyusd": amount,
            },
        )
        return bodies(faucet, keys).map(lambda body: Call("POST", "/api/v1/faucet", body))
    if route == "info":
        return st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3).map(
            lambda query: Call("GET", "/api/v1/info", query=query)
        )
    if route == "premium":
        return st.builds(
            lambda name, legacy, header: Call(
                "GET",
                f"/api/v1/premium/{name}",
                query={"format": legacy} if legacy is not None else None,
                headers={"X-PAYMENT": header} if header is not None else None,
            ),
            st.sampled_from(["sol", "usdc", "pyusd", "nothing", "%00"]),
            st.none() | st.sampled_from(["legacy", "x", ""]),
            st.none() | headers_x402,
        )
    if route == "x402":
        return st.builds(
            lambda version, header: Call(
                "GET",
                f"/x402/v{version}/premium",
                headers={"X-PAYMENT": header, "PAYMENT-SIGNATURE": header},
            ),
            st.sampled_from([1, 2]),
            headers_x402,
        )
    if route == "facilitator":
        document = st.fixed_dictionaries(
            {},
            optional={
                "x402Version": maybe(st.sampled_from([1, 2]), keys),
                "paymentPayload": maybe(payloads(gateway, keys), keys),
                "paymentRequirements": maybe(requirements(gateway, keys), keys),
            },
        )
        return st.builds(
            lambda action, body: Call("POST", f"/facilitator/{action}", body),
            st.sampled_from(["verify", "settle"]),
            bodies(document, keys),
        ) | st.just(Call("GET", "/facilitator/supported"))
    if route == "tasks":
        task = st.fixed_dictionaries(
            {},
            optional={
                "text": maybe(st.just("Is this right?"), keys),
                "rewardAmount": maybe(st.sampled_from(["0.05", "0.0000001", "1001"]), keys),
                "rewardCurrency": maybe(st.sampled_from(["USDC", "SOL", "PYUSD", "BTC"]), keys),
                "reward": maybe(st.sampled_from(["0.05 USDC", "0.0000000001 SOL", "x"]), keys),
                "context": st.one_of(
                    st.none(), st.dictionaries(st.text(max_size=8), json_values(keys), max_size=3)
                ),
                "agentName": json_values(keys),
            },
        )
        return bodies(task, keys).map(lambda body: Call("POST", "/api/v1/tasks", body)) | st.text(
            max_size=20
        ).map(lambda task_id: Call("GET", f"/api/v1/tasks/{task_id.replace('/', '')}"))
    if route == "votes":
        vote = st.fixed_dictionaries(
            {},
            optional={
                "decision": maybe(st.sampled_from(["yes", "no", "maybe"]), keys),
                "userId": json_values(keys),
                "comment": json_values(keys),
            },
        )
        return st.builds(
            lambda task_id, body: Call("POST", f"/api/v1/tasks/{task_id}/votes", body),
            st.sampled_from([NEW_TASK, NEW_TASK, NEW_TASK, "task_missing", "x"]),
            bodies(vote, keys),
        )
    assert route == "faults"
    fault = st.fixed_dictionaries(
        {"mode": maybe(st.sampled_from([*MODES, "rpc_error", "rpc_slow"]), keys)},
        optional={
            name: json_values(keys)
            for name in ("count", "status", "seconds", "location", "size", "factor")
        },
    )
    return bodies(fault, keys).map(lambda body: Call("POST", "/api/v1/faults", body)) | st.just(
        Call("GET", "/api/v1/faults")
    )


NEW_TASK = "{new_task}"
"""In a path: a task created for this request (pending, waiting for people's votes)."""
ROUTES = ["rpc", "faucet", "info", "premium", "x402", "facilitator", "tasks", "votes", "faults"]


def send(session: requests.Session, server: GatewayServer, call: Call) -> requests.Response:
    headers = {"Content-Type": "application/json", **(call.headers or {})}
    return session.request(
        call.method,
        server.url + call.path,
        data=call.body,
        params=call.query,
        headers=headers,
        timeout=30,
    )


@pytest.mark.parametrize("route", ROUTES)
@given(data=st.data())
def test_hostile_requests_are_answered_4xx_or_2xx_and_a_4xx_moves_nothing(
    route: str,
    data: st.DataObject,
    server: GatewayServer,
    owners: list[Pubkey],
    session: requests.Session,
) -> None:
    """Every route: any body, query or payment header gets 2xx or 4xx, never 5xx; a 4xx is a
    JSON object and leaves every balance, supply and settlement as it was."""
    gateway = server.gateway
    call = data.draw(route_calls(route, gateway, _keys(gateway, owners)))
    task = gateway.tasks.create({"text": "Is this right?"}, 0.5, None, "hostile")
    call = replace(call, path=call.path.replace(NEW_TASK, task.id))
    before = snapshot(gateway, owners)
    response = send(session, server, call)
    assert response.status_code < 500, (call, response.status_code, response.text[:500])
    if response.status_code >= 400:
        assert_refused_as_json(response)
        assert snapshot(gateway, owners) == before, call
    gateway.faults.clear()
    read = session.get(f"{server.url}/api/v1/tasks/{task.id}", timeout=30)
    assert read.status_code == 200, (call, read.text[:500])  # whatever the votes it was given


# -- the inputs that answered 500 ---------------------------------------------------------------

JSON_ROUTES = [
    "/api/v1/faucet",
    "/api/v1/tasks",
    "/api/v1/tasks/task_missing/votes",
    "/api/v1/faults",
    "/facilitator/verify",
    "/facilitator/settle",
]


@pytest.mark.parametrize("path", [*JSON_ROUTES, "/rpc"])
@pytest.mark.parametrize("body", [DEEP_JSON, DEEP_OBJECT], ids=["array", "object"])
def test_json_nested_200k_deep_is_refused(
    server: GatewayServer, session: requests.Session, path: str, body: bytes
) -> None:
    """JSON nested 100k-200k deep: a 400 JSON error (/rpc: a JSON-RPC parse error)."""
    response = session.post(
        server.url + path, data=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    if path == "/rpc":
        assert response.status_code in (200, 400), response.text[:300]
        assert response.json()["error"]["code"] == -32700
    else:
        assert_json_error(response)


def test_a_transaction_with_zero_signatures_is_refused_everywhere(
    server: GatewayServer, session: requests.Session, owners: list[Pubkey]
) -> None:
    """A well-formed message with no signature: refused by every route that reads one."""
    gateway = server.gateway
    before = snapshot(gateway, owners)
    unsigned = unsigned_transaction()
    header = encode_payment_header(unsigned, "devnet")
    premium = session.get(f"{server.url}/api/v1/premium/sol", headers={"X-PAYMENT": header})
    assert premium.status_code == 402, premium.text
    legacy = session.get(
        f"{server.url}/api/v1/premium/sol?format=legacy", headers={"X-PAYMENT": header}
    )
    assert legacy.status_code == 402, legacy.text

    facilitator = gateway.facilitator
    wanted = {
        "scheme": "exact",
        "network": facilitator.caip2,
        "amount": "10000",
        "asset": str(gateway.genesis.token("USDC").mint),
        "payTo": str(gateway.treasury),
        "maxTimeoutSeconds": 300,
        "extra": {"feePayer": facilitator.fee_payer_address},
    }
    payload = {
        "x402Version": 2,
        "accepted": wanted,
        "payload": {"transaction": zero_signature_b64()},
    }
    for action in ("verify", "settle"):
        answer = session.post(
            f"{server.url}/facilitator/{action}",
            json={"x402Version": 2, "paymentPayload": payload, "paymentRequirements": wanted},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json().get("isValid", answer.json().get("success")) is False
    paid = session.get(
        f"{server.url}/x402/v2/premium", headers={"PAYMENT-SIGNATURE": b64json(payload)}
    )
    assert paid.status_code == 402, paid.text

    for method in ("sendTransaction", "simulateTransaction"):
        rpc = session.post(
            server.rpc_url,
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": method,
                "params": [zero_signature_b64(), {"encoding": "base64"}],
            },
        )
        assert rpc.status_code == 200, rpc.text
        assert "error" in rpc.json(), rpc.json()
    assert snapshot(gateway, owners) == before


@pytest.mark.parametrize(
    ("reward", "currency"),
    [("0.0000001", "USDC"), ("0.0000000001", "SOL"), ("0.0000001", "PYUSD")],
)
def test_a_reward_with_more_decimals_than_the_token_is_refused(
    server: GatewayServer, session: requests.Session, reward: str, currency: str
) -> None:
    """rewardAmount finer than the token's smallest unit: 400 bad_reward, no task."""
    tasks = len(server.gateway.tasks.all())
    response = session.post(
        f"{server.url}/api/v1/tasks",
        json={"text": "Is this right?", "rewardAmount": reward, "rewardCurrency": currency},
    )
    assert assert_json_error(response) == "bad_reward"
    assert currency in response.json()["error"]["message"]
    assert len(server.gateway.tasks.all()) == tasks


@pytest.mark.parametrize("amount", ["²", "١٢٣", "1" * 5000, "1.5", "-5", " 5", 5])
@pytest.mark.parametrize("field", ["amount", "maxAmountRequired"])
@pytest.mark.parametrize("action", ["verify", "settle"])
def test_odd_amounts_in_payment_requirements_are_refused(
    server: GatewayServer,
    session: requests.Session,
    owners: list[Pubkey],
    amount: object,
    field: str,
    action: str,
) -> None:
    """Unicode digits, 5,000 digits, fractions, signs or numbers as the required amount: 400."""
    gateway = server.gateway
    facilitator = gateway.facilitator
    version = 2 if field == "amount" else 1
    wanted = {
        "scheme": "exact",
        "network": facilitator.caip2 if version == 2 else facilitator.v1_network,
        field: amount,
        "asset": str(gateway.genesis.token("USDC").mint),
        "payTo": str(gateway.treasury),
        "maxTimeoutSeconds": 300,
        "extra": {"feePayer": facilitator.fee_payer_address},
    }
    payload = {"x402Version": version, "payload": {"transaction": signed_b64()}}
    if version == 2:
        payload["accepted"] = wanted
    else:
        payload.update(scheme="exact", network=wanted["network"])
    before = snapshot(gateway, owners)
    response = session.post(
        f"{server.url}/facilitator/{action}",
        json={"x402Version": version, "paymentPayload": payload, "paymentRequirements": wanted},
    )
    assert assert_json_error(response) == "bad_requirements"
    assert field in response.json()["error"]["message"]
    assert snapshot(gateway, owners) == before


@pytest.mark.parametrize(
    "fault",
    [
        {"mode": "slow_rpc", "seconds": "soon"},
        {"mode": "slow_rpc", "seconds": True},
        {"mode": "slow_rpc", "seconds": [1]},
        {"mode": "overcharge", "factor": {"x": 1}},
        {"mode": "overcharge", "factor": "lots"},
        {"mode": "overcharge", "factor": True},
        {"mode": "redirect_payment", "location": 5},
        {"mode": "huge_invoice", "size": "5"},
        {"mode": "huge_invoice", "size": 1.5},
        {"mode": "fail_rpc", "status": "500"},
        {"mode": "fail_rpc", "count": "2"},
        {"mode": "fail_rpc", "count": 1e300},
        {"mode": "fail_rpc", "location": "http://x/"},
        {"mode": "fail_rpc", "colour": "red"},
        {"mode": ["fail_rpc"]},
    ],
)
def test_fault_parameters_of_the_wrong_type_are_refused(
    server: GatewayServer, session: requests.Session, fault: dict[str, Any]
) -> None:
    """A fault parameter of the wrong type or a parameter the mode does not take: 400, unarmed."""
    response = session.post(f"{server.url}/api/v1/faults", json=fault)
    assert assert_json_error(response) in ("bad_fault", "bad_request")
    assert server.gateway.faults.armed() == []


def test_the_faucet_checks_every_amount_before_funding_any(
    server: GatewayServer, session: requests.Session
) -> None:
    """A good sol then a usdc finer than USDC's decimals: 400, and no SOL was given either."""
    address = Keypair().pubkey()
    before = snapshot(server.gateway, [address])
    response = session.post(
        f"{server.url}/api/v1/faucet",
        json={"address": str(address), "sol": "1", "usdc": "0.0000001"},
    )
    assert assert_json_error(response) == "bad_amount"
    assert "usdc" in response.json()["error"]["message"].lower()
    assert snapshot(server.gateway, [address]) == before
    assert server.gateway.balance(address) == 0


def test_fund_checks_every_amount_before_funding_any(server: GatewayServer) -> None:
    """Gateway.fund with one amount too fine for its token raises and funds nothing."""
    address = Keypair().pubkey()
    with pytest.raises(ValueError, match="USDC"):
        server.gateway.fund(address, {"SOL": Decimal(1), "USDC": Decimal("0.0000001")})
    assert server.gateway.balance(address) == 0


@pytest.mark.parametrize("path", [*JSON_ROUTES, "/rpc"])
def test_a_200_mb_body_is_refused_from_its_content_length(
    server: GatewayServer, owners: list[Pubkey], path: str
) -> None:
    """Content-Length 200 MB: 413 JSON answered from the headers alone (no body byte sent)."""
    before = snapshot(server.gateway, owners)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {server.host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {200 * 1024 * 1024}\r\n\r\n"
    ).encode()
    with socket.create_connection((server.host, server.port), timeout=5) as connection:
        connection.sendall(head)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert status_line.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"content-type: application/json" in headers.lower()
    document = json.loads(body)
    assert document["reason"] == "request_entity_too_large"
    assert "1048576 bytes" in document["error"]["message"]
    assert snapshot(server.gateway, owners) == before
