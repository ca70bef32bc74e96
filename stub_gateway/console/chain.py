"""What the payments pages show of the ledger: the treasury, settlements, transactions and
accounts, as plain values read from a :class:`~stub_gateway.gateway.Gateway` (no Flask)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from solders.account import Account
from solders.pubkey import Pubkey
from solders.signature import Signature

from human_rpc_sdk._money import format_amount, from_base_units
from human_rpc_sdk.solana_utils import associated_token_address, parse_mint

from ..gateway import Gateway
from ..ledger import Execution
from ..parsed import MintDecimals, parse_account

__all__ = [
    "AccountView",
    "Amount",
    "Change",
    "SettlementRow",
    "TransactionView",
    "Treasury",
    "account_view",
    "parse_lookup",
    "recent_settlements",
    "transaction_view",
    "treasury",
]

SOL_DECIMALS: Final = 9
HISTORY_SHOWN: Final = 20
MAX_LOOKUP: Final = 120


@dataclass(frozen=True)
class Amount:
    value: Decimal
    unit: str

    def __str__(self) -> str:
        return f"{format_amount(self.value)} {self.unit}"


@dataclass(frozen=True)
class Change:
    """How one account of a transaction changed: SOL, or a token held by ``holder``."""

    address: str
    holder: str
    """The wallet whose money this is (the address itself for SOL, the owner for a token)."""
    before: Amount
    after: Amount

    @property
    def delta(self) -> Amount:
        return Amount(self.after.value - self.before.value, self.after.unit)


@dataclass(frozen=True)
class TransactionView:
    signature: str
    slot: int
    error: str | None
    fee: Amount
    signers: tuple[str, ...]
    changes: tuple[Change, ...]
    logs: tuple[str, ...]
    purpose: str | None
    task_id: str | None


@dataclass(frozen=True)
class SettlementRow:
    """A transaction that paid the treasury."""

    signature: str
    slot: int
    received: tuple[Amount, ...]
    payer: str | None
    purpose: str | None
    task_id: str | None


@dataclass(frozen=True)
class Treasury:
    address: str
    balances: tuple[Amount, ...]


@dataclass(frozen=True)
class AccountView:
    address: str
    exists: bool
    labels: tuple[str, ...]
    sol: Amount
    owner: str | None
    executable: bool
    size: int
    parsed: tuple[tuple[str, str], ...]
    """A token account's or a mint's fields (name, value), as ``jsonParsed`` reads them."""
    holdings: tuple[Amount, ...]
    """A wallet's balances of the gateway's tokens (in their associated accounts)."""
    history: tuple[tuple[str, int, bool], ...]
    """The newest transactions that involved the account: signature, slot, succeeded."""


def parse_lookup(text: str) -> tuple[str, str] | None:
    """``("transaction", signature)`` or ``("account", address)`` for what a person typed."""
    text = text.strip()
    if not text or len(text) > MAX_LOOKUP:
        return None
    try:
        return "transaction", str(Signature.from_string(text))
    except ValueError:
        pass
    try:
        return "account", str(Pubkey.from_string(text))
    except ValueError:
        return None


def treasury(gateway: Gateway) -> Treasury:
    currencies = ("SOL", *gateway.genesis.tokens)
    return Treasury(
        str(gateway.treasury),
        tuple(Amount(gateway.balance(gateway.treasury, c), c) for c in currencies),
    )


def recent_settlements(gateway: Gateway, limit: int = HISTORY_SHOWN) -> list[SettlementRow]:
    """The newest transactions that paid the treasury (in SOL or into its token accounts)."""
    wallet = gateway.treasury
    addresses = [wallet] + [
        associated_token_address(wallet, t.mint, t.program_id)
        for t in gateway.genesis.tokens.values()
    ]
    seen: dict[str, Execution] = {}
    for address in addresses:
        for execution in gateway.ledger.history(address, limit=limit):
            seen.setdefault(str(execution.signature), execution)
    newest = sorted(seen.values(), key=lambda e: e.slot, reverse=True)
    purposes = _purposes(gateway)
    rows = []
    for execution in newest:
        if execution.transaction is None:  # an airdrop
            continue
        view = _view(gateway, execution, purposes)
        received = tuple(
            c.delta for c in view.changes if c.holder == str(wallet) and c.delta.value > 0
        )
        if view.error is None and received:
            rows.append(
                SettlementRow(
                    view.signature,
                    view.slot,
                    received,
                    _payer(gateway, view.signers),
                    view.purpose,
                    view.task_id,
                )
            )
    return rows[:limit]


def transaction_view(gateway: Gateway, signature: str) -> TransactionView | None:
    execution = gateway.ledger.status(Signature.from_string(signature))
    if execution is None or execution.transaction is None:
        return None
    return _view(gateway, execution, _purposes(gateway))


def account_view(gateway: Gateway, address: str) -> AccountView:
    key = Pubkey.from_string(address)
    account = gateway.ledger.account(key)
    history = tuple(
        (str(e.signature), e.slot, e.ok) for e in gateway.ledger.history(key, limit=HISTORY_SHOWN)
    )
    lamports = 0 if account is None else account.lamports
    parsed = None if account is None else parse_account(account, _decimals_of(gateway))
    holdings: tuple[Amount, ...] = ()
    if account is None or parsed is None:
        holdings = tuple(
            Amount(gateway.balance(key, symbol), symbol) for symbol in gateway.genesis.tokens
        )
    return AccountView(
        address=address,
        exists=account is not None,
        labels=_labels(gateway, key),
        sol=Amount(from_base_units(lamports, SOL_DECIMALS), "SOL"),
        owner=None if account is None else str(account.owner),
        executable=account is not None and account.executable,
        size=0 if account is None else len(account.data),
        parsed=() if parsed is None else _fields(parsed),
        holdings=holdings,
        history=history,
    )


# -- reading executions ------------------------------------------------------------------------


def _view(
    gateway: Gateway, execution: Execution, purposes: Mapping[str, tuple[str, str | None]]
) -> TransactionView:
    message = execution.transaction.message if execution.transaction else None
    keys = [] if message is None else list(message.account_keys)
    required = 0 if message is None else message.header.num_required_signatures
    signers = tuple(str(k) for k in keys[:required])
    signature = str(execution.signature)
    purpose, task_id = purposes.get(signature, (None, None))
    if purpose is None and signers and signers[0] == str(gateway.genesis.fee_payer.pubkey()):
        purpose = "x402 exact payment (the facilitator paid the fee)"
    return TransactionView(
        signature=signature,
        slot=execution.slot,
        error=None if execution.ok else execution.describe(),
        fee=Amount(from_base_units(execution.fee, SOL_DECIMALS), "SOL"),
        signers=signers,
        changes=tuple(_changes(gateway, execution, keys)),
        logs=tuple(execution.logs),
        purpose=purpose,
        task_id=task_id,
    )


def _changes(gateway: Gateway, execution: Execution, keys: list[Pubkey]) -> Iterable[Change]:
    decimals_of = _decimals_of(gateway)
    symbols = {str(t.mint): t.symbol for t in gateway.genesis.tokens.values()}
    pairs = zip(keys, execution.pre_accounts, execution.post_accounts, strict=False)
    for key, before, after in pairs:
        sol_before, sol_after = _lamports(before), _lamports(after)
        if sol_before != sol_after:
            yield Change(
                str(key),
                str(key),
                Amount(from_base_units(sol_before, SOL_DECIMALS), "SOL"),
                Amount(from_base_units(sol_after, SOL_DECIMALS), "SOL"),
            )
        token_before, token_after = _token(before, decimals_of), _token(after, decimals_of)
        info = token_after or token_before
        if info is None:
            continue
        amount_before = _token_amount(token_before)
        amount_after = _token_amount(token_after)
        if amount_before != amount_after:
            unit = symbols.get(info["mint"], info["mint"])
            yield Change(
                str(key), info["owner"], Amount(amount_before, unit), Amount(amount_after, unit)
            )


def _lamports(account: Account | None) -> int:
    return 0 if account is None else account.lamports


def _token(account: Account | None, decimals_of: MintDecimals) -> dict[str, Any] | None:
    if account is None:
        return None
    parsed = parse_account(account, decimals_of)
    if parsed is None or parsed["parsed"]["type"] != "account":
        return None
    info: dict[str, Any] = parsed["parsed"]["info"]
    return info


def _token_amount(info: Mapping[str, Any] | None) -> Decimal:
    return Decimal(0) if info is None else Decimal(info["tokenAmount"]["uiAmountString"])


def _decimals_of(gateway: Gateway) -> MintDecimals:
    def decimals(mint: Pubkey) -> int | None:
        try:
            return parse_mint(mint, gateway.ledger.account(mint)).decimals
        except ValueError:
            return None

    return decimals


def _payer(gateway: Gateway, signers: tuple[str, ...]) -> str | None:
    """Who paid: the first signer that is not the facilitator's fee payer."""
    facilitator = str(gateway.genesis.fee_payer.pubkey())
    return next((s for s in signers if s != facilitator), None)


