"""`alocc scores`: read cached scores from Redis the way search does."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subcommands: Any) -> None:
    """Attach `alocc scores` to the root parser's subparsers."""
    scores = subcommands.add_parser("scores", help="read cached scores from Redis")
    scores_sub = scores.add_subparsers(dest="scores_command", metavar="ACTION", required=True)
    get = scores_sub.add_parser(
        "get", help="print one JSON object per image id (found: false when unknown)", description=get_help()
    )
    get.add_argument("image_ids", nargs="+", metavar="IMAGE_ID")
    get.add_argument("--model-version", help="read this model version instead of the active one")
    get.set_defaults(handler=run_scores_get)

    indexer = subcommands.add_parser(
        "indexer",
        help="the reference indexer: the excluded images, rebuilt from the exclusion topic",
        description="Read the exclusion topic (ALOCC_TOPICS__EXCLUSIONS) from the beginning with "
        "read_committed and print the excluded image ids as one JSON list; with --follow, keep reading and "
        "print each change as a JSON line. The reference for search's indexer (docs/SEARCH-CONTRACT.md).",
    )
    indexer.add_argument(
        "--follow", action="store_true", help="after the bootstrap, print changes as they come"
    )
    indexer.set_defaults(handler=run_indexer)


def get_help() -> str:
    """Description of `alocc scores get`."""
    return (
        "Print one JSON object per IMAGE_ID from the active model version's records "
        "(ALOCC_REDIS__URL, ALOCC_REDIS__KEY_PREFIX)."
    )


def run_scores_get(args: argparse.Namespace) -> int:
    """`alocc scores get`: one JSON line per id."""
    import redis

    from search_client.reader import ScoreReader, connect
    from worker.settings import Settings

    settings = Settings()
    client = connect(settings.redis.url.get_secret_value(), socket_timeout_s=settings.redis.socket_timeout_s)
    reader = ScoreReader(client, prefix=settings.redis.key_prefix)
    try:
        results = reader.get_many(args.image_ids, model_version=args.model_version)
    except redis.RedisError as exc:
        print(f"cannot read scores from Redis: {exc}", file=sys.stderr)
        return 1
    for result in results:
        print(json.dumps(result, sort_keys=True))
    return 0


def run_indexer(args: argparse.Namespace) -> int:
    """`alocc indexer`."""
    from search_client.reference_indexer import ReferenceIndexer
    from worker.settings import Settings

    settings = Settings()
    indexer = ReferenceIndexer(settings.kafka.librdkafka_config(), settings.topics.exclusions)
    try:
        state = indexer.catch_up()
        print(json.dumps(sorted(state.excluded)))
        sys.stdout.flush()
        while args.follow:
            indexer.poll(
                1.0,
                on_change=lambda e: print(
                    json.dumps({"image_id": e.image_id, "excluded": e.excluded}), flush=True
                ),
            )
    except KeyboardInterrupt:
        pass
    finally:
        indexer.close()
    return 0
