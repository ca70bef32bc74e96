"""The ``human-rpc`` command line, run in-process with click's runner against the stub gateway
over loopback: output, exit statuses and what moved on the ledger and in the journal."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner, Result
from solders.keypair import Keypair

from human_rpc_sdk._io.cli.app import cli
from human_rpc_sdk._io.cli.errors import exit_code_of
from human_rpc_sdk._networks import GENESIS_HASHES
from human_rpc_sdk.exceptions import (
    HumanRPCError,
    HumanVerificationError,
    InvoiceValidationError,
    PaymentError,
    PaymentPolicyError,
    SDKConfigurationError,
    SolanaRPCError,
)
from stub_gateway import GatewayServer, serve_in_thread
from stub_gateway.tasks import ReviewPolicy

from .conftest import Funder, Shop
from .test_secrets import secret_forms

PRICE = Decimal("0.001")
FEE = Decimal("0.000005")
COMMANDS = [
    "keygen",
    "address",
    "balance",
    "fund",
    "get",
    "request",
    "quote",
    "payments",
    "payment",
    "recover",
    "budget",
    "ask",
    "wait",
    "tasks",
    "gateway",
    "doctor",
]


@dataclass
class Wallet:
    """A funded wallet's key file and journal, and the options that name them."""

    keypair: Keypair
    key_file: Path
    journal: Path
    rpc_url: str

    def options(self, *more: str) -> list[str]:
        return [
            "--key-file",
            str(self.key_file),
            "--rpc-url",
            self.rpc_url,
            "--journal",
            str(self.journal),
            *more,
        ]


Run = Callable[..., Result]


@pytest.fixture
def run() -> Run:
    """Run ``human-rpc ARGS`` in-process; stdout and stderr kept apart."""
    runner = CliRunner()

    def invoke(*args: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(cli, list(args), input=stdin, env=env, catch_exceptions=False)

    return invoke


def key_file(path: Path, keypair: Keypair) -> Path:
    path.write_text(json.dumps(list(bytes(keypair))))
    path.chmod(0o600)
    return path


@pytest.fixture
def wallet_on(tmp_path: Path, funded_wallet: Funder) -> Callable[..., Wallet]:
    """A wallet funded on the session gateway (or another server's gateway)."""

    def make(server: GatewayServer, sol: str = "1", usdc: str = "0") -> Wallet:
        keypair = Keypair()
        server.gateway.fund(keypair.pubkey(), {"SOL": Decimal(sol), "USDC": Decimal(usdc)})
        name = str(keypair.pubkey())[:8]
        return Wallet(
            keypair,
            key_file(tmp_path / f"{name}.json", keypair),
            tmp_path / f"{name}.sqlite3",
            server.rpc_url,
        )

    return make


def data(result: Result) -> Any:
    return json.loads(result.stdout)


# -- help and exit statuses -------------------------------------------------------------------


def test_help_lists_every_command_and_the_exit_statuses(run: Run) -> None:
    """`human-rpc --help` names every command and documents each exit status."""
    result = run("--help")
    assert result.exit_code == 0
    for name in COMMANDS:
        assert f"  {name} " in result.stdout, name
    for line in (
        "0   done",
        "2   bad usage",
        "3   a spending rule",
        "4   get/request",
        "5   unsettled",
    ):
        assert line in result.stdout
    assert "SOLANA_KEYPAIR_PATH" in result.stdout


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (PaymentPolicyError("over", rule="max_payment"), 3),
        (PaymentPolicyError("over", rule="budget"), 3),
        (SDKConfigurationError("bad"), 2),
        (HumanVerificationError("no verdict yet", reason="timeout", task_id="t"), 5),
        (HumanVerificationError("down", reason="unavailable"), 1),
        (PaymentError("refused"), 1),
        (SolanaRPCError("down"), 1),
        (InvoiceValidationError("not an invoice"), 1),
        (HumanRPCError("other"), 1),
        (requests.ReadTimeout("slow"), 1),
    ],
)
def test_each_error_has_its_documented_exit_status(error: BaseException, code: int) -> None:
    """A spending rule 3, configuration 2, a task still undecided 5, any other error 1."""
    assert exit_code_of(error) == code


