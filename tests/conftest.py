"""Shared fixtures: a stub gateway on loopback, funded wallets, Hypothesis profiles."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Generator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, settings
from pytest_postgresql import factories as pg_factories
from solders.keypair import Keypair
from solders.signature import Signature

from human_rpc_sdk import AutoAgent, KeypairSigner
from human_rpc_sdk._io.journal import Journal
from stub_gateway import Gateway, GatewayServer, serve_in_thread

from .drivers import KINDS, Driven, Maker, made_for
from .postgres_server import database_url, postgres_server  # noqa: F401 - a fixture

# The design document asks for at least 100 examples per property; CI runs more.
settings.register_profile(
    "default",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def journal_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where agents built without journal_path keep their journals during the tests."""
    return tmp_path_factory.mktemp("state")


@pytest.fixture(autouse=True)
def _no_ambient_wallet(monkeypatch: pytest.MonkeyPatch, journal_home: Path) -> None:
    """Tests never pick up a developer's real key, RPC endpoint or payment journal."""
    for name in (
        "SOLANA_PRIVATE_KEY",
        "SOLANA_KEYPAIR_PATH",
        "SOLANA_RPC_URL",
        "HUMAN_RPC_URL",
        "HUMAN_RPC_JOURNAL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(journal_home))


@pytest.fixture(scope="session")
def server() -> Iterator[GatewayServer]:
    """One stub gateway for the session, on a free loopback port."""
    with serve_in_thread() as running:
        yield running


@pytest.fixture(scope="session")
def gateway(server: GatewayServer) -> Gateway:
    return server.gateway


Funder = Callable[..., Keypair]


@pytest.fixture(scope="session")
def funded_wallet(gateway: Gateway) -> Funder:
    """Make a new wallet holding the given amounts (display units) on the gateway's ledger."""

    def make(sol: str = "1", usdc: str = "0", pyusd: str = "0") -> Keypair:
        wallet = Keypair()
        amounts = {"SOL": Decimal(sol), "USDC": Decimal(usdc), "PYUSD": Decimal(pyusd)}
        gateway.fund(wallet.pubkey(), amounts)
        return wallet

    return make


@pytest.fixture
def agent_for(server: GatewayServer) -> Iterator[Callable[[Keypair], AutoAgent]]:
    """Build AutoAgents that pay through the session gateway; closed after the test."""
    made: list[AutoAgent] = []

    def make(wallet: Keypair, **options: object) -> AutoAgent:
        agent = AutoAgent(wallet, rpc_url=server.rpc_url, **options)  # type: ignore[arg-type]
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.close()


class Shop:
    """A gateway with extra paywalled routes, built with the public require_payment()."""

    def __init__(self, server: GatewayServer, seen: list[dict[str, object]]) -> None:
        self.server = server
        self.gateway = server.gateway
        self.url = server.url
        self.rpc_url = server.rpc_url
        self.seen = seen

    def price_url(self, currency: str, amount: str, recipient: object = None) -> str:
        """A resource costing ``amount`` ``currency``, paid to ``recipient`` (or the treasury)."""
        return f"{self.url}/shop/{currency}/{amount}/{recipient or self.gateway.treasury}"


def _make_shop() -> Shop:
    from flask import Response, g, jsonify, request
    from solders.pubkey import Pubkey

    from stub_gateway import Price, create_app

    app = create_app(Gateway())
    gateway: Gateway = app.extensions["stub_gateway"]
    seen: list[dict[str, object]] = []

    def priced() -> Price:
        args = request.view_args or {}
        return Price(
            Decimal(args["amount"]), args["currency"], Pubkey.from_string(args["recipient"])
        )

    @app.route("/shop/<currency>/<amount>/<recipient>", methods=["GET", "POST"])
    @gateway.require_payment(priced)
    def item(currency: str, amount: str, recipient: str) -> Response:
        return jsonify({"item": f"{amount} {currency}", "signature": g.settlement.signature})

    @app.route("/echo", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def echo_unpaid_first() -> Response:
        """Records every request, then answers like a paywalled route."""
        seen.append(
            {
                "method": request.method,
                "path": request.full_path,
                "headers": dict(request.headers),
                "body": request.get_data(),
            }
        )
        return paid_echo()

    @gateway.require_payment(Price(Decimal("0.000001"), "SOL"))
    def paid_echo() -> Response:
        return jsonify({"echo": True})

    @app.get("/session-bound")
    def session_bound() -> Response:
        """A paywall that binds its invoice to a session cookie set on the 402."""
        if "X-PAYMENT" not in request.headers:
            response = paid_session()
            response.set_cookie("shop-session", "s-42")
            return response
        if request.cookies.get("shop-session") != "s-42":
            return jsonify({"error": "no session"}), 400  # type: ignore[return-value]
        return paid_session()

    @gateway.require_payment(Price(Decimal("0.000001"), "SOL"))
    def paid_session() -> Response:
        return jsonify({"session": request.cookies.get("shop-session")})

    @app.get("/hostile/still-402")
    @gateway.require_payment(Price(Decimal("0.001"), "SOL"))
    def still_402() -> Response:
        """Takes the payment, then claims it is still unpaid."""
        response = jsonify({"status": "payment_required", "reason": "we_lost_it"})
        response.status_code = 402
        return response

    return Shop(GatewayServer(app).start(), seen)


@pytest.fixture(scope="session")
def shop() -> Iterator[Shop]:
    """A second gateway with test routes: any price, an echo, a hostile 402."""
    made = _make_shop()
    yield made
    made.server.stop()


@pytest.fixture(scope="session")
def responder() -> Iterator[str]:
    """A plain server whose /respond answers with the status, headers and body it is sent.

    POST /respond with JSON {"status": int, "headers": {...}, "body": "<base64>"}.
    /fixed/<status>[/<urlsafe base64 body>[/...]] always answers that status and body.
    /flaky/<key>/<n>/<body>/... answers 503 n times, then 200 with the body.
    """
    import base64

    from flask import Flask, Response, request

    app = Flask("responder")

    @app.route("/respond", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
    def respond() -> Response:
        spec = request.get_json(force=True)
        return Response(
            base64.b64decode(spec.get("body", "")),
            status=spec.get("status", 200),
            headers=spec.get("headers", {}),
        )

    @app.route("/fixed/<int:status>", methods=["GET", "POST"])
    @app.route("/fixed/<int:status>/<body>", methods=["GET", "POST"])
    @app.route("/fixed/<int:status>/<body>/<path:rest>", methods=["GET", "POST"])
    def fixed(status: int, body: str = "", rest: str = "") -> Response:
        """Always the same answer, whatever is asked (a broken or hostile service)."""
        return Response(
            base64.urlsafe_b64decode(body), status=status, content_type="application/json"
        )

    hits: dict[str, int] = {}

    @app.route("/flaky/<key>/<int:failures>/<body>/<path:rest>", methods=["GET"])
    def flaky(key: str, failures: int, body: str, rest: str) -> Response:
        """503 for the first ``failures`` requests under ``key``, then 200 with ``body``."""
        hits[key] = hits.get(key, 0) + 1
        if hits[key] <= failures:
            return Response(b"busy", status=503)
        return Response(base64.urlsafe_b64decode(body), status=200, content_type="application/json")

    running = GatewayServer(app).start()
    yield running.url
    running.stop()


class FakeClock:
    """A monotonic clock that moves only when a test moves it; ``sleep`` moves it instantly."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clocked() -> Iterator[tuple[GatewayServer, FakeClock]]:
    """A gateway serving on a fake clock, 10 s in (the test moves it, e.g. past a blockhash's
    lifetime). A module needing more routes on it defines its own ``clocked``."""
    from stub_gateway import create_app

    clock = FakeClock()
    app = create_app(clock=clock, sleep=clock.sleep)
    clock.now += 10
    with GatewayServer(app).start() as running:
        yield running, clock


class PaymentCapture(requests.adapters.HTTPAdapter):
    """A transport adapter that remembers every payment header (X-PAYMENT, PAYMENT-SIGNATURE)
    sent through it, whether or not an answer came back."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[str] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        for name in ("X-PAYMENT", "PAYMENT-SIGNATURE"):
            if name in request.headers:
                self.headers.append(request.headers[name])
        return super().send(request, **kwargs)


@pytest.fixture(scope="session")
def reviewers() -> Iterator[GatewayServer]:
    """A gateway for human-verification tests; each test sets its reviewers' policy."""
    with serve_in_thread() as running:
        yield running


def human_agent(server: GatewayServer, usdc: str = "20", **options: Any) -> AutoAgent:
    """A funded agent paying tasks on ``server``."""
    wallet = Keypair()
    server.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(usdc)})
    return AutoAgent(
        wallet, rpc_url=server.rpc_url, human_rpc_url=f"{server.url}/api/v1/tasks", **options
    )


class Books:
    """Answers a hand-driven flow's bookkeeping effects with the real driver: ``approve``
    (yes unless told otherwise), an in-memory journal, pauses (recorded, not waited), and
    signing (by ``signer``; by default the signer of the flow's own ``ctx``, as AutoAgent
    hands its driver its signer)."""

    def __init__(self, approve: Callable[[Any], object] | None = None, signer: Any = None) -> None:
        from human_rpc_sdk._io.journal import Journal
        from human_rpc_sdk._io.sync import Driver

        self.journal = Journal(":memory:")
        self.offers: list[Any] = []
        self.pauses: list[float] = []

        def ask(offer: Any) -> object:
            self.offers.append(offer)
            return True if approve is None else approve(offer)

        self.driver = Driver(
            rpc=None, journal=self.journal, approve=ask, sleep=self.pauses.append, signer=signer
        )

    def handles(self, effect: object) -> bool:
        from human_rpc_sdk._effects import Resend, RpcCall

        return not isinstance(effect, RpcCall | Resend)

    def answer(self, effect: Any, flow: Generator[Any, Any, Any] | None = None) -> Any:
        from human_rpc_sdk._effects import Sign

        if not isinstance(effect, Sign):
            return self.driver.keep_books(effect)
        if self.driver.signer is None and flow is not None:
            self.driver.signer = inspect.getgeneratorlocals(flow)["ctx"].signer
        return self.driver._perform(effect, None)


class CountingSigner(KeypairSigner):
    """A signer that counts its signatures."""

    def __init__(self, keypair: Keypair) -> None:
        super().__init__(keypair)
        self.count = 0

    def sign_message(self, message: bytes) -> Signature:
        self.count += 1
        return super().sign_message(message)


def booked(flow: Generator[Any, Any, Any], books: Books | None = None) -> Generator[Any, Any, Any]:
    """``flow`` with its bookkeeping answered by ``books``: only RpcCall and Resend come out."""
    books = books or Books()
    value: Any = None
    first = True
    while True:
        try:
            effect = next(flow) if first else flow.send(value)
        except StopIteration as stop:
            return stop.value
        first = False
        value = books.answer(effect, flow) if books.handles(effect) else (yield effect)


# -- one behavioural suite, every driver (see tests/drivers.py) ------------------------------


@pytest.fixture(params=KINDS)
def driver_kind(request: pytest.FixtureRequest) -> str:
    """Each driver kind in turn: the test runs once per kind, its id says which."""
    return str(request.param)


@pytest.fixture
def driven(driver_kind: str) -> Iterator[Maker]:
    """Build payers of the current kind with AutoAgent's arguments; closed after the test."""
    yield from made_for(driver_kind)


@pytest.fixture
def driven_for(driven: Maker, server: GatewayServer) -> Callable[..., Driven]:
    """Payers of the current kind paying through the session gateway (like ``agent_for``)."""

    def make(wallet: Keypair, **options: Any) -> Driven:
        return driven(wallet, **{"rpc_url": server.rpc_url, **options})

    return make


def human_driven(driven: Maker, server: GatewayServer, usdc: str = "20", **options: Any) -> Driven:
    """A funded payer of the current kind paying tasks on ``server`` (like ``human_agent``)."""
    wallet = Keypair()
    server.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(usdc)})
    return driven(
        wallet, rpc_url=server.rpc_url, human_rpc_url=f"{server.url}/api/v1/tasks", **options
    )


def sqlite_of(agent: Any) -> Journal:
    """The agent's journal, which a test of SQLite's own workings needs to be a SQLite file."""
    journal = agent._journal
    assert isinstance(journal, Journal), f"a SQLite journal, not {journal!r}"
    return journal


# -- PostgreSQL (the journal of a fleet): a real server, a fresh database per test -------------

# pytest-postgresql's client fixture over the server postgres_server started: a fresh database
# for each test, cloned from the (empty) template made with the server.
pg_database = pg_factories.postgresql("postgres_server")


@pytest.fixture
def journal_url(pg_database: object) -> str:
    """The URL of an empty PostgreSQL database of its own for this test."""
    return database_url(pg_database)


@pytest.fixture(params=["sqlite", "postgres"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a journal lives, once per store: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "journal.sqlite3")
    url: str = request.getfixturevalue("journal_url")
    return url
