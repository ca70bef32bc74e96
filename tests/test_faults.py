"""A hostile and failing world: the gateway's injected faults against a paying agent.

Every test checks the money on the ledger and the rows in the journal: nothing is paid twice,
nothing beyond a limit, nothing to another origin, and every payment made is recorded.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask, Response, jsonify, request
from solders.keypair import Keypair

from human_rpc_sdk import (
    InvoiceValidationError,
    PaymentError,
    PaymentPolicyError,
    PendingPaymentsWarning,
    SolanaRPCError,
)
from human_rpc_sdk._headers import unb64json
from stub_gateway import Gateway, GatewayServer, serve_in_thread
from stub_gateway.faults import MODES, Faults

from .conftest import FakeClock
from .drivers import NO_RESEND_KINDS, make, settle_unanswered

PRICE = Decimal("0.001")  # premium/sol
FEE = Decimal("0.000005")


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def hostile(clock: FakeClock) -> Iterator[GatewayServer]:
    """A gateway of its own (faults are per gateway), on a clock the tests move."""
    with serve_in_thread(clock=clock) as running:
        yield running


@pytest.fixture(autouse=True)
def _disarm(hostile: GatewayServer) -> Iterator[None]:
    yield
    hostile.gateway.faults.clear()


class Payer:
    """A funded wallet, its payer of the given driver kind (journal on disk), and what its
    paid requests carried."""

    def __init__(self, kind: str, server: GatewayServer, journal: Path, **options: Any) -> None:
        self.kind = kind
        self.server = server
        self.gateway: Gateway = server.gateway
        self.wallet = Keypair()
        self.gateway.fund(
            self.wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(1), "PYUSD": Decimal(0)}
        )
        self.journal = journal
        self.pauses = FakeClock()
        options.setdefault("sleep", self.pauses.sleep)
        self.agent = make(
            kind, self.wallet, rpc_url=server.rpc_url, journal_path=journal, capture=True, **options
        )
        self.headers = self.agent.sent_payments
        self.before = self.balances()

    def balances(self) -> tuple[Decimal, Decimal, Decimal]:
        gateway = self.gateway
        return (
            gateway.balance(self.wallet.pubkey()),
            gateway.balance(self.wallet.pubkey(), "USDC"),
            gateway.balance(gateway.treasury, "USDC"),
        )

    def sol_spent(self) -> Decimal:
        return self.before[0] - self.balances()[0]

    def rows(self) -> list[tuple[Any, ...]]:
        """The journal as another process would read it: (state, amount, landed) per row."""
        with sqlite3.connect(self.journal) as db:
            return db.execute("SELECT state, amount, landed FROM payments ORDER BY id").fetchall()

    def url(self, path: str = "/api/v1/premium/sol") -> str:
        return f"{self.server.url}{path}"


@pytest.fixture
def new_payer(
    hostile: GatewayServer, tmp_path: Path, driver_kind: str
) -> Iterator[Callable[..., Payer]]:
    """Build payers of the current driver kind with the given agent options; closed after."""
    made: list[Payer] = []

    def build(**options: Any) -> Payer:
        made.append(Payer(driver_kind, hostile, tmp_path / f"j{len(made)}.sqlite3", **options))
        return made[-1]

    yield build
    for each in made:
        each.agent.close()


@pytest.fixture
def payer(new_payer: Callable[..., Payer]) -> Payer:
    return new_payer()


# -- the RPC node fails ------------------------------------------------------------------------


def test_rpc_failures_are_retried_then_the_payment_goes_through(payer: Payer) -> None:
    """Two 503s from the RPC node: retried by the transport; paid once, recorded once."""
    before = payer.gateway.faults.triggered.count("fail_rpc")
    payer.gateway.faults.fail_rpc(2)
    assert payer.agent.get(payer.url()).status_code == 200
    assert payer.sol_spent() == PRICE + FEE
    assert payer.rows() == [("accepted", "0.001", 1)]
    assert payer.gateway.faults.triggered.count("fail_rpc") - before == 2


def test_an_rpc_node_that_keeps_failing_stops_the_payment(payer: Payer) -> None:
    """503 beyond the retries: SolanaRPCError, nothing signed, nothing journaled."""
    payer.gateway.faults.fail_rpc(50)
    with pytest.raises(SolanaRPCError) as caught:
        payer.agent.get(payer.url())
    assert "503" in str(caught.value)
    assert payer.sol_spent() == 0
    assert payer.rows() == []
    assert payer.headers == []


def test_a_slow_rpc_node_is_retried_after_the_timeout(new_payer: Callable[..., Payer]) -> None:
    """An RPC answer slower than the timeout: read again; paid once."""
    payer = new_payer(timeout=0.3)
    payer.gateway.faults.slow_rpc(1.0)
    assert payer.agent.get(payer.url()).status_code == 200
    assert payer.sol_spent() == PRICE + FEE
    assert payer.rows() == [("accepted", "0.001", 1)]


# -- the paid request gets no definite answer ------------------------------------------------------


@pytest.mark.parametrize("fault", ["error_after_payment", "drop_after_payment"])
def test_a_lost_answer_is_asked_again_with_the_same_payment(payer: Payer, fault: str) -> None:
    """Settled, then a 500 or a dropped connection: the same payment is sent again and the
    answer comes; the money moved once."""
    payer.gateway.faults.arm(fault)
    if fault == "drop_after_payment" and payer.kind in NO_RESEND_KINDS:
        recovered = settle_unanswered(payer.agent, lambda: payer.agent.get(payer.url()))
        assert (recovered.state, recovered.landed) == ("accepted", True)
        assert len(payer.headers) == 1
        assert payer.sol_spent() == PRICE + FEE
        assert payer.rows() == [("accepted", "0.001", 1)]
        return
    response = payer.agent.get(payer.url())
    assert response.status_code == 200
    assert response.json()["content"] == "premium sol content, unlocked"
    assert len(payer.headers) == 2
    assert payer.headers[0] == payer.headers[1]
    assert payer.pauses.sleeps == [0.25]
    assert payer.sol_spent() == PRICE + FEE
    assert payer.rows() == [("accepted", "0.001", 1)]


def test_a_slow_answer_is_asked_again_with_the_same_payment(
    new_payer: Callable[..., Payer],
) -> None:
    """Settled, then slower than the paid request's deadline: the same payment again (the
    gateway answers it with the first copy's answer); paid once."""
    payer = new_payer(timeout=0.4, paid_timeout=0.4)
    payer.gateway.faults.slow_after_payment(1.5)
    if payer.kind in NO_RESEND_KINDS:
        recovered = settle_unanswered(payer.agent, lambda: payer.agent.get(payer.url()))
        assert (recovered.state, recovered.landed) == ("accepted", True)
        assert len(payer.headers) == 1
        assert payer.sol_spent() == PRICE + FEE
        assert [row[0] for row in payer.rows()] == ["accepted"]
        return
    assert payer.agent.get(payer.url()).status_code == 200
    assert len(payer.headers) >= 2
    assert len(set(payer.headers)) == 1
    assert payer.sol_spent() == PRICE + FEE
    assert [row[0] for row in payer.rows()] == ["accepted"]