def test_waiting_on_an_unknown_task_is_an_error_saying_so(
    run: Run, reviewers: GatewayServer, wallet_on: Any
) -> None:
    """wait on a task the service does not know: exit 1, the task named; nothing paid."""
    wallet = wallet_on(reviewers, sol="1", usdc="1")
    tasks_url = f"{reviewers.url}/api/v1/tasks"
    result = run("--human-rpc-url", tasks_url, *wallet.options("wait", "task_unknown"))
    assert result.exit_code == 1
    assert "task_unknown" in result.stderr
    assert reviewers.gateway.balance(wallet.keypair.pubkey(), "USDC") == 1


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "gateway"])
def test_every_command_has_help(run: Run, command: str) -> None:
    """Each command answers --help with its usage, exit status 0."""
    result = run(command, "--help")
    assert result.exit_code == 0, result.stderr
    assert f"Usage: cli {command}" in result.stdout or f"Usage: human-rpc {command}" in (
        result.stdout
    )


def test_gateway_takes_the_stub_gateways_own_options(run: Run) -> None:
    """`gateway --help` is `python -m stub_gateway --help`: its parser, not a copy."""
    result = run("gateway", "--help")
    assert result.exit_code == 0
    assert "--review-policy" in result.stdout
    assert "--payment-id-required" in result.stdout
    bad = run("gateway", "--port", "99999")
    assert bad.exit_code == 2
    assert "a port is a whole number" in bad.stderr


# -- the wallet -------------------------------------------------------------------------------


def test_keygen_writes_a_private_solana_keygen_file_and_never_overwrites(
    run: Run, tmp_path: Path
) -> None:
    """keygen: a 64-number JSON array, mode 0600, the address printed and not the secret; a
    second keygen to the same file exits 2 and leaves it; --force replaces it."""
    target = tmp_path / "keys" / "id.json"
    made = run("keygen", "--out", str(target), "--json")
    assert made.exit_code == 0, made.stderr
    keypair = Keypair.from_bytes(bytes(json.loads(target.read_text())))
    assert data(made) == {"address": str(keypair.pubkey()), "file": str(target)}
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    for form in secret_forms(keypair):
        assert form not in made.stdout + made.stderr

    again = run("keygen", "--out", str(target))
    assert again.exit_code == 2
    assert "already exists" in again.stderr
    assert "--force" in again.stderr
    assert Keypair.from_bytes(bytes(json.loads(target.read_text()))) == keypair

    forced = run("keygen", "--out", str(target), "--force", "--show-secret")
    assert forced.exit_code == 0
    replaced = Keypair.from_bytes(bytes(json.loads(target.read_text())))
    assert replaced != keypair
    assert str(replaced) in forced.stdout  # asked for: the base58 secret a wallet imports
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["id.json"]  # no temporary left


def test_address_and_balance(run: Run, server: GatewayServer, wallet_on: Any) -> None:
    """address prints the public key; balance reads SOL and USDC from the chain."""
    wallet = wallet_on(server, sol="1", usdc="2.5")
    shown = run(*wallet.options("address"))
    assert shown.stdout.strip() == str(wallet.keypair.pubkey())
    balances = run(*wallet.options("balance", "--json"))
    assert balances.exit_code == 0, balances.stderr
    assert data(balances)["balances"]["SOL"] == "1"
    assert data(balances)["balances"]["USDC"] == "2.5"
    one = run(*wallet.options("balance", "usdc"))
    assert "2.5" in one.stdout


def test_fund_uses_the_gateways_faucet_on_a_local_chain(
    run: Run, server: GatewayServer, wallet_on: Any
) -> None:
    """fund: the faucet of the gateway serving the RPC's chain funds the wallet."""
    wallet = wallet_on(server, sol="0")
    result = run(*wallet.options("fund", "--sol", "2", "--usdc", "3", "--json"))
    assert result.exit_code == 0, result.stderr
    assert data(result)["funded"] == {"SOL": "2", "USDC": "3"}
    assert server.gateway.balance(wallet.keypair.pubkey()) == 2
    assert server.gateway.balance(wallet.keypair.pubkey(), "USDC") == 3


@pytest.fixture(scope="module")
def posing_as_devnet() -> Iterator[GatewayServer]:
    """A gateway whose chain has devnet's genesis hash: to the command line, devnet itself."""
    with serve_in_thread(genesis_hash=GENESIS_HASHES["devnet"]) as running:
        yield running


def test_fund_is_refused_on_a_public_cluster(
    run: Run, posing_as_devnet: GatewayServer, wallet_on: Any
) -> None:
    """fund on a chain whose genesis hash is devnet's: exit 2, the faucet is never asked."""
    wallet = wallet_on(posing_as_devnet, sol="0")
    result = run(*wallet.options("fund"))
    assert result.exit_code == 2
    assert "refused on a public cluster" in result.stderr
    assert "devnet" in result.stderr
    assert posing_as_devnet.gateway.balance(wallet.keypair.pubkey()) == 0


