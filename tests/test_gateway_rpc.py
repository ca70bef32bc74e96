"""The stub gateway's Solana JSON-RPC: every answer parses with solders / solana-py types."""

from __future__ import annotations

import asyncio
import base64
import json
from decimal import Decimal
from typing import Any

import pytest
import requests
from solders.account_decoder import UiAccountEncoding
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.rpc.config import (
    RpcAccountInfoConfig,
    RpcSendTransactionConfig,
    RpcSignatureStatusConfig,
    RpcSimulateTransactionConfig,
)
from solders.rpc.requests import (
    GetAccountInfo,
    GetBalance,
    GetHealth,
    GetLatestBlockhash,
    GetMinimumBalanceForRentExemption,
    GetMultipleAccounts,
    GetSignatureStatuses,
    GetSlot,
    GetTokenAccountBalance,
    GetVersion,
    IsBlockhashValid,
    RequestAirdrop,
    SendVersionedTransaction,
    SimulateVersionedTransaction,
)
from solders.rpc.responses import (
    GetAccountInfoResp,
    GetBalanceResp,
    GetHealthResp,
    GetLatestBlockhashResp,
    GetMinimumBalanceForRentExemptionResp,
    GetMultipleAccountsResp,
    GetSignatureStatusesResp,
    GetSlotResp,
    GetTokenAccountBalanceResp,
    GetVersionResp,
    IsBlockhashValidResp,
    RequestAirdropResp,
    SendTransactionResp,
    SimulateTransactionResp,
)
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from human_rpc_sdk.solana_utils import associated_token_address
from stub_gateway import Gateway, GatewayServer

from .conftest import Funder

SEND = RpcSendTransactionConfig()  # solders only states "encoding": "base64" with a config


def call(server: GatewayServer, body: Any) -> Any:
    reply = requests.post(
        server.rpc_url, data=body if isinstance(body, str) else json.dumps(body), timeout=10
    )
    assert reply.status_code == 200
    return reply.json()


def parse(server: GatewayServer, request: Any, response_type: Any) -> Any:
    """Send a solders request, check the envelope, parse with the solders response type."""
    envelope = call(server, request.to_json())
    assert "error" not in envelope, envelope
    assert envelope["jsonrpc"] == "2.0"
    assert envelope["id"] == request.id
    parsed = response_type.from_json(json.dumps(envelope))
    assert isinstance(parsed, response_type), parsed
    return parsed


def transfer_tx(
    server: GatewayServer, payer: Keypair, to: Any, lamports: int
) -> VersionedTransaction:
    blockhash = parse(server, GetLatestBlockhash(), GetLatestBlockhashResp).value.blockhash
    ix = transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=to, lamports=lamports))
    return VersionedTransaction(MessageV0.try_compile(payer.pubkey(), [ix], [], blockhash), [payer])


