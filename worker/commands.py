"""`alocc` subcommands owned by the worker package (worker, scores, bench, ...)."""

from __future__ import annotations

from typing import Any


def register(subcommands: Any) -> None:
    """Attach the worker subcommands to the root parser's subparsers."""
    del subcommands