# -- paying -----------------------------------------------------------------------------------


def test_get_pays_once_body_to_stdout_payment_to_stderr(
    run: Run, server: GatewayServer, wallet_on: Any
) -> None:
    """get: the paid body on stdout, the payment on stderr, the price and fee moved once, one
    accepted payment in the journal."""
    wallet = wallet_on(server)
    url = f"{server.url}/api/v1/premium/sol"
    result = run(*wallet.options("get", url))
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["content"] == "premium sol content, unlocked"
    assert "paid 0.001 SOL to" in result.stderr
    assert server.gateway.balance(wallet.keypair.pubkey()) == 1 - PRICE - FEE
    (paid,) = data(run(*wallet.options("payments", "--json")))
    assert (paid["state"], paid["amount"], paid["url"]) == ("accepted", "0.001", url)
    assert paid["signature"] in result.stderr


def test_get_with_max_below_the_price_refuses_and_moves_nothing(
    run: Run, server: GatewayServer, wallet_on: Any
) -> None:
    """--max below the price: exit 3, the rule named, no money moved, no journal row."""
    wallet = wallet_on(server)
    result = run(
        *wallet.options("get", f"{server.url}/api/v1/premium/sol", "--max", "0.0005", "SOL")
    )
    assert result.exit_code == 3
    assert "max_payment" in result.stderr
    assert result.stdout == ""
    assert server.gateway.balance(wallet.keypair.pubkey()) == 1
    assert data(run(*wallet.options("payments", "--json"))) == []


def test_max_in_another_token_pays_nothing_in_this_one(
    run: Run, server: GatewayServer, wallet_on: Any
) -> None:
    """--max 1 USDC on a SOL price: refused by max_payment (exit 3) though SOL's default
    ceiling would allow it; quote decides the same; nothing signed or moved."""
    wallet = wallet_on(server)
    url = f"{server.url}/api/v1/premium/sol"
    result = run(*wallet.options("get", url, "--max", "1", "USDC"))
    assert result.exit_code == 3
    assert "allows payments in USDC only" in result.stderr
    quoted = run(*wallet.options("quote", url, "--max", "1", "usdc", "--json"))
    assert quoted.exit_code == 3
    assert (data(quoted)["decision"], data(quoted)["rule"]) == ("refuse", "max_payment")
    assert server.gateway.balance(wallet.keypair.pubkey()) == 1
    assert data(run(*wallet.options("payments", "--json"))) == []


def test_get_writes_the_body_to_a_file_and_an_http_error_exits_4(
    run: Run, server: GatewayServer, wallet_on: Any, tmp_path: Path
) -> None:
    """-o writes the body to the file; an HTTP error answer exits 4 with its body printed."""
    wallet = wallet_on(server)
    out = tmp_path / "body.json"
    paid = run(*wallet.options("get", f"{server.url}/api/v1/premium/sol", "-o", str(out)))
    assert paid.exit_code == 0
    assert paid.stdout == ""
    assert json.loads(out.read_text())["resource"] == "sol"
    missing = run(*wallet.options("get", f"{server.url}/api/v1/premium/nothing-here"))
    assert missing.exit_code == 4
    assert "no premium resource" in missing.stdout
    assert "HTTP 404" in missing.stderr


def test_request_sends_the_method_headers_and_body(
    run: Run, shop: Shop, wallet_on: Any, tmp_path: Path
) -> None:
    """request POST with -H and -d @FILE: the server gets them, on the paid retry too."""
    wallet = wallet_on(shop.server)
    body = tmp_path / "body.txt"
    body.write_bytes(b"hello from a file")
    before = len(shop.seen)
    result = run(
        *wallet.options(
            "request", "post", f"{shop.url}/echo", "-H", "X-Test: yes", "-d", f"@{body}"
        )
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"echo": True}
    sent = shop.seen[before:]
    assert [s["method"] for s in sent] == ["POST", "POST"]  # the 402, then the paid retry
    assert all(s["body"] == b"hello from a file" for s in sent)
    for seen in sent:
        headers = seen["headers"]
        assert isinstance(headers, dict)
        assert headers["X-Test"] == "yes"


