"""`alocc` subcommands owned by the worker package: worker, scores, bench, demo.

Handlers import their heavy modules lazily so `alocc --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from typing import Any


def _settings_epilog() -> str:
    from worker.settings import describe_settings

    lines = ["settings (environment variables, nested with __; default in brackets):"]
    for env, default, description in describe_settings():
        lines.append(f"  {env} [{default}]")
        if description:
            lines.extend(
                textwrap.wrap(description, width=96, initial_indent="      ", subsequent_indent="      ")
            )
    return "\n".join(lines)


def register(subcommands: Any) -> None:
    """Attach the worker subcommands to the root parser's subparsers."""
    worker = subcommands.add_parser(
        "worker",
        help="run the streaming scoring worker until SIGTERM/SIGINT",
        description="Consume image-uploaded events, score them with the ALOCC model, cache scores in Redis "
        "and publish exclusion events. Runs until SIGTERM/SIGINT.",
        epilog=_settings_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker.add_argument(
        "--exit-when-idle",
        type=float,
        metavar="SECONDS",
        help="exit 0 once no new input arrived for this long and nothing is in flight",
    )
    worker.add_argument("--max-events", type=int, metavar="N", help="stop taking input after N events")
    worker.set_defaults(handler=run_worker)

    scores = subcommands.add_parser("scores", help="read cached scores from Redis")
    scores_sub = scores.add_subparsers(dest="scores_command", metavar="ACTION", required=True)
    get = scores_sub.add_parser(
        "get", help="print one JSON object per image id (found: false when unknown)", description=get_help()
    )
    get.add_argument("image_ids", nargs="+", metavar="IMAGE_ID")
    get.add_argument("--model-version", help="read this model version instead of the active one")
    get.set_defaults(handler=run_scores_get)

    bench = subcommands.add_parser(
        "bench",
        help="measure decode/model ceilings, naive and worker throughput, latency and memory",
        description="Benchmark against the real broker and Redis (ALOCC_KAFKA__*, ALOCC_REDIS__*).",
    )
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument("--events", type=int, default=2000, help="events for the worker throughput run")
    bench.add_argument("--naive-events", type=int, default=100, help="events for the naive loop")
    bench.add_argument("--latency-events", type=int, default=500, help="events for the half-load latency run")
    bench.add_argument("--images", type=int, default=64, help="distinct sample images served")
    bench.add_argument(
        "--fetch-latency-ms",
        type=float,
        default=0.0,
        help="delay every image response by this much (a CDN's latency; loopback has none)",
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

    demo = subcommands.add_parser(
        "demo",
        help="end-to-end demo: serve images, produce events, run the worker, summarise",
    )
    demo.add_argument("--good", type=int, default=40, help="valid events to produce")
    demo.add_argument("--idle", type=float, default=5.0, help="worker exit-when-idle seconds")
    demo.set_defaults(handler=run_demo)


def get_help() -> str:
    """Description of `alocc scores get`."""
    return (
        "Print one JSON object per IMAGE_ID from the active model version's records "
        "(ALOCC_REDIS__URL, ALOCC_REDIS__KEY_PREFIX)."
    )


def run_worker(args: argparse.Namespace) -> int:
    """`alocc worker`: build from the environment and run; exit 0 on a clean stop, 1 on a fatal error."""
    from pydantic import ValidationError

    from worker.errors import FatalWorkerError
    from worker.factory import build_worker
    from worker.logs import configure_logging
    from worker.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"invalid settings:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.observability.log_level, settings.observability.log_format)
    import redis
    import structlog

    from model.errors import ModelError

    log = structlog.get_logger("alocc.worker")
    try:
        worker = build_worker(settings)
    except ModelError as exc:
        log.error("cannot load the model", error_type=type(exc).__name__, error=str(exc))
        return 2
    except redis.RedisError as exc:
        log.error("cannot reach Redis", error_type=type(exc).__name__, error=str(exc))
        return 1
    except FatalWorkerError as exc:
        log.error("cannot start the worker", error_type=type(exc).__name__, error=str(exc))
        return 1
    try:
        worker.run(max_events=args.max_events, idle_timeout=args.exit_when_idle, install_signal_handlers=True)
    except FatalWorkerError as exc:
        log.error("worker stopped on a fatal error", error_type=type(exc).__name__, error=str(exc))
        return 1
    return 0


def run_scores_get(args: argparse.Namespace) -> int:
    """`alocc scores get`: one JSON line per id."""
    import redis

    from worker.factory import redis_client
    from worker.settings import Settings
    from worker.store import ScoreReader

    settings = Settings()
    reader = ScoreReader(redis_client(settings), prefix=settings.redis.key_prefix)
    try:
        results = reader.get_many(args.image_ids, model_version=args.model_version)
    except redis.RedisError as exc:
        print(f"cannot read scores from Redis: {exc}", file=sys.stderr)
        return 1
    for result in results:
        print(json.dumps(result, sort_keys=True))
    return 0


def run_bench(args: argparse.Namespace) -> int:
    """`alocc bench`: see `worker.bench`."""
    from worker.bench import main as bench_main

    return bench_main(args)


def run_demo(args: argparse.Namespace) -> int:
    """`alocc demo`: see `worker.demo`."""
    from worker.demo import main as demo_main

    return demo_main(args)
