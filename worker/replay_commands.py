"""`alocc replay`: the command line of `worker.replay` (see there for what a replay does).

Kafka, torch and the model load inside the handler, so `alocc --help` stays fast.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import threading
import time
from typing import Any

from alocc.docstrings import module_docstring


def parse_time(text: str) -> dt.datetime:
    """An RFC 3339 time (a naive one is taken as UTC)."""
    when = dt.datetime.fromisoformat(text)
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def parse_offsets(text: str) -> dict[int, tuple[int, int]]:
    """`0:100-200,3:0-50` -> {0: (100, 200), 3: (0, 50)}."""
    offsets: dict[int, tuple[int, int]] = {}
    try:
        for part in text.split(","):
            partition, _, span = part.strip().partition(":")
            start, _, end = span.partition("-")
            offsets[int(partition)] = (int(start), int(end))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected PARTITION:START-END,..., got {text!r}") from exc
    if any(start < 0 or end < start for start, end in offsets.values()):
        raise argparse.ArgumentTypeError(f"offsets must satisfy 0 <= START <= END: {text!r}")
    return offsets


def register(subcommands: Any) -> None:
    """Attach `alocc replay` to the root parser's subparsers."""
    parser = subcommands.add_parser(
        "replay",
        help="rescore a time range of the upload topic with the configured model, in shadow",
        description=module_docstring("worker/replay.py"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--since", type=parse_time, help="first upload time to rescore (RFC 3339; default: all)"
    )
    parser.add_argument("--until", type=parse_time, help="rescore up to this time (default: the topic's end)")
    parser.add_argument(
        "--offsets",
        type=parse_offsets,
        help="an explicit range: PARTITION:START-END,... (END exclusive; other partitions skipped)",
    )
    parser.add_argument("--model", help="checkpoint directory to replay with (default: ALOCC_MODEL__PATH)")
    parser.add_argument("--group", help="consumer group (default alocc-replay-<version>)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.set_defaults(handler=run_replay)


def run_replay(args: argparse.Namespace) -> int:
    """`alocc replay`: exit 0 when the whole range is done, 1 on a fatal error, 2 on bad settings, 3 when
    stopped before the end (running it again resumes)."""
    from confluent_kafka import Consumer
    from pydantic import ValidationError

    from model.errors import ModelError
    from worker.factory import build_worker, load_scorer, redis_client, served_cascade
    from worker.failures import FatalWorkerError
    from worker.logs import configure_logging
    from worker.replay import (
        GroupProgress,
        RangeRecord,
        commit_start_offsets,
        compute_range,
        progress_bar,
        replay_settings,
    )
    from worker.settings import Settings

    try:
        base = Settings()
    except ValidationError as exc:
        print(f"invalid settings:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(base.observability.log_level, base.observability.log_format)
    if args.model:
        base = base.model_copy(update={"model": base.model.model_copy(update={"path": args.model})})
    try:
        scorer = load_scorer(base)
    except ModelError as exc:
        print(f"replay: cannot load the model: {exc}", file=sys.stderr)
        return 2
    cascade = served_cascade(base, scorer)
    version = cascade.version if cascade is not None else scorer.model_version
    settings = replay_settings(base, version, args.group)
    config = settings.kafka.consumer_config()
    record = RangeRecord(redis_client(settings), settings.redis.key_prefix, settings.kafka.group_id)

    replay = record.stored()
    if replay is None:
        probe = Consumer({**config, "enable.auto.commit": False})
        try:
            proposed = compute_range(probe, settings.topics.input, args.since, args.until, args.offsets)
        finally:
            probe.close()
        replay, _ = record.claim(proposed)
    if not record.initialised():
        commit_start_offsets(config, replay)
        record.mark_initialised()

    progress = GroupProgress(config, replay)
    started = time.monotonic()
    left_at_start = sum(progress.left().values())
    stop = threading.Event()
    bar = threading.Thread(target=progress_bar, args=(progress, replay.total, stop), daemon=True)
    try:
        worker = build_worker(
            settings, scorer=scorer, end_offsets={(replay.topic, p): e for p, e in replay.ends.items()}
        )
    except FatalWorkerError as exc:
        print(f"replay: cannot start: {exc}", file=sys.stderr)
        return 1
    bar.start()
    try:
        stats = worker.run(install_signal_handlers=True, done=progress.done)
    except FatalWorkerError as exc:
        print(f"replay: stopped on a fatal error: {exc}", file=sys.stderr)
        return 1
    finally:
        stop.set()
        bar.join()
    left = progress.left()
    progress.close()
    seconds = time.monotonic() - started
    summary = {
        "model_version": version,
        "group": settings.kafka.group_id,
        "topic": replay.topic,
        "range_events": replay.total,
        "left_at_start": left_at_start,
        "left": sum(left.values()),
        "scored": stats.scored + stats.excluded + stats.stale,
        "excluded": stats.excluded,
        "dead_lettered": stats.dead_lettered,
        "seconds": round(seconds, 1),
        "events_per_s": round(stats.committed / seconds, 1) if seconds else 0.0,
        "complete": not any(left.values()),
    }
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        for key, value in summary.items():
            print(f"{key:>14}: {value}")
    # 3: stopped (SIGTERM) before the range was done; running it again resumes.
    return 0 if summary["complete"] else 3