def test_every_method_answers_in_the_wire_format(
    server: GatewayServer, gateway: Gateway, funded_wallet: Funder
) -> None:
    """Each supported method's answer parses with its solders response type."""
    payer = funded_wallet(sol="2", usdc="3")
    payee = Keypair().pubkey()
    config = RpcAccountInfoConfig(encoding=UiAccountEncoding.Base64)
    latest = parse(server, GetLatestBlockhash(id=7), GetLatestBlockhashResp)
    # lastValidBlockHeight counts blocks, like getBlockHeight, not slots (the stub's differ).
    height = call(server, {"jsonrpc": "2.0", "id": 1, "method": "getBlockHeight"})["result"]
    assert latest.value.last_valid_block_height >= height
    assert (
        parse(server, IsBlockhashValid(latest.value.blockhash), IsBlockhashValidResp).value is True
    )
    info = parse(server, GetAccountInfo(payer.pubkey(), config), GetAccountInfoResp)
    assert info.value.lamports == 2 * 10**9
    many = parse(
        server, GetMultipleAccounts([payer.pubkey(), payee], config), GetMultipleAccountsResp
    )
    assert many.value[1] is None
    assert parse(server, GetBalance(payer.pubkey()), GetBalanceResp).value == 2 * 10**9
    usdc = gateway.genesis.token("USDC")
    ata = associated_token_address(payer.pubkey(), usdc.mint, usdc.program_id)
    token = parse(server, GetTokenAccountBalance(ata), GetTokenAccountBalanceResp)
    assert (token.value.amount, token.value.decimals, token.value.ui_amount_string) == (
        "3000000",
        6,
        "3",
    )
    assert (
        parse(
            server, GetMinimumBalanceForRentExemption(0), GetMinimumBalanceForRentExemptionResp
        ).value
        == 890_880
    )
    tx = transfer_tx(server, payer, payee, 10**6)
    simulated = parse(
        server,
        SimulateVersionedTransaction(tx, RpcSimulateTransactionConfig(sig_verify=True)),
        SimulateTransactionResp,
    )
    assert simulated.value.err is None
    assert simulated.value.logs
    sent = parse(server, SendVersionedTransaction(tx, SEND), SendTransactionResp)
    assert sent.value == tx.signatures[0]
    statuses = parse(
        server,
        GetSignatureStatuses([sent.value, Keypair().sign_message(b"x")]),
        GetSignatureStatusesResp,
    )
    assert statuses.value[0].err is None
    assert statuses.value[1] is None
    airdrop = parse(server, RequestAirdrop(payee, 5 * 10**9), RequestAirdropResp)
    assert (
        parse(server, GetSignatureStatuses([airdrop.value]), GetSignatureStatusesResp).value[0]
        is not None
    )
    assert parse(server, GetHealth(), GetHealthResp).value == "ok"
    assert parse(server, GetVersion(), GetVersionResp).value.solana_core
    assert parse(server, GetSlot(), GetSlotResp).value >= 1
    assert gateway.balance(payee) == Decimal("5.001")


def test_account_encodings(server: GatewayServer, funded_wallet: Funder) -> None:
    """binary (default), base58 and base64 encodings carry the same bytes; space is the size."""
    payer = funded_wallet(usdc="1")
    mint = call(
        server,
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "getAccountInfo",
            "params": ["4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU", {"encoding": "base64"}],
        },
    )
    value = mint["result"]["value"]
    raw = base64.b64decode(value["data"][0])
    assert value["space"] == len(raw) == 82
    default = call(
        server,
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "getAccountInfo",
            "params": ["4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU"],
        },
    )
    parsed = GetAccountInfoResp.from_json(json.dumps(default))
    assert isinstance(parsed, GetAccountInfoResp)
    assert parsed.value is not None
    assert parsed.value.data == raw
    b58 = call(
        server,
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "getAccountInfo",
            "params": [str(payer.pubkey()), {"encoding": "base58"}],
        },
    )
    assert b58["result"]["value"]["data"] == ["", "base58"]


def test_batches_answer_each_call_by_id(server: GatewayServer) -> None:
    """A JSON-RPC batch gets one answer per call, matched by id."""
    answers = call(
        server,
        [
            {"jsonrpc": "2.0", "id": "a", "method": "getSlot"},
            {"jsonrpc": "2.0", "id": 9, "method": "getHealth"},
        ],
    )
    assert {a["id"] for a in answers} == {"a", 9}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("{not json", -32700),
        ([], -32600),
        ({"jsonrpc": "1.0", "id": 1, "method": "getSlot"}, -32600),
        ({"jsonrpc": "2.0", "id": 1, "method": "getNothing"}, -32601),
        ({"jsonrpc": "2.0", "id": 1, "method": "getBalance", "params": ["bad key"]}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "getBalance", "params": []}, -32602),
        (
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "sendTransaction",
                "params": ["AAAA", {"encoding": "base64"}],
            },
            -32602,
        ),
        (
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "requestAirdrop",
                "params": [str(Keypair().pubkey()), 0],
            },
            -32602,
        ),
    ],
)
def test_errors_use_json_rpc_codes(server: GatewayServer, body: Any, code: int) -> None:
    """Malformed calls get JSON-RPC error objects with the standard codes."""
    answer = call(server, body)
    assert answer["error"]["code"] == code
    assert answer["error"]["message"]


