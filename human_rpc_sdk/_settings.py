"""An agent's validated settings: one frozen object both agents are built from.

:meth:`AgentSettings.build` does every check of the constructor that does not depend on the
transport (``requests`` or ``httpx``): the network, the timeouts, the RPC and HumanRPC URLs
(with their environment defaults), the reiterator, the spending rules, the callables, the
signer and where the journal lives. ``AutoAgent`` and ``AsyncAutoAgent`` both call it, so they
accept and refuse exactly the same arguments.
"""

from __future__ import annotations

import contextlib
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ._checks import http_url, is_duration, positive_seconds, show
from ._limits import SpendingRules, budget_scope_label
from ._networks import DEFAULT_RPC_URLS, NETWORKS
from ._offer import PaymentOffer
from ._prepay import PrepayPolicy, prepay_policy
from ._types import Addresses, SecretKey, SignerLike
from .exceptions import ReiteratorConfigurationError, SDKConfigurationError
from .reiterator import BackoffStrategy, ReiteratorConfig, validate
from .wallet import Signer, load_signer

__all__ = [
    "DEFAULT_PAID_TIMEOUT",
    "ENV_BUDGET_SCOPE",
    "ENV_HUMAN_RPC_URL",
    "ENV_JOURNAL",
    "ENV_JOURNAL_WAIT",
    "ENV_RPC_URL",
    "HUMAN_RPC_URL_EXAMPLE",
    "MEMORY",
    "AgentSettings",
    "ReiteratorSettings",
    "default_journal_path",
    "is_database_url",
    "redacted_url",
]

ENV_RPC_URL: Final = "SOLANA_RPC_URL"
ENV_HUMAN_RPC_URL: Final = "HUMAN_RPC_URL"
ENV_JOURNAL: Final = "HUMAN_RPC_JOURNAL"
ENV_BUDGET_SCOPE: Final = "HUMAN_RPC_BUDGET_SCOPE"
ENV_JOURNAL_WAIT: Final = "HUMAN_RPC_JOURNAL_WAIT"
MEMORY: Final = ":memory:"
HUMAN_RPC_URL_EXAMPLE: Final = "https://humanrpc.example/api/v1/tasks"
DEFAULT_PAID_TIMEOUT: Final = 60.0
"""Seconds the agent waits for the answer to a paid request, unless told otherwise."""
_AGENT_NAMES: Final = {"max_attempts": "max_retry_attempts"}


@dataclass(frozen=True)
class ReiteratorSettings:
    """The reiterator's validated settings (``ceiling``: the longest delay between tries)."""

    enabled: bool
    max_attempts: int
    backoff_strategy: BackoffStrategy
    base_delay: float
    ceiling: float


