"""The quick start example and the gateway's command line work as a newcomer would run them."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str) -> subprocess.CompletedProcess[str]:
    """Run examples/<name> as a newcomer would; it must exit 0."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_quickstart_runs_and_pays_twice() -> None:
    """examples/quickstart.py exits 0 after buying a SOL and a USDC resource."""
    done = run_example("quickstart.py")
    assert "premium sol content, unlocked" in done.stdout
    assert "premium usdc content, unlocked" in done.stdout
    assert "0.001 SOL to" in done.stdout
    assert "0.05 USDC to" in done.stdout
    assert "USDC             5 ->         4.95" in done.stdout


def test_guarded_classifier_runs_reject_then_approve() -> None:
    """examples/guarded_classifier.py: confident call direct, unsure call rejected then approved."""
    done = run_example("guarded_classifier.py")
    assert "confident: {'answer': 'positive', 'confidence': 0.97}" in done.stdout
    assert "'decision': 'approve'" in done.stdout
    assert "'verified': True" in done.stdout
    assert done.stdout.count("0.05 USDC (+") == 2
    assert "USDC left: 0.9" in done.stdout
    assert "attempt 1 of 3: rejected" in done.stderr


def test_async_agent_buys_concurrently_and_guards_an_async_function() -> None:
    """examples/async_agent.py: five concurrent purchases paid once each, an async @guard
    approved by the reviewers, a PaymentAuth purchase; the USDC left adds up."""
    done = run_example("async_agent.py")
    assert "bought: [200, 200, 200, 200, 200]" in done.stdout
    assert done.stdout.count("(accepted)") == 5
    assert "budget SOL: spent 0.003015 of 0.05" in done.stdout
    assert "'verified': True" in done.stdout
    assert "through PaymentAuth: 200 premium x402 v2 content, unlocked" in done.stdout
    assert "USDC left: 1.92" in done.stdout  # 2 - 2 x 0.01 (x402) - 0.05 (review) - 0.01


def test_safe_spending_walks_through_every_rule() -> None:
    """examples/safe_spending.py: paid, declined, re-sent once, over budget, recovered."""
    done = run_example("safe_spending.py")
    assert "refused by rule 'approve'; nothing signed" in done.stdout
    assert "HTTP 200, the same payment sent twice, paid once" in done.stdout
    assert "refused by rule 'budget': 0.10 of 0.12 USDC already spent" in done.stdout
    assert "accepted, landed=True" in done.stdout
    assert "USDC budget: 0.15 spent of 0.22, 0.07 left" in done.stdout
    assert "Wallet USDC: 0.85" in done.stdout


def test_sign_in_pays_once_for_three_visits() -> None:
    """examples/sign_in.py: the first visit pays, the next two sign in; one transfer."""
    done = run_example("sign_in.py")
    assert "visit 1: paid; payments in the journal: 1" in done.stdout
    assert "visit 2: signed in; payments in the journal: 1" in done.stdout
    assert "visit 3: signed in; payments in the journal: 1" in done.stdout
    assert "Wallet USDC: 0.99" in done.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_gateway_command_line_serves_until_stopped() -> None:
    """python -m stub_gateway serves the API on the given port and stops on SIGTERM."""
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stub_gateway",
            "--port",
            str(port),
            "--seed",
            "cli-test",
            "--review-policy",
            "script:reject,approve",
            "--voters",
            "3",
            "--rate-limit",
            "5/60",
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        # The socket listens before the banner is printed: reading the banner is the wait.
        assert process.stdout is not None
        lines = [process.stdout.readline()]
        while "try" not in lines[-1] and lines[-1]:
            lines.append(process.stdout.readline())
        banner = "".join(lines)
        assert banner.startswith(f"stub HumanRPC gateway on http://127.0.0.1:{port}"), banner
        info = requests.get(f"http://127.0.0.1:{port}/api/v1/info", timeout=5).json()
        assert info["network"] == "devnet"
        unpaid = requests.get(f"http://127.0.0.1:{port}/api/v1/premium/sol", timeout=5)
        assert unpaid.status_code == 402
        task = requests.post(f"http://127.0.0.1:{port}/api/v1/tasks", json={"text": "q"}, timeout=5)
        assert task.status_code == 402
        assert "reviewers: script:reject,approve" in banner
        genesis = requests.post(
            f"http://127.0.0.1:{port}/rpc",
            json={"jsonrpc": "2.0", "id": 1, "method": "getGenesisHash"},
            timeout=5,
        ).json()["result"]
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=10)
    assert process.returncode == 0, errors  # SIGTERM stops it cleanly
    assert info["recipient"] in banner  # the banner names the treasury
    assert f"genesis hash {genesis}" in banner
    groups = ["Solana RPC", "info", "faucet", "premium", "x402", "facilitator", "tasks", "faults"]
    for group in groups:
        assert f"\n  {group} " in banner, group
    for path in ("/api/v1/info", "/x402/v2/premium", "/facilitator/", "/api/v1/faults"):
        assert f"http://127.0.0.1:{port}{path}" in banner, path


