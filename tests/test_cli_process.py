"""``python -m human_rpc_sdk`` as a person runs it: separate processes against a stub gateway
over loopback (one it started itself with `gateway`), a process killed mid-payment and
recovered by another, and the message when the cli extra is missing."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from solders.keypair import Keypair

from stub_gateway import GatewayServer, serve_in_thread

ROOT = Path(__file__).resolve().parent.parent
PRICE = Decimal("0.001")
FEE = Decimal("0.000005")


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m human_rpc_sdk ARGS`` in a new process; its exit status and output."""
    return subprocess.run(
        [sys.executable, "-m", "human_rpc_sdk", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def started(process: subprocess.Popen[str]) -> str:
    """The URL a `human-rpc gateway` process serves, from its banner's first line."""
    assert process.stdout is not None
    first = process.stdout.readline()
    found = re.match(r"stub HumanRPC gateway on (http://\S+) ", first)
    assert found, first + (process.stderr.read() if process.stderr else "")
    return found[1]


@pytest.fixture
def own_gateway() -> Iterator[str]:
    """`python -m human_rpc_sdk gateway` on a free port: its URL; stopped with SIGTERM."""
    process = subprocess.Popen(
        [sys.executable, "-m", "human_rpc_sdk", "gateway", "--port", "0", "--quiet"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield started(process)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert process.returncode == 0


def test_a_new_wallet_funded_pays_once_and_refuses_over_max(
    own_gateway: str, tmp_path: Path
) -> None:
    """keygen, fund, get (the body on stdout, the payment on stderr, the money moved once),
    get --max below the price (exit 3, nothing moved), payments, all as separate processes
    against a gateway started by `human-rpc gateway`."""
    key = tmp_path / "wallet.json"
    made = cli("keygen", "--out", str(key), "--json")
    assert made.returncode == 0, made.stderr
    address = json.loads(made.stdout)["address"]
    where = ["--key-file", str(key), "--rpc-url", f"{own_gateway}/rpc"]
    where += ["--journal", str(tmp_path / "journal.sqlite3")]
    funded = cli(*where, "fund", "--sol", "1", "--usdc", "0")
    assert funded.returncode == 0, funded.stderr
    assert "gave 1 SOL" in funded.stderr

    url = f"{own_gateway}/api/v1/premium/sol"
    paid = cli(*where, "get", url)
    assert paid.returncode == 0, paid.stderr
    assert json.loads(paid.stdout)["content"] == "premium sol content, unlocked"
    assert "paid 0.001 SOL to" in paid.stderr
    balance = json.loads(cli(*where, "balance", "SOL", "--json").stdout)
    assert balance == {
        "address": address,
        "network": "devnet",
        "balances": {"SOL": str(1 - PRICE - FEE)},
    }

    refused = cli(*where, "get", url, "--max", "0.0009", "SOL")
    assert refused.returncode == 3
    assert "max_payment" in refused.stderr
    assert "Nothing was signed" in refused.stderr
    after = json.loads(cli(*where, "balance", "SOL", "--json").stdout)
    assert after == balance
    (payment,) = json.loads(cli(*where, "payments", "--json").stdout)
    assert (payment["state"], payment["payer"]) == ("accepted", address)


class Stall:
    """The gateway's sleep for slow answers: says it started, then waits to be released."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, seconds: float) -> None:
        self.started.set()
        self.release.wait(seconds)


@pytest.fixture
def stalling() -> Iterator[tuple[GatewayServer, Stall]]:
    """A gateway whose slow answers (after a settlement) wait until the test releases them."""
    stall = Stall()
    with serve_in_thread(sleep=stall) as running:
        yield running, stall
        stall.release.set()


def test_recover_settles_a_payment_left_by_a_killed_process(
    stalling: tuple[GatewayServer, Stall], tmp_path: Path
) -> None:
    """A `get` process is killed (SIGKILL) after its payment settled, before the answer: a
    new process lists it pending; `recover` finds it on chain and says so (accepted,
    landed); the money moved once; a second recover has nothing to do."""
    server, stall = stalling
    wallet = Keypair()
    server.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    env = {"SOLANA_PRIVATE_KEY": str(wallet)}
    where = ["--rpc-url", server.rpc_url, "--journal", str(tmp_path / "journal.sqlite3")]
    server.gateway.faults.slow_after_payment(60)
    child = subprocess.Popen(
        [sys.executable, "-m", "human_rpc_sdk", *where, "get", f"{server.url}/api/v1/premium/sol"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    settled = stall.started.wait(timeout=60)  # the payment settled; its answer is stalled
    child.send_signal(signal.SIGKILL)
    _, errors = child.communicate(timeout=10)
    stall.release.set()
    assert settled, errors
    assert child.returncode == -signal.SIGKILL
    (settlement,) = server.gateway.desk.settlements

    (pending,) = json.loads(cli(*where, "payments", "--pending", "--json", env=env).stdout)
    assert (pending["state"], pending["signature"]) == ("signed", settlement.signature)
    recovered = cli(*where, "recover", "--json", env=env)
    assert recovered.returncode == 0, recovered.stderr
    summary = json.loads(recovered.stdout)
    assert summary["still_open"] == []
    (examined,) = summary["examined"]
    assert (examined["before"], examined["after"], examined["landed"]) == (
        "signed",
        "accepted",
        True,
    )
    assert examined["signature"] == settlement.signature
    assert server.gateway.balance(wallet.pubkey()) == 1 - PRICE - FEE
    again = cli(*where, "recover", env=env)
    assert again.returncode == 0
    assert "nothing to recover" in again.stdout
    assert len(server.gateway.desk.settlements) == 1


def test_without_the_cli_extra_it_says_what_to_install(tmp_path: Path) -> None:
    """With click unimportable, `python -m human_rpc_sdk` exits 2 with the install command,
    in one line and no traceback."""
    broken = tmp_path / "site" / "click"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('click is not installed')\n")
    path = os.pathsep.join([str(broken.parent), str(ROOT)])
    done = cli("--help", env={"PYTHONPATH": path})
    assert done.returncode == 2
    assert done.stderr == (
        "human-rpc needs click (the cli extra): pip install 'human-rpc-sdk[cli]'\n"
    )


def test_the_console_script_entry_point_is_the_module(tmp_path: Path) -> None:
    """pyproject's [project.scripts] human-rpc names the function `python -m` runs."""
    import tomllib

    from human_rpc_sdk.__main__ import main

    scripts: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "scripts"
    ]
    assert scripts == {"human-rpc": "human_rpc_sdk.__main__:main"}
    assert callable(main)


def test_the_wheel_takes_every_subpackage() -> None:
    """pyproject's package list finds every package on disk, the command line's included
    (a list of the two top-level names alone left human_rpc_sdk._io out of the wheel)."""
    import tomllib
    from fnmatch import fnmatchcase

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "packages" not in config or "find" in config["packages"]
    patterns = config["packages"]["find"]["include"]
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("human_rpc_sdk", "stub_gateway")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert "human_rpc_sdk._io.cli" in on_disk
    assert {name for name in on_disk if not any(fnmatchcase(name, p) for p in patterns)} == set()


def test_colour_on_a_terminal_only(server: GatewayServer, tmp_path: Path) -> None:
    """On a terminal the table has colour and bold; in a pipe, the same command has none."""
    import pty

    wallet = Keypair()
    server.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    args = [sys.executable, "-m", "human_rpc_sdk", "--rpc-url", server.rpc_url]
    args += ["--journal", str(tmp_path / "j.sqlite3"), "balance", "SOL"]
    env = {**os.environ, "SOLANA_PRIVATE_KEY": str(wallet), "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    leader, follower = pty.openpty()
    with subprocess.Popen(args, cwd=ROOT, env=env, stdout=follower, stderr=follower) as child:
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed: the process ended
                break
            if not chunk:
                break
            shown += chunk
    os.close(leader)
    assert child.returncode == 0, shown
    assert b"\x1b[1m" in shown  # the table's bold header
    piped = cli(*args[3:], env={"SOLANA_PRIVATE_KEY": str(wallet)})
    assert piped.returncode == 0
    assert "\x1b[" not in piped.stdout
    assert "SOL" in piped.stdout


def test_ctrl_c_mid_payment_exits_130_and_leaves_the_row_for_recover(
    stalling: tuple[GatewayServer, Stall], tmp_path: Path
) -> None:
    """Ctrl-C (SIGINT) while a settled payment's answer is stalled: exit 130 saying to run
    recover; the journal row stays pending (not marked failed); a recover while the RPC node
    fails decides nothing; then recover settles it from the chain; the money moved once."""
    server, stall = stalling
    wallet = Keypair()
    server.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1)})
    env = {"SOLANA_PRIVATE_KEY": str(wallet)}
    where = ["--rpc-url", server.rpc_url, "--journal", str(tmp_path / "journal.sqlite3")]
    server.gateway.faults.slow_after_payment(60)
    child = subprocess.Popen(
        [sys.executable, "-m", "human_rpc_sdk", *where, "get", f"{server.url}/api/v1/premium/sol"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    settled = stall.started.wait(timeout=60)
    child.send_signal(signal.SIGINT)
    out, errors = child.communicate(timeout=30)
    stall.release.set()
    assert settled, errors
    assert child.returncode == 130, errors
    assert "human-rpc recover" in errors
    assert "Traceback" not in errors
    assert out == ""
    assert str(wallet) not in out + errors
    (settlement,) = server.gateway.desk.settlements
    (pending,) = json.loads(cli(*where, "payments", "--pending", "--json", env=env).stdout)
    assert pending["signature"] == settlement.signature
    server.gateway.faults.fail_rpc(count=10000)  # the RPC node is down: nothing is decided
    blind = cli(*where, "recover", env=env)
    server.gateway.faults.clear()
    assert blind.returncode in (1, 5), blind.stderr
    assert "Traceback" not in blind.stderr
    (still,) = json.loads(cli(*where, "payments", "--pending", "--json", env=env).stdout)
    assert (still["id"], still["state"]) == (pending["id"], pending["state"])
    recovered = cli(*where, "recover", "--json", env=env)
    assert recovered.returncode == 0, recovered.stderr
    (examined,) = json.loads(recovered.stdout)["examined"]
    assert (examined["after"], examined["landed"]) == ("accepted", True)
    assert server.gateway.balance(wallet.pubkey()) == 1 - PRICE - FEE
    assert len(server.gateway.desk.settlements) == 1
