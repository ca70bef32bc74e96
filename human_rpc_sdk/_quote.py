"""From an invoice and the chain's state to a transfer plan the wallet can afford (pure).

:func:`quote` reads what a payment needs (the payer's and payee's accounts, the mint on first
use, a blockhash) from the chain cache when fresh, else in one JSON-RPC round trip, then
decides: the exact base units, the accounts, whether the payee's token account must be
created, how the payment is bound to its invoice, and whether the wallet can pay it with fees
and rent. A refusal, or the rent of a new account, decided on cached state is
decided again on a fresh read.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from solders.account import Account
from solders.hash import Hash
from solders.pubkey import Pubkey
from solders.rent import Rent
from solders.sysvar import CLOCK
from solders.token.state import TokenAccount

from ._effects import ChainRead, Debit, Flow, PaymentContext, read_chain
from ._limits import currency_key
from ._money import format_amount, from_base_units
from ._networks import SOL_DECIMALS
from .exceptions import InvoiceValidationError, PaymentError, PaymentPolicyError
from .invoices import FORMAT_LEGACY, Invoice
from .solana_utils import (
    TOKEN_PROGRAMS,
    MintInfo,
    TransferPlan,
    associated_token_address,
    is_frozen,
    network_fee,
    parse_epoch,
    parse_mint,
    parse_token_account,
    split_reference,
    token_account_rent,
)

__all__ = ["WALLET_RENT_MINIMUM", "Quote", "quote"]

_RENT: Final = Rent.default()
WALLET_RENT_MINIMUM: Final = _RENT.minimum_balance(0)
_SIGNATURES: Final = 1  # a HumanRPC payment is signed by the payer alone, with no priority fee


@dataclass(frozen=True)
class Quote:
    plan: TransferPlan
    blockhash: Hash
    display_amount: Decimal
    fee_lamports: int
    rent_lamports: int
    debits: tuple[Debit, ...] = ()
    """What paying it takes from the payer's accounts (applied to the cache when signed)."""


def quote(invoice: Invoice, ctx: PaymentContext) -> Flow[Quote]:
    payer = ctx.signer.pubkey()
    recipient = Pubkey.from_string(invoice.recipient)
    known: MintInfo | None = None
    if invoice.mint is None:
        keys = [payer, recipient]
    else:
        # The mint's data is cached once read. Until then, fetch the mint with the payer's and
        # payee's token accounts under *both* token programs, so one round trip suffices.
        mint = Pubkey.from_string(invoice.mint)
        known = ctx.cache.mint(mint)
        # An uncached mint may carry Token-2022 extensions: the Clock sysvar (last) tells
        # which of its transfer fees applies now.
        programs = (known.program_id,) if known else TOKEN_PROGRAMS
        keys = [payer] if known else [payer, mint]
        for program in programs:
            keys += [
                associated_token_address(payer, mint, program),
                associated_token_address(recipient, mint, program),
            ]
        if known is None:
            keys.append(CLOCK)
    read = yield from read_chain(keys, ctx)  # its chain: in its facts
    try:
        decided = _decide(invoice, ctx, payer, recipient, read, known)
    except (PaymentError, InvoiceValidationError):
        if not read.cached:
            raise
    else:
        if not (read.cached and decided.rent_lamports):
            return decided
    # Cached state may be stale (a deposit not seen yet, the payee's account created since):
    # refuse, or pay the rent of a new account, only on a fresh read.
    read = yield from read_chain(keys, ctx, fresh=True)
    return _decide(invoice, ctx, payer, recipient, read, known)


def _decide(
    invoice: Invoice,
    ctx: PaymentContext,
    payer: Pubkey,
    recipient: Pubkey,
    read: ChainRead,
    known: MintInfo | None,
) -> Quote:
    if invoice.mint is None:
        return _sol_quote(invoice, ctx, payer, recipient, read.accounts, read.blockhash)
    return _token_quote(invoice, ctx, payer, recipient, read.accounts, read.blockhash, known)


def _binding(invoice: Invoice, ctx: PaymentContext) -> tuple[Pubkey | None, str | None]:
    reference_key, reference_memo = split_reference(invoice.reference)
    if reference_key is None and reference_memo is None:
        # Nothing ties this payment to its invoice: a random memo keeps two equal payments
        # (same payer, payee, amount and blockhash) from being one and the same transaction.
        return None, ctx.nonce()
    return reference_key, reference_memo