def _purposes(gateway: Gateway) -> dict[str, tuple[str, str | None]]:
    """What each settled payment bought, by signature: an invoice's resource, or a task."""
    found: dict[str, tuple[str, str | None]] = {}
    for settlement in list(gateway.desk.settlements):
        invoice = settlement.invoice
        found[settlement.signature] = (
            f"invoice for {invoice.resource}" if invoice else "payment in the deployed format",
            None,
        )
    for task in gateway.tasks.all():
        payment = task.payment if isinstance(task.payment, dict) else {}
        signature = payment.get("signature")
        if isinstance(signature, str):
            found[signature] = ("human verification task", task.id)
    return found


def _labels(gateway: Gateway, key: Pubkey) -> tuple[str, ...]:
    genesis = gateway.genesis
    labels = {
        genesis.treasury: "the gateway's treasury (its invoices are paid here)",
        genesis.fee_payer.pubkey(): "the x402 facilitator's fee payer",
        genesis.authority.pubkey(): "the gateway's mint authority",
    }
    for token in genesis.tokens.values():
        labels[token.mint] = f"the {token.symbol} mint"
        labels[associated_token_address(genesis.treasury, token.mint, token.program_id)] = (
            f"the treasury's {token.symbol} account"
        )
    return (labels[key],) if key in labels else ()


def _fields(parsed: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    inner = parsed["parsed"]
    info = inner["info"]
    rows = [("type", f"{parsed['program']} {inner['type']}")]
    for name, value in info.items():
        if isinstance(value, dict) and "uiAmountString" in value:
            value = value["uiAmountString"]
        if isinstance(value, str | int | bool) or value is None:
            rows.append((name, str(value)))
    return tuple(rows)