def test_no_answer_at_all_leaves_a_pending_payment_that_recovery_settles(payer: Payer) -> None:
    """Every answer lost: PaymentError after 4 sends of one payment; journaled as submitted;
    recovery finds it on chain. A restarted agent sees it too."""
    payer.gateway.faults.error_after_payment(count=20)
    with pytest.raises(PaymentError) as caught:
        payer.agent.get(payer.url())
    assert caught.value.reason == "no_answer_after_payment"
    assert "recover_payments" in str(caught.value)
    assert len(payer.headers) == 4
    assert len(set(payer.headers)) == 1
    assert payer.pauses.sleeps == [0.25, 0.5, 1.0]
    assert payer.sol_spent() == PRICE + FEE
    assert payer.rows() == [("submitted", "0.001", None)]
    payer.agent.close()

    with pytest.warns(PendingPaymentsWarning, match="recover_payments"):
        restarted = make(
            payer.kind, payer.wallet, rpc_url=payer.server.rpc_url, journal_path=payer.journal
        )
    (pending,) = restarted.pending_payments()
    assert pending.signature == caught.value.signature
    (recovered,) = restarted.recover_payments()
    assert (recovered.state, recovered.landed) == ("accepted", True)
    assert restarted.pending_payments() == []
    assert payer.rows() == [("accepted", "0.001", 1)]
    restarted.close()


# -- the server misbehaves after payment ----------------------------------------------------------


