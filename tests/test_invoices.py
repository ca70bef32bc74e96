"""Invoice parsing and validation, for both HumanRPC formats."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict
from solders.keypair import Keypair

from human_rpc_sdk import Invoice, InvoiceValidationError
from human_rpc_sdk._flow import ChainCache, HttpReply, PaymentContext, RpcCall, pay
from human_rpc_sdk.wallet import KeypairSigner

from .conftest import booked

DEVNET_USDC = "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU"
RECIPIENT = str(Keypair.from_seed(b"r" * 32).pubkey())


def design(**invoice: Any) -> dict[str, Any]:
    body = {"amount": "0.05", "currency": "USDC", "recipient": RECIPIENT, "network": "devnet"}
    body.update(invoice)
    return {"status": "payment_required", "invoice": body, "message": "pay"}


def legacy(**payment: Any) -> dict[str, Any]:
    body = {
        "recipientWallet": RECIPIENT,
        "amount": 10_000_000,
        "amountSOL": "0.01",
        "cluster": "devnet",
    }
    body.update(payment)
    return {"payment": body}


def test_design_document_example_parses() -> None:
    """The design document's invoice example is understood field by field."""
    invoice = Invoice(design(amount=0.05, reference="optional-ref-hex"))
    invoice.validate(network="devnet")
    assert invoice.amount == Decimal("0.05")
    assert invoice.currency == "USDC"
    assert invoice.mint == DEVNET_USDC
    assert invoice.get_recipient() == RECIPIENT
    assert invoice.get_currency() == "USDC"
    assert invoice.reference == "optional-ref-hex"
    assert invoice.base_units(6) == 50_000
    assert invoice.message == "pay"


def test_bare_invoice_object_is_accepted() -> None:
    """Invoice() also takes the inner invoice object alone."""
    assert Invoice(design()["invoice"]).base_units(6) == 50_000


def test_sol_invoice_in_lamports() -> None:
    """A SOL invoice converts to lamports with 9 decimals."""
    invoice = Invoice(design(currency="sol", amount="0.000000001"))
    assert invoice.currency == "SOL"
    assert invoice.is_native
    assert invoice.get_amount_lamports() == 1


def test_token_invoice_has_no_lamports() -> None:
    """get_amount_lamports() refuses a token invoice instead of guessing decimals."""
    with pytest.raises(InvoiceValidationError, match="not SOL"):
        Invoice(design()).get_amount_lamports()


def test_legacy_payment_body_parses() -> None:
    """The deployed service's body: base units, cluster, recipientWallet."""
    invoice = Invoice(legacy())
    assert invoice.format == "humanrpc-legacy"
    assert invoice.atomic_amount == 10_000_000
    assert invoice.base_units() == 10_000_000
    assert invoice.display_amount() == Decimal("0.01")


def test_legacy_usdc_body_uses_the_known_symbol() -> None:
    """A legacy token payment in devnet USDC is labelled USDC and keeps its tokenAccount."""
    invoice = Invoice(
        legacy(
            mint=DEVNET_USDC, amount=100, amountSOL=None, amountUSDC=0.0001, tokenAccount=RECIPIENT
        )
    )
    assert invoice.currency == "USDC"
    assert invoice.token_account == RECIPIENT
    assert invoice.base_units(6) == 100


def test_legacy_display_amount_must_agree() -> None:
    """amountUSDC that disagrees with amount (base units) is refused."""
    invoice = Invoice(
        legacy(mint=DEVNET_USDC, amount=100_000_000, amountSOL=None, amountUSDC="0.0001")
    )
    with pytest.raises(InvoiceValidationError) as caught:
        invoice.base_units(6)
    assert caught.value.field == "payment.amountUSDC"


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (design(amount=0), "invoice.amount", "greater than zero"),
        (design(amount=-1), "invoice.amount", "greater than zero"),
        (design(amount="NaN"), "invoice.amount", "plain decimal"),
        (design(amount=True), "invoice.amount", "boolean"),
        (design(amount=[1]), "invoice.amount", "must be a number"),
        (design(currency="DOGE"), "invoice.mint", "not a token this SDK knows"),
        (design(currency=""), "invoice.currency", "currency symbol"),
        (design(currency="SOL", mint=DEVNET_USDC), "invoice.mint", "absent"),
        (design(mint=RECIPIENT), "invoice.mint", "not USDC on devnet"),
        (design(mint="xyz"), "invoice.mint", "not a valid Solana address"),
        (design(recipient="nope"), "invoice.recipient", "not a valid Solana address"),
        (design(recipient=None), "invoice.recipient", "missing"),
        (
            design(recipient="11111111111111111111111111111111"),
            "invoice.recipient",
            "System Program",
        ),
        (design(network="mars"), "invoice.network", "must be one of"),
        (design(network=None), "invoice.network", "missing"),
        (design(reference=""), "invoice.reference", "non-empty"),
        (design(reference="x" * 200), "invoice.reference", "longer than"),
        (design(reference="a\nb"), "invoice.reference", "control characters"),
        (legacy(amount=1.5), "payment.amount", "whole number"),
        (legacy(cluster=None), "payment.cluster", "refusing to guess"),
        (legacy(recipientWallet=42), "payment.recipientWallet", "base58"),
    ],
)
def test_invalid_invoices_name_their_field(body: dict[str, Any], field: str, words: str) -> None:
    """Each invalid field is refused with InvoiceValidationError naming it."""
    with pytest.raises(InvoiceValidationError) as caught:
        Invoice(body).validate()
    assert caught.value.field == field
    assert words in str(caught.value)
    assert "Nothing was signed or paid" in str(caught.value)


