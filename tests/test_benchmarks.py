"""The benchmark scripts run and print every row, with tiny counts (no figure is judged).

``make bench`` is the measure issue 12 is judged by; these runs only keep it from rotting
(a renamed attribute, a moved script, a row lost). About 15 s: ``-m 'not bench'`` skips them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
X402_PYTHON = Path(os.environ.get("X402_PYTHON", ROOT / ".venv-x402" / "bin" / "python"))

pytestmark = pytest.mark.bench

PAYMENT_ROWS = (
    "Latency, gateway /x402/v2/premium",
    "Latency, reference Flask middleware /paid",
    "reference x402 client",
    "unpaid GET",
    "AutoAgent(prepay=True)",
    "gateway route: AutoAgent / reference",
    "gateway route: AutoAgent(prepay=True) / reference",
    "middleware route: AutoAgent / reference",
    "middleware route: AutoAgent(prepay=True) / reference",
    "gateway route: paid / unpaid, AutoAgent ",
    "gateway route: paid / unpaid, AutoAgent(prepay=True)",
    "back to back (no time between requests",
    "gateway route, back to back: AutoAgent(prepay=True) / reference",
    "round trips on the critical path (agent.rpc_stats)",
    "round trips in the background",
    "JSON-RPC calls served by the gateway",
    "fsync+fdatasync / payment, AutoAgent (strace)",
    "full syncs / payment, AutoAgent (journal.full_syncs)",
    "import human_rpc_sdk, ms",
    "first payment's extra imports, ms",
    "Gateway CPU per payment",
)
TARGETS = ("<= 0.85x", "<= 0.60x", "<= 0.80x", "<= 2.3", "<= 0.1", "< 150 ms", "<= 0.5")


def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    return subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": path},
    )


def test_bench_payment_prints_every_row_and_target() -> None:
    """bench_payment.py, a few payments each: every row and every target is printed."""
    if not X402_PYTHON.exists():
        message = "the reference x402 environment (.venv-x402) is missing; `make test` creates it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    done = run(
        "bench_payment.py",
        *("--payments", "3", "--round", "3", "--warm", "0", "--background-seconds", "1"),
        *("--cpu-batch", "3", "--fsync-payments", "3", "--imports", "1", "--gateway-rate", "3"),
        *("--x402-python", str(X402_PYTHON)),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    missing = [row for row in (*PAYMENT_ROWS, *TARGETS) if row not in done.stdout]
    assert missing == [], done.stdout


def test_bench_payment_says_how_to_build_a_missing_reference_environment(tmp_path: Path) -> None:
    """Without .venv-x402 the benchmark stops at once and names the command that builds it."""
    done = run("bench_payment.py", "--x402-python", str(tmp_path / "no-such-python"))
    assert done.returncode != 0
    assert "make .venv-x402/.installed" in done.stderr
    assert "Traceback" not in done.stderr


def test_bench_journal_and_drivers_run() -> None:
    """bench_journal.py and bench_drivers.py, tiny counts: they finish and print their tables."""
    journal = run(
        "bench_journal.py",
        "--rows",
        "20",
        "--samples",
        "5",
        "--processes",
        "2",
        "--fleet-payments",
        "3",
    )
    assert journal.returncode == 0, journal.stderr[-3000:]
    assert "unsettled() for recovery" in journal.stdout
    assert "SQLite (WAL, synchronous=FULL for signed)" in journal.stdout
    assert "one currency (contended)" in journal.stdout
    # PostgreSQL's rows, or the line saying why they were skipped.
    assert ("PostgreSQL rows skipped" in journal.stdout) != ("Unix socket" in journal.stdout)
    drivers = run("bench_drivers.py", "--payments", "2", "--concurrency", "2")
    assert drivers.returncode == 0, drivers.stderr[-3000:]
    assert "httpx.AsyncClient + PaymentAuth" in drivers.stdout
