"""The quick start example and the gateway's command line work as a newcomer would run them."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

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


def test_safe_spending_walks_through_every_rule() -> None:
    """examples/safe_spending.py: paid, declined, re-sent once, over budget, recovered."""
    done = run_example("safe_spending.py")
    assert "refused by rule 'approve'; nothing signed" in done.stdout
    assert "HTTP 200, the same payment sent twice, paid once" in done.stdout
    assert "refused by rule 'budget': 0.10 of 0.12 USDC already spent" in done.stdout
    assert "accepted, landed=True" in done.stdout
    assert "USDC budget: 0.15 spent of 0.22, 0.07 left" in done.stdout
    assert "Wallet USDC: 0.85" in done.stdout


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
    finally:
        process.terminate()
        process.communicate(timeout=10)
    assert info["recipient"] in banner  # the banner names the treasury


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
