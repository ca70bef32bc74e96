"""The 402 payment flow as a sans-I/O generator.

:func:`pay` decides everything about paying one 402 answer: parse and validate the invoice,
read the chain facts it needs, check the wallet can afford it, build and sign the transfer,
encode the ``X-PAYMENT`` header and judge the server's answer. It performs no I/O. Instead it
*yields effects* and is resumed with their results:

* :class:`RpcCall` - run these JSON-RPC requests (one batch); resume with the parsed results.
* :class:`Resend` - send the original HTTP request again with these extra headers; resume with
  the answer as an :class:`HttpReply`.

A driver (``AutoAgent`` over ``requests``; later an async one) runs the generator. Time and
randomness arrive through :class:`PaymentContext`, so tests drive the flow by hand.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from solders.account import Account
from solders.hash import Hash
from solders.pubkey import Pubkey
from solders.rent import Rent
from solders.transaction import VersionedTransaction

from ._headers import (
    PAYMENT_HEADER,
    PAYMENT_RESPONSE_HEADER,
    decode_payment_response,
    encode_payment_header,
)
from ._money import format_amount, from_base_units
from ._networks import SOL_DECIMALS
from ._receipts import PaymentReceipt
from ._rpc import RpcRequest, latest_blockhash_request, multiple_accounts_request
from .exceptions import InvoiceValidationError, PaymentError
from .invoices import FORMAT_LEGACY, Invoice
from .solana_utils import (
    LAMPORTS_PER_SIGNATURE,
    TOKEN_2022_PROGRAM_ID,
    TOKEN_PROGRAMS,
    MintInfo,
    TransferPlan,
    associated_token_address,
    build_transfer,
    is_frozen,
    parse_mint,
    parse_token_account,
    sign_transaction,
    split_reference,
)
from .wallet import Signer

__all__ = [
    "ChainCache",
    "HttpReply",
    "PaymentContext",
    "PaymentOutcome",
    "Resend",
    "RpcCall",
    "pay",
]

logger = logging.getLogger("human_rpc_sdk")

_RENT: Final = Rent.default()
WALLET_RENT_MINIMUM: Final = _RENT.minimum_balance(0)
# A Token-2022 associated account carries the ImmutableOwner extension: 170 bytes, not 165.
_TOKEN_ACCOUNT_BYTES: Final = {TOKEN_2022_PROGRAM_ID: 170}


# -- effects and their results ------------------------------------------------------------


@dataclass(frozen=True)
class HttpReply:
    """What the flow needs of an HTTP answer. ``headers`` must be case-insensitive."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str


@dataclass(frozen=True)
class RpcCall:
    """Effect: run ``requests`` as one JSON-RPC batch; resume with the parsed results."""

    requests: tuple[RpcRequest, ...]


@dataclass(frozen=True)
class Resend:
    """Effect: re-send the original request plus ``headers``; resume with an :class:`HttpReply`.

    ``receipt`` describes the payment the headers carry: from here on, money may move.
    """

    headers: Mapping[str, str]
    receipt: PaymentReceipt


Effect = RpcCall | Resend


@dataclass(frozen=True)
class PaymentOutcome:
    """How paying one 402 ended: the receipt, the server's answer, and the error to raise."""

    receipt: PaymentReceipt
    reply: HttpReply
    error: PaymentError | None = None


# -- context ------------------------------------------------------------------------------


class ChainCache:
    """Chain facts worth keeping between payments: a recent blockhash and mint data.

    A blockhash stays usable for about 60 seconds on chain; it is reused for ``blockhash_ttl``
    seconds, well inside that. Mint decimals and token programs never change and are kept.
    """

    def __init__(self, *, blockhash_ttl: float = 20.0) -> None:
        self.blockhash_ttl = blockhash_ttl
        self._lock = threading.Lock()
        self._blockhash: tuple[Hash, float] | None = None
        self._mints: dict[Pubkey, MintInfo] = {}

    def blockhash(self, now: float) -> Hash | None:
        with self._lock:
            if self._blockhash is None or now - self._blockhash[1] >= self.blockhash_ttl:
                return None
            return self._blockhash[0]

    def remember_blockhash(self, blockhash: Hash, now: float) -> None:
        with self._lock:
            self._blockhash = (blockhash, now)

    def forget_blockhash(self) -> None:
        with self._lock:
            self._blockhash = None

    def mint(self, address: Pubkey) -> MintInfo | None:
        with self._lock:
            return self._mints.get(address)

    def remember_mint(self, info: MintInfo) -> None:
        with self._lock:
            self._mints[info.address] = info