def test_a_bad_header_is_a_usage_error(run: Run, server: GatewayServer, wallet_on: Any) -> None:
    """-H without a colon: exit 2 saying the form expected; nothing sent."""
    wallet = wallet_on(server)
    result = run(*wallet.options("get", f"{server.url}/api/v1/premium/sol", "-H", "nocolon"))
    assert result.exit_code == 2
    assert "NAME: VALUE" in result.stderr
    assert server.gateway.balance(wallet.keypair.pubkey()) == 1


def test_quote_shows_the_offer_and_the_decision_and_signs_nothing(
    run: Run, server: GatewayServer, wallet_on: Any
) -> None:
    """quote: the 402's offer and "pay" (exit 0); with --max below it "refuse" by max_payment
    (exit 3); get --dry-run is the same; nothing signed, journaled or moved."""
    wallet = wallet_on(server)
    url = f"{server.url}/api/v1/premium/sol"
    quoted = run(*wallet.options("quote", url, "--json"))
    assert quoted.exit_code == 0, quoted.stderr
    shown = data(quoted)
    assert (shown["decision"], shown["offer"]["amount"], shown["offer"]["currency"]) == (
        "pay",
        "0.001",
        "SOL",
    )
    assert shown["offer"]["fee"] == "0.000005"
    assert shown["budget"] == {"currency": "SOL", "limit": "1", "spent": "0"}
    refused = run(*wallet.options("quote", url, "--max", "0.0001", "SOL", "--json"))
    assert refused.exit_code == 3
    assert (data(refused)["decision"], data(refused)["rule"]) == ("refuse", "max_payment")
    dry = run(*wallet.options("get", url, "--dry-run"))
    assert dry.exit_code == 0
    assert "would pay" in dry.stdout
    assert server.gateway.balance(wallet.keypair.pubkey()) == 1
    assert data(run(*wallet.options("payments", "--json"))) == []
    assert data(run(*wallet.options("budget", "--json")))["SOL"]["spent"] == "0"


def test_quote_and_get_over_the_budget(run: Run, shop: Shop, wallet_on: Any) -> None:
    """A price within --max but over the USDC budget (10): quote says refuse by budget (exit
    3); get is refused by the same rule; nothing moved. After `budget raise 5 USDC` it pays."""
    wallet = wallet_on(shop.server, sol="1", usdc="20")
    url = shop.price_url("USDC", "12")
    quoted = run(*wallet.options("quote", url, "--max", "15", "USDC", "--json"))
    assert quoted.exit_code == 3
    assert (data(quoted)["decision"], data(quoted)["rule"]) == ("refuse", "budget")
    refused = run(*wallet.options("get", url, "--max", "15", "USDC"))
    assert refused.exit_code == 3
    assert "budget" in refused.stderr
    assert shop.gateway.balance(wallet.keypair.pubkey(), "USDC") == 20
    raised = run(*wallet.options("budget", "raise", "5", "USDC", "--json"))
    assert data(raised)["USDC"]["limit"] == "15"
    assert (
        data(run(*wallet.options("quote", url, "--max", "15", "USDC", "--json")))["decision"]
        == "pay"
    )
    paid = run(*wallet.options("get", url, "--max", "15", "USDC"))
    assert paid.exit_code == 0, paid.stderr
    assert shop.gateway.balance(wallet.keypair.pubkey(), "USDC") == 8


# -- the journal ------------------------------------------------------------------------------


def test_payments_as_a_table_json_and_csv_and_one_payment_in_full(
    run: Run, server: GatewayServer, wallet_on: Any
) -> None:
    """payments lists the paid request (table, --json, --csv, --since); payment ID shows its
    signature, fees, blockhash and chain, never the signed payment."""
    wallet = wallet_on(server)
    run(*wallet.options("get", f"{server.url}/api/v1/premium/sol"))
    table = run(*wallet.options("payments"))
    assert "\x1b[" not in table.stdout + table.stderr  # no colour outside a terminal
    assert "accepted" in table.stdout
    assert "0.001 SOL" in table.stdout
    (listed,) = data(run(*wallet.options("payments", "--json")))
    lines = run(*wallet.options("payments", "--csv")).stdout.splitlines()
    assert lines[0].startswith("id,time,state,amount,currency")
    assert lines[1].startswith(f"{listed['id']},")
    assert data(run(*wallet.options("payments", "--since", "1h", "--json"))) == [listed]
    assert data(run(*wallet.options("payments", "--since", "2999-01-01", "--json"))) == []
    assert data(run(*wallet.options("payments", "--pending", "--json"))) == []
    detail = data(run(*wallet.options("payment", str(listed["id"]), "--json")))
    assert detail["signature"] == listed["signature"]
    assert (detail["fee_lamports"], detail["rent_lamports"], detail["landed"]) == (5000, 0, True)
    assert detail["blockhash"]
    assert detail["genesis_hash"] == server.gateway.genesis_hash
    assert "headers" not in detail
    assert "transaction_b64" not in detail
    missing = run(*wallet.options("payment", "999"))
    assert missing.exit_code == 2
    assert "no payment #999" in missing.stderr
    assert "human-rpc payments" in missing.stderr


