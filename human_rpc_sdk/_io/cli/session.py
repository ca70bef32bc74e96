"""What every command shares: the global options, the agent built from them (once, closed when
the command ends) and the output streams."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from ...exceptions import PendingPaymentsWarning
from ..agent import AutoAgent
from .output import Out

__all__ = ["Session", "StderrHandler", "session_of"]


@dataclass
class Session:
    """The global options (None: the SDK's default, read from the environment as AutoAgent
    reads it) and the agent built from them."""

    key_file: Path | None = None
    rpc_url: str | None = None
    network: str = "devnet"
    journal: Path | str | None = None
    """A file, or a PostgreSQL URL."""
    human_rpc_url: str | None = None
    timeout: float = 30.0
    out: Out = field(default_factory=Out)
    _agents: list[AutoAgent] = field(default_factory=list)

    def agent(self, **rules: Any) -> AutoAgent:
        """An AutoAgent with these options and ``rules`` (``max_payment=``, ``approve=``...).

        A journal holding payments of unknown outcome is reported on stderr with what to do.
        :raises SDKConfigurationError: no key, a bad key, a bad URL or option.
        """
        options: dict[str, Any] = {
            "rpc_url": self.rpc_url,
            "human_rpc_url": self.human_rpc_url,
            "network": self.network,
            "timeout": self.timeout,
            "journal_path": self.journal,
            **rules,
        }
        key = self.key_file
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            agent = AutoAgent(key, **options)
        self._agents.append(agent)
        if any(issubclass(w.category, PendingPaymentsWarning) for w in caught):
            self.out.note(
                "  run `human-rpc recover` to settle them from the chain "
                "(`human-rpc payments --pending` lists them)",
                style="yellow",
            )
        return agent

    def close(self) -> None:
        for agent in self._agents:
            agent.close()
        self._agents.clear()


def session_of(ctx: click.Context) -> Session:
    """The session of the running command."""
    session = ctx.find_object(Session)
    if session is None:  # pragma: no cover - every command runs under the group
        raise click.UsageError("run the commands through `human-rpc`")
    return session


class StderrHandler(logging.Handler):
    """Log records as ``warning: ...`` lines on the stderr of the running command."""

    def __init__(self, out: Out, level: int) -> None:
        super().__init__(level)
        self._out = out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except (TypeError, ValueError):  # a malformed record is dropped, not raised
            return
        if record.levelno >= logging.WARNING:
            self._out.warn(text)
        else:
            self._out.note(f"{record.levelname.lower()}: {text}", style="dim")
