"""The Redis score store against a real Redis: compare-and-set, replays, TTL, versions, batch reads."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from search_client import ScoreReader
from worker.stages.store import ScoreRecord, ScoreStore, WriteStatus

T0 = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def record(image_id: str, *, event_id: str, minutes: int, excluded: bool, version: str = "v1") -> ScoreRecord:
    return ScoreRecord(
        image_id=image_id,
        item_id="item",
        shop_id="shop",
        event_id=event_id,
        uploaded_at=T0 + dt.timedelta(minutes=minutes),
        score=0.9 if excluded else 0.1,
        excluded=excluded,
        threshold=0.5,
        mode="d_x",
        model_version=version,
        scored_at=T0 + dt.timedelta(hours=1),
    )


def run_alocc(
    redis_url: str, redis_prefix: str, *args: str, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run the `alocc` CLI against this test's Redis keys; fails the test on a non-zero exit."""
    env = {**os.environ, "ALOCC_REDIS__URL": redis_url, "ALOCC_REDIS__KEY_PREFIX": redis_prefix.rstrip(":")}
    return subprocess.run(
        [sys.executable, "-m", "alocc.cli", *args],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )


@pytest.fixture
def store_and_reader(
    redis_url: str, redis_prefix: str, redis_client: redis.Redis
) -> tuple[ScoreStore, ScoreReader, redis.Redis]:
    """A store and a reader under this test's prefix (`redis_client` deletes its keys afterwards)."""
    del redis_client
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    prefix = redis_prefix.rstrip(":")
    return ScoreStore(client, prefix=prefix, ttl_seconds=3600), ScoreReader(client, prefix=prefix), client


def test_newer_wins_older_is_stale_and_replays_repeat_their_answer(
    store_and_reader: tuple[ScoreStore, ScoreReader, redis.Redis],
) -> None:
    store, reader, _ = store_and_reader
    first = record("img", event_id="e1", minutes=0, excluded=True)
    second = record("img", event_id="e2", minutes=5, excluded=False)
    older = record("img", event_id="e0", minutes=-5, excluded=True)

    outcomes = store.write_batch([first, second, older])  # one pipeline, applied in order
    assert [o.status for o in outcomes] == [WriteStatus.APPLIED, WriteStatus.APPLIED, WriteStatus.STALE]
    assert [o.previous_excluded for o in outcomes] == [None, True, False]

    store.claim_active_version("v1", "if_missing")
    (stored,) = reader.get_many(["img"])
    assert stored["found"] and stored["event_id"] == "e2" and stored["excluded"] is False

    # Redelivery of e2 (after a crash): same answer as the first time, nothing changes.
    (replay,) = store.write_batch([second])
    assert replay.status is WriteStatus.REPLAY and replay.previous_excluded is True
    # Same upload time: the event id breaks the tie, deterministically.
    (tie,) = store.write_batch([replace(second, event_id="e1b")])
    assert tie.status is WriteStatus.STALE


def test_records_expire_and_versions_are_kept_apart(
    store_and_reader: tuple[ScoreStore, ScoreReader, redis.Redis],
) -> None:
    store, reader, client = store_and_reader
    store.write_batch([record("a", event_id="e", minutes=0, excluded=True, version="v1")])
    store.write_batch([record("a", event_id="e", minutes=0, excluded=False, version="v2")])
    assert 0 < client.ttl(store.keys.record("v1", "a")) <= 3600

    assert store.claim_active_version("v1", "if_missing") == "v1"
    assert store.claim_active_version("v2", "if_missing") == "v1"  # an existing pointer is kept
    assert reader.get_many(["a"])[0]["excluded"] is True
    assert reader.get_many(["a"], model_version="v2")[0]["excluded"] is False
    assert store.claim_active_version("v2", "always") == "v2"  # promotion is one SET
    assert reader.get_many(["a", "unknown"]) == [
        {**reader.get_many(["a"])[0]},
        {"image_id": "unknown", "found": False},
    ]
    assert reader.get_many(["a"])[0]["model_version"] == "v2"


