"""AutoAgent against the reference x402 client, and what a payment costs: issue 12's measure.

One run, on one stub gateway in a process of its own (benchmarks/gateway_process.py, which
is ``python -m stub_gateway`` plus a counter route), prints each figure beside its target:

* AutoAgent vs the reference x402 Python client (x402 2.25.0, run in ``.venv-x402`` as a
  long-lived process, benchmarks/ref_payer.py, that pays on command and answers each
  request's latency measured in its own process), on the same route, rounds alternating
  between the clients: (a) the gateway's ``/x402/v2/premium``; (b) ``/paid`` behind the
  reference Flask middleware (tests/interop/ref_server.py in ``.venv-x402``, verifying and
  settling through the gateway's facilitator). AutoAgent with default settings, and with
  prepared payments (``AutoAgent(prepay=True)``) when the agent takes that parameter;
* paid vs unpaid: an unpaid GET of the same route in the same rounds;
* every client pauses ``--gap-ms`` (default 10, not timed) before each request, as an agent
  does its own work between calls: the time a prepared payment is prepared in. The gateway
  route is timed back to back as well (no pause: the next payment is prepared while the
  caller waits);
* RPC round trips per payment over a ``--background-seconds`` run (default 30) with
  default settings: the agent's own (the critical path, ``rpc_stats``), its background
  refresher's (when it has one that counts) and the JSON-RPC calls the gateway served;
* fsyncs per payment (strace on a fresh process, and the journal's ``full_syncs`` counter
  when it keeps one);
* ``import human_rpc_sdk`` in fresh processes (median), and the imports the first payment
  adds (``-X importtime``);
* the gateway's CPU per payment at the start and after ``--warm`` payments (benchmarks/
  bench_gateway.py when present, run as a process of its own; else read here from
  ``/proc/<pid>/stat`` over a batch of AutoAgent payments).

Every payment is checked (HTTP 200). Not a test: figures vary by machine; compare within one
run. Linux only (``/proc``).

    make bench
    python benchmarks/bench_payment.py --payments 400 --background-seconds 60 --warm 20000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from bench_support import accepts_prepay, background_trips
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
X402_VERSION = "2.25.0"
GATEWAY_ROUTE = "/x402/v2/premium"
USDC_ROUTE = "/api/v1/premium/usdc"
DEVNET_CAIP2 = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"
UNLIMITED = {"USDC": None, "SOL": None}
REFERENCE = "reference x402 client"
DEFAULT = "AutoAgent"
PREPAY = "AutoAgent(prepay=True)"
UNPAID = "unpaid GET"
NOT_AVAILABLE = "not available"
NO_PREPAY = f"{PREPAY}: not available (this AutoAgent takes no prepay= parameter yet)"

Pay = Callable[..., list[float]]
"""``pay(count, url, gap=0.0)``: the latencies of ``count`` requests, ``gap`` s apart (untimed)."""


class BenchError(SystemExit):
    """The benchmark cannot run: the message says why and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(f"bench_payment: {message}")