@dataclass(frozen=True)
class PaymentContext:
    """Everything the flow needs besides the 402 answer."""

    signer: Signer
    network: str
    cache: ChainCache
    clock: Callable[[], float]
    """Monotonic seconds, for cache ages."""
    now: Callable[[], datetime]
    """Wall-clock time (UTC), for receipts."""
    nonce: Callable[[], str]
    """A fresh random memo text, making payments without a reference unique."""


@dataclass(frozen=True)
class _Quote:
    plan: TransferPlan
    blockhash: Hash
    display_amount: Decimal
    fee_lamports: int
    rent_lamports: int


# -- the flow -----------------------------------------------------------------------------


def pay(reply: HttpReply, ctx: PaymentContext) -> Generator[Effect, Any, PaymentOutcome]:
    """Pay the invoice in the 402 answer ``reply`` and judge the server's answer."""
    invoice = Invoice.from_body(reply.body, url=reply.url)
    invoice.validate(network=ctx.network)
    quote = yield from _quote(invoice, ctx)
    transaction = sign_transaction(build_transfer(quote.plan, quote.blockhash), ctx.signer)
    receipt = _receipt(invoice, quote, transaction, reply.url, ctx)
    logger.info(
        "paying %s %s to %s for %s (signature %s)",
        format_amount(receipt.amount),
        receipt.currency,
        receipt.recipient,
        reply.url,
        receipt.signature,
    )
    header = encode_payment_header(transaction, ctx.network)
    answer: HttpReply = yield Resend({PAYMENT_HEADER: header}, receipt)
    return judge(answer, replace(receipt, http_status=answer.status), invoice)


def judge(answer: HttpReply, receipt: PaymentReceipt, invoice: Invoice) -> PaymentOutcome:
    """Decide whether the server accepted the payment carried by ``receipt``."""
    settlement = decode_payment_response(answer.headers.get(PAYMENT_RESPONSE_HEADER))
    if settlement and settlement.get("transaction") not in (None, "", receipt.signature):
        logger.warning(
            "server at %s reports settling transaction %s, not the one sent (%s)",
            answer.url,
            settlement.get("transaction"),
            receipt.signature,
        )
    if answer.status != 402:
        logger.info("payment %s accepted: HTTP %s", receipt.signature, answer.status)
        return PaymentOutcome(receipt, answer)
    why = _refusal_reason(answer.body, settlement)
    error = PaymentError(
        f"the server at {answer.url} still answered 402 Payment Required after receiving "
        f"payment {receipt.signature} ({why}). The SDK does not pay twice: look the signature "
        "up on chain before retrying, and contact the service if the money moved",
        invoice=invoice.to_dict(),
        signature=receipt.signature,
        reason="payment_refused",
        details={"server_reason": why},
    )
    return PaymentOutcome(receipt, answer, error)


def _refusal_reason(body: bytes, settlement: Mapping[str, Any] | None) -> str:
    if settlement and isinstance(settlement.get("errorReason"), str):
        return str(settlement["errorReason"])[:200]
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "no reason given"
    if isinstance(document, dict):
        for key in ("reason", "error", "details"):
            value = document.get(key)
            if isinstance(value, dict):
                value = value.get("reason") or value.get("message")
            if isinstance(value, str) and value:
                return value[:200]
    return "no reason given"


