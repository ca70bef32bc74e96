"""``python -m stub_gateway``: serve a stub HumanRPC gateway until stopped."""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Sequence
from decimal import Decimal

from human_rpc_sdk._networks import NETWORKS

from .app import create_app
from .genesis import DEFAULT_SEED
from .payments import Price
from .server import GatewayServer


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stub_gateway", description=__doc__)
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8402,
        help="port to listen on (default 8402; 0 picks a free one)",
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
        "--task-price", default="0.05", help="default task reward in USDC (default 0.05)"
    )
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        app = create_app(
            network=args.network,
            seed=args.seed,
            invoice_ttl=args.invoice_ttl,
            reference_style=args.reference_style,
            review_policy=args.review_policy,
            review_delay=args.review_delay,
            voters=args.voters,
            consensus_threshold=args.consensus_threshold,
            task_ttl=args.task_ttl,
            rate_limit=_rate_limit(args.rate_limit),
            task_price=Price(Decimal(args.task_price), "USDC"),
        )
    except (ValueError, ArithmeticError) as exc:
        parser.error(str(exc))
    server = GatewayServer(app, host=args.host, port=args.port, quiet=args.quiet)
    gateway = server.gateway
    print(f"stub HumanRPC gateway on {server.url} ({gateway.network})")
    print(f"  Solana RPC   {server.rpc_url}")
    print(f"  treasury     {gateway.treasury}")
    for token in gateway.genesis.tokens.values():
        print(f"  {token.symbol:<12} {token.mint} ({token.decimals} decimals)")
    faucet_body = '{"address": "<wallet>", "sol": 1, "usdc": 100}'
    print(f"  faucet       curl -X POST {server.url}/api/v1/faucet \\")
    print(f"                 -H 'Content-Type: application/json' -d '{faucet_body}'")
    print(f"  tasks        {server.url}/api/v1/tasks  (reviewers: {args.review_policy})")
    print(f"  try          curl -i {server.url}/api/v1/premium/usdc", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


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


if __name__ == "__main__":
    raise SystemExit(main())