@dataclass(frozen=True)
class AgentSettings:
    """Everything an agent was configured with, checked. Build it with :meth:`build`."""

    network: str
    timeout: float
    paid_timeout: float
    rpc_url: str
    human_rpc_url: str | None
    reiterator: ReiteratorSettings
    rules: SpendingRules
    approve: Callable[[PaymentOffer], object] | None
    signer: Signer = field(repr=False)
    journal_path: str = field(repr=False)  # a database URL may hold a password
    clock: Callable[[], float]
    sleep: Callable[[float], Any]
    nonce: Callable[[], str]
    prepay: PrepayPolicy = field(default_factory=PrepayPolicy)
    """Whether (and for which origins) payments are prepared ahead."""
    journal_wait: float | None = None
    """How long one journal read or write waits for a PostgreSQL journal (None: its default)."""

    @classmethod
    def build(
        cls,
        solana_private_key: SecretKey | None = None,
        rpc_url: str | None = None,
        human_rpc_url: str | None = None,
        network: str = "devnet",
        timeout: float = 10,
        reiterator: bool = False,
        max_retry_attempts: int = 3,
        backoff_strategy: BackoffStrategy = "exponential",
        base_delay: float = 1.0,
        *,
        signer: SignerLike | None = None,
        max_payment: Mapping[str, Any] | None = None,
        budget: Mapping[str, Any] | None = None,
        trusted_recipients: Addresses | None = None,
        approve: Callable[[PaymentOffer], object] | None = None,
        journal_path: str | os.PathLike[str] | None = None,
        journal_url: str | None = None,
        accept_assets: Addresses | None = None,
        paid_timeout: float = DEFAULT_PAID_TIMEOUT,
        create_token_accounts: bool = False,
        allow_token_extensions: Mapping[str, Any] | None = None,
        prepay: Any = False,
        budget_scope: str | None = None,
        journal_wait: float | None = None,
        clock: Callable[[], float],
        sleep: Callable[[float], Any],
        nonce: Callable[[], str],
    ) -> AgentSettings:
        """Check an agent's constructor arguments, in the constructor's order.

        :raises SDKConfigurationError: on any invalid argument or missing/malformed key.
        """
        if network not in NETWORKS:
            raise SDKConfigurationError(
                f"network must be one of {', '.join(NETWORKS)} (got {show(network)})",
                parameter="network",
            )
        checked_timeout = positive_seconds(timeout, "timeout")
        checked_paid_timeout = positive_seconds(paid_timeout, "paid_timeout")
        checked_wait = (
            _wait_from_environment()
            if journal_wait is None
            else positive_seconds(journal_wait, "journal_wait")
        )
        checked_rpc_url = (
            http_url(rpc_url, "rpc_url")
            or http_url(os.environ.get(ENV_RPC_URL), ENV_RPC_URL)
            or DEFAULT_RPC_URLS[network]
        )
        checked_human_url = http_url(
            human_rpc_url, "human_rpc_url", HUMAN_RPC_URL_EXAMPLE
        ) or http_url(os.environ.get(ENV_HUMAN_RPC_URL), ENV_HUMAN_RPC_URL, HUMAN_RPC_URL_EXAMPLE)
        reiterating = _reiterator(reiterator, max_retry_attempts, backoff_strategy, base_delay)
        rules = SpendingRules.build(
            network,
            max_payment=max_payment,
            budget=budget,
            accept_assets=accept_assets,
            trusted_recipients=trusted_recipients,
            create_token_accounts=create_token_accounts,
            allow_token_extensions=allow_token_extensions,
            budget_scope=_scope_from_environment() if budget_scope is None else budget_scope,
        )
        prepaying = prepay_policy(prepay)
        _callables(clock=clock, sleep=sleep, nonce=nonce)
        if approve is not None and not callable(approve):
            raise SDKConfigurationError(
                "approve must be a function taking a PaymentOffer and returning True or False",
                parameter="approve",
            )
        try:
            loaded = load_signer(solana_private_key, signer)
        finally:  # the key's text leaves this frame, whose locals a traceback may capture
            del solana_private_key
        return cls(
            network=network,
            timeout=checked_timeout,
            paid_timeout=checked_paid_timeout,
            rpc_url=checked_rpc_url,
            human_rpc_url=checked_human_url,
            reiterator=reiterating,
            rules=rules,
            approve=approve,
            signer=loaded,
            journal_path=journal_location(
                journal_path, network, str(loaded.pubkey()), journal_url=journal_url
            ),
            clock=clock,
            sleep=sleep,
            nonce=nonce,
            prepay=prepaying,
            journal_wait=checked_wait,
        )


def default_journal_path(network: str, address: str) -> Path:
    """Where an agent keeps its journal unless told otherwise: one file per wallet and network.

    ``$HUMAN_RPC_JOURNAL`` names the file; otherwise it lives under ``$XDG_STATE_HOME``
    (default ``~/.local/state``) in ``human-rpc-sdk/``.
    """
    named = os.environ.get(ENV_JOURNAL)
    if named:
        return Path(named).expanduser()
    return machine_journal_path(network, address)


