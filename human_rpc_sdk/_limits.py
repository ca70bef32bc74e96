"""The agent's spending rules: ceilings per payment and in total, whom and what it may pay.

Rules are keyed by *currency key*: ``"SOL"``, the symbol of a token this SDK knows on the
agent's network (``"USDC"``), or the mint address of any other token. A token's symbol is
trusted only where the SDK knows its mint; any other token is named by its mint, so a token
calling itself "USDC" cannot borrow USDC's limits.

A currency's ``budget`` may hold several lines: a lifetime limit and limits per period (an
hour, a day, a week, a month, or a rolling window; see :mod:`._budgets`). ``budget_scope``
names the budget the agent counts in when several kinds of agent share one journal.

Secure defaults apply when the caller sets nothing (see :data:`DEFAULT_MAX_PAYMENT` and
:data:`DEFAULT_BUDGET`); the caller's settings are merged over them, and ``None`` removes a
limit. A token without any ``max_payment`` entry is never paid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final

from ._budgets import LineRule, Period, parse_lines, parse_per
from ._checks import is_pubkey
from ._money import MoneyError, exact, format_amount, parse_decimal
from ._networks import KNOWN_MINTS, symbol_for_mint
from ._reasons import Rule
from .exceptions import SDKConfigurationError
from .solana_utils import TOKEN_EXTENSION_NAMES

__all__ = [
    "DEFAULT_BUDGET",
    "DEFAULT_MAX_PAYMENT",
    "Refusal",
    "SpendingRules",
    "currency_key",
]

_STABLECOINS: Final = ("USDC", "USDT", "PYUSD", "USDG")

MAX_RAISE_DIGITS: Final = 20
"""A raise of a budget is below 10**21 display units: more than any token supply, and sums of
raises stay exact (an unbounded one made every later payment fail on a decimal overflow)."""

DEFAULT_MAX_PAYMENT: Final[Mapping[str, Decimal]] = MappingProxyType(
    {"SOL": Decimal("0.1"), **{symbol: Decimal("1") for symbol in _STABLECOINS}}
)
"""The most one payment may cost when the caller sets no ``max_payment``."""

DEFAULT_BUDGET: Final[Mapping[str, Decimal]] = MappingProxyType(
    {"SOL": Decimal("1"), **{symbol: Decimal("10") for symbol in _STABLECOINS}}
)
"""The most all payments recorded in one journal may cost when the caller sets no ``budget``."""


def currency_key(network: str, currency: str, mint: str | None) -> str:
    """The key rules use for a payment: SOL, a known token's symbol, else the mint address."""
    if mint is None:
        return "SOL"
    return symbol_for_mint(network, mint) or mint


@dataclass(frozen=True)
class Refusal:
    """Why one offer cannot be paid; ``rule`` names the spending rule when one refused it,
    ``malformed`` says the offer itself is not a valid offer."""

    text: str
    rule: Rule | None = None
    malformed: bool = False


