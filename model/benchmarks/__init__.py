"""Benchmarks of the model alone: the paper's MNIST one-class protocol and scoring throughput.

Both attach to one `alocc benchmark` command group (`alocc benchmark mnist`, `alocc benchmark model`);
`benchmark_subcommands` creates that group once and hands the same sub-parser set to each module.
"""

from __future__ import annotations

import argparse
from typing import Any

GROUP_NAME = "benchmark"


def benchmark_subcommands(subcommands: Any) -> Any:
    """Return the sub-parser set of the `benchmark` group, creating the group on first use.

    Args:
        subcommands: the root parser's `add_subparsers()` result.

    Returns:
        The `add_subparsers()` result of the `benchmark` parser, for `add_parser` calls.
    """
    existing = subcommands.choices.get(GROUP_NAME)
    if existing is None:
        parser = subcommands.add_parser(
            GROUP_NAME, help="benchmarks of the model alone (MNIST protocol, scoring throughput)"
        )
        return parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    # argparse keeps no public handle on a parser's sub-parser set; find it among its actions.
    for action in existing._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError(f"the {GROUP_NAME!r} command exists but has no sub-commands")
