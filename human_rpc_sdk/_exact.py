"""Choosing and quoting an x402 "exact" offer (pure: chain facts arrive as effect results).

Every offer is refused with a reason or becomes a candidate: scheme ``exact``, the agent's
network, an accepted asset (a token this SDK knows on the network, or one in
``accept_assets``). The chain cache, or one JSON-RPC round trip when it is not fresh, then
gives, for every candidate, the mint (unless cached), the payer's and the payee's token
accounts under both token programs, and a blockhash; no offer is refused on cached state
alone (the accounts are read afresh first). A candidate is payable when the payer holds the
amount, the payee has a token account (the exact scheme never creates one), the amount is
within ``max_payment``, and the mint has no risky Token-2022 extension the caller did not
allow (``allow_token_extensions``). The cheapest payable offer, in display units, wins. The
facilitator pays the network fees, so the agent's fee is 0 unless it is the fee payer itself.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from solders.account import Account
from solders.hash import Hash
from solders.pubkey import Pubkey
from solders.sysvar import CLOCK

from ._effects import ChainRead, Debit, Flow, PaymentContext, read_chain
from ._limits import Refusal, currency_key
from ._money import format_amount, from_base_units
from ._networks import KNOWN_MINTS, SOL_DECIMALS, symbol_for_mint
from ._x402 import (
    COMPUTE_UNIT_LIMIT,
    COMPUTE_UNIT_PRICE,
    Offer,
    PaymentRequired,
    network_refusal,
    refusal,
    self_refusal,
)
from .exceptions import (
    InvoiceValidationError,
    NetworkMismatchError,
    PaymentError,
    PaymentPolicyError,
)
from .solana_utils import (
    TOKEN_PROGRAMS,
    MintInfo,
    associated_token_address,
    is_frozen,
    network_fee,
    parse_epoch,
    parse_mint,
    parse_token_account,
)

__all__ = ["ExactQuote", "quote_exact"]


@dataclass(frozen=True)
class ExactQuote:
    offer: Offer
    mint: MintInfo
    symbol: str
    display_amount: Decimal
    blockhash: Hash
    destination: Pubkey
    fee_lamports: int = 0
    """What the agent pays in network fees: 0, as the facilitator pays them (``feePayer``)."""
    genesis_hash: str | None = None
    """The chain the node served when the accounts were read (asked whenever an offer brings
    its own blockhash: a payment over it is taken to be made on that chain)."""
    debits: tuple[Debit, ...] = ()
    """What paying it takes from the payer's accounts (applied to the cache when signed)."""


@dataclass(frozen=True)
class _Candidate:
    offer: Offer
    mint: Pubkey
    known: MintInfo | None
    first_key: int


def quote_exact(
    challenge: PaymentRequired, ctx: PaymentContext, *, fresh_blockhash: bool = False
) -> Flow[ExactQuote]:
    """The offer to pay and what paying it takes; ``PaymentError`` listing every refusal if none.

    With ``fresh_blockhash``, an offer's ``extra.recentBlockhash`` is not used (a replacement
    payment must not reuse the blockhash that expired).
    """
    refusals: dict[int, Refusal] = {}
    accepted = set(KNOWN_MINTS[ctx.network].values()) | ctx.rules.accept_assets
    candidates: list[_Candidate] = []
    payer = ctx.signer.pubkey()
    keys: list[Pubkey] = [payer]
    for offer in challenge.offers:
        why = _refusal_before_chain(offer, ctx, accepted)
        if why is not None:
            refusals[offer.index] = why
            continue
        mint = Pubkey.from_string(offer.asset)
        known = ctx.cache.mint(mint)
        candidates.append(_Candidate(offer, mint, known, len(keys)))
        keys += _candidate_keys(payer, Pubkey.from_string(offer.pay_to), mint, known)
    if not candidates:
        raise _none_payable(challenge, refusals, ctx.network)
    # An uncached mint may carry Token-2022 extensions: the Clock sysvar (last) tells which of
    # its transfer fees applies now.
    with_clock = any(c.known is None for c in candidates)
    server_blockhash = not fresh_blockhash and any(c.offer.recent_blockhash for c in candidates)
    keys = [*keys, CLOCK] if with_clock else keys
    read = yield from read_chain(keys, ctx, ask_chain=server_blockhash)
    quotes, on_chain = _evaluate_all(candidates, read, ctx, payer, with_clock)
    if read.cached and _stale_choice(candidates, quotes, on_chain, read.accounts):
        # Cached state may be stale (a deposit not seen yet): refuse an offer on it only after
        # a fresh read, whether every offer was refused or only one cheaper than the best.
        read = yield from read_chain(keys, ctx, fresh=True)
        quotes, on_chain = _evaluate_all(candidates, read, ctx, payer, with_clock)
    if not quotes:
        raise _none_payable(challenge, refusals | on_chain, ctx.network)
    blockhash, genesis = read.blockhash, read.genesis_hash
    best = min(quotes, key=lambda q: (q.display_amount, q.offer.index))
    best = replace(best, genesis_hash=genesis)
    if fresh_blockhash:
        return replace(best, blockhash=blockhash)
    return best