def _quote(invoice: Invoice, ctx: PaymentContext) -> Generator[Effect, Any, _Quote]:
    now = ctx.clock()
    blockhash = ctx.cache.blockhash(now)
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
        programs = (known.program_id,) if known else TOKEN_PROGRAMS
        keys = [payer] if known else [payer, mint]
        for program in programs:
            keys += [
                associated_token_address(payer, mint, program),
                associated_token_address(recipient, mint, program),
            ]
    batch = [multiple_accounts_request(keys, 0)]
    if blockhash is None:
        batch.append(latest_blockhash_request(1))
    results = yield RpcCall(tuple(batch))
    accounts: list[Account | None] = list(results[0].value)
    if blockhash is None:
        blockhash = results[1].value.blockhash
        ctx.cache.remember_blockhash(blockhash, now)
    if invoice.mint is None:
        return _sol_quote(invoice, ctx, payer, recipient, accounts, blockhash)
    return _token_quote(invoice, ctx, payer, recipient, accounts, blockhash, known)


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
) -> _Quote:
    lamports = invoice.base_units(SOL_DECIMALS)
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
    fee = LAMPORTS_PER_SIGNATURE
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
    return _Quote(plan, blockhash, from_base_units(lamports, SOL_DECIMALS), fee, 0)


def _token_quote(
    invoice: Invoice,
    ctx: PaymentContext,
    payer: Pubkey,
    recipient: Pubkey,
    accounts: list[Account | None],
    blockhash: Hash,
    info: MintInfo | None,
) -> _Quote:
    mint_key = Pubkey.from_string(str(invoice.mint))
    if info is None:
        try:
            info = parse_mint(mint_key, accounts[1])
        except ValueError as exc:
            field_name = "payment.mint" if invoice.format == FORMAT_LEGACY else "invoice.mint"
            raise InvoiceValidationError(
                f"{field_name}: {exc}. Nothing was signed or paid; the invoice names a token "
                f"that cannot be paid on {ctx.network}",
                field=field_name,
                invoice=invoice.to_dict(),
                reason="bad_mint",
            ) from None
        ctx.cache.remember_mint(info)
        offset = 2 + 2 * TOKEN_PROGRAMS.index(info.program_id)
    else:
        offset = 1
    source_key = associated_token_address(payer, mint_key, info.program_id)
    destination = associated_token_address(recipient, mint_key, info.program_id)
    _check_token_account_field(invoice, destination)
    amount = invoice.base_units(info.decimals)
    display = from_base_units(amount, info.decimals)
    source = _token_account(invoice, accounts[offset], info, "your token account")
    payee = _token_account(invoice, accounts[offset + 1], info, "the recipient's token account")
    held = 0 if source is None else source.amount
    if source is not None and is_frozen(source):
        raise _unpayable(
            invoice,
            f"your {invoice.currency} token account {source_key} is frozen by the mint's authority",
        )
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
    rent = (
        0
        if payee is not None
        else _RENT.minimum_balance(_TOKEN_ACCOUNT_BYTES.get(info.program_id, 165))
    )
    fee = LAMPORTS_PER_SIGNATURE
    what = "the network fee" + (
        " and the rent of the recipient's new token account" if rent else ""
    )
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
    return _Quote(plan, blockhash, display, fee, rent)


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


def _token_account(invoice: Invoice, account: Account | None, info: MintInfo, what: str) -> Any:
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


def _receipt(
    invoice: Invoice,
    quote: _Quote,
    transaction: VersionedTransaction,
    url: str,
    ctx: PaymentContext,
) -> PaymentReceipt:
    plan = quote.plan
    return PaymentReceipt(
        url=url,
        amount=quote.display_amount,
        currency=invoice.currency,
        mint=invoice.mint,
        recipient=invoice.recipient,
        reference=invoice.reference,
        network=invoice.network,
        signature=str(transaction.signatures[0]),
        time=ctx.now(),
        atomic_amount=plan.amount,
        payer=str(plan.payer),
        destination=str(plan.destination),
        fee_lamports=quote.fee_lamports,
        rent_lamports=quote.rent_lamports,
        format=invoice.format,
    )


def _sol(lamports: int) -> str:
    return format_amount(from_base_units(lamports, SOL_DECIMALS))
