"""`alocc worker`: run the streaming scoring worker.

The handler imports its heavy modules lazily so `alocc --help` stays fast.
"""

from __future__ import annotations

import argparse
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
    """Attach `alocc worker` to the root parser's subparsers."""
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

    from worker import promotion_commands, replay_commands, version_diff

    version_diff.register(subcommands)
    replay_commands.register(subcommands)
    promotion_commands.register(subcommands)


def run_worker(args: argparse.Namespace) -> int:
    """`alocc worker`: build from the environment and run; exit 0 on a clean stop, 1 on a fatal error."""
    from pydantic import ValidationError

    from worker.factory import build_worker
    from worker.failures import FatalWorkerError
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