@dataclass(frozen=True)
class SpendingRules:
    """Validated spending rules for one network.

    ``max_payment`` and ``budget`` map currency keys to a ceiling in display units, or to
    None for no ceiling (``budget``: the lifetime line; ``periods`` holds the lines per
    period, see :mod:`._budgets`). ``accept_assets`` lists mints an x402 offer may ask for
    besides the tokens this SDK knows. ``trusted_recipients``, when set, are the only wallets
    or token accounts that may be paid.
    """

    network: str = "devnet"
    max_payment: Mapping[str, Decimal | None] = field(
        default_factory=lambda: dict(DEFAULT_MAX_PAYMENT)
    )
    budget: Mapping[str, Decimal | None] = field(default_factory=lambda: dict(DEFAULT_BUDGET))
    """The lifetime line of each currency (None: none)."""
    periods: Mapping[str, tuple[LineRule, ...]] = field(default_factory=dict)
    """Each currency's lines per period (hour, day, ..., rolling windows), if any."""
    scope: str = ""
    """The budget scope: agents sharing a journal count against the budgets of their scope."""
    accept_assets: frozenset[str] = frozenset()
    trusted_recipients: frozenset[str] | None = None
    create_token_accounts: bool = False
    """Whether the agent may pay the rent of a token account for a payee it does not trust."""
    token_extensions: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Per mint address, the risky Token-2022 extensions the caller accepts."""

    @classmethod
    def build(
        cls,
        network: str = "devnet",
        *,
        max_payment: Any = None,
        budget: Any = None,
        accept_assets: Any = None,
        trusted_recipients: Any = None,
        create_token_accounts: Any = False,
        allow_token_extensions: Any = None,
        budget_scope: Any = "",
    ) -> SpendingRules:
        """Check the caller's settings. Raises ``SDKConfigurationError`` naming the parameter."""
        if not isinstance(create_token_accounts, bool):
            raise SDKConfigurationError(
                f"create_token_accounts must be True or False (got {create_token_accounts!r})",
                parameter="create_token_accounts",
            )
        lifetime, periods = _budget_lines(network, budget)
        return cls(
            network=network,
            max_payment=_merged(network, DEFAULT_MAX_PAYMENT, max_payment, "max_payment"),
            budget=lifetime,
            periods=periods,
            scope=budget_scope_label(budget_scope),
            accept_assets=frozenset(_addresses(accept_assets, "accept_assets", "mint")),
            trusted_recipients=(
                None
                if trusted_recipients is None
                else _trusted(_addresses(trusted_recipients, "trusted_recipients", "address"))
            ),
            create_token_accounts=create_token_accounts,
            token_extensions=_extension_opt_ins(network, allow_token_extensions),
        )

    # -- per payment -------------------------------------------------------------------

    def over_cap(self, key: str, amount: Decimal) -> str | None:
        """Why ``amount`` of ``key`` breaks ``max_payment``, or None when it does not."""
        if key not in self.max_payment:
            return (
                f"max_payment sets no ceiling for {key}, so this agent does not pay in it; add "
                f'max_payment={{"{key}": "<most one payment may cost>"}} if you trust this token'
            )
        ceiling = self.max_payment[key]
        if ceiling is None or amount <= ceiling:
            return None
        return (
            f"{format_amount(amount)} {_label(key)} is more than max_payment allows for "
            f"{_label(key)} ({format_amount(ceiling)})"
        )

    def untrusted(self, recipient: str, destination: str) -> str | None:
        """Why paying ``recipient`` (its account ``destination``) is refused, or None."""
        if self.trusted_recipients is None:
            return None
        if recipient in self.trusted_recipients or destination in self.trusted_recipients:
            return None
        return (
            f"the recipient {recipient} is not in trusted_recipients; add it (or its token "
            f"account {destination}) if you mean to pay it"
            if destination != recipient
            else f"the recipient {recipient} is not in trusted_recipients; add it if you mean "
            "to pay it"
        )

    def refused_extensions(self, mint: str, risks: Mapping[str, str]) -> str | None:
        """Why a mint's risky Token-2022 extensions (``risks``, by opt-in name) are refused."""
        allowed = self.token_extensions.get(mint, frozenset())
        refused = sorted(set(risks) - allowed)
        if not refused:
            return None
        what = "; ".join(f"{name}: {risks[name]}" for name in refused)
        names = ", ".join(repr(name) for name in refused)
        return (
            f"the token {mint} is a Token-2022 mint with {what}. This agent refuses such mints "
            f'unless told otherwise: pass AutoAgent(allow_token_extensions={{"{mint}": '
            f"[{names}]}}) if you accept that (a max_payment entry is not enough)"
        )

    def may_create_account(self, recipient: str, destination: str, rent: str) -> str | None:
        """Why the agent may not pay ``rent`` SOL to create ``recipient``'s token account."""
        if self.create_token_accounts:
            return None
        trusted = self.trusted_recipients or frozenset()
        if recipient in trusted or destination in trusted:
            return None
        return (
            f"the recipient {recipient} has no token account ({destination}) for this token, and "
            f"creating it would cost this agent {rent} SOL of rent, which the recipient can take "
            "back by closing the account; pass AutoAgent(create_token_accounts=True), or list "
            "the recipient in trusted_recipients, to allow it"
        )

    def budget_for(self, key: str) -> Decimal | None:
        """The lifetime ceiling for ``key``, or None when it has none."""
        return self.budget.get(key)

    # -- run-time changes --------------------------------------------------------------

    def lines_for(self, key: str) -> tuple[LineRule, ...]:
        """The period lines of ``key`` (none: an empty tuple)."""
        return self.periods.get(key, ())

    def raised_period(self, per: Any) -> Period | None:
        """``raise_budget``'s ``per`` checked: None (the lifetime line) or a calendar period."""
        try:
            period = parse_per(per, "per")
        except SDKConfigurationError:  # its text lists the forms of budget=, not of per=
            raise SDKConfigurationError(
                f"raise_budget(per={repr(per)[:40]}) is not a period: pass per='hour', 'day', "
                "'week' or 'month' (the current period of that line), or no per (the lifetime "
                "line)",
                parameter="per",
            ) from None
        if period is not None and period.name == "rolling":
            raise SDKConfigurationError(
                "raise_budget(per=...) raises the line of a calendar period (hour, day, week or "
                "month) for the current period; a rolling window has no period to raise: raise "
                "the lifetime line, or configure a larger window limit",
                parameter="per",
            )
        return period

    @exact  # raises given twice add up exactly, whatever the caller's decimal context
    def increments(self, amounts: Any, per: Period | None = None) -> dict[str, Decimal]:
        """``raise_budget``'s argument checked: the amount to add to each currency's budget
        (its lifetime line, or its line ``per``), by currency key (amounts given twice for one
        currency add up)."""
        if not isinstance(amounts, Mapping) or not amounts:
            raise SDKConfigurationError(
                "raise_budget takes a mapping of currencies to the amounts to add to their "
                'budgets, e.g. {"USDC": "5"}',
                parameter="amounts",
            )
        added: dict[str, Decimal] = {}
        for raw_key, value in amounts.items():
            key = _key(self.network, raw_key, "raise_budget")
            try:
                extra = parse_decimal(value)
            except MoneyError as exc:
                raise SDKConfigurationError(
                    f"raise_budget[{raw_key!r}] {exc}", parameter="amounts"
                ) from None
            if extra.adjusted() > MAX_RAISE_DIGITS:
                raise SDKConfigurationError(
                    f"raise_budget[{raw_key!r}] must be below 1e{MAX_RAISE_DIGITS + 1} (got "
                    f"{extra:.3e}); pass the amount to add, in display units",
                    parameter="amounts",
                )
            if per is not None:
                if all(line.per != per for line in self.lines_for(key)):
                    raise SDKConfigurationError(
                        f"{key} has no budget line per {per.name}, so there is nothing to raise "
                        f"for this {per.name}",
                        parameter="per",
                    )
            elif self.budget.get(key) is None and self.lines_for(key):
                pers = ", ".join(repr(line.per.key) for line in self.lines_for(key) if line.per)
                raise SDKConfigurationError(
                    f"{key} has no budget in total, only lines per period ({pers}); pass "
                    f"per= one of them to raise it for the current period (a rolling window "
                    "cannot be raised)",
                    parameter="per",
                )
            elif self.budget.get(key) is None:
                raise SDKConfigurationError(
                    f"{key} has no budget (payments in it are limited by max_payment only), "
                    "so there is nothing to raise",
                    parameter="amounts",
                )
            added[key] = added.get(key, Decimal(0)) + extra
        return added


