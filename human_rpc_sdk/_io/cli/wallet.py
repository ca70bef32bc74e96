"""The wallet: ``keygen``, ``address``, ``balance``, ``fund`` (the stub gateway's faucet)."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import click
from solders.keypair import Keypair

from ..._jsonrpc import genesis_hash_request
from ..._networks import GENESIS_HASHES, KNOWN_MINTS, chain_name, genesis_problem
from ...exceptions import HumanRPCError, SDKConfigurationError
from ...wallet import ENV_KEYPAIR_PATH, load_signer
from ..rpc import RpcClient
from .session import session_of

__all__ = ["COMMANDS", "chain_of", "public_cluster_of"]

DEFAULT_KEY_FILE: Final = Path("~/.config/solana/id.json")
"""Where solana-keygen writes a new key unless told otherwise."""


@click.command(short_help="Make a new wallet file (solana-keygen format, mode 0600).")
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="the file to write (default: --key-file, else $SOLANA_KEYPAIR_PATH, else "
    "~/.config/solana/id.json, as solana-keygen)",
)
@click.option("--force", is_flag=True, help="replace an existing file (its key is lost)")
@click.option(
    "--show-secret",
    is_flag=True,
    help="also print the secret key (base58, as wallets import it): anyone who sees it can spend",
)
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@click.pass_context
def keygen(
    ctx: click.Context, out: Path | None, force: bool, show_secret: bool, as_json: bool
) -> None:
    """Make a new wallet: a solana-keygen compatible JSON file (64 numbers), mode 0600.

    Prints the address, never the secret (unless --show-secret). Refuses to replace an
    existing file unless --force.
    """
    session = session_of(ctx)
    session.out.as_json = as_json
    target = (out or session.key_file or _env_path() or DEFAULT_KEY_FILE).expanduser()
    keypair = Keypair()
    _write_key(target, keypair, force=force)
    result: dict[str, Any] = {"address": str(keypair.pubkey()), "file": str(target)}
    if show_secret:
        result["secret_key"] = str(keypair)  # base58 of the 64 bytes, as Phantom exports
    if as_json:
        session.out.data(result)
        return
    session.out.line(str(keypair.pubkey()))
    session.out.note(f"wrote a new keypair to {target} (mode 0600); its address is above")
    session.out.note(f"use it with: human-rpc --key-file {target} ... (or {ENV_KEYPAIR_PATH})")
    if show_secret:
        session.out.note("secret key (base58; anyone who sees it can spend from this wallet):")
        session.out.line(result["secret_key"])


def _env_path() -> Path | None:
    named = os.environ.get(ENV_KEYPAIR_PATH)
    return Path(named) if named else None


def _write_key(target: Path, keypair: Keypair, *, force: bool) -> None:
    """Write the key readable by its owner only; never over a file unless ``force``: then into
    a new file beside it, renamed over the old one (a crash leaves one whole key file)."""
    text = json.dumps(list(bytes(keypair))).encode("ascii")
    if target.is_dir():
        raise SDKConfigurationError(
            f"{target} is a directory; give --out a file name such as {target / 'wallet.json'}",
            parameter="out",
        )
    if target.exists() and not force:
        raise SDKConfigurationError(
            f"{target} already exists and was left as it is: its key would be lost. Choose "
            "another --out, or pass --force to replace it",
            parameter="out",
        )
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.new")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            if force:
                os.replace(temporary, target)
            else:
                os.link(temporary, target)  # fails if the file appeared meanwhile
        finally:
            temporary.unlink(missing_ok=True)
    except FileExistsError:
        raise SDKConfigurationError(
            f"{target} appeared while the key was being written and was left as it is; "
            "run keygen again (with --force to replace it)",
            parameter="out",
        ) from None
    except OSError as exc:
        raise SDKConfigurationError(
            f"cannot write the key file {target}: {exc.strerror or exc}; choose a writable --out",
            parameter="out",
        ) from None


@click.command(short_help="Print the wallet's address.")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@click.pass_context
def address(ctx: click.Context, as_json: bool) -> None:
    """Print the wallet's address (its public key): fund this address."""
    session = session_of(ctx)
    session.out.as_json = as_json
    signer = load_signer(session.key_file)
    text = str(signer.pubkey())
    if as_json:
        session.out.data({"address": text, "network": session.network})
    else:
        session.out.line(text)


@click.command(short_help="Show the wallet's SOL and token balances.")
@click.argument("token", required=False)
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@click.pass_context
def balance(ctx: click.Context, token: str | None, as_json: bool) -> None:
    """The wallet's balance: SOL and the network's known tokens, or TOKEN (a symbol such as
    USDC, or a mint address)."""
    session = session_of(ctx)
    session.out.as_json = as_json
    agent = session.agent()
    if token is not None:
        amounts: dict[str, Decimal | None] = {token: _balance_of(agent, token)}
    else:
        amounts = {"SOL": agent.balance("SOL")}
        for symbol in KNOWN_MINTS[agent.network]:
            amounts[symbol] = _balance_or_none(agent, symbol)
    if as_json:
        session.out.data({"address": agent.address, "network": agent.network, "balances": amounts})
        return
    session.out.table(
        f"{agent.address} on {agent.network}",
        ("token", "balance"),
        [
            (name, "not on this chain" if value is None else value)
            for name, value in amounts.items()
        ],
    )