def test_since_that_is_no_date_is_a_usage_error(
    run: Run, server: GatewayServer, wallet_on: Any
) -> None:
    """--since takes a date or an age: anything else exits 2 saying both forms."""
    wallet = wallet_on(server)
    result = run(*wallet.options("payments", "--since", "yesterday"))
    assert result.exit_code == 2
    assert "30m" in result.stderr


def test_budget_shows_and_raise_lasts(run: Run, server: GatewayServer, wallet_on: Any) -> None:
    """budget: limit, spent, remaining per currency; budget raise adds to the limit, in the
    journal (a later run sees it)."""
    wallet = wallet_on(server)
    run(*wallet.options("get", f"{server.url}/api/v1/premium/sol"))
    shown = data(run(*wallet.options("budget", "--json")))
    line = {"limit": "1", "spent": "0.001005", "remaining": "0.998995"}
    assert shown["SOL"] == line | {"lines": [line | {"per": None, "resets": None}]}
    raised = run(*wallet.options("budget", "raise", "2", "SOL"))
    assert raised.exit_code == 0
    assert data(run(*wallet.options("budget", "--json")))["SOL"]["limit"] == "3"
    bad = run(*wallet.options("budget", "raise", "lots", "SOL"))
    assert bad.exit_code == 2
    assert "raise_budget" in bad.stderr


def test_recover_with_nothing_open(run: Run, server: GatewayServer, wallet_on: Any) -> None:
    """recover on a journal with no open payment: exit 0, says so."""
    wallet = wallet_on(server)
    result = run(*wallet.options("recover"))
    assert result.exit_code == 0
    assert "nothing to recover" in result.stdout


# -- human verification -----------------------------------------------------------------------


def test_ask_pays_the_task_and_prints_the_verdict_tasks_lists_it(
    run: Run, reviewers: GatewayServer, wallet_on: Any
) -> None:
    """ask: the reward paid once, the reviewers' verdict printed; tasks lists it decided."""
    reviewers.gateway.tasks.set_policy(ReviewPolicy("approve"))
    wallet = wallet_on(reviewers, sol="1", usdc="1")
    tasks_url = f"{reviewers.url}/api/v1/tasks"
    asked = run(
        "--human-rpc-url",
        tasks_url,
        *wallet.options(
            "ask", "Is this spam?", "--answer", "spam", "--confidence", "0.6", "--json"
        ),
    )
    assert asked.exit_code == 0, asked.stderr
    verdict = data(asked)
    assert (verdict["outcome"], verdict["decision"]) == ("approved", "approve")
    assert reviewers.gateway.balance(wallet.keypair.pubkey(), "USDC") == Decimal("0.95")
    (task,) = data(run(*wallet.options("tasks", "--json")))
    assert (task["task_id"], task["task_outcome"]) == (verdict["task_id"], "approved")
    assert data(run(*wallet.options("tasks", "--pending", "--json"))) == []


# -- doctor and errors ------------------------------------------------------------------------


def test_doctor_passes_on_a_good_setup(run: Run, server: GatewayServer, wallet_on: Any) -> None:
    """doctor on a funded wallet with its own journal: every check ok or informative, exit 0."""
    wallet = wallet_on(server)
    run(*wallet.options("balance"))  # the journal exists
    result = run(*wallet.options("doctor", "--json"))
    assert result.exit_code == 0, result.stdout
    checks = {c["check"]: c for c in data(result)}
    assert checks["RPC node"]["status"] == "ok"
    assert checks["key file"]["detail"] == "yours, mode 600"
    assert checks["journal file"]["status"] == "ok"
    assert checks["pending payments"]["detail"] == "none"


