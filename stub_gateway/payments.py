"""The payment desk: issues invoices and settles the payments that answer them.

Settlement is as strict as a real server's. For a HumanRPC invoice the desk checks, before
anything executes, that the ``X-PAYMENT`` transaction pays *this* invoice: the network, a
valid signature from the fee payer, only instructions a payment needs, exactly one transfer
of exactly the invoiced amount to the payee (its token account for a token, through
``TransferChecked`` with the right mint and decimals), bound to the invoice's reference, and
that the invoice is for this resource, unpaid and unexpired. It then simulates the transaction
on the ledger and commits its effects only when the simulation succeeded (one run of the
runtime, under the ledger's lock: :meth:`.Ledger.settle`); the content is served only then.

The deployed HumanRPC service's ``payment`` format is settled the way that service does it
(``PROTOCOL.md`` section A): a legacy transaction, a System transfer to the treasury (within
1000 lamports of the price) or a plain SPL ``Transfer`` of the classic Token program to the
treasury's token account, simulated, then sent.

Every refusal has a machine-readable ``reason`` and moves no money.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from solders.instruction import Instruction
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction
from spl.token.constants import ASSOCIATED_TOKEN_PROGRAM_ID, TOKEN_PROGRAM_ID

from human_rpc_sdk._headers import PaymentHeader, decode_payment_header, unb64json
from human_rpc_sdk._money import format_amount, to_base_units
from human_rpc_sdk.solana_utils import associated_token_address

from .genesis import Genesis, Token
from .instructions import (
    Payment,
    Transfer,
    Unacceptable,
    check_signatures,
    exact_transaction,
    legacy_instructions,
    read_payment,
    read_transfer,
)
from .ledger import Execution, Ledger

__all__ = ["Invoice", "PaymentDesk", "Price", "Refusal", "Settlement"]

LEGACY_SOL_TOLERANCE: Final = 1_000  # lamports, as the deployed service's on-chain check


@dataclass(frozen=True)
class Price:
    """What a resource costs: an amount in display units of ``currency`` (SOL, USDC, PYUSD)."""

    amount: Decimal
    currency: str
    recipient: Pubkey | None = None
    """Who is paid; the gateway's treasury when None."""


@dataclass
class Invoice:
    """An invoice the desk issued."""

    reference: str
    resource: str
    price: Price
    recipient: Pubkey
    token: Token | None
    atomic: int
    destination: Pubkey
    issued: float
    expires: float
    paid_by: str | None = None
    overcharged: bool = False
    """Issued above the resource's price on purpose (the ``overcharge`` fault): its own price
    is what settles it."""

    def body(self, network: str, message: str | None = None) -> dict[str, Any]:
        """The design document's 402 body for this invoice."""
        invoice: dict[str, Any] = {
            "amount": self.price.amount,
            "currency": self.price.currency,
            "recipient": str(self.recipient),
            "reference": self.reference,
            "network": network,
        }
        if self.token is not None:
            invoice["mint"] = str(self.token.mint)
        price = f"{format_amount(self.price.amount)} {self.price.currency}"
        text = f"{price} required to unlock {self.resource}"
        return {"status": "payment_required", "invoice": invoice, "message": message or text}


@dataclass(frozen=True)
class Settlement:
    """A payment that executed on the ledger."""

    signature: str
    payer: str
    invoice: Invoice | None
    execution: Execution


@dataclass(frozen=True)
class Refusal:
    """Why a payment was refused. Nothing moved."""

    reason: str
    message: str
    payer: str | None = None
    signature: str | None = None