def _sol_quote(
    invoice: Invoice,
    ctx: PaymentContext,
    payer: Pubkey,
    recipient: Pubkey,
    accounts: list[Account | None],
    blockhash: Hash,
) -> Quote:
    lamports = invoice.base_units(SOL_DECIMALS)
    fee = network_fee(_SIGNATURES)
    _check_sol_cost(invoice, ctx, lamports + fee, "the amount plus the network fee")
    _check_trust(invoice, ctx, recipient)
    payee = accounts[1]
    if payee is not None and payee.executable:
        raise _unpayable(
            invoice, f"the recipient {recipient} is a program, which cannot receive SOL"
        )
    if payee is None and lamports < WALLET_RENT_MINIMUM:
        raise _unpayable(
            invoice,
            f"the recipient {recipient} has no account yet, and Solana refuses to create one "
            f"with less than {_sol(WALLET_RENT_MINIMUM)} SOL; this {_sol(lamports)} SOL "
            "transfer would fail",
        )
    _check_lamports(
        invoice, payer, accounts[0], lamports + fee, f"{_sol(lamports)} SOL plus the fee"
    )
    reference, memo = _binding(invoice, ctx)
    plan = TransferPlan(
        payer=payer,
        recipient=recipient,
        amount=lamports,
        destination=recipient,
        reference=reference,
        memo=memo,
        legacy=invoice.format == FORMAT_LEGACY,
    )
    debits = (Debit(payer, lamports=lamports + fee),)
    return Quote(plan, blockhash, from_base_units(lamports, SOL_DECIMALS), fee, 0, debits)


def _token_quote(
    invoice: Invoice,
    ctx: PaymentContext,
    payer: Pubkey,
    recipient: Pubkey,
    accounts: list[Account | None],
    blockhash: Hash,
    info: MintInfo | None,
) -> Quote:
    mint_key = Pubkey.from_string(str(invoice.mint))
    epoch: int | None = None
    if info is None:
        info = _read_mint(invoice, ctx, mint_key, accounts[1])
        epoch = parse_epoch(accounts[-1])
        offset = 2 + 2 * TOKEN_PROGRAMS.index(info.program_id)
    else:
        offset = 1
    source_key = associated_token_address(payer, mint_key, info.program_id)
    destination = associated_token_address(recipient, mint_key, info.program_id)
    _check_token_account_field(invoice, destination)
    amount = invoice.base_units(info.decimals)
    display = from_base_units(amount, info.decimals)
    _check_cap(invoice, ctx, display)
    _check_trust(invoice, ctx, destination)
    _check_extensions(invoice, ctx, info, epoch)
    source = _token_account(invoice, accounts[offset], info, "your token account")
    payee = _token_account(invoice, accounts[offset + 1], info, "the recipient's token account")
    held = 0 if source is None else source.amount
    if source is not None and is_frozen(source):
        raise _unpayable(
            invoice,
            f"your {invoice.currency} token account {source_key} is frozen by the mint's authority",
        )
    if payee is not None and is_frozen(payee):
        raise _unpayable(
            invoice,
            f"the recipient's {invoice.currency} token account {destination} is frozen by the "
            "mint's authority, so a payment into it would fail",
        )
    rent = 0 if payee is not None else _creation_rent(invoice, ctx, info, destination)
    if held < amount:
        missing = from_base_units(amount - held, info.decimals)
        raise _insufficient(
            invoice,
            payer,
            f"wallet {payer} holds {format_amount(from_base_units(held, info.decimals))} "
            f"{invoice.currency} but this payment needs {format_amount(display)}; send at least "
            f"{format_amount(missing)} {invoice.currency} (mint {mint_key}) to {payer} and retry",
            missing=missing,
            currency=invoice.currency,
        )
    fee = network_fee(_SIGNATURES)
    what = "the network fee" + (
        " and the rent of the recipient's new token account" if rent else ""
    )
    _check_sol_cost(invoice, ctx, fee + rent, what)
    _check_lamports(invoice, payer, accounts[0], fee + rent, what)
    legacy = invoice.format == FORMAT_LEGACY
    reference, memo = _binding(invoice, ctx)
    plan = TransferPlan(
        payer=payer,
        recipient=recipient,
        amount=amount,
        destination=destination,
        mint=info,
        source=source_key,
        create_destination=payee is None,
        reference=reference,
        memo=memo,
        legacy=legacy,
        checked=not legacy,
    )
    debits = (Debit(payer, lamports=fee + rent), Debit(source_key, tokens=amount))
    return Quote(plan, blockhash, display, fee, rent, debits)


def _check_cap(invoice: Invoice, ctx: PaymentContext, amount: Decimal) -> None:
    why = ctx.rules.over_cap(currency_key(ctx.network, invoice.currency, invoice.mint), amount)
    if why is not None:
        raise PaymentPolicyError(
            f"refused by this agent's spending rules: {why}. Nothing was signed or paid",
            rule="max_payment",
            invoice=invoice.to_dict(),
            details={"amount": amount, "currency": invoice.currency},
        )


def _read_mint(
    invoice: Invoice, ctx: PaymentContext, mint: Pubkey, account: Account | None
) -> MintInfo:
    try:
        info = parse_mint(mint, account)
    except ValueError as exc:
        field_name = "payment.mint" if invoice.format == FORMAT_LEGACY else "invoice.mint"
        raise InvoiceValidationError(
            f"{field_name}: {exc}. Nothing was signed or paid; the invoice names a token "
            f"that cannot be paid on {ctx.network}",
            field=field_name,
            invoice=invoice.to_dict(),
            reason="bad_mint",
        ) from None
    if info.cacheable:  # a mint with extensions is read afresh: its authority may change them
        ctx.cache.remember_mint(info)
    return info