def test_the_script_is_reloaded_after_a_script_flush(
    store_and_reader: tuple[ScoreStore, ScoreReader, redis.Redis],
) -> None:
    store, _, client = store_and_reader
    store.write_batch([record("b", event_id="e1", minutes=0, excluded=False)])
    client.script_flush()  # e.g. a Redis restart or failover: EVALSHA now answers NOSCRIPT
    (outcome,) = store.write_batch([record("b", event_id="e2", minutes=1, excluded=True)])
    assert outcome.status is WriteStatus.APPLIED


def test_scores_get_prints_one_json_object_per_id(
    store_and_reader: tuple[ScoreStore, ScoreReader, redis.Redis], redis_url: str, redis_prefix: str
) -> None:
    store, _, _ = store_and_reader
    store.write_batch([record("known", event_id="e", minutes=0, excluded=True)])
    store.claim_active_version("v1", "always")
    result = run_alocc(redis_url, redis_prefix, "scores", "get", "known", "missing", timeout=60)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["image_id"] for line in lines] == ["known", "missing"]
    assert lines[0]["found"] is True and lines[0]["excluded"] is True and lines[0]["score"] == 0.9
    assert lines[1] == {"image_id": "missing", "found": False}


def test_only_the_active_version_publishes_and_it_takes_over_the_published_state(
    store_and_reader: tuple[ScoreStore, ScoreReader, redis.Redis],
) -> None:
    store, _, client = store_and_reader
    # No active version yet: nobody is active, each version compares with its own records.
    (before,) = store.write_batch([record("img", event_id="e0", minutes=0, excluded=True, version="v1")])
    assert before.active is False and before.previous_excluded is None
    assert client.get(store.keys.published_state("img")) is None

    store.claim_active_version("v1", "always")
    (v1,) = store.write_batch([record("img", event_id="e1", minutes=1, excluded=True, version="v1")])
    assert v1.active is True and v1.previous_excluded is None  # nothing was published before
    assert client.get(store.keys.published_state("img")) == "1"
    assert 0 < client.ttl(store.keys.published_state("img")) <= 3600

    # A shadow version scores the same image: its own record only, the published state stays.
    (shadow,) = store.write_batch([record("img", event_id="e1", minutes=1, excluded=False, version="v2")])
    assert shadow.active is False and shadow.previous_excluded is None
    assert client.get(store.keys.published_state("img")) == "1"

    # v2 is promoted: its next decision compares with what v1 published, so it un-excludes the image.
    store.claim_active_version("v2", "always")
    (v2,) = store.write_batch([record("img", event_id="e2", minutes=2, excluded=False, version="v2")])
    assert v2.status is WriteStatus.APPLIED and v2.active is True and v2.previous_excluded is True
    assert client.get(store.keys.published_state("img")) == "0"
    # A redelivery of that event gets the same answer.
    (replay,) = store.write_batch([record("img", event_id="e2", minutes=2, excluded=False, version="v2")])
    assert replay.status is WriteStatus.REPLAY and replay.previous_excluded is True and replay.active


def test_diff_reports_decision_changes_in_each_direction_and_one_sided_images(
    store_and_reader: tuple[ScoreStore, ScoreReader, redis.Redis],
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    store, _, _ = store_and_reader
    decisions = {  # image: (excluded under v1, excluded under v2); None = not scored by that version
        "stays-card": (True, True),
        "stays-product": (False, False),
        "becomes-card": (False, True),
        "becomes-product": (True, False),
        "old-only": (True, None),
        "new-only": (None, False),
    }
    for image_id, per_version in decisions.items():
        for version, excluded in zip(("v1", "v2"), per_version, strict=True):
            if excluded is not None:
                store.write_batch(
                    [record(image_id, event_id="e", minutes=0, excluded=excluded, version=version)]
                )
    plot = tmp_path / "shifts.png"

    result = run_alocc(
        redis_url, redis_prefix, "diff", "v1", "v2", "--json", "--plot", str(plot), timeout=120
    )

    summary = json.loads(result.stdout)
    assert (summary["scored_by_both"], summary["newly_excluded"], summary["no_longer_excluded"]) == (4, 1, 1)
    assert (summary["only_old"], summary["only_new"]) == (1, 1)
    assert summary["examples"]["newly_excluded"] == ["becomes-card"]
    assert summary["examples"]["no_longer_excluded"] == ["becomes-product"]
    assert summary["examples"]["only_old"] == ["old-only"] and summary["examples"]["only_new"] == ["new-only"]
    assert plot.read_bytes().startswith(b"\x89PNG")
