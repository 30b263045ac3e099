"""`alocc` subcommands owned by the model package (train, calibrate, evaluate, score, ...)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subcommands: Any) -> None:
    """Attach the model subcommands to the root parser's subparsers."""
    del subcommands


__all__ = ["argparse", "register"]
