"""`alocc bench` and `alocc demo`: the measuring and demonstration tools.

Handlers import their modules lazily so `alocc --help` stays fast.
"""

from __future__ import annotations

import argparse
from typing import Any

from alocc.docstrings import module_docstring


def register(subcommands: Any) -> None:
    """Attach `alocc bench` and `alocc demo` to the root parser's subparsers."""
    bench = subcommands.add_parser(
        "bench",
        help="measure decode/model ceilings, naive and worker throughput, latency and memory",
        description="Benchmark against the real broker and Redis (ALOCC_KAFKA__*, ALOCC_REDIS__*).",
    )
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument("--events", type=int, default=2000, help="events for the worker throughput run")
    bench.add_argument("--naive-events", type=int, default=100, help="events for the naive loop")
    bench.add_argument("--latency-events", type=int, default=500, help="events for the half-load latency run")
    bench.add_argument(
        "--images",
        type=int,
        default=1000,
        help="distinct sample images served (default %(default)s: the cascade's cost is that of the few "
        "pictures it reads, so a small draw of the mix measures those pictures more than the mix)",
    )
    bench.add_argument(
        "--card-share",
        type=float,
        default=0.05,
        help="share of announcement cards among the images (default %(default)s: 95%% products and photos)",
    )
    bench.add_argument(
        "--fetch-latency-ms",
        type=float,
        default=0.0,
        help="delay every image response by this much (a CDN's latency; loopback has none)",
    )
    bench.add_argument(
        "--cost-rounds",
        type=int,
        default=1,
        metavar="N",
        help="with a cascade: run the worker with the cascade and with the model alone N times each, "
        "alternating, and report the median of what the cascade added per round (a shared machine's "
        "speed drifts between runs; default %(default)s)",
    )
    bench.add_argument(
        "--rss-events",
        type=int,
        nargs="*",
        default=[],
        metavar="N",
        help="also run the worker on each N events in a fresh process and report its peak RSS",
    )
    # Internal: one fresh-process worker run on topics the parent filled.
    bench.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    bench.add_argument("--rss-topics", help=argparse.SUPPRESS)
    bench.add_argument("--rss-prefix", help=argparse.SUPPRESS)
    bench.set_defaults(handler=run_bench)

    replay_bench = subcommands.add_parser(
        "replay-bench",
        help="how fast alocc replay rescores (by partitions and processes); Redis memory per million images",
        description=module_docstring("tools/replay_bench.py"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    replay_bench.add_argument("--events", type=int, default=100_000, help="events in the replayed range")
    replay_bench.add_argument(
        "--runs",
        nargs="+",
        default=["3:1"],
        help="configurations PARTITIONS:PROCESSES, each a fresh replay (default 3:1)",
    )
    replay_bench.add_argument(
        "--card-share", type=float, default=0.05, help="share of cards among the images"
    )
    replay_bench.add_argument("--images", type=int, default=200, help="distinct sample images served")
    replay_bench.set_defaults(handler=run_replay_bench)

    demo = subcommands.add_parser(
        "demo",
        help="end-to-end demo: serve images, produce events, run the worker, summarise",
    )
    demo.add_argument("--good", type=int, default=40, help="valid events to produce")
    demo.add_argument("--idle", type=float, default=5.0, help="worker exit-when-idle seconds")
    demo.set_defaults(handler=run_demo)


def run_bench(args: argparse.Namespace) -> int:
    """`alocc bench`: see `tools.bench`."""
    from tools.bench import main as bench_main

    return bench_main(args)


def run_demo(args: argparse.Namespace) -> int:
    """`alocc demo`: see `tools.demo`."""
    from tools.demo import main as demo_main

    return demo_main(args)


def run_replay_bench(args: argparse.Namespace) -> int:
    """`alocc replay-bench`."""
    from tools.replay_bench import main

    runs = []
    for text in args.runs:
        partitions, _, processes = text.partition(":")
        runs.append((int(partitions), int(processes or 1)))
    return main(args.events, runs, args.card_share, args.images)
