"""Operations: ``gateway`` (the stub gateway, with its own options) and ``doctor``."""

from __future__ import annotations

import importlib
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Literal

import click

from ..._networks import chain_name, genesis_problem
from ..._settings import MEMORY, is_database_url, redacted_url
from ...exceptions import HumanRPCError
from ...wallet import ENV_KEYPAIR_PATH, ENV_PRIVATE_KEY
from .errors import Unsettled
from .output import Out, safe_text
from .session import Session, session_of
from .wallet import chain_of

__all__ = ["COMMANDS"]

Status = Literal["ok", "warn", "fail", "info"]
_MARK: Final = {
    "ok": "[green]ok[/]",
    "warn": "[yellow]warn[/]",
    "fail": "[red]FAIL[/]",
    "info": "-",
}


@click.command(
    short_help="Start the stub gateway (python -m stub_gateway's options).",
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("options", nargs=-1, type=click.UNPROCESSED)
def gateway(options: tuple[str, ...]) -> None:
    """Start the stub gateway (a local chain, paywalls, a faucet, human tasks) until Ctrl-C.

    Takes exactly the options of `python -m stub_gateway` (see `human-rpc gateway --help`);
    needs the gateway extra.
    """
    # Loaded by name: the SDK does not depend on the gateway, the command line offers it.
    module = importlib.import_module("stub_gateway.__main__")
    code = module.main(list(options), prog="human-rpc gateway")
    if code:
        raise click.exceptions.Exit(code)


@dataclass(frozen=True)
class Check:
    check: str
    status: Status
    detail: str
    fix: str | None = None


@click.command(short_help="Check the setup; each finding says what to do.")
@click.option("--json", "as_json", is_flag=True, help="print the checks as JSON")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Check the wallet's setup, each finding with what to do: the key, the RPC node and its
    chain (genesis hash), balances, the journal (where, whose, which permissions), pending
    payments and tasks. Exit status 5 when a check fails."""
    session = session_of(ctx)
    session.out.as_json = as_json
    checks: list[Check] = []
    with session.out.waiting("checking"):
        _run_checks(session, checks)
    _show(session.out, checks)
    if any(c.status == "fail" for c in checks):
        raise Unsettled(f"{sum(c.status == 'fail' for c in checks)} check(s) failed; see above")


def _run_checks(session: Session, checks: list[Check]) -> None:
    checks.extend(_key_file_checks(session))
    try:
        agent = session.agent()
    except HumanRPCError as exc:
        checks.append(Check("wallet", "fail", exc.message, "fix the key or the options above"))
        return
    checks.append(Check("wallet", "ok", f"{agent.address} on {agent.network}"))
    chain = _chain_check(session, agent.rpc_url, agent.network)
    checks.append(chain)
    if chain.status != "fail":
        checks.extend(_balance_checks(agent))
    checks.extend(_journal_checks(agent.journal_path))
    checks.extend(_open_checks(agent))
    tasks_url = agent.human_rpc_url
    fix = None if tasks_url else "set HUMAN_RPC_URL or --human-rpc-url to use ask and wait"
    checks.append(Check("tasks endpoint", "info", tasks_url or "none configured", fix))


def _key_file_checks(session: Session) -> list[Check]:
    named = session.key_file or (
        None if os.environ.get(ENV_PRIVATE_KEY) else os.environ.get(ENV_KEYPAIR_PATH)
    )
    if not named:
        source = f"${ENV_PRIVATE_KEY}" if os.environ.get(ENV_PRIVATE_KEY) else "none"
        return [Check("key source", "info", source)]
    path = Path(named).expanduser()
    found = _stat(path)
    if found is None:
        return [Check("key file", "fail", f"{path} cannot be read", "fix --key-file")]
    return [_permissions("key file", path, found)]


def _chain_check(session: Session, rpc_url: str, network: str) -> Check:
    try:
        genesis = chain_of(rpc_url, session.timeout)
    except HumanRPCError as exc:
        return Check(
            "RPC node",
            "fail",
            f"{rpc_url} did not answer getGenesisHash: {exc.message}",
            "check --rpc-url / SOLANA_RPC_URL and the network connection",
        )
    problem = genesis_problem(network, genesis)
    if problem is not None:
        return Check(
            "RPC node",
            "fail",
            f"{rpc_url}: {problem} (genesis hash {genesis})",
            f"pass --network to match the node, or --rpc-url a {network} node",
        )
    return Check("RPC node", "ok", f"{rpc_url} serves {chain_name(genesis)}")


def _balance_checks(agent: Any) -> list[Check]:
    found: list[Check] = []
    try:
        sol = agent.balance("SOL")
    except HumanRPCError as exc:
        return [Check("balance", "fail", exc.message, "check the RPC node")]
    if sol == 0:
        found.append(
            Check(
                "SOL",
                "warn",
                "0 SOL: no payment can pay its network fee",
                f"send SOL to {agent.address} (on a stub gateway: `human-rpc fund`)",
            )
        )
    else:
        found.append(Check("SOL", "ok", f"{sol} SOL"))
    try:
        usdc = agent.balance("USDC")
    except HumanRPCError:
        return found  # no USDC on this chain
    found.append(Check("USDC", "ok" if usdc > 0 else "info", f"{usdc} USDC"))
    return found


def _journal_checks(path_text: str) -> list[Check]:
    if path_text == MEMORY:
        return [Check("journal", "warn", "in memory: lost when the process ends", "--journal FILE")]
    if is_database_url(path_text):  # the agent was built: the database answered
        return [Check("journal", "ok", f"PostgreSQL database {redacted_url(path_text)}")]
    path = Path(path_text)
    found = _stat(path)
    if found is None:
        return [Check("journal", "fail", f"{path} cannot be read", "check --journal")]
    checks = [Check("journal", "ok", str(path))]
    checks.append(_permissions("journal file", path, found))
    parent = _stat(path.parent)
    if parent is not None:
        checks.append(_permissions("journal folder", path.parent, parent, folder=True))
    return checks


def _permissions(what: str, path: Path, found: os.stat_result, *, folder: bool = False) -> Check:
    if hasattr(os, "getuid") and found.st_uid != os.getuid():
        return Check(
            what,
            "fail",
            f"{path} belongs to user {found.st_uid}, not you ({os.getuid()})",
            f"chown it to yourself, or use a {what} of your own",
        )
    loose = found.st_mode & (0o022 if folder else 0o077)
    mode = stat.S_IMODE(found.st_mode)
    if loose:
        wanted = "700" if folder else "600"
        return Check(
            what,
            "warn",
            f"{path} has mode {mode:o}: other users can "
            + ("write to it" if folder else "read it"),
            f"chmod {wanted} {path}",
        )
    return Check(what, "ok", f"yours, mode {mode:o}")


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except OSError:
        return None


def _open_checks(agent: Any) -> list[Check]:
    open_ = agent.pending_payments()
    tasks = agent.pending_tasks()
    found = [
        Check(
            "pending payments",
            "warn",
            f"{len(open_)} of unknown outcome (#{', #'.join(str(r.id) for r in open_[:10])})",
            "human-rpc recover",
        )
        if open_
        else Check("pending payments", "ok", "none")
    ]
    found.append(
        Check(
            "pending tasks",
            "warn",
            f"{len(tasks)} without a verdict ({', '.join(str(r.task_id) for r in tasks[:5])})",
            "human-rpc wait TASK_ID",
        )
        if tasks
        else Check("pending tasks", "ok", "none")
    )
    return found


def _show(out: Out, checks: list[Check]) -> None:
    if out.as_json:
        out.data([asdict(c) for c in checks])
        return
    for c in checks:
        fix = f"  [dim]→ {safe_text(c.fix)}[/]" if c.fix else ""
        line = f"{_MARK[c.status]:>4}  [bold]{safe_text(c.check)}[/]: {safe_text(c.detail)}{fix}"
        out.out.print(line)


COMMANDS: Final = (gateway, doctor)
