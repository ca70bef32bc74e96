"""Token-2022 mints are read in full: risky extensions are refused unless allowed per mint.

Every mint here is a real Token-2022 mint, built on the gateway's LiteSVM ledger with the
Token-2022 program's own initialize instructions (TransferFeeConfig, TransferHook,
PermanentDelegate, NonTransferable, DefaultAccountState, then InitializeMint2). Payments go
through the gateway's JSON-RPC and paywalls over loopback HTTP; the ledger's balances and the
journal's rows are checked each time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, g, jsonify, request
from hypothesis import given
from hypothesis import strategies as st
from solders.account import Account
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.system_program import CreateAccountParams, create_account
from solders.token.state import Mint
from spl.memo.constants import MEMO_PROGRAM_ID
from spl.token.constants import TOKEN_2022_PROGRAM_ID
from spl.token.instructions import (
    create_idempotent_associated_token_account,
    initialize_mint2,
    initialize_transfer_fee_config,
    mint_to_checked,
    thaw_account,
)
from spl.token.models import (
    InitializeMint2Params,
    InitializeTransferFeeConfigParams,
    MintToCheckedParams,
    ThawAccountParams,
)

from human_rpc_sdk import AutoAgent, PaymentError, PaymentPolicyError, SDKConfigurationError
from human_rpc_sdk._headers import PAYMENT_HEADER, decode_payment_header
from human_rpc_sdk._networks import KNOWN_MINTS
from human_rpc_sdk.solana_utils import (
    associated_token_address,
    parse_mint,
    parse_token_account,
    token_account_rent,
    token_account_size,
)
from stub_gateway import Gateway, GatewayServer, Price, create_app
from stub_gateway.genesis import Token

T22 = TOKEN_2022_PROGRAM_ID
LAMPORTS = Decimal("1e-9")
FEE = 5_000


@dataclass(frozen=True)
class Extension:
    """One mint extension: its value size in bytes, and its initialize instruction."""

    size: int
    build: Callable[[Pubkey, Pubkey], Instruction]


def transfer_fee(basis_points: int, maximum: int) -> Extension:
    return Extension(
        108,
        lambda mint, authority: initialize_transfer_fee_config(
            InitializeTransferFeeConfigParams(
                program_id=T22,
                mint=mint,
                transfer_fee_config_authority=authority,
                withdraw_withheld_authority=authority,
                transfer_fee_basis_points=basis_points,
                maximum_fee=maximum,
            )
        ),
    )


def _mint_instruction(data: bytes) -> Callable[[Pubkey, Pubkey], Instruction]:
    """A Token-2022 instruction on the mint alone (layouts: spl-token-2022 instruction.rs)."""
    return lambda mint, authority: Instruction(T22, data, [AccountMeta(mint, False, True)])


def transfer_hook(program: Pubkey) -> Extension:
    def build(mint: Pubkey, authority: Pubkey) -> Instruction:
        # TransferHookExtension (36) / Initialize (0): authority, program id
        return _mint_instruction(bytes([36, 0]) + bytes(authority) + bytes(program))(
            mint, authority
        )

    return Extension(64, build)


def permanent_delegate(delegate: Pubkey) -> Extension:
    return Extension(
        32, _mint_instruction(bytes([35]) + bytes(delegate))
    )  # InitializePermanentDelegate


NON_TRANSFERABLE = Extension(0, _mint_instruction(bytes([32])))  # InitializeNonTransferableMint
DEFAULT_FROZEN = Extension(1, _mint_instruction(bytes([28, 0, 2])))  # DefaultAccountState: Frozen


def make_mint(gateway: Gateway, symbol: str, *extensions: Extension) -> Token:
    """A real Token-2022 mint with ``extensions``, the gateway's key as its authorities."""
    ledger, authority, mint = gateway.ledger, gateway.genesis.authority, Keypair()
    size = 165 + 1 + sum(4 + e.size for e in extensions)
    instructions = [
        create_account(
            CreateAccountParams(
                from_pubkey=authority.pubkey(),
                to_pubkey=mint.pubkey(),
                lamports=ledger.minimum_balance(size),
                space=size,
                owner=T22,
            )
        ),
        *(e.build(mint.pubkey(), authority.pubkey()) for e in extensions),
        initialize_mint2(
            InitializeMint2Params(
                program_id=T22,
                mint=mint.pubkey(),
                decimals=6,
                mint_authority=authority.pubkey(),
                freeze_authority=authority.pubkey(),
            )
        ),
    ]
    result = ledger.run(instructions, authority, mint)
    assert result.ok, result.describe()
    token = Token(symbol=symbol, mint=mint.pubkey(), program_id=T22, decimals=6)
    gateway.genesis.tokens[symbol] = token  # the desk can now invoice in it
    return token


