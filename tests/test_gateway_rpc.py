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
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import MessageV0, to_bytes_versioned
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
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction
from spl.token.instructions import create_associated_token_account

from human_rpc_sdk.solana_utils import associated_token_address
from stub_gateway import Gateway, GatewayServer
from stub_gateway.instructions import COMPUTE_BUDGET_PROGRAM_ID as COMPUTE_BUDGET

from .conftest import Funder
from .test_gateway_desk import fetch_invoice, plan_for, present, signed

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


# -- fidelity with real clients (Agave's behaviour) -------------------------------------------


def rpc(server: GatewayServer, method: str, *params: Any) -> Any:
    """The result of one call; fails the test on an error answer."""
    answer = call(server, {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    assert "error" not in answer, answer
    return answer["result"]


def rpc_error(server: GatewayServer, method: str, *params: Any) -> Any:
    answer = call(server, {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    assert "error" in answer, answer
    return answer["error"]


def b64(transaction: VersionedTransaction) -> str:
    return base64.b64encode(bytes(transaction)).decode("ascii")


def partly_signed(
    server: GatewayServer, client: Keypair, fee_payer: Keypair, to: Any, lamports: int
) -> VersionedTransaction:
    """``client`` moves ``lamports``; ``fee_payer`` pays the fee but has not signed yet (as an
    x402 client's payment is before the facilitator co-signs it)."""
    blockhash = parse(server, GetLatestBlockhash(), GetLatestBlockhashResp).value.blockhash
    ix = transfer(TransferParams(from_pubkey=client.pubkey(), to_pubkey=to, lamports=lamports))
    message = MessageV0.try_compile(fee_payer.pubkey(), [ix], [], blockhash)
    signature = client.sign_message(to_bytes_versioned(message))
    return VersionedTransaction.populate(message, [Signature.default(), signature])


def test_simulation_skips_signature_checks_unless_asked(
    server: GatewayServer, gateway: Gateway, funded_wallet: Funder
) -> None:
    """sigVerify defaults to false, as on Agave: a transaction the fee payer has not signed yet
    simulates (the official x402 facilitator relies on it); with sigVerify true it is a
    SignatureFailure; sending it is refused. Nothing moves."""
    client, fee_payer = funded_wallet(sol="1"), funded_wallet(sol="1")
    payee = Keypair().pubkey()
    tx = b64(partly_signed(server, client, fee_payer, payee, 10**6))
    for config in ({"encoding": "base64"}, {"encoding": "base64", "sigVerify": False}):
        value = rpc(server, "simulateTransaction", tx, config)["value"]
        assert value["err"] is None, value
        assert value["logs"]
        assert value["unitsConsumed"] > 0
        assert value["replacementBlockhash"] is None
    checked = rpc(server, "simulateTransaction", tx, {"encoding": "base64", "sigVerify": True})
    assert checked["value"]["err"] == "SignatureFailure"
    refused = rpc_error(server, "sendTransaction", tx, {"encoding": "base64"})
    assert refused["code"] == -32002
    assert gateway.balance(client.pubkey()) == gateway.balance(fee_payer.pubkey()) == 1
    assert gateway.balance(payee) == 0


def test_simulation_replaces_the_blockhash_when_asked(
    server: GatewayServer, funded_wallet: Funder
) -> None:
    """replaceRecentBlockhash runs an unknown-blockhash transaction over the newest blockhash
    and answers which (replacementBlockhash); without it the blockhash is not found; with
    sigVerify as well it is an invalid request, as on Agave."""
    payer = funded_wallet(sol="1")
    ix = transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=payer.pubkey(), lamports=1))
    stale = VersionedTransaction(
        MessageV0.try_compile(payer.pubkey(), [ix], [], Hash.new_unique()), [payer]
    )
    plain = rpc(server, "simulateTransaction", b64(stale), {"encoding": "base64"})
    assert plain["value"]["err"] == "BlockhashNotFound"
    replaced = rpc(
        server,
        "simulateTransaction",
        b64(stale),
        {"encoding": "base64", "replaceRecentBlockhash": True},
    )["value"]
    assert replaced["err"] is None, replaced
    latest = rpc(server, "getLatestBlockhash")["value"]
    assert replaced["replacementBlockhash"] == latest
    both = rpc_error(
        server,
        "simulateTransaction",
        b64(stale),
        {"encoding": "base64", "replaceRecentBlockhash": True, "sigVerify": True},
    )
    assert both["code"] == -32602


def test_json_parsed_token_mints_and_accounts(server: GatewayServer, gateway: Gateway) -> None:
    """jsonParsed gives Agave's parsed shape for Token and Token-2022 mints and token accounts,
    in getAccountInfo and getMultipleAccounts; other accounts fall back to base64."""
    owner = Keypair().pubkey()
    gateway.fund(owner, {"SOL": Decimal(1), "USDC": Decimal("1.5"), "PYUSD": Decimal("0.25")})
    usdc, pyusd = gateway.genesis.token("USDC"), gateway.genesis.token("PYUSD")
    config = {"encoding": "jsonParsed"}
    for token, program, amount, ui in (
        (usdc, "spl-token", "1500000", "1.5"),
        (pyusd, "spl-token-2022", "250000", "0.25"),
    ):
        mint = rpc(server, "getAccountInfo", str(token.mint), config)["value"]
        assert mint["owner"] == str(token.program_id)
        assert mint["data"]["program"] == program
        assert mint["data"]["space"] == mint["space"]
        assert mint["data"]["parsed"]["type"] == "mint"
        info = mint["data"]["parsed"]["info"]
        assert info["decimals"] == 6
        assert info["isInitialized"] is True
        assert int(info["supply"]) >= int(amount)
        address = associated_token_address(owner, token.mint, token.program_id)
        account = rpc(server, "getAccountInfo", str(address), config)["value"]
        assert account["data"]["program"] == program
        assert account["data"]["parsed"]["type"] == "account"
        info = account["data"]["parsed"]["info"]
        assert {k: info[k] for k in ("isNative", "mint", "owner", "state")} == {
            "isNative": False,
            "mint": str(token.mint),
            "owner": str(owner),
            "state": "initialized",
        }
        assert info["tokenAmount"] == {
            "amount": amount,
            "decimals": 6,
            "uiAmount": float(ui),
            "uiAmountString": ui,
        }
        many = rpc(server, "getMultipleAccounts", [str(token.mint), str(address)], config)
        assert many["value"] == [mint, account]
    wallet = rpc(server, "getAccountInfo", str(owner), config)["value"]
    assert wallet["data"] == ["", "base64"]


def test_token_accounts_by_owner(server: GatewayServer, gateway: Gateway) -> None:
    """getTokenAccountsByOwner by mint or by program, in base64 or jsonParsed."""
    owner = Keypair().pubkey()
    gateway.fund(owner, {"SOL": Decimal(1), "USDC": Decimal(2), "PYUSD": Decimal(3)})
    usdc, pyusd = gateway.genesis.token("USDC"), gateway.genesis.token("PYUSD")
    by_mint = rpc(
        server,
        "getTokenAccountsByOwner",
        str(owner),
        {"mint": str(usdc.mint)},
        {"encoding": "base64"},
    )["value"]
    assert [a["pubkey"] for a in by_mint] == [
        str(associated_token_address(owner, usdc.mint, usdc.program_id))
    ]
    raw = base64.b64decode(by_mint[0]["account"]["data"][0])
    assert len(raw) == 165
    assert raw[32:64] == bytes(owner)
    by_program = rpc(
        server,
        "getTokenAccountsByOwner",
        str(owner),
        {"programId": str(pyusd.program_id)},
        {"encoding": "jsonParsed"},
    )["value"]
    assert len(by_program) == 1
    parsed = by_program[0]["account"]["data"]["parsed"]["info"]
    assert (parsed["mint"], parsed["tokenAmount"]["uiAmountString"]) == (str(pyusd.mint), "3")
    nobody = rpc(
        server, "getTokenAccountsByOwner", str(Keypair().pubkey()), {"mint": str(usdc.mint)}
    )
    assert nobody["value"] == []
    assert rpc_error(server, "getTokenAccountsByOwner", str(owner), {})["code"] == -32602


def test_get_transaction_reports_fee_and_balances(
    server: GatewayServer, gateway: Gateway, funded_wallet: Funder
) -> None:
    """getTransaction answers the landed transaction with its fee and balances before and
    after (in key order); a v0 transaction needs maxSupportedTransactionVersion, as on Agave;
    an unknown signature is null."""
    payer = funded_wallet(sol="1")
    payee = Keypair().pubkey()
    tx = transfer_tx(server, payer, payee, 10**6)
    signature = parse(server, SendVersionedTransaction(tx, SEND), SendTransactionResp).value
    found = rpc(server, "getTransaction", str(signature), {"maxSupportedTransactionVersion": 0})
    meta = found["meta"]
    assert (found["version"], meta["err"], meta["status"], meta["fee"]) == (
        0,
        None,
        {"Ok": None},
        5000,
    )
    keys = found["transaction"]["message"]["accountKeys"]
    assert keys[:2] == [str(payer.pubkey()), str(payee)]
    assert meta["preBalances"][:2] == [10**9, 0]
    assert meta["postBalances"][:2] == [10**9 - 10**6 - 5000, 10**6]
    assert gateway.balance(payer.pubkey()) == Decimal("0.998995")
    assert found["transaction"]["signatures"] == [str(signature)]
    assert meta["logMessages"]
    assert meta["computeUnitsConsumed"] > 0
    encoded = rpc(
        server,
        "getTransaction",
        str(signature),
        {"maxSupportedTransactionVersion": 0, "encoding": "base64"},
    )
    assert encoded["transaction"] == [b64(tx), "base64"]
    assert rpc_error(server, "getTransaction", str(signature))["code"] == -32015
    assert rpc(server, "getTransaction", str(Signature.new_unique())) is None


def test_get_transaction_reports_token_balances(
    server: GatewayServer, gateway: Gateway, funded_wallet: Funder
) -> None:
    """pre/postTokenBalances list the token accounts a token payment touched."""
    wallet = funded_wallet(sol="1", usdc="1")
    path = "/api/v1/premium/usdc"
    invoice = fetch_invoice(server, path)
    tx = signed(server, plan_for(gateway, wallet, invoice), wallet)
    paid = present(server, path, tx)
    assert paid.status_code == 200, paid.text
    found = rpc(
        server, "getTransaction", str(tx.signatures[0]), {"maxSupportedTransactionVersion": 0}
    )
    pre = {
        b["owner"]: b["uiTokenAmount"]["uiAmountString"] for b in found["meta"]["preTokenBalances"]
    }
    post = {
        b["owner"]: b["uiTokenAmount"]["uiAmountString"] for b in found["meta"]["postTokenBalances"]
    }
    cost = Decimal(str(invoice["amount"]))
    assert Decimal(pre[str(wallet.pubkey())]) - Decimal(post[str(wallet.pubkey())]) == cost
    treasury = str(gateway.treasury)
    assert Decimal(post[treasury]) - Decimal(pre[treasury]) == cost


def test_fee_for_message(server: GatewayServer, funded_wallet: Funder) -> None:
    """getFeeForMessage: 5,000 lamports a signature plus the priority fee (limit x price,
    rounded up); null for a blockhash the node does not know."""
    payer = funded_wallet(sol="1")
    blockhash = Hash.from_string(rpc(server, "getLatestBlockhash")["value"]["blockhash"])
    ixs = [
        Instruction(COMPUTE_BUDGET, bytes([2]) + (30_000).to_bytes(4, "little"), []),
        Instruction(COMPUTE_BUDGET, bytes([3]) + (1_001).to_bytes(8, "little"), []),
        transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=payer.pubkey(), lamports=1)),
    ]
    for recent, fee in ((blockhash, 5000 + 31), (Hash.new_unique(), None)):
        message = MessageV0.try_compile(payer.pubkey(), ixs, [], recent)
        encoded = base64.b64encode(to_bytes_versioned(message)).decode("ascii")
        assert rpc(server, "getFeeForMessage", encoded)["value"] == fee
    assert rpc_error(server, "getFeeForMessage", "not base64!")["code"] == -32602