def _merged(
    network: str, defaults: Mapping[str, Decimal], given: Any, name: str
) -> dict[str, Decimal | None]:
    merged: dict[str, Decimal | None] = dict(defaults)
    if given is None:
        return merged
    if not isinstance(given, Mapping):
        raise SDKConfigurationError(
            f'{name} must map currencies to amounts, e.g. {{"USDC": "1", "SOL": "0.01"}}',
            parameter=name,
        )
    for raw_key, value in given.items():
        key = _key(network, raw_key, name)
        if value is None:
            merged[key] = None
            continue
        try:
            merged[key] = parse_decimal(value)
        except MoneyError as exc:
            raise SDKConfigurationError(f"{name}[{raw_key!r}] {exc}", parameter=name) from None
    return merged


def _budget_lines(
    network: str, given: Any
) -> tuple[dict[str, Decimal | None], dict[str, tuple[LineRule, ...]]]:
    """``budget`` checked: the lifetime line of each currency, and its period lines. A
    currency the caller names replaces its default lines (the default is a lifetime line)."""
    lifetime: dict[str, Decimal | None] = dict(DEFAULT_BUDGET)
    periods: dict[str, tuple[LineRule, ...]] = {}
    if given is None:
        return lifetime, periods
    if not isinstance(given, Mapping):
        raise SDKConfigurationError(
            'budget must map currencies to amounts or lines, e.g. {"USDC": "10", "SOL": '
            '{"limit": "0.1", "per": "day"}}',
            parameter="budget",
        )
    named: dict[str, Any] = {}
    for raw_key, value in given.items():
        key = _key(network, raw_key, "budget")
        if key in named:
            # Two spellings of one currency ("USDC" and "usdc", a symbol and its mint): one
            # would silently replace the other's lines, maybe a stricter one.
            raise SDKConfigurationError(
                f"budget names {key} twice ({named[key]!r} and {raw_key!r}); give all of a "
                'currency\'s lines under one key, as a list: [{"limit": "10", "per": "day"}, '
                '"200"]',
                parameter="budget",
            )
        named[key] = raw_key
        lines = parse_lines(value, f"budget[{raw_key!r}]")
        lifetime[key] = next((ln.limit for ln in lines or () if ln.per is None), None)
        periods.pop(key, None)
        spans = tuple(sorted((ln for ln in lines or () if ln.per is not None), key=_by_per))
        if spans:
            periods[key] = spans
    return lifetime, periods


