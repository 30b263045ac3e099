"""`alocc diff OLD NEW`: how two model versions' decisions differ over the images both scored.

Reads the score hashes of both versions from Redis (SCAN over `{prefix}:score:{version}:*`, then pipelined
HMGETs), and reports the images whose decision changes in each direction, the images scored under one
version only, the distribution of score shifts (a PNG histogram with `--plot`), and example image ids.
Read-only: what promotion would publish is exactly the two "changes" lists.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from search_client.keys import KeyLayout

_SCAN_COUNT = 1000
_EXAMPLES = 10


@dataclass(frozen=True)
class Decision:
    """One image's stored decision under one version."""

    score: float
    excluded: bool


@dataclass
class VersionDiff:
    """The comparison of two versions' decisions."""

    old: str
    new: str
    both: int = 0
    newly_excluded: list[str] = field(default_factory=list)
    no_longer_excluded: list[str] = field(default_factory=list)
    only_old: list[str] = field(default_factory=list)
    only_new: list[str] = field(default_factory=list)
    score_shifts: list[float] = field(default_factory=list)  # new - old, over images scored by both

    def summary(self) -> dict[str, Any]:
        """Counts and a few example ids per group (JSON-ready)."""
        return {
            "old": self.old,
            "new": self.new,
            "scored_by_both": self.both,
            "newly_excluded": len(self.newly_excluded),
            "no_longer_excluded": len(self.no_longer_excluded),
            "only_old": len(self.only_old),
            "only_new": len(self.only_new),
            "examples": {
                "newly_excluded": sorted(self.newly_excluded)[:_EXAMPLES],
                "no_longer_excluded": sorted(self.no_longer_excluded)[:_EXAMPLES],
                "only_old": sorted(self.only_old)[:_EXAMPLES],
                "only_new": sorted(self.only_new)[:_EXAMPLES],
            },
        }


def _glob_escape(text: str) -> str:
    """Escape Redis glob metacharacters so a version name matches only itself."""
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)


def read_decisions(client: redis.Redis, keys: KeyLayout, version: str) -> dict[str, Decision]:
    """Every stored decision of one version, by image id."""
    prefix = keys.record(version, "")
    decisions: dict[str, Decision] = {}
    batch: list[str] = []

    def flush() -> None:
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.hmget(key, "score", "excluded")
        for key, (score, excluded) in zip(batch, pipe.execute(), strict=True):
            if score is not None and excluded is not None:  # expired between SCAN and HMGET
                decisions[key[len(prefix) :]] = Decision(float(score), excluded == "1")
        batch.clear()

    for key in scored_keys(client, keys, version):
        batch.append(key)
        if len(batch) >= _SCAN_COUNT:
            flush()
    if batch:
        flush()
    return decisions


def scored_keys(client: redis.Redis, keys: KeyLayout, version: str) -> Iterator[str]:
    """Keys of every record under `version` (SCAN: each at least once, in no order)."""
    pattern = _glob_escape(keys.record(version, "")) + "*"
    for key in client.scan_iter(match=pattern, count=_SCAN_COUNT):
        yield key if isinstance(key, str) else key.decode()


def compare(
    old: str, new: str, old_decisions: dict[str, Decision], new_decisions: dict[str, Decision]
) -> VersionDiff:
    """Compare two versions' decisions image by image."""
    diff = VersionDiff(old, new)
    for image_id, before in old_decisions.items():
        after = new_decisions.get(image_id)
        if after is None:
            diff.only_old.append(image_id)
            continue
        diff.both += 1
        diff.score_shifts.append(after.score - before.score)
        if after.excluded and not before.excluded:
            diff.newly_excluded.append(image_id)
        elif before.excluded and not after.excluded:
            diff.no_longer_excluded.append(image_id)
    diff.only_new = [image_id for image_id in new_decisions if image_id not in old_decisions]
    return diff


def plot_shifts(diff: VersionDiff, path: Path) -> None:
    """A histogram of score shifts (new - old), log-scaled counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    axes.hist(diff.score_shifts or [0.0], bins=50, range=(-1, 1), color="#3a6ea5", log=True)
    axes.set_xlabel(f"score under {diff.new} minus score under {diff.old}")
    axes.set_ylabel("images (log scale)")
    axes.set_title(
        f"{diff.both} images scored by both: {len(diff.newly_excluded)} newly excluded, "
        f"{len(diff.no_longer_excluded)} no longer excluded",
        fontsize=9,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def register(subcommands: Any) -> None:
    """Attach `alocc diff` to the root parser's subparsers."""
    parser = subcommands.add_parser(
        "diff",
        help="compare two model versions' decisions in Redis (read-only)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("old", help="the model version to compare from (e.g. the active one)")
    parser.add_argument("new", help="the model version to compare to")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plot", type=Path, help="write a PNG histogram of the score shifts here")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """`alocc diff OLD NEW`."""
    from search_client.reader import connect
    from worker.settings import Settings

    settings = Settings()
    client = connect(settings.redis.url.get_secret_value(), socket_timeout_s=settings.redis.socket_timeout_s)
    keys = KeyLayout(settings.redis.key_prefix)
    try:
        diff = compare(
            args.old, args.new, read_decisions(client, keys, args.old), read_decisions(client, keys, args.new)
        )
    except redis.RedisError as exc:
        print(f"cannot read scores from Redis: {exc}", file=sys.stderr)
        return 1
    if args.plot is not None:
        plot_shifts(diff, args.plot)
    summary = diff.summary()
    if args.json:
        print(json.dumps(summary, sort_keys=True))
        return 0
    print(f"{args.old} -> {args.new}: {diff.both} images scored by both")
    print(f"  newly excluded      {summary['newly_excluded']}")
    print(f"  no longer excluded  {summary['no_longer_excluded']}")
    print(f"  scored by {args.old} only  {summary['only_old']}")
    print(f"  scored by {args.new} only  {summary['only_new']}")
    for group, ids in summary["examples"].items():
        if ids:
            print(f"  e.g. {group}: {', '.join(ids)}")
    if args.plot is not None:
        print(f"  score shifts: {args.plot}")
    return 0