def fund(gateway: Gateway, owner: Pubkey, token: Token, amount: int) -> None:
    """Create ``owner``'s account (thawed if the mint freezes new ones) and mint to it."""
    authority = gateway.genesis.authority
    account = associated_token_address(owner, token.mint, T22)
    instructions = [
        create_idempotent_associated_token_account(authority.pubkey(), owner, token.mint, T22)
    ]
    if amount:
        thaw = ThawAccountParams(
            program_id=T22, account=account, mint=token.mint, authority=authority.pubkey()
        )
        if _frozen_by_default(gateway, token):
            instructions.append(thaw_account(thaw))
        instructions.append(
            mint_to_checked(
                MintToCheckedParams(
                    program_id=T22,
                    mint=token.mint,
                    dest=account,
                    mint_authority=authority.pubkey(),
                    amount=amount,
                    decimals=6,
                )
            )
        )
    result = gateway.ledger.run(instructions, authority)
    assert result.ok, result.describe()


def _frozen_by_default(gateway: Gateway, token: Token) -> bool:
    info = parse_mint(token.mint, gateway.ledger.account(token.mint))
    return info.extensions.default_frozen


def units(gateway: Gateway, owner: Pubkey, token: Token) -> int:
    """What ``owner``'s token account holds, in base units, read from the ledger."""
    account = gateway.ledger.account(associated_token_address(owner, token.mint, T22))
    held = parse_token_account(account, T22)
    return 0 if held is None else held.amount


class World:
    """A gateway with hostile Token-2022 mints and routes that invoice in them."""

    def __init__(self) -> None:
        self.gateway = gateway = Gateway()
        self.hook_program = MEMO_PROGRAM_ID  # a program that is no transfer hook
        self.tokens = {
            "FEE50": make_mint(gateway, "FEE50", transfer_fee(5_000, 10**12)),
            "FEE0": make_mint(gateway, "FEE0", transfer_fee(0, 0)),
            "HOOK": make_mint(gateway, "HOOK", transfer_hook(self.hook_program)),
            "DELEGATE": make_mint(gateway, "DELEGATE", permanent_delegate(Keypair().pubkey())),
            "SOULBOUND": make_mint(gateway, "SOULBOUND", NON_TRANSFERABLE),
            "FROZEN": make_mint(gateway, "FROZEN", DEFAULT_FROZEN),
        }
        self._pyusd_with_a_fee()
        app = create_app(gateway)
        _add_routes(app, gateway)
        self.server = GatewayServer(app).start()
        self.url = self.server.url

    def _pyusd_with_a_fee(self) -> None:
        """PYUSD's devnet address, holding a real 50% transfer-fee mint (cloned there, as
        ``solana-test-validator --clone`` would)."""
        built = make_mint(self.gateway, "PYUSD-SOURCE", transfer_fee(5_000, 10**12))
        address = Pubkey.from_string(KNOWN_MINTS["devnet"]["PYUSD"])
        account = self.gateway.ledger.account(built.mint)
        assert account is not None
        self.gateway.ledger.set_account(address, account)
        self.gateway.genesis.tokens["PYUSD"] = Token("PYUSD", address, T22, 6)

    def token(self, symbol: str) -> Token:
        return self.gateway.genesis.token(symbol)

    def wallet(self, symbol: str, amount: int = 10**6) -> Keypair:
        wallet = Keypair()
        self.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
        fund(self.gateway, wallet.pubkey(), self.token(symbol), amount)
        return wallet

    def payee(self, symbol: str) -> Pubkey:
        """A payee that already has a token account for ``symbol`` (thawed)."""
        payee = Keypair().pubkey()
        fund(self.gateway, payee, self.token(symbol), 0)
        if _frozen_by_default(self.gateway, self.token(symbol)):
            authority = self.gateway.genesis.authority
            token = self.token(symbol)
            thaw = ThawAccountParams(
                program_id=T22,
                account=associated_token_address(payee, token.mint, T22),
                mint=token.mint,
                authority=authority.pubkey(),
            )
            assert self.gateway.ledger.run([thaw_account(thaw)], authority).ok
        return payee

    def sol(self, owner: Pubkey) -> int:
        return self.gateway.ledger.balance(owner)