# -- the processes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Gateway:
    url: str
    pid: int

    @property
    def rpc_url(self) -> str:
        return f"{self.url}/rpc"

    def rpc_calls(self) -> int | None:
        answer = requests.get(f"{self.url}/_bench/stats", timeout=10).json()
        calls = answer.get("rpc_calls")
        return calls if isinstance(calls, int) else None

    def cpu_seconds(self) -> float:
        """User plus system CPU of the gateway process, all threads (``/proc/<pid>/stat``)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until_up(url: str, process: subprocess.Popen[Any], what: str) -> None:
    for _ in range(600):
        if process.poll() is not None:
            raise BenchError(f"{what} exited with status {process.returncode} before answering")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.05)
    raise BenchError(f"{what} did not answer {url} within 30 s")


@contextlib.contextmanager
def gateway_process() -> Iterator[Gateway]:
    port = free_port()
    command = [sys.executable, str(HERE / "gateway_process.py"), "--port", str(port), "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)  # noqa: S603 - our own
    try:
        gateway = Gateway(f"http://127.0.0.1:{port}", process.pid)
        wait_until_up(f"{gateway.url}/api/v1/info", process, "the stub gateway")
        yield gateway
    finally:
        process.terminate()
        process.wait(timeout=30)


def funded(gateway: Gateway) -> Keypair:
    wallet = Keypair()
    requests.post(
        f"{gateway.url}/api/v1/faucet",
        json={"address": str(wallet.pubkey()), "sol": "100", "usdc": "100000"},
        timeout=30,
    ).raise_for_status()
    return wallet


def reference_python(explicit: str | None) -> str:
    """The interpreter of the reference x402 environment, checked to hold x402 2.25.0."""
    python = Path(explicit or os.environ.get("X402_PYTHON") or ROOT / ".venv-x402/bin/python")
    if not python.exists():
        raise BenchError(
            f"the reference x402 environment is missing ({python} does not exist). Build it "
            "with `make .venv-x402/.installed` (`make bench` does), or point --x402-python "
            f"(or X402_PYTHON) at a Python that has x402[svm,flask,requests]=={X402_VERSION}"
        )
    code = "import importlib.metadata as m; print(m.version('x402'))"
    done = subprocess.run(  # noqa: S603 - the configured interpreter
        [str(python), "-c", code], capture_output=True, text=True, check=False
    )
    version = done.stdout.strip()
    if done.returncode != 0 or version != X402_VERSION:
        found = version or done.stderr.strip().splitlines()[-1:]
        raise BenchError(
            f"{python} has no x402 {X402_VERSION} (found: {found}); rebuild it with "
            "`rm -rf .venv-x402 && make .venv-x402/.installed`"
        )
    return str(python)


@contextlib.contextmanager
def reference_server(python: str, gateway: Gateway) -> Iterator[str]:
    """``/paid`` behind the reference Flask middleware, the gateway as its facilitator."""
    info = requests.get(f"{gateway.url}/api/v1/info", timeout=10).json()
    port = free_port()
    arguments = {
        "port": port,
        "facilitator_url": f"{gateway.url}/facilitator",
        "pay_to": info["recipient"],
        "asset": info["mints"]["USDC"]["mint"],
        "amount": "10000",
        "network": DEVNET_CAIP2,
    }
    script = ROOT / "tests" / "interop" / "ref_server.py"
    process = subprocess.Popen(  # noqa: S603 - our own script
        [python, str(script), json.dumps(arguments)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = process.stdout.readline() if process.stdout is not None else ""
        if not line.startswith('{"ready"'):
            raise BenchError(f"the reference middleware server did not start ({line!r})")
        yield f"http://127.0.0.1:{port}/paid"
    finally:
        process.terminate()
        process.wait(timeout=30)


class ReferencePayer:
    """benchmarks/ref_payer.py in ``.venv-x402``: ``pay N URL`` in, latencies out."""

    def __init__(self, python: str, wallet: Keypair, gateway: Gateway) -> None:
        config = json.dumps({"secret": str(wallet), "rpc_url": gateway.rpc_url})
        self.process = subprocess.Popen(  # noqa: S603 - our own script
            [python, str(HERE / "ref_payer.py"), config],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if self.process.stdin is None or self.process.stdout is None:
            raise BenchError("the reference x402 client's pipes were not opened")
        self._stdin, self._stdout = self.process.stdin, self.process.stdout
        self._answer("starting")

    def _answer(self, doing: str) -> dict[str, Any]:
        line = self._stdout.readline()
        if not line:
            raise BenchError(f"the reference x402 client exited while {doing}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise BenchError(f"the reference x402 client failed {doing}: {answer['error']}")
        return answer

    def pay(self, count: int, url: str, gap: float = 0.0) -> list[float]:
        self._stdin.write(f"pay {count} {url} {gap}\n")
        self._stdin.flush()
        latencies: list[float] = self._answer(f"paying {url}")["latencies"]
        PAID.add(count)
        return latencies

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._stdin.write("quit\n")
            self._stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# -- measuring -----------------------------------------------------------------------------------


@dataclass
class Counter:
    """Payments made by this run, so that the warm-up tops them up to ``--warm``."""

    paid: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, count: int) -> None:
        with self.lock:
            self.paid += count


PAID = Counter()


def paying(agent: AutoAgent) -> Pay:
    def pay(count: int, url: str, gap: float = 0.0) -> list[float]:
        latencies = []
        for _ in range(count):
            if gap:
                time.sleep(gap)
            started = time.perf_counter()
            status = agent.get(url).status_code
            latencies.append(time.perf_counter() - started)
            if status != 200:
                raise BenchError(f"AutoAgent: GET {url} answered {status}, expected 200")
        PAID.add(count)
        return latencies

    return pay


def not_paying(session: requests.Session) -> Pay:
    def get(count: int, url: str, gap: float = 0.0) -> list[float]:
        latencies = []
        for _ in range(count):
            if gap:
                time.sleep(gap)
            started = time.perf_counter()
            status = session.get(url, timeout=30).status_code
            latencies.append(time.perf_counter() - started)
            if status != 402:
                raise BenchError(f"unpaid GET {url} answered {status}, expected 402")
        return latencies

    return get


def alternate(
    clients: dict[str, Pay], url: str, count: int, per_round: int, gap: float = 0.0
) -> dict[str, Any]:
    """``count`` requests per client, in rounds of ``per_round``, the order turning each round;
    each client waits ``gap`` seconds before each request (not timed)."""
    for pay in clients.values():  # warm: connections, caches, a first challenge to prepare from
        pay(2, url)
    samples: dict[str, list[float]] = {name: [] for name in clients}
    names = list(clients)
    rounds = max(1, -(-count // per_round))
    for turn in range(rounds):
        start = turn % len(names)
        for name in names[start:] + names[:start]:
            samples[name].extend(clients[name](per_round, url, gap))
    return samples


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def p95_ms(samples: list[float]) -> float:
    if len(samples) < 2:
        return samples[0] * 1000
    return statistics.quantiles(samples, n=100)[94] * 1000


def rpc_run(agent: AutoAgent, gateway: Gateway, url: str, seconds: float) -> dict[str, Any]:
    """Pay for ``seconds`` with default settings; RPC counts per payment."""
    before = (agent.rpc_stats.round_trips, background_trips(agent), gateway.rpc_calls())
    pay = paying(agent)
    payments = 0
    deadline = time.monotonic() + seconds
    while payments == 0 or time.monotonic() < deadline:
        pay(1, url)
        payments += 1
    after = (agent.rpc_stats.round_trips, background_trips(agent), gateway.rpc_calls())
    return {
        "payments": payments,
        "critical": (after[0] - before[0]) / payments,
        "background": None if before[1] is None or after[1] is None else after[1] - before[1],
        "gateway": None if before[2] is None or after[2] is None else after[2] - before[2],
    }


def fsyncs(gateway: Gateway, url: str, payments: int, prepay: bool, folder: Path) -> dict[str, Any]:
    """fsync/fdatasync calls per payment of a fresh process (strace), and full_syncs."""
    config = {
        "url": url,
        "rpc_url": gateway.rpc_url,
        "secret": str(funded(gateway)),
        "journal": str(folder / f"fsync-{prepay}.sqlite3"),
        "payments": payments,
        "prepay": prepay,
    }
    probe = [sys.executable, str(HERE / "probe.py"), "fsync", json.dumps(config)]
    strace = shutil.which("strace")
    trace = folder / f"strace-{prepay}.txt"
    if strace is not None:
        calls = "fsync,fdatasync,access,faccessat,faccessat2"
        probe = [strace, "-f", "-qq", "-e", f"trace={calls}", "-o", str(trace), *probe]
    done = subprocess.run(probe, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise BenchError(f"the fsync probe failed: {done.stderr.strip()[-2000:]}")
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    counted = None
    if strace is not None:
        inside, counted = False, 0
        for line in trace.read_text().splitlines():
            if "/human-rpc-bench-" in line:
                inside = "/human-rpc-bench-start" in line
            elif inside and ("fsync(" in line or "fdatasync(" in line):
                counted += 1
    synced = answer["full_syncs"]
    return {
        "strace": None if counted is None else counted / payments,
        "full_syncs": None if synced is None else synced / payments,
    }


def import_ms(python: str, module: str, repeats: int) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    samples = []
    for _ in range(repeats):
        done = subprocess.run(  # noqa: S603 - our interpreters
            [python, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT
        )
        if done.returncode != 0:
            raise BenchError(f"`import {module}` failed in {python}: {done.stderr[-1000:]}")
        samples.append(float(done.stdout.strip()))
    return statistics.median(samples) * 1000


def imports_by_phase(gateway: Gateway, url: str, folder: Path) -> dict[str, float]:
    """Milliseconds of imports (``-X importtime``, top-level cumulative) in each phase."""
    config = {
        "url": url,
        "rpc_url": gateway.rpc_url,
        "secret": str(funded(gateway)),
        "journal": str(folder / "first-payment.sqlite3"),
        "payments": 1,
        "prepay": False,
    }
    command = [
        sys.executable,
        "-X",
        "importtime",
        str(HERE / "probe.py"),
        "first-payment",
        json.dumps(config),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)  # noqa: S603
    if done.returncode != 0:
        raise BenchError(f"the first-payment probe failed: {done.stderr.strip()[-2000:]}")
    totals: dict[str, float] = {}
    phase = None
    for line in done.stderr.splitlines():
        if line.startswith("BENCH-MARK "):
            phase = line.split()[1]
            totals.setdefault(phase, 0.0)
            continue
        parts = line.removeprefix("import time:").split("|")
        if phase is None or len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2]
        if len(name) - len(name.lstrip()) == 1:  # a top-level import: its cumulative time
            totals[phase] += int(parts[1]) / 1000
    return totals


def gateway_cpu(gateway: Gateway, agent: AutoAgent, batch: int) -> dict[str, float]:
    """The gateway process's CPU milliseconds per payment over ``batch`` payments, per kind."""
    pay = paying(agent)
    figures = {}
    for kind, route in (("x402 v2", GATEWAY_ROUTE), ("HumanRPC USDC", USDC_ROUTE)):
        pay(2, f"{gateway.url}{route}")
        before = gateway.cpu_seconds()
        pay(batch, f"{gateway.url}{route}")
        figures[kind] = (gateway.cpu_seconds() - before) * 1000 / batch
    return figures


