"""``python -m stub_gateway``: serve a stub HumanRPC gateway until stopped."""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Sequence

from human_rpc_sdk._networks import NETWORKS

from .app import create_app
from .genesis import DEFAULT_SEED
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
        default=DEFAULT_SEED,
        help="seed for the gateway's keys; same seed, same addresses",
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
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = create_app(
        network=args.network,
        seed=args.seed,
        invoice_ttl=args.invoice_ttl,
        reference_style=args.reference_style,
    )
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
    print(f"  try          curl -i {server.url}/api/v1/premium/usdc", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