def _balance_of(agent: Any, token: str) -> Decimal:
    if len(token) >= 32:  # an address: no symbol is that long
        result: Decimal = agent.balance(token, mint=token)
        return result
    result = agent.balance(token.upper())
    return result


def _balance_or_none(agent: Any, symbol: str) -> Decimal | None:
    """The balance of a known token, or None when its mint does not exist on this chain."""
    try:
        return _balance_of(agent, symbol)
    except SDKConfigurationError:
        return None


@click.command(short_help="Get coins from the stub gateway's faucet (local chains only).")
@click.option("--sol", metavar="AMOUNT", default=None, help="SOL to ask for (faucet default)")
@click.option("--usdc", metavar="AMOUNT", default=None, help="USDC to ask for (faucet default)")
@click.option("--pyusd", metavar="AMOUNT", default=None, help="PYUSD to ask for (default 0)")
@click.option(
    "--gateway",
    "gateway_url",
    metavar="URL",
    default=None,
    help="the stub gateway (default: the --rpc-url without its /rpc)",
)
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@click.pass_context
def fund(
    ctx: click.Context,
    sol: str | None,
    usdc: str | None,
    pyusd: str | None,
    gateway_url: str | None,
    as_json: bool,
) -> None:
    """Fund the wallet from the stub gateway's faucet (local chains only).

    The chain is known by its genesis hash, which no label can fake: on mainnet-beta, devnet
    or testnet this is refused (use that cluster's own faucet), and the gateway must serve the
    very chain the RPC node does.
    """
    session = session_of(ctx)
    session.out.as_json = as_json
    agent = session.agent()
    genesis = chain_of(agent.rpc_url, session.timeout)
    public = public_cluster_of(genesis)
    if public is not None:
        raise SDKConfigurationError(
            f"the RPC node {agent.rpc_url} serves {public} (genesis hash {genesis}): `fund` uses "
            f"the stub gateway's faucet and is refused on a public cluster. Fund {agent.address} "
            "from that cluster's own faucet, or point --rpc-url at a stub gateway",
            parameter="rpc_url",
        )
    problem = genesis_problem(agent.network, genesis)
    if problem is not None:
        raise SDKConfigurationError(
            f"{problem} (genesis hash {genesis}), so this wallet could not spend what the faucet "
            "gives; pass the --network the gateway was started with",
            parameter="network",
        )
    base = (gateway_url or _gateway_of(agent.rpc_url)).rstrip("/")
    info = _json(agent.session.get(f"{base}/api/v1/info", timeout=session.timeout), base)
    if info.get("genesis_hash") != genesis:
        raise SDKConfigurationError(
            f"the gateway {base} serves the chain {info.get('genesis_hash')!r}, but the RPC node "
            f"{agent.rpc_url} serves {genesis}: coins from that faucet could not be spent here. "
            "Pass --gateway (or --rpc-url) so both name the same gateway",
            parameter="gateway",
        )
    body = {"address": agent.address}
    body.update({k: v for k, v in (("sol", sol), ("usdc", usdc), ("pyusd", pyusd)) if v})
    reply = agent.session.post(str(info["faucet"]), json=body, timeout=session.timeout)
    funded = _json(reply, base)
    if as_json:
        session.out.data(funded)
        return
    gave = ", ".join(f"{v} {k}" for k, v in funded.get("funded", {}).items()) or "nothing"
    session.out.note(f"the faucet of {base} ({chain_name(genesis)}) gave {gave}")
    session.out.table(
        f"{agent.address}", ("token", "balance"), sorted(funded.get("balances", {}).items())
    )


def chain_of(rpc_url: str, timeout: float) -> str:
    """The genesis hash of the chain ``rpc_url`` serves (one JSON-RPC call)."""
    client = RpcClient(rpc_url, timeout=timeout)
    try:
        reply = client.call([genesis_hash_request()])[0]
    finally:
        client.session.close()
    return str(reply.value)


def public_cluster_of(genesis_hash: str) -> str | None:
    """The public cluster with this genesis hash, or None for a local chain."""
    return next((name for name, known in GENESIS_HASHES.items() if known == genesis_hash), None)


def _gateway_of(rpc_url: str) -> str:
    if not rpc_url.rstrip("/").endswith("/rpc"):
        raise SDKConfigurationError(
            f"cannot tell the stub gateway from the RPC URL {rpc_url} (a gateway's ends in /rpc); "
            "pass --gateway URL",
            parameter="gateway",
        )
    return rpc_url.rstrip("/")[: -len("/rpc")]


def _json(reply: Any, base: str) -> dict[str, Any]:
    """A gateway's JSON answer, or an error saying what it answered instead."""
    try:
        document = reply.json()
    except ValueError:
        document = None
    if reply.status_code >= 400 or not isinstance(document, dict):
        said = document.get("error", {}) if isinstance(document, dict) else {}
        message = said.get("message") if isinstance(said, dict) else None
        raise HumanRPCError(
            f"the stub gateway at {base} answered HTTP {reply.status_code} to {reply.url}"
            + (f": {message}" if message else " (not the gateway's JSON)")
            + "; check --gateway/--rpc-url and the amounts asked for"
        )
    return document


COMMANDS: Final = (keygen, address, balance, fund)