def warm(gateway: Gateway, target: int, threads: int) -> int:
    """Pay until this run has made ``target`` payments (x402 and USDC invoices in turn)."""
    missing = max(0, target - PAID.paid)
    if missing == 0:
        return 0
    agents = [
        AutoAgent(
            funded(gateway), rpc_url=gateway.rpc_url, journal_path=":memory:", budget=UNLIMITED
        )
        for _ in range(threads)
    ]
    routes = [f"{gateway.url}{GATEWAY_ROUTE}", f"{gateway.url}{USDC_ROUTE}"]

    def work(agent: AutoAgent, count: int) -> None:
        pay = paying(agent)
        for index in range(count):
            pay(1, routes[index % 2])

    shares = [missing // threads + (i < missing % threads) for i in range(threads)]
    workers = [
        threading.Thread(target=work, args=(agent, share))
        for agent, share in zip(agents, shares, strict=True)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for agent in agents:
        agent.close()
    return missing


def bench_gateway_script(warm_payments: int, batch: int, rate: int | None) -> str | None:
    """benchmarks/bench_gateway.py's own report, when that script exists (its own gateway)."""
    script = HERE / "bench_gateway.py"
    if not script.exists():
        return None
    help_text = subprocess.run(  # noqa: S603 - our own script
        [sys.executable, str(script), "--help"], capture_output=True, text=True, check=False
    ).stdout
    command = [sys.executable, str(script)]
    if "--warm" in help_text:
        command += ["--warm", str(warm_payments)]
    if "--batch" in help_text:
        command += ["--batch", str(batch)]
    if rate is not None and "--rate" in help_text:
        command += ["--rate", str(rate)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise BenchError(f"benchmarks/bench_gateway.py failed: {done.stderr.strip()[-2000:]}")
    return done.stdout.rstrip()


# -- the report ----------------------------------------------------------------------------------


def verdict(value: float | None, limit: float | None, below: bool = False) -> str:
    if value is None or limit is None:
        return ""
    met = value < limit if below else value <= limit
    return "met" if met else "NOT MET"


class Report:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def heading(self, text: str) -> None:
        self.lines += ["", text]

    def row(
        self,
        label: str,
        figure: float | str | None,
        target: str = "",
        limit: float | None = None,
        *,
        unit: str = "",
        digits: int = 2,
        below: bool = False,
    ) -> None:
        if isinstance(figure, float | int):
            shown = f"{figure:.{digits}f}{unit}"
            mark = verdict(float(figure), limit, below)
        else:
            shown, mark = str(figure), ""
        self.lines.append(f"  {label:64} {shown:>8}  {target:10} {mark}".rstrip())

    def text(self) -> str:
        return "\n".join(self.lines)


def ratio(samples: dict[str, list[float]], name: str, base: str) -> float | str:
    if name not in samples:
        return NOT_AVAILABLE
    return median_ms(samples[name]) / median_ms(samples[base])


def latency_table(report: Report, title: str, samples: dict[str, list[float]]) -> None:
    report.heading(title)
    report.lines.append(f"  {'':64} {'median ms':>10}  {'p95 ms':>8}")
    for name, values in samples.items():
        report.lines.append(f"  {name:64} {median_ms(values):10.2f}  {p95_ms(values):8.2f}")
    if PREPAY not in samples:
        report.lines.append(f"  {PREPAY:64} {NOT_AVAILABLE:>10}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=200, help="payments per client per route")
    parser.add_argument("--round", type=int, default=10, help="requests per client per round")
    parser.add_argument(
        "--gap-ms",
        type=float,
        default=10.0,
        help="untimed pause before each request (an agent's own work between calls)",
    )
    parser.add_argument(
        "--background-seconds", type=float, default=30.0, help="length of the RPC-count run"
    )
    parser.add_argument(
        "--warm", type=int, default=10_000, help="payments before the second gateway CPU batch"
    )
    parser.add_argument("--cpu-batch", type=int, default=300, help="payments per gateway CPU batch")
    parser.add_argument("--fsync-payments", type=int, default=50, help="payments traced for fsyncs")
    parser.add_argument("--imports", type=int, default=7, help="fresh processes per import time")
    parser.add_argument(
        "--gateway-rate",
        type=int,
        default=None,
        help="payments per throughput run of benchmarks/bench_gateway.py (its default if unset)",
    )
    parser.add_argument("--x402-python", default=None, help="the .venv-x402 interpreter")
    args = parser.parse_args()
    small = min(args.payments, args.round)
    python = reference_python(args.x402_python)
    prepay = accepts_prepay()
    report = Report()
    started = time.monotonic()

    with gateway_process() as gateway, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)

        def agent(name: str, **options: Any) -> AutoAgent:
            return AutoAgent(
                funded(gateway),
                rpc_url=gateway.rpc_url,
                journal_path=folder / f"{name}.sqlite3",
                budget=UNLIMITED,
                **options,
            )

        separate = (HERE / "bench_gateway.py").exists()
        cpu_agent = agent("cpu")
        cpu_start = None if separate else gateway_cpu(gateway, cpu_agent, args.cpu_batch)

        default_agent = agent("default")
        clients: dict[str, Pay] = {}
        reference = ReferencePayer(python, funded(gateway), gateway)
        clients[REFERENCE] = reference.pay
        clients[DEFAULT] = paying(default_agent)
        prepay_agent = agent("prepay", prepay=True) if prepay else None
        if prepay_agent is not None:
            clients[PREPAY] = paying(prepay_agent)
        clients[UNPAID] = not_paying(requests.Session())
        with reference_server(python, gateway) as middleware_url:
            routes = {
                f"gateway {GATEWAY_ROUTE}": f"{gateway.url}{GATEWAY_ROUTE}",
                "reference Flask middleware /paid": middleware_url,
            }
            gap = args.gap_ms / 1000
            samples = {
                route: alternate(clients, url, args.payments, small, gap)
                for route, url in routes.items()
            }
            gateway_url = routes[f"gateway {GATEWAY_ROUTE}"]
            back_to_back = alternate(clients, gateway_url, args.payments, small)
        reference.close()
        rpc = rpc_run(
            default_agent, gateway, f"{gateway.url}{GATEWAY_ROUTE}", args.background_seconds
        )
        synced = {
            DEFAULT: fsyncs(
                gateway, routes[f"gateway {GATEWAY_ROUTE}"], args.fsync_payments, False, folder
            )
        }
        if prepay:
            synced[PREPAY] = fsyncs(
                gateway, routes[f"gateway {GATEWAY_ROUTE}"], args.fsync_payments, True, folder
            )
        sdk_import = import_ms(sys.executable, "human_rpc_sdk", args.imports)
        x402_import = import_ms(python, "x402", args.imports)
        phases = imports_by_phase(gateway, f"{gateway.url}{GATEWAY_ROUTE}", folder)
        warmed = 0 if separate else warm(gateway, args.warm, threads=4)
        paid_before_batch = PAID.paid
        cpu_after = None if separate else gateway_cpu(gateway, cpu_agent, args.cpu_batch)
        for closing in (default_agent, prepay_agent, cpu_agent):
            if closing is not None:
                closing.close()

    per_route = (
        f"{args.payments} paid requests per client per route, rounds of {small}, "
        f"{args.gap_ms:g} ms apart"
    )
    report.lines.append(
        f"bench_payment: AutoAgent vs the reference x402 client {X402_VERSION} "
        f"(Python {sys.version.split()[0]}; {per_route}; journals on disk)"
    )
    if not prepay:
        report.lines.append(NO_PREPAY)
    for route, route_samples in samples.items():
        latency_table(
            report,
            f"Latency, {route}, {args.gap_ms:g} ms between requests (wall clock per request, "
            "in its own process)",
            route_samples,
        )
    latency_table(
        report,
        f"Latency, gateway {GATEWAY_ROUTE}, back to back (no time between requests to prepare "
        "the next payment in)",
        back_to_back,
    )

    gateway_samples, middleware_samples = samples.values()
    report.heading(f"{'Ratios (medians)':66} {'figure':>8}  {'target':10} verdict")
    report.row(
        "gateway route: AutoAgent / reference",
        ratio(gateway_samples, DEFAULT, REFERENCE),
        "<= 0.85x",
        0.85,
        unit="x",
    )
    report.row(
        "gateway route: AutoAgent(prepay=True) / reference",
        ratio(gateway_samples, PREPAY, REFERENCE),
        "<= 0.60x",
        0.60,
        unit="x",
    )
    report.row(
        "middleware route: AutoAgent / reference",
        ratio(middleware_samples, DEFAULT, REFERENCE),
        "(none)",
        unit="x",
    )
    report.row(
        "middleware route: AutoAgent(prepay=True) / reference",
        ratio(middleware_samples, PREPAY, REFERENCE),
        "<= 0.80x",
        0.80,
        unit="x",
    )
    report.row(
        "gateway route: paid / unpaid, AutoAgent", ratio(gateway_samples, DEFAULT, UNPAID), "(none)"
    )
    report.row(
        "gateway route: paid / unpaid, AutoAgent(prepay=True)",
        ratio(gateway_samples, PREPAY, UNPAID),
        "<= 2.3",
        2.3,
    )
    report.row(
        "gateway route: paid / unpaid, reference (context)",
        ratio(gateway_samples, REFERENCE, UNPAID),
        "(none)",
    )
    report.row(
        "gateway route, back to back: AutoAgent / reference",
        ratio(back_to_back, DEFAULT, REFERENCE),
        "(none)",
        unit="x",
    )
    report.row(
        "gateway route, back to back: AutoAgent(prepay=True) / reference",
        ratio(back_to_back, PREPAY, REFERENCE),
        "(none)",
        unit="x",
    )
    report.row(
        "gateway route, back to back: paid / unpaid, AutoAgent(prepay=True)",
        ratio(back_to_back, PREPAY, UNPAID),
        "(none)",
    )
    report.row(
        "middleware route: paid / unpaid, AutoAgent",
        ratio(middleware_samples, DEFAULT, UNPAID),
        "(none)",
    )
    report.row(
        "middleware route: paid / unpaid, AutoAgent(prepay=True)",
        ratio(middleware_samples, PREPAY, UNPAID),
        "(none)",
    )

    report.heading(
        f"RPC per payment, AutoAgent defaults, {rpc['payments']} payments in "
        f"{args.background_seconds:g} s on the gateway route"
    )
    report.row(
        "round trips on the critical path (agent.rpc_stats)",
        rpc["critical"],
        "<= 0.1",
        0.1,
        digits=3,
    )
    if rpc["background"] is None:
        report.row("round trips in the background", 0.0, "(none)", digits=3)
        report.lines.append("    (0: this agent has no background refresher with a counter)")
    else:
        report.row(
            "round trips in the background (refresher's counter)",
            rpc["background"] / rpc["payments"],
            "(none)",
            digits=3,
        )
        seconds = args.background_seconds
        report.lines.append(f"    ({rpc['background']} round trips in {seconds:g} s)")
    gateway_calls = rpc["gateway"]
    report.row(
        "JSON-RPC calls served by the gateway, all sources",
        "not counted" if gateway_calls is None else gateway_calls / rpc["payments"],
        "(none)",
        digits=3,
    )

    report.heading(f"Durability, {args.fsync_payments} payments on the gateway route")
    for name, counts in synced.items():
        traced = counts["strace"]
        report.row(
            f"fsync+fdatasync / payment, {name} (strace)",
            "not measured" if traced is None else traced,
            "(none)",
        )
        report.row(
            f"full syncs / payment, {name} (journal.full_syncs)",
            "no counter" if counts["full_syncs"] is None else counts["full_syncs"],
            "(none)",
        )
    if not prepay:
        report.lines.append(f"  {PREPAY:64} {NOT_AVAILABLE:>10}")
    report.lines.append(
        "    (strace: fsync and fdatasync calls of a fresh paying process, all its threads, "
        "between two markers)"
        if shutil.which("strace")
        else "    (strace is not installed: fsyncs are not measured by the system)"
    )

    report.heading(f"Imports (fresh processes, median of {args.imports})")
    report.row("import human_rpc_sdk, ms", sdk_import, "< 150 ms", 150, digits=1, below=True)
    report.row(
        f"import x402 ({X402_VERSION}, reference; context), ms", x402_import, "(none)", digits=1
    )
    report.row(
        "imports during AutoAgent(...), ms (-X importtime)",
        phases.get("construct", 0.0),
        "(none)",
        digits=1,
    )
    report.row(
        "first payment's extra imports, ms (-X importtime)",
        phases.get("first-payment", 0.0),
        "(none)",
        digits=1,
    )

    gateway_report = (
        bench_gateway_script(args.warm, args.cpu_batch, args.gateway_rate) if separate else None
    )
    if gateway_report is not None:
        report.heading("Gateway CPU per payment: benchmarks/bench_gateway.py (its own gateway)")
        report.lines.append(gateway_report)
    elif cpu_start is not None and cpu_after is not None:
        report.heading(
            f"Gateway CPU per payment (/proc/<pid>/stat, batches of {args.cpu_batch} AutoAgent "
            f"payments, {1000 / os.sysconf('SC_CLK_TCK'):g} ms ticks; includes its RPC work)"
        )
        for kind, figure in cpu_start.items():
            report.row(f"{kind}, at the start, ms", figure, "<= 0.5 ms", 0.5, digits=3)
        for kind, figure in cpu_after.items():
            report.row(
                f"{kind}, after {paid_before_batch:,} payments, ms",
                figure,
                "<= 0.5 ms",
                0.5,
                digits=3,
            )
        report.lines.append(f"    ({warmed:,} of them made by the warm-up, 4 threads)")
    report.lines.append(f"\n(whole run: {time.monotonic() - started:.0f} s)")
    print(report.text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