class PaymentDesk:
    """Issues invoices and settles payments against a :class:`Ledger`.

    :param reference_style: ``"pubkey"`` (a fresh public key per invoice, bound as a
        read-only account of the transfer, the Solana Pay way) or ``"memo"`` (a random hex
        string carried in an SPL Memo).
    """

    def __init__(
        self,
        ledger: Ledger,
        genesis: Genesis,
        *,
        invoice_ttl: float = 300.0,
        reference_style: str = "pubkey",
        clock: Callable[[], float],
    ) -> None:
        if reference_style not in ("pubkey", "memo"):
            raise ValueError("reference_style must be 'pubkey' or 'memo'")
        self.ledger = ledger
        self.genesis = genesis
        self.network = genesis.network
        self.invoice_ttl = invoice_ttl
        self.reference_style = reference_style
        self._clock = clock
        self._lock = threading.Lock()
        self._invoices: dict[str, Invoice] = {}
        self._token_accounts: dict[tuple[Pubkey, Pubkey], Pubkey] = {}
        self.settlements: list[Settlement] = []

    # -- issuing ---------------------------------------------------------------------------

    def issue(self, price: Price, resource: str, *, overcharged: bool = False) -> Invoice:
        """A fresh invoice with a unique reference for ``resource``."""
        return self.register(self.new_invoice(price, resource, overcharged=overcharged))

    def register(self, invoice: Invoice) -> Invoice:
        """Know ``invoice`` (made by :meth:`new_invoice`) from now on: it can be paid."""
        with self._lock:
            if invoice.reference in self._invoices:
                raise ValueError("an invoice with this reference exists already")
            self._invoices[invoice.reference] = invoice
        return invoice

    def new_invoice(self, price: Price, resource: str, *, overcharged: bool = False) -> Invoice:
        """A fresh invoice with a unique (random) reference, issued now; not yet known to
        the desk (that is :meth:`register`): this reads no state, a worker process runs it."""
        recipient = price.recipient or self.genesis.treasury
        token = None if price.currency.upper() == "SOL" else self.genesis.token(price.currency)
        decimals = 9 if token is None else token.decimals
        destination = recipient if token is None else self._token_account(recipient, token)
        if self.reference_style == "pubkey":
            # Any unused address is a reference (Solana Pay): random bytes, no key pair made.
            reference = str(Pubkey(secrets.token_bytes(32)))
        else:
            reference = secrets.token_hex(16)
        now = self._clock()
        return Invoice(
            reference=reference,
            resource=resource,
            price=price,
            recipient=recipient,
            token=token,
            atomic=to_base_units(price.amount, decimals),
            destination=destination,
            issued=now,
            expires=now + self.invoice_ttl,
            overcharged=overcharged,
        )

    def _token_account(self, owner: Pubkey, token: Token) -> Pubkey:
        """``owner``'s associated account of ``token``, derived once per payee (the payees
        are the gateway's configured prices, a handful)."""
        key = (owner, token.mint)
        found = self._token_accounts.get(key)
        if found is None:
            found = associated_token_address(owner, token.mint, token.program_id)
            self._token_accounts[key] = found
        return found

    def legacy_body(self, price: Price) -> dict[str, Any]:
        """The deployed HumanRPC service's 402 body (amounts in base units)."""
        recipient = price.recipient or self.genesis.treasury
        if price.currency.upper() == "SOL":
            lamports = to_base_units(price.amount, 9)
            payment: dict[str, Any] = {
                "recipientWallet": str(recipient),
                "amount": lamports,
                "amountSOL": price.amount,
                "cluster": self.network,
                "message": "Send SOL to the recipient wallet",
            }
        else:
            token = self.genesis.token(price.currency)
            payment = {
                "recipientWallet": str(recipient),
                "tokenAccount": str(
                    associated_token_address(recipient, token.mint, TOKEN_PROGRAM_ID)
                ),
                "mint": str(token.mint),
                "amount": to_base_units(price.amount, token.decimals),
                "amountUSDC": price.amount,
                "cluster": self.network,
                "message": "Send USDC to the token account",
            }
        return {"payment": payment}

    def invoice(self, reference: str) -> Invoice | None:
        with self._lock:
            return self._invoices.get(reference)

    def now(self) -> float:
        """The desk's clock (invoice times are read on it)."""
        return self._clock()

    @contextlib.contextmanager
    def held(self) -> Iterator[list[Invoice]]:
        """Hold settlement still and yield a copy of every invoice (paid ones included), so a
        snapshot of the ledger taken meanwhile agrees with which invoices are paid."""
        with self._lock:
            yield [dataclasses.replace(invoice) for invoice in self._invoices.values()]

    def restore_invoices(self, invoices: Iterable[Invoice]) -> None:
        """Know these invoices again (kept across a restart), paid ones staying paid."""
        with self._lock:
            self._invoices.update((invoice.reference, invoice) for invoice in invoices)

    # -- settling HumanRPC invoices ----------------------------------------------------------

    def settle(
        self, header_value: str, resource: str, price: Price | None = None
    ) -> Settlement | Refusal:
        """Verify the ``X-PAYMENT`` header for ``resource`` and, if it pays, execute it.

        With ``price``, the invoice must also be for that price: a request that changed what
        it buys after being invoiced (a bigger task reward, say) is refused.
        """
        read = self.read(header_value)
        if isinstance(read, Refusal):
            return read
        return self.conclude(*read, resource, price)

    def read(self, header_value: str) -> tuple[VersionedTransaction, Payment] | Refusal:
        """The ``X-PAYMENT`` header's transaction and the payment it makes, checked for all
        that needs no state (network, signatures, instructions): a worker process can run it."""
        header = _decode(header_value)
        if isinstance(header, Refusal):
            return header
        if header.network != self.network:
            return Refusal(
                "network_mismatch",
                f"the payment is for {header.network!r}; this gateway is {self.network!r}",
            )
        transaction = header.transaction
        try:
            check_signatures(transaction)
            return transaction, read_payment(transaction)
        except Unacceptable as exc:
            return Refusal(exc.reason, exc.message)

    def conclude(
        self,
        transaction: VersionedTransaction,
        payment: Payment,
        resource: str,
        price: Price | None = None,
    ) -> Settlement | Refusal:
        """Settle what :meth:`read` read: it must pay an unpaid, unexpired invoice of this
        desk for ``resource`` (and ``price``), exactly; then it executes."""
        invoice = self._find_invoice(payment.transfer, payment.memos)
        if isinstance(invoice, Refusal):
            return invoice
        refusal = self._check_against(invoice, payment, resource, price)
        if refusal is not None:
            return refusal
        return self.execute(transaction, transaction.message.account_keys[0], invoice)

    def _find_invoice(self, transfer: Transfer, memos: list[str]) -> Invoice | Refusal:
        candidates = [str(meta.pubkey) for meta in transfer.extras] + memos
        with self._lock:
            found = [self._invoices[c] for c in candidates if c in self._invoices]
        if not found:
            return Refusal(
                "unknown_invoice",
                "the payment carries no reference of an invoice this gateway issued; pay the "
                "invoice from a fresh 402 answer",
            )
        if len(found) > 1:
            return Refusal("ambiguous_invoice", "the payment references more than one invoice")
        invoice = found[0]
        if invoice.reference in memos:
            return invoice
        meta = next(m for m in transfer.extras if str(m.pubkey) == invoice.reference)
        if meta.is_signer or meta.is_writable:
            return Refusal(
                "reference_not_bound",
                "the invoice reference must be a read-only, non-signer account of the transfer",
            )
        return invoice

    def _check_against(
        self, invoice: Invoice, payment: Payment, resource: str, price: Price | None
    ) -> Refusal | None:
        transfer = payment.transfer
        if invoice.resource != resource:
            return Refusal(
                "wrong_resource", f"the invoice was issued for {invoice.resource}, not {resource}"
            )
        if (
            price is not None
            and not invoice.overcharged
            and not _same_price(invoice, price, self.genesis.treasury)
        ):
            return Refusal(
                "price_changed",
                "the request now costs something else than its invoice; request a new invoice",
            )
        if invoice.paid_by is not None:
            return Refusal(
                "invoice_already_paid",
                f"the invoice was already paid by transaction {invoice.paid_by}",
            )
        if self._clock() >= invoice.expires:
            return Refusal(
                "invoice_expired",
                "the invoice has expired; request the resource again for a fresh one",
            )
        if invoice.token is None:
            if transfer.kind != "system":
                return Refusal(
                    "wrong_currency", "the invoice asks for SOL but the payment is a token transfer"
                )
            if transfer.destination != invoice.recipient:
                return Refusal(
                    "wrong_recipient",
                    f"the SOL transfer goes to {transfer.destination}, not {invoice.recipient}",
                )
        else:
            token = invoice.token
            if transfer.kind != "checked":
                return Refusal(
                    "not_transfer_checked",
                    "token payments must use TransferChecked so mint and decimals are checked",
                )
            if transfer.instruction.program_id != token.program_id or transfer.mint != token.mint:
                return Refusal(
                    "wrong_mint", f"the payment is not in {token.symbol} (mint {token.mint})"
                )
            if transfer.decimals != token.decimals:
                return Refusal("wrong_decimals", f"{token.symbol} has {token.decimals} decimals")
            if transfer.destination != invoice.destination:
                return Refusal(
                    "wrong_recipient",
                    f"the transfer goes to {transfer.destination}, not {invoice.recipient}'s "
                    f"token account {invoice.destination}",
                )
        if transfer.amount != invoice.atomic:
            return Refusal(
                "wrong_amount",
                f"the transfer moves {transfer.amount} base units; the invoice asks for "
                f"exactly {invoice.atomic}",
            )
        return _check_side_instructions(payment, invoice)

    def execute(
        self, transaction: VersionedTransaction, payer: Pubkey, invoice: Invoice | None
    ) -> Settlement | Refusal:
        """Simulate ``transaction`` and commit it if it succeeds, paying ``invoice`` (None:
        the deployed service's format, which has no invoice). Its signatures have been
        verified (:meth:`read` and :meth:`settle_legacy` check them first): the runtime does
        not verify them again."""
        with self._lock:
            if invoice is not None and invoice.paid_by is not None:
                return Refusal(
                    "invoice_already_paid",
                    f"the invoice was already paid by transaction {invoice.paid_by}",
                )
            # Simulated, and committed only if it succeeds, in one run of the runtime.
            execution = self.ledger.settle(transaction, signatures_checked=True)
            if not execution.ok:
                return _failed(execution, payer)
            signature = str(execution.signature)
            if invoice is not None:
                invoice.paid_by = signature
            settlement = Settlement(
                signature=signature, payer=str(payer), invoice=invoice, execution=execution
            )
            self.settlements.append(settlement)
            return settlement

    # -- settling the deployed service's format ----------------------------------------------

    def settle_legacy(self, header_value: str, price: Price) -> Settlement | Refusal:
        """Settle like the deployed HumanRPC service: legacy transaction, scan, simulate, send."""
        header = _decode(header_value)
        if isinstance(header, Refusal):
            return header
        transaction = header.transaction
        try:
            instructions = legacy_instructions(transaction)
            check_signatures(transaction)
        except Unacceptable as exc:
            return Refusal(exc.reason, exc.message)
        recipient = price.recipient or self.genesis.treasury
        if price.currency.upper() == "SOL":
            lamports = to_base_units(price.amount, 9)
            found = any(_legacy_sol_match(ix, recipient, lamports) for ix in instructions)
        else:
            token = self.genesis.token(price.currency)
            destination = associated_token_address(recipient, token.mint, TOKEN_PROGRAM_ID)
            units = to_base_units(price.amount, token.decimals)
            found = any(_legacy_token_match(ix, destination, units) for ix in instructions)
        if not found:
            return Refusal(
                "payment_verification_failed",
                "no transfer of the price to the treasury was found (SOL: System transfer to the "
                "wallet; USDC: SPL Transfer of the classic Token program to its token account)",
            )
        return self.execute(transaction, transaction.message.account_keys[0], None)