def test_a_402_after_payment_is_not_paid_again(payer: Payer) -> None:
    """Settled, then 402 all the same: PaymentError; the chain shows the money moved; one
    payment only, journaled as refused but landed."""
    payer.gateway.faults.repeat_402_after_payment()
    with pytest.raises(PaymentError) as caught:
        payer.agent.get(payer.url())
    assert caught.value.reason == "payment_refused"
    assert len(payer.headers) == 1
    assert payer.sol_spent() == PRICE + FEE
    assert payer.rows() == [("refused", "0.001", 1)]
    (receipt,) = payer.agent.payments
    assert receipt.landed is True
    assert payer.agent.recover_payments() == []


@pytest.fixture(scope="module")
def elsewhere() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """Another origin that records what reaches it and asks for a payment of its own."""
    app = Flask("elsewhere")
    seen: list[dict[str, str]] = []

    @app.route("/<path:anything>", methods=["GET", "POST"])
    def anything(anything: str) -> Response:
        seen.append(dict(request.headers))
        response = jsonify(
            {
                "status": "payment_required",
                "invoice": {
                    "amount": "0.001",
                    "currency": "SOL",
                    "recipient": str(Keypair().pubkey()),
                    "reference": str(Keypair().pubkey()),
                    "network": "devnet",
                },
            }
        )
        response.status_code = 402
        return response

    running = GatewayServer(app).start()
    yield running.url, seen
    running.stop()


def test_a_payment_is_never_sent_to_another_origin(
    payer: Payer, elsewhere: tuple[str, list[dict[str, str]]], clock: FakeClock
) -> None:
    """The paid request is redirected to another host: the payment header is dropped there,
    its own 402 is not paid, and nothing moves; recovery later releases the payment."""
    url, seen = elsewhere
    seen.clear()
    payer.gateway.faults.redirect_payment(f"{url}/collect")
    with pytest.raises(PaymentError) as caught:
        payer.agent.get(payer.url())
    assert caught.value.reason == "payment_refused"
    assert len(seen) == 1
    assert not {"X-PAYMENT", "PAYMENT-SIGNATURE"} & {k.upper() for k in seen[0]}
    assert payer.balances() == payer.before
    assert payer.rows() == [("refused", "0.001", None)]
    assert payer.agent.budget["SOL"].spent == PRICE + FEE
    clock.now += 61  # its blockhash expires: it can never land
    (released,) = payer.agent.recover_payments()
    assert (released.state, released.landed) == ("failed", False)
    assert payer.agent.budget["SOL"].spent == 0


def test_a_redirect_within_the_origin_keeps_the_payment(payer: Payer) -> None:
    """Redirected to the same host: the payment follows and settles once."""
    payer.gateway.faults.redirect_payment(payer.url("/api/v1/premium/sol?copy=2"))
    assert payer.agent.get(payer.url()).status_code == 200
    assert len(payer.headers) == 2
    assert payer.sol_spent() == PRICE + FEE
    assert [row[0] for row in payer.rows()] == ["accepted"]


# -- hostile invoices ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/premium/sol", "/x402/v1/premium", "/x402/v2/premium"])
def test_malformed_invoices_are_refused_unpaid(payer: Payer, path: str) -> None:
    """A malformed 402 in any format: InvoiceValidationError; nothing signed or journaled."""
    payer.gateway.faults.malformed_invoice()
    with pytest.raises(InvoiceValidationError):
        payer.agent.get(payer.url(path))
    assert payer.balances() == payer.before
    assert payer.rows() == []
    assert payer.headers == []


def test_a_huge_invoice_is_refused_unread(payer: Payer) -> None:
    """A 402 body of 5 MB: refused as too large; nothing signed or journaled."""
    payer.gateway.faults.huge_invoice(size=5_000_000)
    with pytest.raises(InvoiceValidationError) as caught:
        payer.agent.get(payer.url())
    assert caught.value.reason == "invoice_too_large"
    assert payer.balances() == payer.before
    assert payer.rows() == []


def test_an_invoice_above_the_limits_is_refused(payer: Payer) -> None:
    """Asked 1000 times the price (1 SOL): max_payment refuses; nothing moves."""
    payer.gateway.faults.overcharge(1000)
    with pytest.raises(PaymentPolicyError) as caught:
        payer.agent.get(payer.url())
    assert caught.value.rule == "max_payment"
    assert payer.balances() == payer.before
    assert payer.rows() == []