def _add_routes(app: Flask, gateway: Gateway) -> None:
    def priced() -> Price:
        args = request.view_args or {}
        return Price(Decimal(args["amount"]), args["symbol"], Pubkey.from_string(args["recipient"]))

    @app.get("/pay/<symbol>/<amount>/<recipient>")
    @gateway.require_payment(priced)
    def paid(symbol: str, amount: str, recipient: str) -> Response:
        return jsonify({"paid": f"{amount} {symbol}", "signature": g.settlement.signature})

    @app.get("/careless/<symbol>/<amount>/<recipient>")
    def careless(symbol: str, amount: str, recipient: str) -> Any:
        """Sends the payment to the chain without simulating it, and serves whatever happens."""
        header = request.headers.get(PAYMENT_HEADER)
        if header is None:
            invoice = gateway.desk.issue(priced(), request.path)
            response = jsonify(invoice.body(gateway.network))
            response.status_code = 402
            return response
        execution = gateway.ledger.execute(decode_payment_header(header).transaction)
        return jsonify({"served": True, "landed": execution.ok})

    for symbol in ("FEE50", "HOOK"):
        price = Price(Decimal("0.01"), symbol)
        view = gateway.require_x402(price, version=2)(lambda: jsonify({"x402": True}))
        app.add_url_rule(f"/x402/{symbol}", f"x402_{symbol}", view)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    made = World()
    yield made
    made.server.stop()


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    return tmp_path / "journal.sqlite3"


def agent(world: World, wallet: Keypair, journal: Path, **options: Any) -> AutoAgent:
    return AutoAgent(wallet, rpc_url=world.server.rpc_url, journal_path=journal, **options)


def rows(journal: Path) -> list[sqlite3.Row]:
    """The journal's rows, read with a connection of the test's own."""
    db = sqlite3.connect(journal)
    db.row_factory = sqlite3.Row
    try:
        return db.execute("SELECT * FROM payments ORDER BY id").fetchall()
    finally:
        db.close()


def refused(world: World, payer: Keypair, journal: Path, url: str, **options: Any) -> Any:
    """Request ``url``: refused for its token extensions; nothing signed, nothing moved."""
    symbol = url.split("/")[4]
    token = world.token(symbol)
    before = (world.sol(payer.pubkey()), units(world.gateway, payer.pubkey(), token))
    with (
        agent(world, payer, journal, **options) as paying,
        pytest.raises(PaymentPolicyError) as caught,
    ):
        paying.get(url)
    error = caught.value
    assert error.rule == "token_extensions"
    assert "Nothing was signed or paid" in str(error)
    assert "allow_token_extensions" in str(error)
    assert (world.sol(payer.pubkey()), units(world.gateway, payer.pubkey(), token)) == before
    assert rows(journal) == []
    return error


# -- reading mints ------------------------------------------------------------------------


