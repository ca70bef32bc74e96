"""``python -m human_rpc_sdk`` and the ``human-rpc`` console script: the wallet owner's
command line (see :mod:`human_rpc_sdk._io.cli`; it needs the ``cli`` extra)."""

from __future__ import annotations


def main() -> int:
    """Run ``human-rpc`` with the process's arguments; its exit status."""
    from ._io.cli import run  # the command line's libraries load only when it runs

    return run()


if __name__ == "__main__":
    raise SystemExit(main())
