"""AutoAgent: an HTTP client that pays HTTP 402 invoices by itself.

It feels like ``requests``: ``get``, ``post``, ``request`` and friends take every keyword
``requests`` takes and return a :class:`requests.Response`. Answers other than 402 come back
untouched. A 402 is paid once (see :mod:`human_rpc_sdk._flow`) and the same request is sent
again with the payment attached.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

import requests
import urllib3

from .._balance import balance as balance_flow
from .._checks import positive_seconds, request_timeout, show
from .._effects import HttpReply, NoAnswer, Resend
from .._flow import PaymentOutcome
from .._offer import PaymentOffer
from .._prepay import (
    Key,
    Ready,
    Remembered,
    conclude,
    deliver_prepared,
    prepare_ahead,
    release,
    request_key,
    to_remember,
)
from .._prepayments import Prepayments
from .._receipts import PaymentReceipt
from .._records import Budget
from .._resume import request_fingerprint
from .._settings import DEFAULT_PAID_TIMEOUT, AgentSettings
from .._siwx import SignedIn, offers_sign_in, pay_or_sign_in
from .._tasks import Verdict
from .._types import Addresses, SecretKey, SignerLike
from ..exceptions import PaymentError, PaymentPolicyError, SDKConfigurationError
from ..reiterator import BackoffStrategy
from ..wallet import require_sync_signer
from .base import BaseAgent, method_of, payment_context, reiterator_of, text_of
from .environment import EnvironmentSettings
from .human import HumanClient
from .prepay import Prepayer
from .refresh import Refresher
from .rpc import RpcClient
from .sync import (
    Driver,
    NotSent,
    PaidRequest,
    deadline_of,
    ensure_replayable,
    reply_of,
    send_unpaid,
)

__all__ = ["AutoAgent"]

logger = logging.getLogger("human_rpc_sdk")


class AutoAgent(BaseAgent):
    """An HTTP client with a Solana wallet that pays 402 Payment Required answers.

    >>> agent = AutoAgent(solana_private_key=key, network="devnet")  # doctest: +SKIP
    >>> agent.get("https://api.example.com/premium").json()           # doctest: +SKIP

    :param solana_private_key: the payer's secret key: base58, a solana-keygen JSON array
        (text or the path to the file), or a Keypair. Defaults to ``SOLANA_PRIVATE_KEY``,
        then the file named by ``SOLANA_KEYPAIR_PATH``.
    :param rpc_url: Solana JSON-RPC endpoint; defaults to ``SOLANA_RPC_URL``, then the
        public endpoint of ``network``.
    :param human_rpc_url: the HumanRPC tasks endpoint; defaults to ``HUMAN_RPC_URL``.
    :param network: the only network this agent pays on (``devnet``, ``mainnet-beta``, ...).
    :param timeout: seconds for each HTTP request and RPC call when the caller gives none.
    :param reiterator: resubmit human-verification tasks the humans reject.
    :param max_retry_attempts: submissions at most, when the reiterator is on.
    :param backoff_strategy: ``exponential``, ``linear`` or ``fixed``.
    :param base_delay: seconds before the first resubmission.
    :param signer: pay with an external signer (KMS, hardware wallet) instead of a key.
    :param max_payment: the most one payment may cost, per currency symbol or mint address,
        e.g. ``{"USDC": "1", "SOL": "0.01"}``, merged over the defaults (0.1 SOL, 1 of each
        known stablecoin); ``None`` as a value removes a ceiling. A token without a ceiling is
        never paid. A dearer payment raises ``PaymentPolicyError`` (``rule="max_payment"``).
        The SOL ceiling (and the SOL ``budget``) counts network fees and rent too.
    :param budget: the most all payments recorded in the journal may cost, per currency,
        merged over the defaults (1 SOL, 10 of each known stablecoin); add to it at run time
        with :meth:`raise_budget`, whose raises the journal keeps: the ceiling is this
        ``budget`` plus every raise recorded in the journal on ``network``. A currency takes
        an amount (a lifetime limit), ``None`` (no limit), a line per period
        ``{"limit": "10", "per": "day"}`` (``per``: ``"hour"``, ``"day"``, ``"week"``,
        ``"month"``, calendar periods in UTC, or a rolling window: a ``timedelta`` or
        ``"90m"``, ``"24h"``, ``"7d"``), or a list of lines applying at once
        (``[{"limit": "10", "per": "day"}, "200"]``: 10 a day and 200 in total). The lines
        given for a currency replace its default line.
    :param trusted_recipients: when set, the only wallets (or token accounts) paid.
    :param approve: called with a :class:`PaymentOffer` before anything is signed; only
        ``True`` lets the payment go ahead.
    :param journal_path: the SQLite payment journal; defaults to ``$HUMAN_RPC_JOURNAL``, else
        one file per wallet and network under ``$XDG_STATE_HOME/human-rpc-sdk``. ``":memory:"``
        keeps it in this process only (no crash safety). A ``postgresql://`` URL (here, in
        ``journal_url`` or in ``$HUMAN_RPC_JOURNAL``) keeps it in a PostgreSQL database that a
        fleet of machines shares, with one budget (the ``postgres`` extra).
    :param journal_url: the PostgreSQL database of the payment journal
        (``postgresql://user@host/dbname``); instead of ``journal_path``.
    :param journal_wait: seconds one read or write of a PostgreSQL journal may wait for the
        database (a connection, locks, its answer) before the payment fails with
        ``PaymentError(reason="journal_unavailable")``, nothing signed or paid (default
        ``$HUMAN_RPC_JOURNAL_WAIT``, else 10). A
        server that refuses connections fails a payment within a second or two whatever this
        says; a hung server or a stalled network is cut off after it. Each connection attempt is
        also bounded by libpq's ``connect_timeout`` when the URL sets one
        (``postgresql://host/db?connect_timeout=3``). Once the database is back, the next
        payment goes through at once (no agent to recreate).
    :param accept_assets: mints an x402 offer may ask for besides the well-known tokens of
        ``network`` (USDC, PYUSD, ...).
    :param session: a ``requests.Session`` to send the HTTP requests with.
    :param paid_timeout: seconds to wait for the answer to a *paid* request (default 60).
        A paid view may work longer than an unpaid one answers, and a payment that settled
        must not be given up on after ``timeout``; ``timeout`` (the agent's, or a call's
        ``timeout=``) still bounds the unpaid request and connecting.
    :param create_token_accounts: let the agent pay the rent (about 0.002 SOL) of a token
        account for a payee that has none. Off by default: such a payment is refused
        (``PaymentPolicyError``, ``rule="create_token_accounts"``) unless the payee is in
        ``trusted_recipients``.
    :param allow_token_extensions: per mint (address, or a known symbol), the risky
        Token-2022 extensions to accept, e.g. ``{"<mint>": ["transfer_fee"]}``; any of
        ``transfer_fee``, ``transfer_hook``, ``permanent_delegate``, ``non_transferable``,
        ``default_account_state``. A mint with any other of them is refused
        (``PaymentPolicyError``, ``rule="token_extensions"``); a ``max_payment`` entry does
        not allow them.
    :param prepay: prepare x402 payments ahead: ``True`` for any origin, or a list of origins
        (``["https://api.example.com"]``). After an x402 payment for a method and URL is
        served, and the offer it paid carries no per-request binding (no ``extra.memo``, no
        ``extra.recentBlockhash``), the next payment for that method and URL is priced,
        approved (``approve`` is called for it, in the agent's worker thread), reserved,
        signed and journaled in the background, and sent with the next request to it with
        the same body and ``Authorization`` header (a request from a file body is never
        prepared for), with no unpaid round trip and no signing on the way. It is usable
        while the 402 is within its ``maxTimeoutSeconds`` and its blockhash is fresh (about
        15 s); one never used is released (``failed``, its budget back) then, or at
        :meth:`close`. At most 8 requests have one prepared at a time, each reserved from the
        budget until used or released.
        A prepared payment the server refuses is not followed by another while it could still
        land, and no more is prepared for that request until a normal payment to it is
        served. HumanRPC invoices are never prepared (each is issued for one request), nor
        are payments made through :class:`~human_rpc_sdk.PaymentAuth`.
    :param budget_scope: a label (``"crawler"``) for agents sharing one journal with separate
        budgets: what is spent, and raised, counts per scope (default ``""``, or
        ``$HUMAN_RPC_BUDGET_SCOPE``). :attr:`payments` and :attr:`budget` show this scope's.
    :raises SDKConfigurationError: on any invalid argument or missing/malformed key.
    """

    def __init__(
        self,
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
        session: requests.Session | None = None,
        max_payment: Mapping[str, Any] | None = None,
        budget: Mapping[str, Any] | None = None,
        trusted_recipients: Addresses | None = None,
        approve: Callable[[PaymentOffer], object] | None = None,
        journal_path: str | os.PathLike[str] | None = None,
        journal_url: str | None = None,
        journal_wait: float | None = None,
        accept_assets: Addresses | None = None,
        paid_timeout: float = DEFAULT_PAID_TIMEOUT,
        create_token_accounts: bool = False,
        allow_token_extensions: Mapping[str, Any] | None = None,
        prepay: bool | Iterable[str] = False,
        budget_scope: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        nonce: Callable[[], str] = lambda: secrets.token_hex(16),
    ) -> None:
        try:
            settings = AgentSettings.build(
                solana_private_key,
                rpc_url,
                human_rpc_url,
                network,
                timeout,
                reiterator,
                max_retry_attempts,
                backoff_strategy,
                base_delay,
                signer=signer,
                max_payment=max_payment,
                budget=budget,
                trusted_recipients=trusted_recipients,
                approve=approve,
                journal_path=journal_path,
                journal_url=journal_url,
                journal_wait=journal_wait,
                accept_assets=accept_assets,
                paid_timeout=paid_timeout,
                create_token_accounts=create_token_accounts,
                allow_token_extensions=allow_token_extensions,
                prepay=prepay,
                budget_scope=budget_scope,
                clock=clock,
                sleep=sleep,
                nonce=nonce,
            )
        finally:  # the key's text leaves this frame, whose locals a traceback may capture
            del solana_private_key
        require_sync_signer(settings.signer)  # an async signer: AsyncAutoAgent
        self.session = _session(session)
        self._environment = EnvironmentSettings(self.session)
        self._setup(settings)
        self._reiterator = reiterator_of(settings.reiterator, clock, sleep)
        self._rpc = RpcClient(self.rpc_url, timeout=self.timeout, sleep=sleep)
        self._refresher = Refresher(
            self._cache, self.network, self.rpc_url, timeout=self.timeout, clock=clock
        )
        weakref.finalize(self, self._refresher.stop)  # an agent never closed: its thread too
        self._driver = Driver(
            rpc=self._rpc, journal=self._journal, approve=approve, sleep=sleep, signer=self._signer
        )
        self._local = threading.local()
        self._prepayer = self._prepayer_of(settings)
        self._human = HumanClient(
            self.human_rpc_url,
            post=self.post,
            get=self.session.get,
            last_payment=self._last_payment,
            journal=self._journal,
            timeout=self.timeout,
            clock=clock,
            sleep=sleep,
        )
        self._warn_of_open_payments(stacklevel=2)
        _AGENTS.add(self)

    def _prepayer_of(self, settings: AgentSettings) -> Prepayer | None:
        """The worker preparing payments ahead (None unless ``prepay``); what it runs holds
        the driver, the settings and the chain cache, not the agent."""
        if not settings.prepay.enabled:
            return None
        driver, cache, refresher = self._driver, self._cache, self._refresher

        def make(key: Key, remembered: Remembered) -> Ready | None:
            ctx = payment_context(settings, cache, refresher)
            return driver.run(prepare_ahead(key, remembered, ctx))

        prepayer = Prepayer(
            Prepayments(settings.prepay),
            make=make,
            release=lambda entry: driver.run(release(entry)),
            clock=settings.clock,
        )
        weakref.finalize(self, prepayer.stop)  # an agent never closed: its payments released
        return prepayer

    # -- identity and history ---------------------------------------------------------------

    def payments_since(self, after: int = 0, *, limit: int | None = None) -> list[PaymentReceipt]:
        """The payments of :attr:`payments` whose journal id (``receipt.id``) is above
        ``after``, oldest first, at most ``limit`` of them: pass the last id seen to get only
        what is new. Reads only those rows.

        :raises SDKConfigurationError: for a negative ``after`` or a ``limit`` below 1.
        """
        return self._payments_since(after, limit)

    def pending_payments(self) -> list[PaymentReceipt]:
        """Payments whose outcome is unknown: signed (or reserved) but never answered.

        Every such payment in the journal, whichever agent sharing it made it, since
        :meth:`recover_payments` settles them all against the chain.
        """
        return self._pending_payments()

    def recover_payments(self) -> list[PaymentReceipt]:
        """Look every open payment up on chain and journal what was learnt.

        Open payments include refused ones the chain has not shown landed, and failed ones
        whose failure was never proven. A payment found on chain becomes ``accepted`` (or
        ``refused``, marked landed, when the server refused it), counted against the budget;
        one proven never landed (a node that has seen its blockhash is past the blockhash's
        last valid block height, and has no such transaction) becomes ``failed`` and its
        budget is released; the rest stay open.
        Safe to call at any time, from any process sharing the journal. On a PostgreSQL
        journal one process recovers at a time: while another does, this returns ``[]``
        (what that one learns is journaled for all).

        :returns: the receipts of the payments examined, as they are now.
        :raises SolanaRPCError: when the RPC node cannot answer; what was learnt about the
            payments examined before that is kept, the rest stay open.
        """
        with self._journal.recovering() as mine:
            if not mine:
                logger.info("another process is recovering this journal's payments")
                return []
            return self._driver.run(self._recovery(self._open_payments()))

    def raise_budget(self, amounts: Mapping[str, Any], per: Any = None) -> dict[str, Budget]:
        """Add to the budget of each currency: ``raise_budget({"USDC": "5"})`` lifts the
        USDC ceiling by 5 (from 10 to 15, say); it does not set it to 5.

        ``per="day"`` (or ``"hour"``, ``"week"``, ``"month"``) raises that line per period
        instead, for the current period only: the raise lapses at the line's reset.

        What was spent stays spent; only the ceiling moves. The raise is written to the
        journal, so it lasts: an agent built later on the same journal (in this process or a
        new one) gets its configured ``budget`` plus every raise recorded on this network.
        Agents sharing a journal share its raises, as they share what it counts as spent.
        Returns the new :attr:`budget`.

        :raises SDKConfigurationError: for an amount that is not a positive number, or a
            currency with no budget (``budget={"X": None}``), or no line ``per``.
        :raises PaymentError: ``journal_unavailable`` when the journal cannot be written.
        """
        return self._raise_budget(amounts, per)

    def _last_payment(self) -> PaymentReceipt | None:
        receipt: PaymentReceipt | None = getattr(self._local, "receipt", None)
        return receipt

    def balance(self, currency: str = "SOL", *, mint: str | None = None) -> Decimal:
        """The wallet's balance in display units, read from the chain.

        :param currency: ``"SOL"`` or a token symbol known on this network (``"USDC"``).
        :param mint: the token's mint address, for tokens without a known symbol.
        :raises SDKConfigurationError: for an unknown symbol without ``mint``.
        :raises SolanaRPCError: when the RPC node fails.
        """
        return self._driver.run(balance_flow(self._signer.pubkey(), self.network, currency, mint))

    # -- human verification ---------------------------------------------------------------

    def ask_human_rpc(
        self,
        text: str,
        *,
        answer: Any = None,
        confidence: float | None = None,
        context: Mapping[str, Any] | None = None,
        reward: Any = None,
        currency: str = "USDC",
        agent_id: str | None = None,
        task_type: str = "ai_verification",
        category: str | None = None,
        reasoning: str | None = None,
        timeout: float = 300.0,
    ) -> Verdict:
        """Ask humans to check ``answer`` to ``text``: create a paid task, wait for the verdict.

        The task costs ``reward`` (``"0.05"`` ``currency``), or the service's price when None;
        the 402 is paid like any other. With the reiterator enabled, a rejection is resubmitted
        with exactly the same task (see :class:`~human_rpc_sdk.ReiteratorManager`).

        :returns: the verdict: ``outcome`` (``approved``, ``rejected``, ``no_consensus``,
            ``expired``), ``decision`` (``approve``, ``reject`` or None), ``confidence``,
            ``comment``, ``comments``, ``consensus``, ``task_id`` and ``payment``.
        :raises HumanVerificationError: the service is unreachable (``unavailable``), refused or
            rate-limited the task, answered malformed, or gave no verdict within ``timeout``
            seconds (``timeout``; resume with :meth:`wait_for_verdict`).
        :raises PaymentError: the task's 402 could not be paid.
        """
        body, deadline = self._task(
            text,
            timeout,
            answer=answer,
            confidence=confidence,
            context=context,
            reward=reward,
            currency=currency,
            agent_id=agent_id,
            task_type=task_type,
            category=category,
            reasoning=reasoning,
        )
        return self._human.ask(body, deadline, self._reiterator)

    def wait_for_verdict(self, task_id: str, timeout: float = 300.0) -> Verdict:
        """Wait for the verdict of an existing task; nothing is paid.

        Use it after a ``timeout`` error, or to resume a task a crashed or interrupted process
        paid for (see :meth:`pending_tasks`). The verdict is recorded in the journal, and the
        task leaves :meth:`pending_tasks`.
        """
        task_id = text_of(task_id, "task_id")
        return self._human.wait(task_id, positive_seconds(timeout, "timeout"))

    def pending_tasks(self) -> list[PaymentReceipt]:
        """Tasks paid for but not decided yet, as the receipts of the payments that created them.

        ``receipt.task_id`` is the task; resume it with :meth:`wait_for_verdict` instead of
        asking (and paying) again. A task stays here from the moment its payment is journaled
        with its id (before the agent starts waiting) until an agent sharing the journal
        receives its verdict: after a ``timeout`` error, a crash or an interrupt
        (``KeyboardInterrupt``) during :meth:`ask_human_rpc` or a ``@guard`` call.
        """
        return self._pending_tasks()

    # -- requests-style API -------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        params: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        cookies: Any = None,
        files: Any = None,
        auth: Any = None,
        timeout: Any = None,
        allow_redirects: bool = True,
        proxies: Any = None,
        hooks: Any = None,
        stream: bool | None = None,
        verify: Any = None,
        cert: Any = None,
        json: Any = None,
    ) -> requests.Response:
        """Send a request like :meth:`requests.Session.request`; pay a 402 answer and retry once.

        :raises InvoiceValidationError: the 402 carried no payable invoice (nothing was paid);
            ``.response`` holds what the server said instead.
        :raises ConnectionFailedError: the server could not be reached (nothing was paid); it
            is also the ``requests.ConnectionError`` (or ``ConnectTimeout``, ...) it wraps.
        :raises PaymentPolicyError: a spending rule refused the payment (nothing was signed).
        :raises PaymentError: the payment could not be made, or the server refused it.
        """
        self._local.receipt = None
        if not isinstance(timeout, urllib3.Timeout):  # requests takes urllib3's as it is
            timeout = request_timeout(timeout)
        prepared = self._prepare(
            requests.Request(
                method=method_of(method),
                url=_request_url(url),
                headers=headers,
                files=files,
                data=data or {},
                json=json,
                params=params or {},
                auth=auth,
                cookies=cookies,
                hooks=hooks,
            )
        )
        settings = self._environment(prepared.url, proxies, stream, verify, cert)
        send_kwargs: dict[str, Any] = {
            "timeout": self.timeout if timeout is None else timeout,
            "allow_redirects": allow_redirects,
            **settings,
        }
        ready = self._prepared_for(prepared)
        if ready is not None and self._prepayer is not None:
            paid = self._pay_prepared(self._prepayer, ready, prepared, send_kwargs)
            if paid is not None:
                return paid
        # Streamed, so that a 402 body is read with a bound (of size, and of time: the whole
        # body within the timeout); other answers are read as asked.
        deadline = deadline_of(send_kwargs["timeout"], self._clock)
        response = send_unpaid(self.session, prepared, {**send_kwargs, "stream": True})
        reply = reply_of(
            response,
            consume=not send_kwargs.get("stream", False),
            deadline=deadline,
            clock=self._clock,
        )
        if response.status_code != 402:
            return response
        return self._pay(response, reply, send_kwargs, asked=(prepared, self._clock()))

    def _prepare(self, request: requests.Request) -> requests.PreparedRequest:
        """``request`` prepared by the session, or ``SDKConfigurationError`` if it cannot be sent
        as given (a URL that does not parse, a scheme no adapter serves, a header http.client
        cannot encode); nothing was sent."""
        try:
            prepared = self.session.prepare_request(request)
            self.session.get_adapter(prepared.url or "")
            for name, value in prepared.headers.items():
                for text in (name, value):
                    if isinstance(text, str):
                        text.encode("latin-1")
        except (requests.RequestException, ValueError, TypeError, AttributeError) as exc:
            raise SDKConfigurationError(
                f"the request to {show(request.url)} cannot be sent as given: "
                f"{type(exc).__name__}: {str(exc)[:200]}. Nothing was sent",
                parameter="url",
            ) from exc
        return prepared

    def get(self, url: str, params: Any = None, **kwargs: Any) -> requests.Response:
        """``GET url`` as :func:`requests.get`, paying a 402 once (see :meth:`request`)."""
        return self.request("GET", url, params=params, **kwargs)

    def post(
        self, url: str, data: Any = None, json: Any = None, **kwargs: Any
    ) -> requests.Response:
        """``POST url`` as :func:`requests.post`, paying a 402 once (see :meth:`request`)."""
        return self.request("POST", url, data=data, json=json, **kwargs)

    def put(self, url: str, data: Any = None, **kwargs: Any) -> requests.Response:
        """``PUT url`` as :func:`requests.put`, paying a 402 once (see :meth:`request`)."""
        return self.request("PUT", url, data=data, **kwargs)

    def patch(self, url: str, data: Any = None, **kwargs: Any) -> requests.Response:
        """``PATCH url`` as :func:`requests.patch`, paying a 402 once (see :meth:`request`)."""
        return self.request("PATCH", url, data=data, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> requests.Response:
        """``DELETE url`` as :func:`requests.delete`, paying a 402 once (see :meth:`request`)."""
        return self.request("DELETE", url, **kwargs)

    def head(self, url: str, **kwargs: Any) -> requests.Response:
        """``HEAD url`` as :func:`requests.head` (no redirects followed unless
        ``allow_redirects=True``), paying a 402 once (see :meth:`request`)."""
        kwargs.setdefault("allow_redirects", False)
        return self.request("HEAD", url, **kwargs)

    def options(self, url: str, **kwargs: Any) -> requests.Response:
        """``OPTIONS url`` as :func:`requests.options`, paying a 402 once (see :meth:`request`)."""
        return self.request("OPTIONS", url, **kwargs)

    def close(self) -> None:
        """Release the payments prepared ahead (waiting for one being prepared); stop the chain
        refresh; close the HTTP sessions and the journal."""
        if self._prepayer is not None:
            self._prepayer.close()
        self._refresher.close()
        self.session.close()
        self._rpc.session.close()
        self._journal.close()

    def __enter__(self) -> AutoAgent:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the driver ------------------------------------------------------------------------

    def _pay(
        self,
        challenge: requests.Response,
        reply: Any,
        send_kwargs: dict[str, Any],
        session: requests.Session | None = None,
        *,
        asked: tuple[requests.PreparedRequest, float] | None = None,
    ) -> requests.Response:
        """Pay ``challenge`` (read as ``reply``) and send its request again with the payment,
        through ``session`` (the agent's when None). ``asked``: the caller's request and when
        its 402 came, to prepare the next payment of it ahead (with ``prepay``)."""
        # The retry goes to the request that got the 402: after redirects, the last one.
        request = challenge.request
        ensure_replayable(request)
        paid = PaidRequest(
            self.session if session is None else session,
            request,
            challenge,
            send_kwargs,
            paid_timeout=self.paid_timeout,
            clock=self._clock,
        )
        sent: list[Resend] = []

        def send(effect: Resend) -> HttpReply | NoAnswer:
            sent.append(effect)
            return paid(effect)

        try:
            outcome: PaymentOutcome | SignedIn = self._driver.run(
                pay_or_sign_in(reply, self._context()), send
            )
        except PaymentPolicyError as exc:
            # Refused by the budget before anything was sent: again, with the budget the
            # payments prepared ahead held released (a prepared payment never costs a request).
            prepayer = self._prepayer
            if exc.rule != "budget" or sent or prepayer is None or not prepayer.yield_budget():
                raise
            outcome = self._driver.run(pay_or_sign_in(reply, self._context()), send)
        self._local.receipt = outcome.receipt
        if outcome.error is not None:
            raise outcome.error
        # Nothing to prepare ahead after a sign-in (nothing was paid), nor for a 402 offering
        # one (the next request signs in for nothing).
        if (
            asked is not None
            and paid.response is not None
            and not isinstance(outcome, SignedIn)
            and not offers_sign_in(reply, self.network)
        ):
            self._remember(reply, outcome, asked, paid.response.url)
        # Not `paid.response or challenge`: a Response is falsy when its status is 4xx or 5xx.
        return challenge if paid.response is None else paid.response

    # -- payments prepared ahead -------------------------------------------------------------

    def _remember(
        self,
        reply: HttpReply,
        outcome: PaymentOutcome,
        asked: tuple[requests.PreparedRequest, float],
        served: str | None,
    ) -> None:
        """After a served payment: prepare the next one of its challenge, if it may be."""
        request, challenged_at = asked
        key = _key_of(request)
        if self._prepayer is None or key is None or not self._prepayer.allows(key):
            return
        remembered = to_remember(
            reply, outcome.receipt, asked=key[1], served=served, challenged_at=challenged_at
        )
        if remembered is not None:
            self._context()  # the chain refresh runs: the preparation finds its state fresh
            self._prepayer.remember(key, remembered)

    def _prepared_for(self, request: requests.PreparedRequest) -> Ready | None:
        """The payment prepared ahead for ``request``'s method and URL, if one is usable."""
        prepayer = self._prepayer
        if prepayer is None:
            return None
        key = _key_of(request)
        if key is None or not prepayer.allows(key):
            return None
        try:
            ensure_replayable(request)
        except PaymentError:  # a streamed body: sent once, unpaid, as without prepay
            return None
        return prepayer.take(key)

    def _pay_prepared(
        self,
        prepayer: Prepayer,
        ready: Ready,
        request: requests.PreparedRequest,
        send_kwargs: dict[str, Any],
    ) -> requests.Response | None:
        """Send ``request`` with the payment prepared for it, and judge the answer as any
        paid request's. Served (2xx): the next is prepared; otherwise none for now. None: the
        server could not be reached at all (the payment never left: released), send it the
        normal way."""
        paid = PaidRequest(
            self.session,
            request,
            None,
            send_kwargs,
            paid_timeout=self.paid_timeout,
            clock=self._clock,
        )
        try:
            fingerprint = request_fingerprint(request.method or "", request.body)
            prepared = deliver_prepared(ready, self._context(), fingerprint)
            outcome = self._driver.run(prepared, paid)
        except NotSent:  # it never left: released, and the request goes the normal way
            prepayer.refused(ready.key)
            self._driver.run(release(ready.entry))
            return None
        except BaseException:
            prepayer.refused(ready.key)
            raise
        self._local.receipt = outcome.receipt
        response = paid.response
        status = None if response is None else response.status_code
        redirected = response is not None and response.url != request.url
        return conclude(prepayer, ready.key, outcome, response, status, redirected)


def _key_of(request: requests.PreparedRequest) -> Key | None:
    """The key a payment prepared ahead for ``request`` is kept under (None: a body from a
    file, not read here, or a multipart one: nothing is prepared for it)."""
    body = request.body
    if body is not None and not isinstance(body, bytes | str):
        return None
    method, url, headers = request.method or "GET", request.url or "", request.headers
    return request_key(method, url, body, headers.get("Authorization"), headers.get("Content-Type"))


# -- os.fork() -------------------------------------------------------------------------------

_AGENTS: weakref.WeakSet[AutoAgent] = weakref.WeakSet()
"""The agents made in this process (their HTTP connections are dropped in a forked child)."""


def _fresh_connections(session: requests.Session) -> None:
    """Give ``session``'s HTTP adapters new, empty connection pools (as unpickling one does:
    ``HTTPAdapter.__setstate__``). The old pools, and their sockets, are left as they are:
    never used, shut down or locked here."""
    for adapter in session.adapters.values():
        if isinstance(adapter, requests.adapters.HTTPAdapter):
            state = adapter.__getstate__()  # its settings: retries, pool sizes
            adapter.__setstate__(state)  # type: ignore[attr-defined]  # (not in requests' stubs)


def _after_fork() -> None:
    """In a child of ``os.fork()`` (gunicorn --preload, Celery's prefork pool, multiprocessing's
    fork) using an agent its parent made: the kept-alive HTTP connections are sockets the parent
    (and every other child) shares; two processes writing requests and reading answers on one
    socket would read each other's answers (a paid request's answer taken by another process,
    which never records it). Each process makes connections of its own instead. (The journal
    does the same for its database connections: see ``postgres``.)"""
    for agent in list(_AGENTS):
        for session in (agent.session, agent._rpc.session, agent._refresher.session):
            _fresh_connections(session)


os.register_at_fork(after_in_child=_after_fork)


# -- argument validation --------------------------------------------------------------------


def _session(value: Any) -> requests.Session:
    if value is None:
        return requests.Session()
    if not isinstance(value, requests.Session):
        raise SDKConfigurationError(
            f"session must be a requests.Session (got a {type(value).__name__})",
            parameter="session",
        )
    return value


def _request_url(value: Any) -> str | bytes:
    if not isinstance(value, str | bytes):
        raise SDKConfigurationError(
            f"url must be text such as 'https://api.example.com/premium' "
            f"(got a {type(value).__name__})",
            parameter="url",
        )
    return value