def test_an_overcharge_the_owner_allows_is_paid_at_its_price(
    new_payer: Callable[..., Payer],
) -> None:
    """The gateway settles its own overcharged invoice when the owner's limits allow it."""
    payer = new_payer(
        max_payment={"SOL": "0.01"},
        budget={"SOL": "0.01"},
    )
    payer.gateway.faults.overcharge(5)
    assert payer.agent.get(payer.url()).status_code == 200
    assert payer.sol_spent() == 5 * PRICE + FEE
    assert payer.rows() == [("accepted", "0.005", 1)]


# -- x402 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2])
def test_x402_lost_answers_are_asked_again_with_the_same_payment(
    payer: Payer, version: int
) -> None:
    """x402: settled, then a dropped connection: the same payment again; USDC moved once."""
    payer.gateway.faults.drop_after_payment()
    url = payer.url(f"/x402/v{version}/premium")
    if payer.kind in NO_RESEND_KINDS:
        recovered = settle_unanswered(payer.agent, lambda: payer.agent.get(url))
        assert (recovered.state, recovered.landed) == ("accepted", True)
        assert len(payer.headers) == 1
        assert payer.before[1] - payer.balances()[1] == Decimal("0.01")
        assert payer.rows() == [("accepted", "0.01", 1)]
        return
    response = payer.agent.get(url)
    assert response.status_code == 200
    assert len(payer.headers) == 2
    assert payer.headers[0] == payer.headers[1]
    wallet_usdc, treasury_usdc = payer.balances()[1:]
    assert payer.before[1] - wallet_usdc == Decimal("0.01")
    assert treasury_usdc - payer.before[2] == Decimal("0.01")
    assert payer.rows() == [("accepted", "0.01", 1)]


def test_x402_an_identified_payment_is_resent_with_the_same_id(payer: Payer) -> None:
    """x402 v2 declares payment ids: the lost answer's re-send carries the same payment and
    the same id, the one journaled with it; never a new signature or id."""
    payer.gateway.faults.drop_after_payment()
    url = payer.url("/x402/v2/premium")
    if payer.kind in NO_RESEND_KINDS:
        settle_unanswered(payer.agent, lambda: payer.agent.get(url))
    else:
        assert payer.agent.get(url).status_code == 200
    ids = {_payment_id(header) for header in payer.headers}
    assert len(set(payer.headers)) == 1
    with sqlite3.connect(payer.journal) as db:
        assert db.execute("SELECT payment_id FROM payments").fetchall() == [(ids.pop(),)]
    assert payer.before[1] - payer.balances()[1] == Decimal("0.01")


def _payment_id(header: str) -> str:
    payload = unb64json(header, "PAYMENT-SIGNATURE")
    payment_id: str = payload["extensions"]["payment-identifier"]["info"]["id"]
    return payment_id


def test_x402_a_402_after_payment_is_found_on_chain(payer: Payer) -> None:
    """x402: settled, then 402: not paid again; the payer's history shows it landed."""
    payer.gateway.faults.repeat_402_after_payment()
    with pytest.raises(PaymentError):
        payer.agent.get(payer.url("/x402/v2/premium"))
    assert payer.before[1] - payer.balances()[1] == Decimal("0.01")
    assert payer.rows() == [("refused", "0.01", 1)]
    (receipt,) = payer.agent.payments
    assert receipt.signature  # found among the payer's transactions


# -- the fault API ---------------------------------------------------------------------------------


def test_faults_are_armed_listed_and_cleared_over_http(hostile: GatewayServer) -> None:
    """POST arms a fault, GET lists it, DELETE clears; bad input is a 400 naming the problem."""
    base = f"{hostile.url}/api/v1/faults"
    armed = requests.post(base, json={"mode": "drop_after_payment", "count": 2}, timeout=5)
    assert armed.status_code == 201
    listed = requests.get(base, timeout=5).json()
    assert [(f["mode"], f["count"]) for f in listed["armed"]] == [("drop_after_payment", 2)]
    bad = requests.post(base, json={"mode": "explode"}, timeout=5)
    assert bad.status_code == 400
    assert "unknown fault" in bad.json()["error"]["message"]
    assert requests.delete(base, timeout=5).json() == {"armed": []}
    assert hostile.gateway.faults.armed() == []


