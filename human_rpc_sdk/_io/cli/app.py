"""The ``human-rpc`` command group: global options, error handling and exit statuses."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import requests

from ..._networks import NETWORKS
from ..._settings import is_database_url
from ...exceptions import HumanRPCError
from .errors import EXIT_CODES, EXIT_INTERRUPTED, Unsettled, describe, exit_code_of
from .output import Out
from .session import Session, StderrHandler

__all__ = ["cli", "main"]

_EPILOG = "\b\nExit statuses:\n" + "\n".join(f"  {code:<3} {text}" for code, text in EXIT_CODES)
_EPILOG += (
    "\n\n\bConfiguration: the same environment as AutoAgent: SOLANA_PRIVATE_KEY or "
    "SOLANA_KEYPAIR_PATH (the key), SOLANA_RPC_URL, HUMAN_RPC_URL (tasks), HUMAN_RPC_JOURNAL "
    "(the journal: a file, default ~/.local/state/human-rpc-sdk/, or a postgresql:// URL), "
    "HUMAN_RPC_BUDGET_SCOPE (whose budgets). The global options override them. Run "
    "`human-rpc COMMAND --help` for each command."
)


class JournalOption(click.ParamType[Path | str, str]):
    """``--journal``: a file (as ``click.Path``), or a PostgreSQL URL kept as given (a path
    would fold its ``//`` and make it a relative file, a journal per process)."""

    name = "journal"
    _file = click.Path(dir_okay=False, path_type=Path)

    def convert(
        self, value: str, param: click.Parameter | None, ctx: click.Context | None
    ) -> Path | str:
        if is_database_url(value.strip()):
            return value.strip()
        return self._file.convert(value, param, ctx)


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Commands(click.Group):
    """A group that turns an SDK error into one line on stderr and its exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (HumanRPCError, requests.RequestException) as exc:
            _report(ctx, exc, exit_code_of(exc))
        except Unsettled as exc:
            _report(ctx, exc, exc.exit_code)
        except KeyboardInterrupt:
            out = _out(ctx)
            out.error(
                "interrupted. A payment under way is in the journal: "
                "`human-rpc payments --pending` lists it, `human-rpc recover` settles it",
                "interrupted",
            )
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        return None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # in the order they were added: wallet, paying, journal...


def _out(ctx: click.Context) -> Out:
    session = ctx.find_object(Session)
    return session.out if session is not None else Out()


def _report(ctx: click.Context, exc: BaseException, code: int) -> None:
    out = _out(ctx)
    message, reason = (
        (exc.message, "unsettled") if isinstance(exc, click.ClickException) else describe(exc)
    )
    if out.as_json and not isinstance(exc, Unsettled):  # unsettled: its result is printed
        out.data({"error": {"message": message, "reason": reason, "exit_code": code}})
    out.error(message, reason)
    raise click.exceptions.Exit(code) from None


@click.group(cls=Commands, context_settings=CONTEXT, epilog=_EPILOG)
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="the wallet's solana-keygen file (default: $SOLANA_PRIVATE_KEY, then "
    "$SOLANA_KEYPAIR_PATH)",
)
@click.option(
    "--rpc-url",
    default=None,
    metavar="URL",
    help="the Solana JSON-RPC endpoint (default: $SOLANA_RPC_URL, else the network's public one)",
)
@click.option(
    "--network",
    type=click.Choice(NETWORKS),
    default="devnet",
    show_default=True,
    help="the cluster the wallet pays on (its genesis hash is checked before paying)",
)
@click.option(
    "--journal",
    type=JournalOption(),
    default=None,
    metavar="FILE|URL",
    help="the payment journal: a file, or a postgresql:// database URL (default: "
    "$HUMAN_RPC_JOURNAL, else one file per wallet and network under "
    "~/.local/state/human-rpc-sdk/)",
)
@click.option(
    "--human-rpc-url",
    default=None,
    metavar="URL",
    help="the HumanRPC tasks endpoint (default: $HUMAN_RPC_URL)",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="seconds to wait for a server or the RPC node on each round trip",
)
@click.option("-v", "--verbose", count=True, help="log what the SDK does (-vv: in detail)")
@click.version_option(package_name="human-rpc-sdk", prog_name="human-rpc")
@click.pass_context
def cli(
    ctx: click.Context,
    key_file: Path | None,
    rpc_url: str | None,
    network: str,
    journal: Path | str | None,
    human_rpc_url: str | None,
    timeout: float,
    verbose: int,
) -> None:
    """Pay HTTP 402 invoices on Solana from the command line, read the payment journal, and
    ask humans to check answers.

    \b
    human-rpc keygen --out wallet.json       a new wallet (mode 0600)
    human-rpc --key-file wallet.json fund    coins from the stub gateway's faucet
    human-rpc quote URL                      what a 402 asks, and what the rules decide
    human-rpc get URL --max 0.01 USDC        a curl that pays
    human-rpc payments / recover / doctor    the journal, and what to do about it
    """
    session = Session(
        key_file=key_file,
        rpc_url=rpc_url,
        network=network,
        journal=journal,
        human_rpc_url=human_rpc_url,
        timeout=timeout,
    )
    ctx.obj = session
    handler = StderrHandler(session.out, logging.WARNING)
    logger = logging.getLogger("human_rpc_sdk")
    level = logger.level
    logger.addHandler(handler)
    if verbose:
        logger.setLevel(logging.INFO if verbose == 1 else logging.DEBUG)
        handler.setLevel(logging.DEBUG)

    def finish() -> None:
        session.close()
        logger.removeHandler(handler)
        logger.setLevel(level)

    ctx.call_on_close(finish)


def _register() -> None:
    from . import human, journal, ops, paying, wallet

    for module in (wallet, paying, journal, human, ops):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main(argv: Sequence[str] | None = None, *, prog_name: str = "human-rpc") -> int:
    """Run the group on ``argv``; its exit status."""
    try:
        result = cli.main(
            args=None if argv is None else list(argv), prog_name=prog_name, standalone_mode=False
        )
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("human-rpc: aborted", err=True)
        return EXIT_INTERRUPTED
    return result if isinstance(result, int) else 0