def test_doctor_names_the_wrong_chain_and_loose_permissions(
    run: Run, server: GatewayServer, wallet_on: Any
) -> None:
    """doctor: a mainnet-beta wallet on a local chain fails (exit 5) saying what to pass; a
    key file others can read is a warning with the chmod to run."""
    wallet = wallet_on(server)
    wallet.key_file.chmod(0o644)
    result = run("--network", "mainnet-beta", *wallet.options("doctor", "--json"))
    assert result.exit_code == 5
    checks = {c["check"]: c for c in data(result)}
    assert checks["RPC node"]["status"] == "fail"
    assert "not mainnet-beta" in checks["RPC node"]["detail"]
    assert "--network" in checks["RPC node"]["fix"]
    assert checks["key file"]["status"] == "warn"
    assert checks["key file"]["fix"] == f"chmod 600 {wallet.key_file}"


def test_no_key_says_where_a_key_comes_from(run: Run, tmp_path: Path) -> None:
    """Without a key: exit 2, naming --key-file's variables; --json puts the error on stdout."""
    result = run("--journal", str(tmp_path / "j"), "balance", "--json")
    assert result.exit_code == 2
    assert "SOLANA_PRIVATE_KEY" in result.stderr
    assert data(result)["error"]["exit_code"] == 2


def test_an_unreachable_rpc_node_is_exit_1(run: Run, wallet_on: Any, server: GatewayServer) -> None:
    """An RPC node that does not answer: exit 1, the message names it."""
    wallet = wallet_on(server)
    result = run(*wallet.options("balance"), "--help")  # parses
    assert result.exit_code == 0
    options = wallet.options()
    options[options.index("--rpc-url") + 1] = "http://127.0.0.1:9/rpc"
    failed = run(*options, "--timeout", "5", "balance", "SOL")
    assert failed.exit_code == 1
    assert "127.0.0.1:9" in failed.stderr


def test_the_secret_never_appears_in_any_output(
    run: Run, server: GatewayServer, wallet_on: Any, tmp_path: Path
) -> None:
    """Every command, its --json form and its errors, with the key from a file and from
    SOLANA_PRIVATE_KEY: no encoding of the secret in stdout or stderr."""
    wallet = wallet_on(server)
    forms = secret_forms(wallet.keypair)
    url = f"{server.url}/api/v1/premium/sol"
    runs = [
        ("address",),
        ("address", "--json"),
        ("balance",),
        ("balance", "--json"),
        ("balance", "NOPE"),
        ("fund", "--sol", "0.5"),
        ("fund", "--json", "--sol", "999999"),
        ("get", url),
        ("get", url, "--max", "0.0001", "SOL"),
        ("request", "PUT", url, "-d", "x"),
        ("quote", url, "--json"),
        ("payments",),
        ("payments", "--json"),
        ("payments", "--csv"),
        ("payment", "1"),
        ("payment", "1", "--json"),
        ("payment", "77"),
        ("recover",),
        ("recover", "--json"),
        ("budget",),
        ("budget", "--json"),
        ("budget", "raise", "1", "SOL"),
        ("tasks",),
        ("tasks", "--pending", "--json"),
        ("wait", "task_nope", "--timeout", "1"),
        ("ask", "q?", "--answer", "a", "--confidence", "0.5"),
        ("doctor",),
        ("doctor", "--json"),
        ("keygen", "--out", str(wallet.key_file)),
    ]
    seen = []
    for args in runs:
        seen.append(run(*wallet.options(*args)))
        env = {"SOLANA_PRIVATE_KEY": str(wallet.keypair)}
        options = wallet.options()[2:]  # no --key-file: the key from the environment
        seen.append(run(*options, *args, env=env))
    seen.append(run("-vv", *wallet.options("get", url)))  # the SDK's debug log on stderr
    seen.append(run("-vv", *wallet.options("recover")))
    seen.append(run("--key-file", str(tmp_path / "nope.json"), "address"))
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(list(bytes(wallet.keypair))[:63]))
    seen.append(run("--key-file", str(broken), "address"))
    assert {r.exit_code for r in seen} >= {0, 1, 2, 3}
    for result in seen:
        for form in forms:
            assert form not in result.stdout, result.stdout
            assert form not in result.stderr, result.stderr


# -- attacks (issue 14) -----------------------------------------------------------------------