def _stale_choice(
    candidates: list[_Candidate],
    quotes: list[ExactQuote],
    refusals: dict[int, Refusal],
    accounts: list[Account | None],
) -> bool:
    """Whether an offer refused on the chain's state (not by a spending rule) could be the one
    to pay instead of the best payable one: then cached state must not decide it."""
    if not quotes:
        return True
    best = min((q.display_amount, q.offer.index) for q in quotes)
    for candidate in candidates:
        why = refusals.get(candidate.offer.index)
        if why is None or why.rule is not None:
            continue
        info = candidate.known
        if info is None:
            try:
                info = parse_mint(candidate.mint, accounts[candidate.first_key])
            except ValueError:
                continue  # not a mint: no deposit makes it payable
        if (from_base_units(candidate.offer.amount, info.decimals), candidate.offer.index) < best:
            return True
    return False


def _refusal_before_chain(offer: Offer, ctx: PaymentContext, accepted: set[str]) -> Refusal | None:
    why = refusal(offer, ctx.network)
    if why is not None:
        if network_refusal(offer, ctx.network) is not None:
            return Refusal(why, "network")
        return Refusal(why, malformed=bool(offer.problem))
    why = self_refusal(offer, str(ctx.signer.pubkey()))
    if why is not None:
        return Refusal(why)
    if offer.asset not in accepted:
        return Refusal(
            f"asset {offer.asset} is not a token this agent accepts on {ctx.network}; add it "
            "with AutoAgent(accept_assets=[...]) if you trust it",
            "accept_assets",
        )
    return None


def _candidate_keys(
    payer: Pubkey, pay_to: Pubkey, mint: Pubkey, known: MintInfo | None
) -> list[Pubkey]:
    programs = (known.program_id,) if known else TOKEN_PROGRAMS
    keys = [] if known else [mint]
    for program in programs:
        keys += [
            associated_token_address(payer, mint, program),
            associated_token_address(pay_to, mint, program),
        ]
    return keys


def _evaluate_all(
    candidates: list[_Candidate],
    read: ChainRead,
    ctx: PaymentContext,
    payer: Pubkey,
    with_clock: bool,
) -> tuple[list[ExactQuote], dict[int, Refusal]]:
    """The candidates payable on ``read``, and why each other one is not."""
    epoch = parse_epoch(read.accounts[-1]) if with_clock else None
    refusals: dict[int, Refusal] = {}
    quotes: list[ExactQuote] = []
    for candidate in candidates:
        chain = (read.blockhash, epoch)
        quote = _evaluate(candidate, read.accounts, ctx, chain, payer, refusals)
        if quote is not None:
            quotes.append(quote)
    return quotes, refusals