def test_parse_mint_reads_each_extension(world: World) -> None:
    """parse_mint reads the TLV extensions after the 165-byte base and the account type."""

    def read(symbol: str) -> Any:
        token = world.token(symbol)
        return parse_mint(token.mint, world.gateway.ledger.account(token.mint)).extensions

    fee = read("FEE50").transfer_fee(0)
    assert (fee.basis_points, fee.maximum_fee, fee.fee(500_000)) == (5_000, 10**12, 250_000)
    assert read("FEE0").transfer_fee(0).charges is False
    assert read("FEE0").risks(0) == {}
    assert read("HOOK").transfer_hook_program == world.hook_program
    assert read("DELEGATE").permanent_delegate is not None
    assert read("SOULBOUND").non_transferable
    assert read("FROZEN").default_frozen
    assert set(read("HOOK").risks(0)) == {"transfer_hook"}
    usdc = world.gateway.genesis.token("USDC")
    assert parse_mint(usdc.mint, world.gateway.ledger.account(usdc.mint)).cacheable


def test_malformed_extension_data_is_not_a_mint(world: World) -> None:
    """A Token-2022 mint whose TLV entry runs past the data is refused as unreadable."""
    token = world.token("FEE50")
    account = world.gateway.ledger.account(token.mint)
    assert account is not None
    data = bytearray(bytes(account.data))
    data[168:170] = (4000).to_bytes(2, "little")  # the first entry's length
    broken = Account(account.lamports, bytes(data), account.owner, account.executable)
    with pytest.raises(ValueError, match="truncated"):
        parse_mint(token.mint, broken)


@given(tail=st.binary(max_size=400), kind=st.integers(0, 40), length=st.integers(0, 200))
def test_parse_mint_reads_any_extension_data_or_says_why_not(
    tail: bytes, kind: int, length: int
) -> None:
    """Any bytes after a Token-2022 mint's account type: a MintInfo, or a ValueError."""
    base = bytes(Mint(mint_authority=None, supply=0, decimals=6, is_initialized=True))
    entry = kind.to_bytes(2, "little") + length.to_bytes(2, "little")
    for data in (base + tail, base + bytes(83) + b"\x01" + entry + tail):
        account = Account(1, data, T22, False)
        try:
            info = parse_mint(Pubkey.default(), account)
        except ValueError:
            continue
        assert info.decimals == 6
        assert token_account_size(info) >= 170
        assert set(info.extensions.risks(None)) <= {
            "transfer_fee",
            "transfer_hook",
            "permanent_delegate",
            "non_transferable",
            "default_account_state",
        }


@pytest.mark.parametrize("symbol", ["FEE50", "FEE0", "HOOK", "DELEGATE", "SOULBOUND", "FROZEN"])
def test_token_account_size_and_rent_match_the_ledger(world: World, symbol: str) -> None:
    """The rent quoted for a payee's new account is what the ATA program really charges."""
    token = world.token(symbol)
    info = parse_mint(token.mint, world.gateway.ledger.account(token.mint))
    owner = Keypair().pubkey()
    fund(world.gateway, owner, token, 0)
    created = world.gateway.ledger.account(associated_token_address(owner, token.mint, T22))
    assert created is not None
    assert token_account_size(info) == len(created.data)
    assert token_account_rent(info) == created.lamports


# -- refused by default -------------------------------------------------------------------


def test_a_fifty_percent_fee_mint_is_refused_even_with_a_max_payment(
    world: World, journal: Path
) -> None:
    """A max_payment entry for the mint is not an opt-in to its 50% transfer fee."""
    token = world.token("FEE50")
    payer, payee = world.wallet("FEE50"), world.payee("FEE50")
    url = f"{world.url}/pay/FEE50/0.5/{payee}"
    error = refused(world, payer, journal, url, max_payment={str(token.mint): "1"})
    assert "transfer_fee" in str(error)
    assert "50%" in str(error)
    assert error.details["extensions"] == ["transfer_fee"]
    assert units(world.gateway, payee, token) == 0


@pytest.mark.parametrize(
    ("symbol", "name"),
    [
        ("HOOK", "transfer_hook"),
        ("DELEGATE", "permanent_delegate"),
        ("SOULBOUND", "non_transferable"),
        ("FROZEN", "default_account_state"),
    ],
)
def test_each_risky_extension_is_refused_by_default(
    world: World, journal: Path, symbol: str, name: str
) -> None:
    """Hook, permanent delegate, non-transferable, default-frozen: refused, naming the opt-in."""
    token = world.token(symbol)
    payer, payee = world.wallet(symbol), world.payee(symbol)
    url = f"{world.url}/pay/{symbol}/0.5/{payee}"
    error = refused(world, payer, journal, url, max_payment={str(token.mint): "1"})
    assert name in str(error)
    assert error.details["extensions"] == [name]