def test_other_network_is_refused() -> None:
    """An invoice for another network than the agent's is refused, naming the fix."""
    with pytest.raises(InvoiceValidationError) as caught:
        Invoice(design(network="mainnet-beta", mint=None, currency="USDC")).validate(
            network="devnet"
        )
    assert caught.value.field == "invoice.network"
    assert "network='mainnet-beta'" in str(caught.value)


@pytest.mark.parametrize(
    "body",
    [b"", b"<html>pay me</html>", b"[1, 2]", b'"text"', b"{}", b'{"accepts": []}', b"\xff\xfe"],
)
def test_bodies_without_an_invoice_are_refused(body: bytes) -> None:
    """A 402 whose body carries no invoice is refused before anything else."""
    with pytest.raises(InvoiceValidationError):
        Invoice.from_body(body).validate()


def test_json_numbers_are_exact_decimals() -> None:
    """A JSON amount of 0.1 parses to Decimal('0.1'), never a binary float."""
    invoice = Invoice.from_body(json.dumps(design(amount=0.1)).replace('"0.1"', "0.1"))
    assert invoice.amount == Decimal("0.1")
    assert invoice.base_units(6) == 100_000


# -- Property 3 -------------------------------------------------------------------------------

addresses = st.builds(
    lambda seed: str(Keypair.from_seed(seed).pubkey()), st.binary(min_size=32, max_size=32)
)
amounts = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("1000000"), places=6)
valid_invoices = st.fixed_dictionaries(
    {
        "amount": st.one_of(amounts.map(str), amounts.map(float).filter(lambda f: f > 0)),
        "currency": st.sampled_from(["SOL", "USDC", "usdc"]),
        "recipient": addresses,
        "network": st.just("devnet"),
    },
    optional={
        "reference": st.one_of(addresses, st.text(min_size=1, max_size=40).filter(str.isprintable))
    },
)

CORRUPTIONS: dict[str, list[Any]] = {
    "amount": [0, -5, "abc", None, True, "1e9", [], {}, "0.0000000001"],
    "currency": [None, "", 5, "DOGE"],
    "recipient": [None, "", "abc", 7, "11111111111111111111111111111111"],
    "network": [None, "mainnet", "solana", 1],
    "reference": ["", 5, "z" * 300],
}


def _ctx() -> PaymentContext:
    return PaymentContext(
        signer=KeypairSigner(Keypair.from_seed(b"p" * 32)),
        network="devnet",
        cache=ChainCache(),
        clock=lambda: 0.0,
        now=lambda: datetime(2026, 1, 1, tzinfo=UTC),
        nonce=lambda: "n" * 32,
    )


def _first_effect(body: object) -> object:
    reply = HttpReply(402, CaseInsensitiveDict(), json.dumps(body).encode(), "http://x/paid")
    return next(booked(pay(reply, _ctx())))


# **Feature: human-rpc-python-sdk, Property 3: For any 402 response containing invoice data, the
# system should successfully parse valid invoices and reject invalid ones with descriptive errors**
@given(invoice=valid_invoices)
def test_property_3_valid_invoices_reach_the_chain_lookup(invoice: dict[str, Any]) -> None:
    """A valid invoice parses and the flow's first effect is the chain lookup (nothing signed)."""
    body = {"status": "payment_required", "invoice": invoice}
    parsed = Invoice(body)
    parsed.validate(network="devnet")
    assert parsed.recipient == invoice["recipient"]
    assert parsed.amount == Decimal(str(invoice["amount"]))
    decimals = 9 if invoice["currency"] == "SOL" else 6
    if parsed.amount is not None and parsed.amount.as_tuple().exponent >= -decimals:  # type: ignore[operator]
        assert parsed.base_units(decimals) == int(parsed.amount.scaleb(decimals))
    assert isinstance(_first_effect(body), RpcCall)


# **Feature: human-rpc-python-sdk, Property 3: For any 402 response containing invoice data, the
# system should successfully parse valid invoices and reject invalid ones with descriptive errors**
@given(invoice=valid_invoices, data=st.data())
def test_property_3_invalid_invoices_are_refused_naming_the_field(
    invoice: dict[str, Any], data: st.DataObject
) -> None:
    """Corrupting one field gives InvoiceValidationError naming it, before any effect."""
    name = data.draw(st.sampled_from(sorted(CORRUPTIONS)))
    invoice = {**invoice, name: data.draw(st.sampled_from(CORRUPTIONS[name]))}
    if name == "currency" and invoice["currency"] == "DOGE":
        name = "mint"  # an unknown symbol needs a mint: the error names the missing mint
    body = {"status": "payment_required", "invoice": invoice}
    # 1e-10 parses, but cannot be paid exactly in a 6- or 9-decimal token.
    too_precise = name == "amount" and invoice["amount"] == "0.0000000001"

    def attempt() -> object:
        return Invoice(body).base_units(6) if too_precise else _first_effect(body)

    with pytest.raises(InvoiceValidationError) as caught:
        attempt()
    error = caught.value
    assert error.field == f"invoice.{name}"
    assert len(str(error)) > 40
    assert error.invoice is not None


@given(
    body=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=12,
    )
)
def test_arbitrary_json_never_reaches_signing(body: object) -> None:
    """Random JSON either is refused with InvoiceValidationError or yields no signing effect."""
    try:
        effect = _first_effect(body)
    except InvoiceValidationError:
        return
    assert isinstance(effect, RpcCall)