def test_gateway_command_line_sets_the_sign_in_ttl() -> None:
    """--siwx-ttl reaches /x402/v2/members (shown in /api/v1/info); the banner lists it."""
    port = _free_port()
    command = [sys.executable, "-m", "stub_gateway", "--port", str(port), "--siwx-ttl", "90"]
    process = subprocess.Popen(
        [*command, "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline()]
        while "try" not in lines[-1] and lines[-1]:
            lines.append(process.stdout.readline())
        info = requests.get(f"http://127.0.0.1:{port}/api/v1/info", timeout=5).json()
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=10)
    assert process.returncode == 0, errors
    assert info["sign_in"]["ttl_seconds"] == 90
    assert f"  sign-in      http://127.0.0.1:{port}/x402/v2/members" in "".join(lines)


def test_gateway_logs_are_plain_text_when_redirected() -> None:
    """Each request is logged as one line without ANSI colour codes, even a 402 or a 404 whose
    path carries an escape character."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "stub_gateway", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        while "try" not in process.stdout.readline():
            pass
        base = f"http://127.0.0.1:{port}"
        assert requests.get(f"{base}/api/v1/premium/sol", timeout=5).status_code == 402
        assert requests.get(f"{base}/%1b[31mred", timeout=5).status_code == 404
        assert requests.get(f"{base}/api/v1/info", timeout=5).status_code == 200
    finally:
        process.terminate()
        out, errors = process.communicate(timeout=10)
    assert '"GET /api/v1/premium/sol HTTP/1.1" 402' in errors, errors
    assert '"GET /%1B%5B31mred HTTP/1.1" 404' in errors, errors
    assert "\x1b" not in out + errors


def run_cli(*args: str, hide: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m stub_gateway`` with ``args``; ``hide`` makes a package uninstallable."""
    command = [sys.executable, "-m", "stub_gateway", *args]
    if hide is not None:
        command = [sys.executable, "-c", HIDING_SHIM, hide, *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )


# Runs the CLI as `python -m` does, in an interpreter where one package cannot be imported.
HIDING_SHIM = """
import runpy, sys
hidden = sys.argv.pop(1)
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == hidden:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Hide())
runpy.run_module("stub_gateway", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("hidden", ["flask", "waitress"])
@pytest.mark.parametrize("args", [(), ("--help",)])
def test_without_the_gateway_extra_the_cli_names_the_install_command(
    hidden: str, args: tuple[str, ...]
) -> None:
    """Flask or waitress missing: one line naming pip install 'human-rpc-sdk[gateway]'."""
    done = run_cli(*args, hide=hidden)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert "pip install 'human-rpc-sdk[gateway]'" in done.stderr
    assert hidden in done.stderr
    assert "Traceback" not in done.stderr


def test_importing_the_gateway_without_the_extra_names_the_install_command() -> None:
    """``from stub_gateway import Gateway`` without Flask: an ImportError saying what to install."""
    code = HIDING_SHIM.replace(
        'runpy.run_module("stub_gateway", run_name="__main__", alter_sys=True)',
        "from stub_gateway import Gateway",
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "flask"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 1
    assert "ModuleNotFoundError: the stub gateway needs flask" in done.stderr
    assert "pip install 'human-rpc-sdk[gateway]'" in done.stderr


@pytest.mark.parametrize(
    ("option", "says"),
    [
        (["--port", "99999"], "a port is a whole number from 0 to 65535"),
        (["--port", "-1"], "a port is a whole number from 0 to 65535"),
        (["--task-price", "abc"], "a price is an amount of USDC such as 0.05"),
        (["--task-price", "0.0000001"], "at most 6 decimals"),
        (["--threads", "0"], "at least 1"),
    ],
)
def test_the_cli_says_what_a_good_value_looks_like(option: list[str], says: str) -> None:
    """An out-of-range port or a price that is not a USDC amount: a usage error naming the form."""
    done = run_cli(*option)
    assert done.returncode == 2
    assert says in done.stderr
    assert "Traceback" not in done.stderr
    assert "decimal.ConversionSyntax" not in done.stderr


def test_seed_gives_stable_addresses() -> None:
    """The same seed gives the same treasury; another seed another one."""
    from stub_gateway import Gateway

    assert Gateway(seed="a").treasury == Gateway(seed="a").treasury
    assert Gateway(seed="a").treasury != Gateway(seed="b").treasury


def test_gateway_command_line_refuses_bad_options() -> None:
    """A bad review policy or rate limit stops the CLI with a usage error, not a traceback."""
    for option in (["--review-policy", "sometimes"], ["--rate-limit", "lots"], ["--voters", "0"]):
        done = subprocess.run(
            [sys.executable, "-m", "stub_gateway", "--port", "0", *option],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=ROOT,
        )
        assert done.returncode == 2
        assert "Traceback" not in done.stderr
        assert "error:" in done.stderr


def test_the_payment_ids_example_pays_once() -> None:
    """examples/payment_ids.py: answers lost, the same id resumed, one payment on the ledger."""
    out = run_example("payment_ids.py").stdout
    assert "1. no answer: no_answer_after_payment" in out
    assert "2. the same request: HTTP 200" in out
    assert "3. the wallet paid 0.01 USDC, once" in out
    ids = {line.rsplit(" ", 1)[1] for line in out.splitlines() if "payment id" in line}
    assert len(ids) == 1
    assert ids.pop().startswith("pay_")