def test_an_output_that_cannot_be_written_is_refused_before_paying(
    run: Run, server: GatewayServer, wallet_on: Any, tmp_path: Path
) -> None:
    """-o into a missing directory: refused before anything is signed (the body of a paid
    request would otherwise be lost after paying); no money moved, no journal row."""
    wallet = wallet_on(server)
    url = f"{server.url}/api/v1/premium/sol"
    result = run(*wallet.options("get", url, "-o", str(tmp_path / "missing" / "body.json")))
    assert result.exit_code == 2
    assert "missing" in result.stderr
    assert "nothing was paid" in result.stderr
    assert server.gateway.balance(wallet.keypair.pubkey()) == 1
    assert data(run(*wallet.options("payments", "--json"))) == []


def test_output_replaces_a_symlink_instead_of_writing_through_it(
    run: Run, server: GatewayServer, wallet_on: Any, tmp_path: Path
) -> None:
    """-o onto a symlink (such as one planted in a shared directory): the link is replaced by
    the body, the file it pointed to is left as it was; paid once."""
    wallet = wallet_on(server)
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    link = tmp_path / "body.json"
    link.symlink_to(precious)
    result = run(*wallet.options("get", f"{server.url}/api/v1/premium/sol", "-o", str(link)))
    assert result.exit_code == 0, result.stderr
    assert precious.read_text() == "keep me"
    assert not link.is_symlink()
    assert json.loads(link.read_text())["resource"] == "sol"
    assert server.gateway.balance(wallet.keypair.pubkey()) == 1 - PRICE - FEE
    assert [p["state"] for p in data(run(*wallet.options("payments", "--json")))] == ["accepted"]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_ask_pays_no_more_than_its_reward(
    run: Run, reviewers: GatewayServer, wallet_on: Any
) -> None:
    """ask --reward 0.01: a task service invoicing 50 times that (0.5 USDC, under the SDK's
    default 1 USDC ceiling) is refused by max_payment (exit 3); nothing moved or journaled.
    Asked again at its price, 0.01 USDC is paid once."""
    reviewers.gateway.tasks.set_policy(ReviewPolicy("approve"))
    wallet = wallet_on(reviewers, sol="1", usdc="1")
    reviewers.gateway.faults.overcharge(50)
    asked = run(
        "--human-rpc-url",
        f"{reviewers.url}/api/v1/tasks",
        *wallet.options(
            "ask", "Is this spam?", "--answer", "spam", "--confidence", "0.6", "--reward", "0.01"
        ),
    )
    assert asked.exit_code == 3, asked.stderr
    assert "max_payment" in asked.stderr
    assert reviewers.gateway.balance(wallet.keypair.pubkey(), "USDC") == 1
    assert reviewers.gateway.balance(wallet.keypair.pubkey()) == 1
    assert data(run(*wallet.options("payments", "--json"))) == []
    fair = run(  # the fault struck once: at its own price, the reward is paid
        "--human-rpc-url",
        f"{reviewers.url}/api/v1/tasks",
        *wallet.options(
            "ask", "Is this spam?", "--answer", "spam", "--confidence", "0.6", "--reward", "0.01"
        ),
    )
    assert fair.exit_code == 0, fair.stderr
    assert reviewers.gateway.balance(wallet.keypair.pubkey(), "USDC") == Decimal("0.99")
    (paid,) = data(run(*wallet.options("payments", "--json")))
    assert (paid["amount"], paid["currency"], paid["state"]) == ("0.01", "USDC", "accepted")


def test_a_servers_control_characters_never_reach_the_terminal(
    run: Run, responder: str, wallet_on: Any, server: GatewayServer
) -> None:
    """A hostile server's reason phrase with terminal escapes (erase the line above: the
    payment notice; set the window title): the status line on stderr carries none of them."""
    wallet = wallet_on(server)
    reason = "\x1b[1A\x1b[2K\x1b]0;owned\x1b\\all good\x9b2J"
    spec = json.dumps({"status": f"500 {reason}", "body": ""})
    result = run(*wallet.options("request", "POST", f"{responder}/respond", "-d", spec))
    assert result.exit_code == 4
    assert "HTTP 500" in result.stderr
    assert "all good" in result.stderr
    assert "\x1b" not in result.stderr
    assert "\x9b" not in result.stderr


@pytest.mark.parametrize("age", ["99999999999d", "999999999999999999999h", "0001-01-01"])
def test_since_older_than_any_date_lists_every_payment(
    run: Run, server: GatewayServer, wallet_on: Any, age: str
) -> None:
    """--since an age beyond the calendar (a huge count of days or hours): every payment,
    not a traceback."""
    wallet = wallet_on(server)
    assert run(*wallet.options("get", f"{server.url}/api/v1/premium/sol")).exit_code == 0
    listed = run(*wallet.options("payments", "--since", age, "--json"))
    assert listed.exit_code == 0, listed.stderr
    assert [p["state"] for p in data(listed)] == ["accepted"]


