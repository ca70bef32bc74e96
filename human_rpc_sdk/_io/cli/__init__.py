"""``human-rpc``: the wallet owner's command line (``python -m human_rpc_sdk``).

Built on click (commands, options, ``--help``) and rich (tables, colour on terminals only,
spinners). Both come with the ``cli`` extra; without them :func:`run` says so in one line.
The commands use the SDK's public API (``AutoAgent``) and its journal; nothing here decides
about money: what is paid, refused or recovered is decided by the agent, as in a program.

Exit statuses (also in ``human-rpc --help``): see :data:`.errors.EXIT_CODES`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Final

__all__ = ["CLI_EXTRA", "INSTALL_HINT", "run"]

CLI_EXTRA: Final = ("click", "rich")
INSTALL_HINT: Final = "pip install 'human-rpc-sdk[cli]'"
USAGE_EXIT: Final = 2


def run(argv: Sequence[str] | None = None, *, prog_name: str = "human-rpc") -> int:
    """Run the command line on ``argv`` (default: the process's arguments); its exit status."""
    missing = [name for name in CLI_EXTRA if not _importable(name)]
    if missing:
        # One line, not a traceback: the fix is an install command.
        sys.stderr.write(
            f"human-rpc needs {' and '.join(missing)} (the cli extra): {INSTALL_HINT}\n"
        )
        return USAGE_EXIT
    from .app import main

    return main(argv, prog_name=prog_name)


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True