def machine_journal_path(network: str, address: str) -> Path:
    """The wallet's SQLite journal file under ``$XDG_STATE_HOME`` (whatever
    ``$HUMAN_RPC_JOURNAL`` says): where its payments were kept before it moved elsewhere."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path("~/.local/state").expanduser())
    return Path(state) / "human-rpc-sdk" / f"journal-{network}-{address}.sqlite3"


DATABASE_SCHEMES: Final = ("postgresql://", "postgres://")
"""A journal location starting with one of these is a PostgreSQL database (see ``_io.store``)."""


def is_database_url(location: str) -> bool:
    """Whether ``location`` names a PostgreSQL database rather than a SQLite file."""
    return location.lower().startswith(DATABASE_SCHEMES)


_SECRET_PARAMETER: Final = re.compile(r"(?:^|&)(?:ssl)?password=([^&]*)", re.IGNORECASE)
"""A password given as a parameter of a database URL (``?password=...``, ``sslpassword``)."""


def redacted_url(location: str) -> str:
    """``location`` with any password in it (``user:password@``, ``?password=``) replaced by
    ``***`` (for messages and logs)."""
    if not is_database_url(location):
        return location
    try:
        parts = urllib.parse.urlsplit(location)
        query = _SECRET_PARAMETER.sub(lambda m: m[0][: len(m[0]) - len(m[1])] + "***", parts.query)
        shown = parts._replace(query=query)
        if parts.password is not None:
            host = parts.netloc.rpartition("@")[2]
            shown = shown._replace(netloc=f"{parts.username or ''}:***@{host}")
        return location if shown == parts else urllib.parse.urlunsplit(shown)
    except ValueError:  # a malformed URL: show only its scheme
        return location.split("://", 1)[0] + "://***"


_OTHER_DATABASE: Final = re.compile(
    r"^\s*(?:(?:postgres(?:ql)?\+[\w.-]*|jdbc:postgres(?:ql)?):|"  # SQLAlchemy's, JDBC's URLs
    r"(?:host|hostaddr|port|dbname|user|password|passfile|service|sslmode)\s*=)",  # libpq's
    re.IGNORECASE,
)
"""A PostgreSQL database named some other way than a ``postgresql://`` URL: a SQLAlchemy URL
(``postgresql+psycopg://``), a JDBC one, or libpq's ``key=value`` form."""


def _not_a_file(text: str, named: str) -> SDKConfigurationError | None:
    """The error for a database named in a form the journal does not read (taken for a file
    name, it would give each machine a SQLite journal, and a budget, of its own), or None. The
    text is not shown: it may hold a password."""
    if not _OTHER_DATABASE.match(text):
        return None
    return SDKConfigurationError(
        f"{named} names a PostgreSQL database, but not as a URL the journal reads (a "
        "SQLAlchemy or JDBC URL, or libpq's 'host=... dbname=...' form); write it as "
        "'postgresql://user:password@host:port/dbname' (libpq's URL, with any ?sslmode=... or "
        "?host=/socket/dir parameters)",
        parameter="journal_url" if named == "journal_url" else "journal_path",
    )


def url_secrets(location: str) -> tuple[str, ...]:
    """The passwords in database URL ``location`` (as written and percent-decoded), longest
    first: what a text quoting the URL (libpq's errors do) must not show."""
    found = {match[1] for match in _SECRET_PARAMETER.finditer(location.partition("?")[2])}
    with contextlib.suppress(ValueError):  # a malformed URL: its query's passwords only
        found.add(urllib.parse.urlsplit(location).password or "")
    found |= {urllib.parse.unquote(secret) for secret in found}
    return tuple(sorted(found - {""}, key=len, reverse=True))


def journal_location(value: Any, network: str, address: str, *, journal_url: Any = None) -> str:
    """The journal's location: ``journal_url=`` (a PostgreSQL URL), else ``journal_path=``
    (checked; a PostgreSQL URL there too), else ``$HUMAN_RPC_JOURNAL`` (a file or a URL), else
    the default file for the wallet. A database URL is kept as it is (never made a path)."""
    if journal_url is not None:
        if value is not None:
            raise SDKConfigurationError(
                "pass journal_path= or journal_url=, not both", parameter="journal_url"
            )
        if not isinstance(journal_url, str) or not is_database_url(journal_url.strip()):
            other = (
                _not_a_file(journal_url, "journal_url") if isinstance(journal_url, str) else None
            )
            if other is not None:
                raise other
            got = (
                repr(redacted_url(journal_url)[:100])
                if isinstance(journal_url, str)
                else f"a {type(journal_url).__name__}"
            )
            raise SDKConfigurationError(
                "journal_url must be a PostgreSQL URL such as 'postgresql://user@host/dbname' "
                f"(got {got})",
                parameter="journal_url",
            )
        return journal_url.strip()
    if value is None:
        named = os.environ.get(ENV_JOURNAL, "").strip()
        if is_database_url(named):
            return named
        other = _not_a_file(named, f"${ENV_JOURNAL}")
        if other is not None:
            raise other
        return str(default_journal_path(network, address))
    if isinstance(value, str) and value == MEMORY:
        return MEMORY
    text = os.fspath(value) if isinstance(value, str | os.PathLike) else None
    if not isinstance(text, str) or not text.strip() or "\x00" in text:
        raise SDKConfigurationError(
            "journal_path must be a file path (text without NUL characters), ':memory:' or a "
            f"PostgreSQL URL (got a {type(value).__name__})",
            parameter="journal_path",
        )
    if is_database_url(text.strip()):
        return text.strip()
    other = _not_a_file(text, "journal_path")
    if other is not None:
        raise other
    try:
        return str(Path(text).expanduser())
    except RuntimeError:  # '~someone' with no such user, or no home directory
        raise SDKConfigurationError(
            f"journal_path {text[:100]!r} starts with '~' but that home directory is unknown; "
            "give the path in full",
            parameter="journal_path",
        ) from None


def _wait_from_environment() -> float | None:
    """``$HUMAN_RPC_JOURNAL_WAIT`` checked (None when unset: the journal's default), its
    message naming the variable (the caller passed no ``journal_wait``)."""
    text = os.environ.get(ENV_JOURNAL_WAIT, "").strip()
    if not text:
        return None
    try:
        return positive_seconds(float(text), "journal_wait")
    except (ValueError, SDKConfigurationError):
        raise SDKConfigurationError(
            f"${ENV_JOURNAL_WAIT} must be a positive number of seconds (got {text[:40]!r}); "
            "unset it for the default",
            parameter="journal_wait",
        ) from None


def _scope_from_environment() -> str:
    """``$HUMAN_RPC_BUDGET_SCOPE`` checked, its message naming the variable (the caller passed
    no ``budget_scope``)."""
    return budget_scope_label(os.environ.get(ENV_BUDGET_SCOPE, ""), f"${ENV_BUDGET_SCOPE}")


def _callables(**functions: Any) -> None:
    for name, function in functions.items():
        if not callable(function):
            raise SDKConfigurationError(
                f"{name} must be a function (got a {type(function).__name__})", parameter=name
            )


def _reiterator(enabled: Any, attempts: Any, strategy: Any, base_delay: Any) -> ReiteratorSettings:
    """The reiterator's settings, validated under the agent's parameter names."""
    if not isinstance(enabled, bool):
        raise ReiteratorConfigurationError(
            f"reiterator must be True or False (got a {type(enabled).__name__})",
            parameter="reiterator",
        )
    ceiling = max(60.0, base_delay) if is_duration(base_delay) else 60.0
    config = ReiteratorConfig(
        max_attempts=attempts, backoff_strategy=strategy, base_delay=base_delay, max_delay=ceiling
    )
    validate(config, _AGENT_NAMES)
    return ReiteratorSettings(enabled, attempts, strategy, base_delay, ceiling)