def _check_extensions(
    invoice: Invoice, ctx: PaymentContext, info: MintInfo, epoch: int | None
) -> None:
    extensions = info.extensions
    risks = extensions.risks(epoch)
    why = ctx.rules.refused_extensions(str(info.address), risks)
    if why is not None:
        raise PaymentPolicyError(
            f"refused by this agent's spending rules: {why}. Nothing was signed or paid",
            rule="token_extensions",
            invoice=invoice.to_dict(),
            details={"mint": str(info.address), "extensions": sorted(risks)},
        )
    if extensions.paused:
        raise _unpayable(invoice, f"the mint {info.address} is paused: no transfer can succeed")


def _creation_rent(
    invoice: Invoice, ctx: PaymentContext, info: MintInfo, destination: Pubkey
) -> int:
    """The rent of the payee's token account this payment would create, if it may."""
    rent = token_account_rent(info)
    why = ctx.rules.may_create_account(invoice.recipient, str(destination), _sol(rent))
    if why is not None:
        raise PaymentPolicyError(
            f"refused by this agent's spending rules: {why}. Nothing was signed or paid",
            rule="create_token_accounts",
            invoice=invoice.to_dict(),
            details={"recipient": invoice.recipient, "rent_lamports": rent},
        )
    if info.extensions.default_frozen:
        raise _unpayable(
            invoice,
            f"the recipient has no {invoice.currency} token account, and the mint creates new "
            "ones frozen, so a payment into it would fail",
        )
    return rent


def _check_sol_cost(invoice: Invoice, ctx: PaymentContext, lamports: int, what: str) -> None:
    """Fees and rent are SOL spent: they count against the SOL ``max_payment``."""
    why = ctx.rules.over_cap("SOL", from_base_units(lamports, SOL_DECIMALS))
    if why is not None:
        raise PaymentPolicyError(
            f"refused by this agent's spending rules: {why} (the SOL this payment costs is "
            f"{what}). Nothing was signed or paid",
            rule="max_payment",
            invoice=invoice.to_dict(),
            details={"amount": from_base_units(lamports, SOL_DECIMALS), "currency": "SOL"},
        )


def _check_trust(invoice: Invoice, ctx: PaymentContext, destination: Pubkey) -> None:
    why = ctx.rules.untrusted(invoice.recipient, str(destination))
    if why is not None:
        raise PaymentPolicyError(
            f"refused by this agent's spending rules: {why}. Nothing was signed or paid",
            rule="trusted_recipients",
            invoice=invoice.to_dict(),
            details={"recipient": invoice.recipient, "destination": str(destination)},
        )


def _check_token_account_field(invoice: Invoice, derived: Pubkey) -> None:
    named = invoice.token_account
    if named is not None and named != str(derived):
        raise InvoiceValidationError(
            f"payment.tokenAccount {named} is not the associated token account of "
            f"{invoice.recipient} for {invoice.currency} ({derived}); refusing to pay an account "
            "the recipient may not own. Nothing was signed or paid",
            field="payment.tokenAccount",
            invoice=invoice.to_dict(),
            reason="bad_recipient",
        )


def _token_account(
    invoice: Invoice, account: Account | None, info: MintInfo, what: str
) -> TokenAccount | None:
    try:
        return parse_token_account(account, info.program_id)
    except ValueError as exc:
        raise _unpayable(invoice, f"{what} for {invoice.currency} is unusable: {exc}") from None


def _check_lamports(
    invoice: Invoice, payer: Pubkey, account: Account | None, needed: int, what: str
) -> None:
    balance = 0 if account is None else account.lamports
    left = balance - needed
    if left >= WALLET_RENT_MINIMUM or left == 0:
        return
    if left < 0:
        missing = -left
        problem = (
            f"wallet {payer} holds {_sol(balance)} SOL but needs {_sol(needed)} SOL for {what}"
        )
    else:
        missing = WALLET_RENT_MINIMUM - left
        problem = (
            f"paying {what} ({_sol(needed)} SOL) would leave wallet {payer} with {_sol(left)} SOL, "
            f"below the {_sol(WALLET_RENT_MINIMUM)} SOL Solana requires an account to keep"
        )
    amount = from_base_units(missing, SOL_DECIMALS)
    raise _insufficient(
        invoice,
        payer,
        f"{problem}; send at least {format_amount(amount)} SOL to {payer} and retry",
        missing=amount,
        currency="SOL",
    )


def _insufficient(
    invoice: Invoice, payer: Pubkey, text: str, *, missing: Decimal, currency: str
) -> PaymentError:
    return PaymentError(
        f"insufficient funds: {text}. Nothing was signed or sent",
        invoice=invoice.to_dict(),
        reason="insufficient_funds",
        details={"address": str(payer), "missing": missing, "currency": currency},
    )


def _unpayable(invoice: Invoice, text: str) -> PaymentError:
    return PaymentError(
        f"this invoice cannot be paid: {text}. Nothing was signed or sent",
        invoice=invoice.to_dict(),
        reason="unpayable",
    )


def _sol(lamports: int) -> str:
    return format_amount(from_base_units(lamports, SOL_DECIMALS))