def test_failed_preflight_is_error_32002_and_moves_nothing(
    server: GatewayServer, gateway: Gateway, funded_wallet: Funder
) -> None:
    """A transfer beyond the balance fails preflight with -32002 and the logs; balances stay."""
    payer = funded_wallet(sol="1")
    payee = Keypair().pubkey()
    tx = transfer_tx(server, payer, payee, 5 * 10**9)
    answer = call(server, SendVersionedTransaction(tx, SEND).to_json())
    assert answer["error"]["code"] == -32002
    assert "insufficient lamports" in json.dumps(answer["error"]["data"]["logs"])
    assert gateway.balance(payer.pubkey()) == 1
    assert gateway.balance(payee) == 0


def test_skip_preflight_lands_the_failure_and_charges_the_fee(
    server: GatewayServer, gateway: Gateway, funded_wallet: Funder
) -> None:
    """With skipPreflight a failing transaction lands as failed and pays its fee, as on chain."""
    payer = funded_wallet(sol="1")
    tx = transfer_tx(server, payer, Keypair().pubkey(), 5 * 10**9)
    config = RpcSendTransactionConfig(skip_preflight=True)
    sent = parse(server, SendVersionedTransaction(tx, config), SendTransactionResp)
    status = parse(
        server,
        GetSignatureStatuses([sent.value], RpcSignatureStatusConfig(True)),
        GetSignatureStatusesResp,
    )
    assert status.value[0].err is not None
    assert gateway.balance(payer.pubkey()) == Decimal("0.999995")


def test_replayed_transaction_is_refused(server: GatewayServer, funded_wallet: Funder) -> None:
    """Sending the same signed transaction twice: the second is refused as already processed."""
    payer = funded_wallet(sol="1")
    tx = transfer_tx(server, payer, Keypair().pubkey(), 10**6)
    parse(server, SendVersionedTransaction(tx, SEND), SendTransactionResp)
    again = call(server, SendVersionedTransaction(tx, SEND).to_json())
    assert "already processed" in again["error"]["message"]


def test_solana_py_async_client_talks_to_the_gateway(
    server: GatewayServer, funded_wallet: Funder
) -> None:
    """solana-py's own client reads balances, blockhashes and sends through the gateway."""
    from solana.rpc.async_api import AsyncClient

    payer = funded_wallet(sol="1")
    payee = Keypair().pubkey()

    async def scenario() -> tuple[int, int]:
        async with AsyncClient(server.rpc_url) as client:
            before = (await client.get_balance(payer.pubkey())).value
            blockhash = (await client.get_latest_blockhash()).value.blockhash
            ix = transfer(
                TransferParams(from_pubkey=payer.pubkey(), to_pubkey=payee, lamports=10**6)
            )
            tx = VersionedTransaction(
                MessageV0.try_compile(payer.pubkey(), [ix], [], blockhash), [payer]
            )
            signature = (await client.send_transaction(tx)).value
            await client.confirm_transaction(signature)
            return before, (await client.get_balance(payee)).value

    before, received = asyncio.run(scenario())
    assert before == 10**9
    assert received == 10**6


def test_base58_is_the_default_transaction_encoding(
    server: GatewayServer, gateway: Gateway, funded_wallet: Funder
) -> None:
    """Without an encoding, sendTransaction reads base58, as a Solana node does."""
    import base58

    payer = funded_wallet(sol="1")
    payee = Keypair().pubkey()
    tx = transfer_tx(server, payer, payee, 10**6)
    answer = call(
        server,
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "sendTransaction",
            "params": [base58.b58encode(bytes(tx)).decode()],
        },
    )
    assert answer["result"] == str(tx.signatures[0])
    assert gateway.balance(payee) == Decimal("0.001")