def test_inner_instructions_and_accounts_after_simulation(
    server: GatewayServer, gateway: Gateway, funded_wallet: Funder
) -> None:
    """simulateTransaction answers innerInstructions when asked and the accounts as the
    transaction would leave them ("accounts"); getTransaction lists the inner instructions."""
    payer = funded_wallet(sol="1")
    owner = Keypair().pubkey()
    token = gateway.genesis.token("USDC")
    address = associated_token_address(owner, token.mint, token.program_id)
    ix = create_associated_token_account(payer.pubkey(), owner, token.mint, token.program_id)
    blockhash = Hash.from_string(rpc(server, "getLatestBlockhash")["value"]["blockhash"])
    tx = VersionedTransaction(MessageV0.try_compile(payer.pubkey(), [ix], [], blockhash), [payer])
    config = {
        "encoding": "base64",
        "innerInstructions": True,
        "accounts": {"addresses": [str(address)], "encoding": "jsonParsed"},
    }
    value = rpc(server, "simulateTransaction", b64(tx), config)["value"]
    assert value["err"] is None, value
    keys = [str(k) for k in tx.message.account_keys]
    (group,) = value["innerInstructions"]
    assert group["index"] == 0
    invoked = {keys[i["programIdIndex"]] for i in group["instructions"]}
    assert {"11111111111111111111111111111111", str(token.program_id)} <= invoked
    (after,) = value["accounts"]
    info = after["data"]["parsed"]["info"]
    assert (info["owner"], info["tokenAmount"]["amount"]) == (str(owner), "0")
    assert rpc(server, "getAccountInfo", str(address))["value"] is None  # nothing committed
    plain = rpc(server, "simulateTransaction", b64(tx), {"encoding": "base64"})["value"]
    assert (plain["innerInstructions"], plain["accounts"]) == (None, None)
    signature = parse(server, SendVersionedTransaction(tx, SEND), SendTransactionResp).value
    found = rpc(
        server,
        "getTransaction",
        str(signature),
        {"maxSupportedTransactionVersion": 0, "encoding": "jsonParsed"},
    )
    (landed,) = found["meta"]["innerInstructions"]
    assert "11111111111111111111111111111111" in {i["programId"] for i in landed["instructions"]}
