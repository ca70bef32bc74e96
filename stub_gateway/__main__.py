"""``python -m stub_gateway``: serve a stub HumanRPC gateway until stopped (Ctrl-C or SIGTERM)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import signal
import sys
from collections.abc import Sequence
from decimal import Decimal
from types import FrameType

from human_rpc_sdk._money import MoneyError, parse_decimal, to_base_units
from human_rpc_sdk._networks import NETWORKS

from . import GATEWAY_EXTRA, INSTALL_HINT
from .genesis import DEFAULT_SEED
from .payments import Price

USDC_DECIMALS = 6


def main(argv: Sequence[str] | None = None, prog: str = "python -m stub_gateway") -> int:
    """Run the gateway with the command line ``argv``; ``prog``: the name its help shows."""
    missing = _missing_extra()
    if missing is not None:
        # One line, not a traceback: the fix is an install command.
        sys.stderr.write(f"{prog} needs {missing} (the gateway extra): {INSTALL_HINT}\n")
        return 1
    from .app import create_app
    from .server import (
        DEFAULT_IDLE_TIMEOUT,
        DEFAULT_THREADS,
        GatewayServer,
        freeze_after_full_collections,
        raise_file_limit,
    )
    from .workers import WorkersServer

    parser = _parser(DEFAULT_THREADS, DEFAULT_IDLE_TIMEOUT, prog)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from .state import StateError, chain_for, keep_state

    try:
        saved = chain_for(args.state, network=args.network, seed=args.seed)
        app = create_app(
            network=args.network,
            seed=args.seed if saved is None else saved.seed,
            genesis_hash=None if saved is None else saved.genesis_hash,
            invoice_ttl=args.invoice_ttl,
            reference_style=args.reference_style,
            review_policy=args.review_policy,
            review_delay=args.review_delay,
            voters=args.voters,
            consensus_threshold=args.consensus_threshold,
            task_ttl=args.task_ttl,
            rate_limit=_rate_limit(args.rate_limit),
            task_price=Price(args.task_price, "USDC"),
            siwx_ttl=args.siwx_ttl,
            siwx_origin=args.siwx_origin,
            payment_id_required=args.payment_id_required,
        )
        keeper = keep_state(app.extensions["stub_gateway"], args.state, saved)
        raise_file_limit()  # thousands of idle connections must not exhaust the open files
        freeze_after_full_collections()  # the same pause at the 100,000th payment as at the 1st
        server: GatewayServer | WorkersServer
        if args.workers:
            server = WorkersServer(
                app,
                workers=args.workers,
                host=args.host,
                port=args.port,
                quiet=args.quiet,
                threads=args.threads,
                idle_timeout=args.idle_timeout,
            )
        else:
            server = GatewayServer(
                app,
                host=args.host,
                port=args.port,
                quiet=args.quiet,
                threads=args.threads,
                idle_timeout=args.idle_timeout,
            )
    except StateError as exc:
        parser.exit(2, f"{prog}: {exc}\n")
    except (ValueError, ArithmeticError) as exc:
        parser.error(str(exc))
    except OSError as exc:
        parser.exit(1, f"{prog}: cannot listen on {args.host}:{args.port}: {exc}\n")
    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever(banner=True)
    finally:
        if keeper is not None:
            keeper.close()  # the last save: a clean stop loses nothing
    return 1 if isinstance(server, WorkersServer) and server.failed else 0


def _missing_extra() -> str | None:
    """The first module of the gateway extra that cannot be imported, or None."""
    for name in GATEWAY_EXTRA:
        try:
            importlib.import_module(name)
        except ImportError:
            return name
    return None


def _parser(threads: int, idle_timeout: int, prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=8402,
        help="port to listen on, 0 to 65535 (default 8402; 0 picks a free one)",
    )
    parser.add_argument(
        "--network",
        default="devnet",
        choices=NETWORKS,
        help="network name the gateway claims (default devnet)",
    )
    parser.add_argument(
        "--seed",
        default=None,
        help="seed for the gateway's keys and genesis hash; same seed, same addresses and "
        f"chain identity (default: addresses from {DEFAULT_SEED!r}, a new genesis hash)",
    )
    parser.add_argument(
        "--invoice-ttl",
        type=float,
        default=300.0,
        help="seconds an invoice stays payable (default 300)",
    )
    parser.add_argument(
        "--reference-style",
        choices=("pubkey", "memo"),
        default="pubkey",
        help="how invoices are referenced",
    )
    parser.add_argument(
        "--review-policy",
        default="approve",
        help="simulated reviewers: approve, reject, manual (vote through the API), or "
        "script:reject,approve,split (one verdict per task, the last repeating)",
    )
    parser.add_argument(
        "--review-delay", type=float, default=0.0, help="seconds before reviewers vote"
    )
    parser.add_argument(
        "--voters", type=int, default=None, help="votes required (default: scaled by AI confidence)"
    )
    parser.add_argument(
        "--consensus-threshold",
        type=float,
        default=None,
        help="majority share needed (default: scaled)",
    )
    parser.add_argument(
        "--task-ttl", type=float, default=600.0, help="seconds before an undecided task expires"
    )
    parser.add_argument(
        "--rate-limit",
        default=None,
        metavar="N/SECONDS",
        help="at most N tasks per agent per SECONDS",
    )
    parser.add_argument(
        "--task-price",
        type=_usdc,
        default=Decimal("0.05"),
        metavar="USDC",
        help="default task reward in USDC, such as 0.05 (default 0.05)",
    )
    parser.add_argument(
        "--threads",
        type=_positive,
        default=threads,
        help=f"worker threads answering requests (default {threads})",
    )
    parser.add_argument(
        "--workers",
        type=_positive,
        default=None,
        metavar="N",
        help="serve HTTP from N worker processes (each with --threads threads), the ledger and "
        "all state staying in this process (default: one process)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=_positive,
        default=idle_timeout,
        metavar="SECONDS",
        help=f"close a connection idle this long (default {idle_timeout})",
    )
    parser.add_argument(
        "--siwx-ttl",
        type=_positive,
        default=3600,
        metavar="SECONDS",
        help="how long a wallet that paid /x402/v2/members may come back by signing in "
        "(sign-in-with-x) instead of paying again (default 3600)",
    )
    parser.add_argument(
        "--siwx-origin",
        default=None,
        metavar="URL",
        help="the public origin sign-ins are bound to, such as https://gw.example.com (default: "
        "the loopback origin a request came to; other host names are offered no sign-in)",
    )
    parser.add_argument(
        "--payment-id-required",
        action="store_true",
        help="x402 v2 routes require a payment id (the payment-identifier extension; "
        "optional by default)",
    )
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    parser.add_argument(
        "--state",
        default=None,
        metavar="FILE",
        help="keep the chain (accounts, transactions, invoices, tasks) in FILE across restarts: "
        "loaded at start when it exists, saved every 5 s when changed and on shutdown",
    )
    return parser


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a whole number from 0 to 65535, not {text!r}")
    return port


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return value


def _usdc(text: str) -> Decimal:
    """A USDC amount: a plain decimal number with at most 6 decimals, such as 0.05."""
    try:
        amount = parse_decimal(text)
        to_base_units(amount, USDC_DECIMALS)
    except MoneyError:
        raise argparse.ArgumentTypeError(
            f"a price is an amount of USDC such as 0.05 or 1.25 (at most {USDC_DECIMALS} "
            f"decimals, above zero), not {text!r}"
        ) from None
    return amount


def _rate_limit(text: str | None) -> tuple[int, float] | None:
    if text is None:
        return None
    count, _, seconds = text.partition("/")
    try:
        limit = (int(count), float(seconds))
    except ValueError:
        raise ValueError("--rate-limit must look like 5/60 (5 tasks per 60 seconds)") from None
    if limit[0] < 1 or limit[1] <= 0:
        raise ValueError("--rate-limit needs a positive count and window")
    return limit


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    """SIGTERM stops the server as Ctrl-C does: running requests finish, then it exits 0."""
    raise SystemExit(0)


if __name__ == "__main__":
    raise SystemExit(main())