def _evaluate(
    candidate: _Candidate,
    accounts: list[Account | None],
    ctx: PaymentContext,
    chain: tuple[Hash, int | None],
    payer: Pubkey,
    refusals: dict[int, Refusal],
) -> ExactQuote | None:
    offer = candidate.offer
    info = candidate.known
    position = candidate.first_key
    blockhash, epoch = chain
    if info is None:
        try:
            info = parse_mint(candidate.mint, accounts[position])
        except ValueError as exc:
            refusals[offer.index] = Refusal(str(exc))
            return None
        if info.cacheable:  # a mint with extensions is read afresh: they may change
            ctx.cache.remember_mint(info)
        position += 1 + 2 * TOKEN_PROGRAMS.index(info.program_id)
    symbol = symbol_for_mint(ctx.network, offer.asset) or offer.asset
    display = from_base_units(offer.amount, info.decimals)
    try:
        source = parse_token_account(accounts[position], info.program_id)
        payee = parse_token_account(accounts[position + 1], info.program_id)
    except ValueError as exc:
        refusals[offer.index] = Refusal(f"a token account is unusable: {exc}")
        return None
    held = 0 if source is None else source.amount
    destination = associated_token_address(
        Pubkey.from_string(offer.pay_to), info.address, info.program_id
    )
    fee = _agent_fee(offer, payer)
    over = ctx.rules.over_cap(currency_key(ctx.network, symbol, offer.asset), display)
    over_sol = ctx.rules.over_cap("SOL", from_base_units(fee, SOL_DECIMALS)) if fee else None
    untrusted = ctx.rules.untrusted(offer.pay_to, str(destination))
    extensions = ctx.rules.refused_extensions(offer.asset, info.extensions.risks(epoch))
    if over is not None:
        refusals[offer.index] = Refusal(over, "max_payment")
    elif over_sol is not None:
        refusals[offer.index] = Refusal(f"the network fee: {over_sol}", "max_payment")
    elif untrusted is not None:
        refusals[offer.index] = Refusal(untrusted, "trusted_recipients")
    elif extensions is not None:
        refusals[offer.index] = Refusal(extensions, "token_extensions")
    elif info.extensions.paused:
        refusals[offer.index] = Refusal(f"the mint {offer.asset} is paused")
    elif source is not None and is_frozen(source):
        refusals[offer.index] = Refusal(f"your {symbol} token account is frozen")
    elif payee is not None and is_frozen(payee):
        refusals[offer.index] = Refusal(f"payTo's {symbol} token account is frozen")
    elif held < offer.amount:
        missing = from_base_units(offer.amount - held, info.decimals)
        refusals[offer.index] = Refusal(
            f"wallet {payer} holds {format_amount(from_base_units(held, info.decimals))} {symbol}, "
            f"{format_amount(missing)} short of {format_amount(display)}"
        )
    elif payee is None:
        refusals[offer.index] = Refusal(
            f"payTo {offer.pay_to} has no {symbol} token account, and the exact scheme cannot "
            "create one (the facilitator would refuse the payment)"
        )
    else:
        return ExactQuote(
            offer=offer,
            mint=info,
            symbol=symbol,
            display_amount=display,
            blockhash=offer.recent_blockhash or blockhash,
            destination=destination,
            fee_lamports=fee,
            debits=(
                Debit(payer, lamports=fee),
                Debit(
                    associated_token_address(payer, info.address, info.program_id),
                    tokens=offer.amount,
                ),
            ),
        )
    return None


def _agent_fee(offer: Offer, payer: Pubkey) -> int:
    """The facilitator (``extra.feePayer``) pays the fees, unless that is the agent itself."""
    if offer.fee_payer != str(payer):
        return 0
    return network_fee(1, COMPUTE_UNIT_LIMIT, COMPUTE_UNIT_PRICE)


def _none_payable(
    challenge: PaymentRequired, refusals: dict[int, Refusal], network: str
) -> PaymentError | InvoiceValidationError:
    lines = "; ".join(f"offer {index}: {why.text}" for index, why in sorted(refusals.items()))
    message = (
        f"none of the {len(challenge.offers)} x402 payment offers can be paid ({lines}). "
        "Nothing was signed or paid"
    )
    details = {
        "refusals": {index: why.text for index, why in refusals.items()},
        "rules": {index: why.rule for index, why in refusals.items() if why.rule},
    }
    if refusals and all(why.malformed for why in refusals.values()):
        return InvoiceValidationError(
            f"the 402 answer's x402 offers are all malformed ({lines}). Nothing was signed or "
            "paid; the service sent a challenge this agent cannot read",
            reason="malformed_x402",
            details=details,
        )
    rules = [why.rule for _, why in sorted(refusals.items())]
    if rules and all(rule == "network" for rule in rules):
        return NetworkMismatchError(
            f"none of the {len(challenge.offers)} x402 payment offers is for solana "
            f"{network} ({lines}). Nothing was signed or paid; this agent pays only on "
            f"{network} (AutoAgent(network=...) names it)",
            invoice={
                "x402Version": challenge.version,
                "accepts": [dict(offer.raw) for offer in challenge.offers],
            },
            details=details,
        )
    first = rules[0] if rules else None
    if first is not None and all(rules):
        return PaymentPolicyError(message, rule=first, reason="no_payable_offer", details=details)
    return PaymentError(message, reason="no_payable_offer", details=details)
