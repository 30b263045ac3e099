"""`alocc promote`, `alocc rollback` and `alocc models list`: the active version and what Redis holds.

Kafka and the model load inside the handlers, so `alocc --help` stays fast.
"""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from alocc.docstrings import module_docstring


def _who() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def register(subcommands: Any) -> None:
    """Attach the three commands to the root parser's subparsers."""
    promote = subcommands.add_parser(
        "promote",
        help="make a model version the one search reads; publish only the decisions that change",
        description=module_docstring("worker/promotion.py"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    promote.add_argument("version", help="the model version to make active")
    _common(promote)
    promote.set_defaults(handler=run_promote)

    rollback = subcommands.add_parser(
        "rollback",
        help="make the previously active version active again, the same way",
        description=module_docstring("worker/promotion.py"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(rollback)
    rollback.set_defaults(handler=run_promote, version=None)

    models = subcommands.add_parser("models", help="model versions in Redis")
    actions = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list",
        help="versions with scores in Redis, the active one, their images and their cards",
        description="Every model version with score records in Redis (SCAN: takes a while on millions of "
        "keys), the number of images each scored, which one is active, the last switches, and for the "
        "versions of the checkpoints named by --model (default: the shipped model and ALOCC_MODEL__PATH), "
        "their cards' thresholds and measured metrics.",
    )
    listing.add_argument("--model", type=Path, action="append", default=[], help="a checkpoint directory")
    listing.add_argument("--json", action="store_true", help="print one JSON object")
    listing.set_defaults(handler=run_models_list)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="switch even where scores are missing")
    parser.add_argument("--who", default=_who(), help="who switches, for the record (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def run_promote(args: argparse.Namespace) -> int:
    """`alocc promote VERSION` / `alocc rollback`: 0 done, 1 refused or failed."""
    from confluent_kafka import Producer

    from search_client import connect
    from search_client.keys import KeyLayout
    from worker.logs import configure_logging
    from worker.promotion import Promoter, PromotionRefused
    from worker.settings import Settings

    settings = Settings()
    configure_logging(settings.observability.log_level, settings.observability.log_format)
    client = connect(settings.redis.url.get_secret_value(), socket_timeout_s=settings.redis.socket_timeout_s)
    config = {k: v for k, v in settings.kafka.producer_config().items() if not k.startswith("transaction")}
    promoter = Promoter(
        client,
        KeyLayout(settings.redis.key_prefix),
        Producer(config),
        exclusions_topic=settings.topics.exclusions,
        ttl_s=settings.redis.ttl_seconds,
    )
    try:
        if args.version is None:
            result = promoter.rollback(who=args.who, force=args.force)
        else:
            result = promoter.promote(args.version, who=args.who, force=args.force)
    except PromotionRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    summary = result.summary()
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        for key, value in summary.items():
            print(f"{key:>22}: {value}")
    return 0


def run_models_list(args: argparse.Namespace) -> int:
    """`alocc models list`."""
    from search_client import connect
    from search_client.keys import KeyLayout
    from worker.promotion import switch_log
    from worker.settings import Settings

    settings = Settings()
    client = connect(settings.redis.url.get_secret_value(), socket_timeout_s=settings.redis.socket_timeout_s)
    keys = KeyLayout(settings.redis.key_prefix)
    counts: Counter[str] = Counter()
    for key in client.scan_iter(match=f"{keys.prefix}:score:*", count=1000):
        version = keys.version_of(key if isinstance(key, str) else key.decode())
        if version is not None:
            counts[version] += 1
    pointer = client.get(keys.active_version)
    active = None if pointer is None else str(pointer)
    cards = _cards(args.model or _default_models(settings))
    versions: list[dict[str, Any]] = [
        {"version": version, "active": version == active, "images": images, "card": cards.get(version)}
        for version, images in sorted(counts.items())
    ]
    switches = [vars(s) for s in switch_log(client, keys, limit=5)]
    if args.json:
        print(json.dumps({"active": active, "versions": versions, "switches": switches}, sort_keys=True))
        return 0
    for entry in versions:
        mark = "*" if entry["active"] else " "
        print(f"{mark} {entry['version']}  {entry['images']} images")
        if entry["card"]:
            print(f"    {entry['card']['summary']}")
    if active is not None and active not in counts:
        print(f"* {active}  (active, no scores yet)")
    for switch in switches:
        source = switch["from_version"] or "-"
        print(f"  switched {source} -> {switch['to_version']} by {switch['who']} at {switch['at']}")
    return 0


def _default_models(settings: Any) -> list[Path]:
    from model.scoring import default_model_dir

    paths = [default_model_dir()]
    if settings.model.path is not None:
        paths.append(Path(settings.model.path))
    return paths


def _cards(paths: list[Path]) -> dict[str, dict[str, Any]]:
    """What the cards of these checkpoints say, by the version each serves."""
    from model.checkpoint import read_card
    from model.errors import CheckpointError

    cards: dict[str, dict[str, Any]] = {}
    for path in paths:
        try:
            card = read_card(path)
        except CheckpointError:
            continue
        threshold = card.thresholds.get(card.default_mode)
        parts = [f"model {card.model_version}, mode {card.default_mode}"]
        if threshold is not None:
            parts.append(
                f"threshold {threshold.threshold:.4f} ({threshold.method}, FP target {threshold.target_fpr})"
            )
        cascade = card.text_cascade
        if cascade is not None:
            policy = cascade["policy"]
            gate = " and one-line looks" if policy.get("plain_line_gate") else ""
            parts.append(
                f"text cascade {cascade['engine_version']}: reads from {policy['send_from']:.4f}{gate}, "
                f"threshold {policy['threshold']:.4f}"
            )
            measured = cascade.get("measured", {})
            rates = ", ".join(
                f"{folder} {result['measure']} {result['rate']:.1%}" for folder, result in measured.items()
            )
            if rates:
                parts.append(rates)
        cards[card.serving_version] = {
            "path": str(path),
            "summary": "; ".join(parts),
            "metrics": card.metrics,
        }
    return cards