def test_a_fee_mint_under_pyusds_address_is_refused_under_default_limits(
    world: World, journal: Path
) -> None:
    """PYUSD's well-known address does not vouch for a transfer fee: default limits refuse."""
    payer, payee = world.wallet("PYUSD"), world.payee("PYUSD")
    error = refused(world, payer, journal, f"{world.url}/pay/PYUSD/0.05/{payee}")
    assert "transfer_fee" in str(error)
    assert units(world.gateway, payee, world.token("PYUSD")) == 0


def test_a_fee_mint_x402_offer_is_refused_with_its_reason(world: World, journal: Path) -> None:
    """x402: the offer in a fee mint is refused, with the reason and rule for that offer."""
    token = world.token("FEE50")
    payer = world.wallet("FEE50")
    fund(world.gateway, world.gateway.treasury, token, 0)
    before = units(world.gateway, payer.pubkey(), token)
    options = {"max_payment": {str(token.mint): "1"}, "accept_assets": [str(token.mint)]}
    with (
        agent(world, payer, journal, **options) as paying,
        pytest.raises(PaymentPolicyError) as caught,
    ):
        paying.get(f"{world.url}/x402/FEE50")
    error = caught.value
    assert error.rule == "token_extensions"
    assert error.details["rules"] == {0: "token_extensions"}
    assert "transfer_fee" in error.details["refusals"][0]
    assert units(world.gateway, payer.pubkey(), token) == before
    assert rows(journal) == []


# -- allowed per mint ---------------------------------------------------------------------


def test_an_allowed_fee_mint_is_paid_and_the_payee_gets_what_the_ledger_says(
    world: World, journal: Path
) -> None:
    """Opted in: paid; the payee receives the amount less the 50% fee; rent sized right."""
    token = world.token("FEE50")
    payer, payee = world.wallet("FEE50"), Keypair().pubkey()
    sol_before = world.sol(payer.pubkey())
    options = {
        "max_payment": {str(token.mint): "1"},
        "allow_token_extensions": {str(token.mint): ["transfer_fee"]},
        "create_token_accounts": True,
    }
    with agent(world, payer, journal, **options) as paying:
        assert paying.get(f"{world.url}/pay/FEE50/0.5/{payee}").status_code == 200
        (receipt,) = paying.payments
    assert units(world.gateway, payer.pubkey(), token) == 10**6 - 500_000
    assert units(world.gateway, payee, token) == 250_000  # half withheld by the mint
    account = world.gateway.ledger.account(associated_token_address(payee, token.mint, T22))
    assert account is not None
    assert receipt.rent_lamports == account.lamports  # a 182-byte account, not 165 or 170
    assert world.sol(payer.pubkey()) == sol_before - FEE - account.lamports
    (row,) = rows(journal)
    assert (row["state"], row["amount"], row["rent_lamports"]) == ("accepted", "0.5", 2_157_600)
    assert (receipt.state, receipt.settled, row["landed"]) == ("accepted", True, 1)


def test_an_allowed_hook_mint_fails_on_chain_and_is_not_accepted(
    world: World, journal: Path
) -> None:
    """Opted in to a hook: the gateway's simulation fails, the payment is journaled refused."""
    token = world.token("HOOK")
    payer, payee = world.wallet("HOOK"), world.payee("HOOK")
    options: dict[str, Any] = {
        "allow_token_extensions": {str(token.mint): ["transfer_hook"]},
        "max_payment": {str(token.mint): "1"},
    }
    with agent(world, payer, journal, **options) as paying, pytest.raises(PaymentError) as caught:
        paying.get(f"{world.url}/pay/HOOK/0.5/{payee}")
    assert caught.value.reason == "payment_refused"
    assert units(world.gateway, payer.pubkey(), token) == 10**6
    assert units(world.gateway, payee, token) == 0
    (row,) = rows(journal)
    assert row["state"] == "refused"