# -- helpers ------------------------------------------------------------------------------


def _same_price(invoice: Invoice, price: Price, treasury: Pubkey) -> bool:
    return (
        invoice.price.amount == price.amount
        and invoice.price.currency.upper() == price.currency.upper()
        and invoice.recipient == (price.recipient or treasury)
    )


def _decode(header_value: str) -> PaymentHeader | Refusal:
    try:
        header = decode_payment_header(header_value)
        # The header parsed, so this is its transaction's base64: it must hold nothing more.
        serialized = unb64json(header_value, "X-PAYMENT")["payload"]["serializedTransaction"]
        exact_transaction(base64.b64decode(serialized, validate=True))
    except ValueError as exc:
        return Refusal("invalid_payment_header", str(exc))
    return header


def _check_side_instructions(payment: Payment, invoice: Invoice) -> Refusal | None:
    """Besides the transfer, allow only memos, compute budget, and creating the payee's ATA."""
    for ix in payment.instructions:
        if ix.program_id != ASSOCIATED_TOKEN_PROGRAM_ID:
            continue
        accounts = [m.pubkey for m in ix.accounts]
        token = invoice.token
        if (
            token is None
            or bytes(ix.data) not in (b"", b"\x01")
            or len(accounts) < 6
            or accounts[1] != invoice.destination
            or accounts[2] != invoice.recipient
            or accounts[3] != token.mint
        ):
            return Refusal(
                "unexpected_instruction",
                "the only account a payment may create is the payee's token account",
            )
    return None


def _legacy_sol_match(ix: Instruction, recipient: Pubkey, lamports: int) -> bool:
    transfer = read_transfer(ix)
    return (
        transfer is not None
        and transfer.kind == "system"
        and transfer.destination == recipient
        and lamports <= transfer.amount <= lamports + LEGACY_SOL_TOLERANCE
    )


def _legacy_token_match(ix: Instruction, destination: Pubkey, units: int) -> bool:
    transfer = read_transfer(ix)
    return (
        transfer is not None
        and transfer.kind == "plain"
        and ix.program_id == TOKEN_PROGRAM_ID
        and transfer.destination == destination
        and transfer.amount >= units
    )


def _failed(execution: Execution, payer: Pubkey) -> Refusal:
    reason = "blockhash_expired" if "blockhash" in execution.describe() else "transaction_failed"
    if "already processed" in execution.describe():
        reason = "duplicate_transaction"
    return Refusal(
        reason,
        f"the payment failed on the ledger: {execution.describe()}",
        payer=str(payer),
        signature=str(execution.signature),
    )
