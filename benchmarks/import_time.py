"""Import time of human_rpc_sdk, and what the first payment imports on top of it.

Each figure comes from fresh interpreters (the median of ``--rounds``):

* ``import human_rpc_sdk`` and ``from human_rpc_sdk import AutoAgent``: wall time of the
  import statement (``time.perf_counter`` around it);
* the first payment's extra import cost: one paid request (the stub gateway's x402 route, the
  gateway in a process of its own) in an interpreter run with ``-X importtime``; the modules
  first imported during that request, and their cumulative import time.

With ``--against DIR`` (a source tree, e.g. ``git archive main human_rpc_sdk | tar -x -C
DIR``) the import figures of that tree are measured in the same run, rounds alternating.
Not a test: figures vary by machine.

    python benchmarks/import_time.py --rounds 15 [--against /tmp/old]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import requests
from solders.keypair import Keypair

ROOT = Path(__file__).resolve().parent.parent

TARGET_MS = 150.0
STATEMENTS = {
    "import human_rpc_sdk": "import human_rpc_sdk",
    "from human_rpc_sdk import AutoAgent": "from human_rpc_sdk import AutoAgent",
}
TIMED = "import time; t = time.perf_counter(); {}; print(time.perf_counter() - t)"
PAY = """
import sys
from solders.keypair import Keypair
from human_rpc_sdk import AutoAgent
agent = AutoAgent(Keypair.from_base58_string(sys.argv[1]), rpc_url=sys.argv[2] + "/rpc")
print("-- paying --", file=sys.stderr, flush=True)
assert agent.get(sys.argv[2] + "/x402/v2/premium").status_code == 200
print("-- paid --", file=sys.stderr, flush=True)
agent.close()
"""


def environment(tree: Path, pycache: Path) -> dict[str, str]:
    """As an installed package runs: compiled modules cached (in ``pycache``, not the tree)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONPYCACHEPREFIX": str(pycache)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def import_ms(statement: str, tree: Path, pycache: Path) -> float:
    env = environment(tree, pycache)
    out = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", TIMED.format(statement)],
        cwd=tree,  # "-c" puts the working folder first on sys.path
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout) * 1000


def first_payment_imports(
    url: str, key: str, journal: Path, pycache: Path
) -> list[tuple[float, str]]:
    """(milliseconds, module) of each top-level import made during the first paid request."""
    env = {**environment(ROOT, pycache), "HUMAN_RPC_JOURNAL": str(journal)}
    out = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-X", "importtime", "-c", PAY, key, url],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise SystemExit(f"the paying interpreter failed: {out.stderr[-2000:]}")
    lines = out.stderr.split("-- paying --", 1)[1].split("-- paid --", 1)[0].splitlines()
    found: list[tuple[float, str]] = []
    for line in lines:
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if not name.startswith("  ") and cumulative.strip().isdigit():  # top level
            found.append((int(cumulative) / 1000, name.strip()))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--against", type=Path, help="another source tree to compare with")
    args = parser.parse_args()
    trees = {"this tree": ROOT}
    if args.against:
        trees[str(args.against)] = args.against
    samples: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as pycache:
        for warm_up in [True] + [False] * args.rounds:  # the first round compiles
            for label, statement in STATEMENTS.items():
                for name, tree in trees.items():
                    took = import_ms(statement, tree, Path(pycache) / name.replace("/", "_"))
                    if not warm_up:
                        samples.setdefault((label, name), []).append(took)
        report(samples)
        first_payment(Path(pycache) / "this tree")


def report(samples: dict[tuple[str, str], list[float]]) -> None:
    for (label, name), values in samples.items():
        median = statistics.median(values)
        verdict = "met" if median <= TARGET_MS else "NOT met"
        print(
            f"{label:<40} {name:<22} median {median:6.1f} ms  min {min(values):6.1f} ms  "
            f"(target {TARGET_MS:.0f} ms: {verdict})"
        )


@contextlib.contextmanager
def gateway_process() -> Iterator[str]:
    """``python -m stub_gateway`` on a free port (its URL), until the block ends."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "stub_gateway", "--port", str(port), "--quiet"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)  # noqa: S603
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            with contextlib.suppress(requests.RequestException):
                requests.get(f"{url}/api/v1/info", timeout=1).raise_for_status()
                break
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def funded(url: str) -> Keypair:
    wallet = Keypair()
    faucet = {"address": str(wallet.pubkey()), "sol": "10", "usdc": "1000"}
    requests.post(f"{url}/api/v1/faucet", json=faucet, timeout=30).raise_for_status()
    return wallet


def first_payment(pycache: Path) -> None:
    with gateway_process() as gateway:
        wallet = funded(gateway)
        with tempfile.TemporaryDirectory() as folder:
            journal = Path(folder) / "journal.sqlite3"
            imports = first_payment_imports(gateway, str(wallet), journal, pycache)
    total = sum(ms for ms, _ in imports)
    print(f"first payment's extra imports: {total:.1f} ms in {len(imports)} module(s)")
    for ms, name in sorted(imports, reverse=True)[:8]:
        print(f"    {ms:6.1f} ms  {name}")


if __name__ == "__main__":
    main()