def test_a_failed_hook_payment_a_server_accepted_is_not_accepted_after_recovery(
    world: World, journal: Path
) -> None:
    """A careless server sends the payment unsimulated and serves it; recovery finds the
    chain's failure: the row becomes failed, landed False, with the chain's error."""
    token = world.token("HOOK")
    payer, payee = world.wallet("HOOK"), world.payee("HOOK")
    sol_before = world.sol(payer.pubkey())
    options = {
        "allow_token_extensions": {str(token.mint): ["transfer_hook"]},
        "max_payment": {str(token.mint): "1"},
    }
    with agent(world, payer, journal, **options) as paying:
        response = paying.get(f"{world.url}/careless/HOOK/0.5/{payee}")
        assert response.json() == {"served": True, "landed": False}
        assert rows(journal)[0]["state"] == "accepted"  # what the server said
        (recovered,) = paying.recover_payments()
        assert paying.recover_payments() == []  # settled: nothing left to examine
        assert paying.budget["SOL"].spent == Decimal(FEE) / 10**9  # its fee; no amount, no rent
    assert (recovered.state, recovered.landed, recovered.accepted) == ("failed", False, False)
    assert recovered.error_reason is not None
    assert recovered.error_reason.startswith("failed on chain")
    (row,) = rows(journal)
    assert (row["state"], row["landed"]) == ("failed", 0)
    assert units(world.gateway, payer.pubkey(), token) == 10**6
    assert units(world.gateway, payee, token) == 0
    assert world.sol(payer.pubkey()) == sol_before - FEE  # a failed transaction pays its fee


def test_an_accepted_payment_never_confirmed_is_confirmed_by_recovery(
    world: World, journal: Path
) -> None:
    """Served without a settlement response (landed unknown): recovery finds it landed."""
    token = world.token("FEE0")  # Token-2022 with a zero transfer fee: nothing risky
    payer, payee = world.wallet("FEE0"), world.payee("FEE0")
    with agent(world, payer, journal, max_payment={str(token.mint): "1"}) as paying:
        assert paying.get(f"{world.url}/careless/FEE0/0.5/{payee}").json()["landed"] is True
        assert rows(journal)[0]["landed"] is None
        (recovered,) = paying.recover_payments()
    assert (recovered.state, recovered.landed) == ("accepted", True)
    (row,) = rows(journal)
    assert (row["state"], row["landed"]) == ("accepted", 1)
    assert units(world.gateway, payee, token) == 500_000


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        ["transfer_fee"],
        {"not a mint": ["transfer_fee"]},
        {str(Pubkey.default()): "transfer_fee"},
        {str(Pubkey.default()): ["transfer_fees"]},
        {str(Pubkey.default()): [["transfer_fee"]]},
        {"SOL": ["transfer_fee"]},
    ],
)
def test_bad_allow_token_extensions_fail_at_construction(value: Any) -> None:
    """allow_token_extensions is checked when the agent is built, naming the parameter."""
    with pytest.raises(SDKConfigurationError) as caught:
        AutoAgent(Keypair(), journal_path=":memory:", allow_token_extensions=value)
    assert caught.value.parameter == "allow_token_extensions"


def test_create_token_accounts_must_be_a_bool() -> None:
    """create_token_accounts="yes" is refused at construction."""
    with pytest.raises(SDKConfigurationError) as caught:
        AutoAgent(Keypair(), journal_path=":memory:", create_token_accounts="yes")  # type: ignore[arg-type]
    assert caught.value.parameter == "create_token_accounts"


def test_a_known_symbol_names_its_mint_in_allow_token_extensions() -> None:
    """{"PYUSD": [...]} allows PYUSD's mint on the agent's network."""
    with AutoAgent(
        Keypair(), journal_path=":memory:", allow_token_extensions={"PYUSD": ["transfer_fee"]}
    ) as made:
        pyusd = KNOWN_MINTS["devnet"]["PYUSD"]
        assert made._rules.token_extensions == {pyusd: frozenset({"transfer_fee"})}