def test_the_http_modes_are_named_as_the_python_methods(hostile: GatewayServer) -> None:
    """Each mode is armed over HTTP by the name of its Faults method (fail_rpc, slow_rpc, ...)."""
    methods = {
        name
        for name in vars(Faults)
        if not name.startswith("_") and name not in ("arm", "take", "armed", "clear")
    }
    assert methods == set(MODES)
    base = f"{hostile.url}/api/v1/faults"
    armed = requests.post(base, json={"mode": "slow_rpc", "seconds": 0.5, "count": 2}, timeout=5)
    assert armed.status_code == 201
    assert armed.json()["mode"] == "slow_rpc"
    assert requests.post(base, json={"mode": "fail_rpc"}, timeout=5).json()["status"] == 503
    assert {f.mode for f in hostile.gateway.faults.armed()} == {"slow_rpc", "fail_rpc"}


@pytest.mark.parametrize(
    ("fault", "new"),
    [({"mode": "rpc_error"}, "fail_rpc"), ({"mode": "rpc_slow", "seconds": 1}, "slow_rpc")],
)
def test_the_former_http_names_still_arm_their_fault(
    hostile: GatewayServer, fault: dict[str, Any], new: str
) -> None:
    """rpc_error and rpc_slow (the former HTTP names) arm fail_rpc and slow_rpc."""
    response = requests.post(f"{hostile.url}/api/v1/faults", json=fault, timeout=5)
    assert response.status_code == 201
    assert [f.mode for f in hostile.gateway.faults.armed()] == [new]


@pytest.mark.parametrize(
    ("fault", "needs"),
    [
        ({"mode": "slow_rpc"}, "seconds"),
        ({"mode": "slow_after_payment", "count": 2}, "seconds"),
        ({"mode": "redirect_payment", "status": 302}, "location"),
    ],
)
def test_a_fault_without_its_required_parameter_is_refused(
    hostile: GatewayServer, fault: dict[str, Any], needs: str
) -> None:
    """Arming a mode without a parameter it needs: 400 naming it, nothing armed; the same
    from Python."""
    response = requests.post(f"{hostile.url}/api/v1/faults", json=fault, timeout=5)
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert f"{fault['mode']} needs {needs}" in message
    assert hostile.gateway.faults.armed() == []
    with pytest.raises(ValueError, match=f"needs {needs}"):
        hostile.gateway.faults.arm(**fault)


def test_the_fault_api_documents_every_mode_and_its_parameters(hostile: GatewayServer) -> None:
    """GET /api/v1/faults says what each mode does, its parameters and which are required."""
    listed = requests.get(f"{hostile.url}/api/v1/faults", timeout=5).json()
    assert listed["modes"] == list(MODES)
    assert set(listed["help"]) == set(MODES)
    slow = listed["help"]["slow_rpc"]
    assert slow["required"] == ["seconds"]
    assert set(slow["parameters"]) == {"count", "seconds"}
    assert "0 to 600" in slow["parameters"]["seconds"]
    assert listed["help"]["redirect_payment"]["required"] == ["location"]
    assert set(listed["help"]["fail_rpc"]["parameters"]) == {"count", "status"}
    for mode in listed["help"].values():
        assert mode["does"]
        assert all(mode["parameters"].values())


def test_a_402_reached_through_a_redirect_is_paid_only_where_it_was_asked(
    payer: Payer,
) -> None:
    """Redirected from one host to the gateway's paywall: the payment goes to the gateway,
    the host that redirected never sees it."""
    app = Flask("front")
    seen: list[dict[str, str]] = []

    @app.get("/buy")
    def buy() -> Response:
        seen.append(dict(request.headers))
        response = Response(status=302)
        response.headers["Location"] = payer.url()
        return response

    front = GatewayServer(app).start()
    try:
        response = payer.agent.get(f"{front.url}/buy")
    finally:
        front.stop()
    assert response.status_code == 200
    assert response.url == payer.url()
    assert len(seen) == 1
    assert not {"X-PAYMENT", "PAYMENT-SIGNATURE"} & {k.upper() for k in seen[0]}
    assert len(payer.headers) == 1
    assert payer.sol_spent() == PRICE + FEE
    assert [row[0] for row in payer.rows()] == ["accepted"]
