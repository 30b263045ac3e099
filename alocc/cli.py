"""The `alocc` command line: one root parser, subcommands registered by the packages that own them.

Subcommand modules are imported lazily inside `main` so that `alocc --help` stays fast and importing
this module never pulls in torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """Build the root parser with every subcommand attached."""
    parser = argparse.ArgumentParser(
        prog="alocc",
        description="Detect announcement-card images (ALOCC one-class model) and keep them out of search.",
    )
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # Each package owns its subcommands; the order here is the order `alocc --help` lists them.
    from model import model_commands
    from search_client import client_commands
    from tools import tool_commands
    from worker import worker_commands

    model_commands.register(subcommands)
    worker_commands.register(subcommands)
    client_commands.register(subcommands)
    tool_commands.register(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `alocc` console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = args.handler
    return int(handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