def _by_per(line: LineRule) -> Period:
    assert line.per is not None  # noqa: S101 - period lines only
    return line.per


SCOPE_MAX: Final = 64


def budget_scope_label(value: Any, name: str = "budget_scope") -> str:
    """A ``budget_scope`` checked: a short printable label ("" for the default scope);
    ``name``: where it came from, for the message."""
    if value is None:
        return ""
    # ASCII only: a Cyrillic or full-width twin of a label would be another scope, with a
    # budget of its own, that no one reading the configuration could tell apart.
    if (
        not isinstance(value, str)
        or len(value) > SCOPE_MAX
        or not (value.isascii() and value.isprintable())
        or value != value.strip()
    ):
        raise SDKConfigurationError(
            f"{name} must be a short label (at most {SCOPE_MAX} printable ASCII characters, "
            f"no leading or trailing space), such as 'crawler' (got {ascii(value)[:80]})",
            parameter="budget_scope",
        )
    return value


def _key(network: str, raw: Any, name: str) -> str:
    """A caller's currency key: SOL, a symbol known on ``network``, or a mint address."""
    if not isinstance(raw, str) or not raw.strip():
        raise SDKConfigurationError(
            f"{name} keys must be currency symbols or mint addresses (got {raw!r})",
            parameter=name,
        )
    text = raw.strip()
    if is_pubkey(text):
        return currency_key(network, text, text)
    symbol = text.upper()
    if symbol == "SOL" or symbol in KNOWN_MINTS[network]:
        return symbol
    raise SDKConfigurationError(
        f"{name} names {text!r}, which is not a token this SDK knows on {network}; name the "
        "token by its mint address instead",
        parameter=name,
    )


def _addresses(value: Any, name: str, what: str) -> set[str]:
    if value is None:
        return set()
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise SDKConfigurationError(f"{name} must be a list of {what}es", parameter=name)
    found: set[str] = set()
    for item in value:
        text = str(item) if not isinstance(item, str) and hasattr(item, "__bytes__") else item
        if not isinstance(text, str) or not is_pubkey(text):
            raise SDKConfigurationError(
                f"{name} holds {item!r}, which is not a Solana {what}", parameter=name
            )
        found.add(text)
    return found


def _extension_opt_ins(network: str, given: Any) -> dict[str, frozenset[str]]:
    name = "allow_token_extensions"
    example = '{"<mint address>": ["transfer_fee"]}'
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise SDKConfigurationError(
            f"{name} must map mint addresses to lists of extension names, e.g. {example}",
            parameter=name,
        )
    opt_ins: dict[str, frozenset[str]] = {}
    for raw_key, names in given.items():
        key = _key(network, raw_key, name)
        mint = KNOWN_MINTS[network].get(key, key)
        if mint == "SOL":
            raise SDKConfigurationError(f"{name} is for token mints, not SOL", parameter=name)
        if isinstance(names, str) or not isinstance(names, Iterable):
            raise SDKConfigurationError(
                f"{name}[{raw_key!r}] must be a list of extension names, e.g. {example}",
                parameter=name,
            )
        items = list(names)
        chosen = frozenset(n for n in items if isinstance(n, str) and n in TOKEN_EXTENSION_NAMES)
        unknown = [repr(n)[:60] for n in items if not isinstance(n, str) or n not in chosen]
        if unknown:
            raise SDKConfigurationError(
                f"{name}[{raw_key!r}] names {', '.join(unknown)}; the extensions that can be "
                f"allowed are {', '.join(TOKEN_EXTENSION_NAMES)}",
                parameter=name,
            )
        opt_ins[mint] = opt_ins.get(mint, frozenset()) | chosen
    return opt_ins


def _trusted(addresses: set[str]) -> frozenset[str]:
    if not addresses:
        raise SDKConfigurationError(
            "trusted_recipients is empty, so this agent could pay no one; list the wallets it "
            "may pay, or pass None to allow any recipient",
            parameter="trusted_recipients",
        )
    return frozenset(addresses)


def _label(key: str) -> str:
    return key if len(key) < 32 else f"token {key}"