def test_fund_with_a_gateway_serving_another_chain_is_refused(
    run: Run, server: GatewayServer, shop: Shop, wallet_on: Any
) -> None:
    """fund --gateway naming a gateway whose chain is not the RPC node's: exit 2, its faucet
    is never asked (the coins could not be spent here); nothing credited on either chain."""
    wallet = wallet_on(server, sol="0")
    assert shop.gateway.genesis_hash != server.gateway.genesis_hash
    result = run(*wallet.options("fund", "--gateway", shop.url, "--sol", "2"))
    assert result.exit_code == 2
    assert "serves the chain" in result.stderr
    assert server.gateway.balance(wallet.keypair.pubkey()) == 0
    assert shop.gateway.balance(wallet.keypair.pubkey()) == 0


def test_a_payment_with_no_answer_says_the_command_that_recovers_it(
    run: Run, server: GatewayServer, wallet_on: Any
) -> None:
    """A payment settled whose every answer is an HTTP 500: exit 1 naming `human-rpc recover`
    (the SDK's agent.recover_payments() means nothing at a shell); paid once, the row
    pending, and recover settles it."""
    wallet = wallet_on(server)
    server.gateway.faults.error_after_payment(count=10)
    try:
        result = run(*wallet.options("get", f"{server.url}/api/v1/premium/sol"))
    finally:
        server.gateway.faults.clear()
    assert result.exit_code == 1
    assert "`human-rpc recover`" in result.stderr
    assert server.gateway.balance(wallet.keypair.pubkey()) == 1 - PRICE - FEE
    (pending,) = data(run(*wallet.options("payments", "--pending", "--json")))
    recovered = data(run(*wallet.options("recover", "--json")))
    assert [(e["id"], e["after"]) for e in recovered["examined"]] == [(pending["id"], "accepted")]


def test_keygen_onto_a_symlink_never_writes_through_it(run: Run, tmp_path: Path) -> None:
    """keygen --out a symlink (dangling, as planted to catch the key, or to a file): refused
    and nothing written where it points; with --force the link itself is replaced by a new
    0600 file, the file it pointed to untouched. Under umask 0 the key is still 0600."""
    planted = tmp_path / "attacker-readable.json"
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(planted)
    refused = run("keygen", "--out", str(dangling))
    assert refused.exit_code == 2
    assert not planted.exists()

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / "link.json"
    link.symlink_to(victim)
    assert run("keygen", "--out", str(link)).exit_code == 2
    old = os.umask(0)
    try:
        forced = run("keygen", "--out", str(link), "--force")
    finally:
        os.umask(old)
    assert forced.exit_code == 0, forced.stderr
    assert victim.read_text() == "keep me"
    assert not link.is_symlink()
    assert stat.S_IMODE(link.stat().st_mode) == 0o600
    Keypair.from_bytes(bytes(json.loads(link.read_text())))
    assert not planted.exists()


def test_quote_never_resumes_a_journaled_payment(
    run: Run, server: GatewayServer, wallet_on: Any
) -> None:
    """An x402 payment left with no outcome (its request redirected away, unsettled), then
    `quote` of the same URL: the price shown, nothing sent, the journal row left for
    `recover`, no money moved (quote used to resume and deliver the old payment)."""
    wallet = wallet_on(server, usdc="1")
    url = f"{server.url}/x402/v2/premium"
    server.gateway.faults.redirect_payment(location="http://127.0.0.1:9/gone", count=10)
    try:
        lost = run(*wallet.options("get", url))
    finally:
        server.gateway.faults.clear()
    assert lost.exit_code == 1
    (row,) = data(run(*wallet.options("payments", "--pending", "--json")))
    settlements = len(server.gateway.desk.settlements)

    quoted = run(*wallet.options("quote", url, "--json"))
    assert quoted.exit_code == 0, quoted.stderr
    assert (data(quoted)["status"], data(quoted)["decision"]) == (402, "pay")
    assert "human-rpc recover" in quoted.stderr
    assert server.gateway.balance(wallet.keypair.pubkey(), "USDC") == 1
    assert len(server.gateway.desk.settlements) == settlements
    (still,) = data(run(*wallet.options("payments", "--pending", "--json")))
    assert (still["id"], still["state"]) == (row["id"], row["state"])
