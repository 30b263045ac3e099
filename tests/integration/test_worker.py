"""The worker end to end against the real Kafka broker, real Redis, a real HTTP server and a real model.

The model is a tiny randomly initialised checkpoint (written once per module): the tests check the
pipeline's bookkeeping, not the model's quality, so every assertion compares the worker's outputs with
each other (Redis records vs. exclusion events vs. dead letters vs. committed offsets).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import torch
from cascade_samples import characters_rule
from confluent_kafka import Consumer, Producer, TopicPartition

from model.cascade import CascadePolicy, TextCascade
from model.checkpoint import WEIGHTS_FILE, ModelCard, ThresholdRecord, read_card, save_checkpoint, write_card
from model.networks import build_networks
from model.presets import NetworkSpec
from model.scoring import Scorer
from model.screen import PlainLineGate
from model.verifier import VerifierConfig
from schemas.events import DeadLetterHeaders, ExclusionEvent
from tools.sample_images import ImageServer, SampleSet, write_samples
from worker.factory import build_worker
from worker.failures import StoreUnavailable
from worker.settings import (
    BatchSettings,
    FetchSettings,
    GuardSettings,
    KafkaSettings,
    ModelSettings,
    ObservabilitySettings,
    RedisSettings,
    Settings,
    TopicsSettings,
)
from worker.stages.store import ScoreStore

REPO_ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random checkpoint whose d_x threshold is 0.5 (random D scores straddle it)."""
    torch.manual_seed(0)
    spec = NetworkSpec(architecture="strided", input_size=32, width=8, r_depth=2)
    card = ModelCard(
        preset="test-tiny",
        network=spec.to_dict(),
        input_size=32,
        default_mode="d_x",
        thresholds={"d_x": ThresholdRecord(threshold=0.5, method="uncalibrated")},
    )
    directory = tmp_path_factory.mktemp("tiny-model")
    save_checkpoint(directory, build_networks(spec), card)
    return directory


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SampleSet, ImageServer]]:
    """Sample cards, photos and bad payloads served over HTTP on 127.0.0.1."""
    directory = tmp_path_factory.mktemp("images")
    sample_set = write_samples(directory, cards=6, photos=6, simple=True)
    with ImageServer(directory) as server:
        yield sample_set, server


def make_settings(
    *,
    bootstrap: str,
    redis_url: str,
    prefix: str,
    input_topic: str,
    exclusions: str,
    dead_letter: str,
    group_id: str,
    model_dir: Path,
    transactional_id: str | None = None,
    **batch: Any,
) -> Settings:
    """Settings for one test worker (explicit values; the environment is not consulted for these)."""
    return Settings(
        kafka=KafkaSettings(
            bootstrap_servers=bootstrap,
            group_id=group_id,
            transactional_id=transactional_id or f"test-tx-{uuid.uuid4().hex[:12]}",
            session_timeout_ms=10_000,
        ),
        redis=RedisSettings(url=redis_url, key_prefix=prefix.rstrip(":")),
        topics=TopicsSettings(input=input_topic, exclusions=exclusions, dead_letter=dead_letter),
        batch=BatchSettings(**{"max_size": 8, "max_wait_ms": 20, **batch}),
        fetch=FetchSettings(
            allow_private_networks=True,
            connect_timeout_s=1,
            read_timeout_s=2,
            total_timeout_s=4,
            max_attempts=2,
        ),
        model=ModelSettings(path=model_dir, device="cpu"),
        observability=ObservabilitySettings(port=0),
        guard=GuardSettings(max_failure_ratio=1.0),
        drain_timeout_s=10,
    )


def event(
    image_id: str, url: str, *, uploaded_at: dt.datetime | None = None, event_id: str | None = None
) -> bytes:
    """An input event as JSON bytes."""
    return json.dumps(
        {
            "schema_version": 1,
            "event_id": event_id or f"ev-{uuid.uuid4().hex[:12]}",
            "image_id": image_id,
            "item_id": f"item-{image_id}",
            "shop_id": "shop-1",
            "image_url": url,
            "uploaded_at": (uploaded_at or dt.datetime.now(dt.UTC)).isoformat(),
            "an_unknown_field": "tolerated",
        }
    ).encode()


def produce(producer: Producer, topic: str, items: list[tuple[str, bytes]]) -> None:
    """Produce (key, value) pairs and wait for delivery."""
    for key, value in items:
        producer.produce(topic, key=key.encode(), value=value)
    assert producer.flush(30) == 0


def committed_total(bootstrap: str, group_id: str, topic: str, partitions: int) -> int:
    """Sum of the group's committed offsets over the topic's partitions (unset counts as 0)."""
    # read_uncommitted: do not wait for a pending transaction's offsets (a killed worker's open transaction
    # would otherwise block the query until it is aborted); only committed offsets are returned either way.
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group_id,
            "enable.auto.commit": False,
            "isolation.level": "read_uncommitted",
        }
    )
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return sum(max(0, tp.offset) for tp in committed)
    finally:
        consumer.close()


def records_for(
    client: redis.Redis, prefix: str, version: str, image_ids: list[str]
) -> dict[str, dict[str, str]]:
    """The stored hashes of these images (decoded), skipping missing ones."""
    out = {}
    for image_id in image_ids:
        raw = client.hgetall(f"{prefix.rstrip(':')}:score:{version}:{image_id}")
        if raw:
            out[image_id] = {k.decode(): v.decode() for k, v in raw.items()}
    return out


@dataclass
class Env:
    """Everything a worker test needs from the real services, in one fixture."""

    bootstrap: str
    redis_url: str
    prefix: str
    redis: redis.Redis
    new_topic: Callable[..., str]
    new_group_id: Callable[[], str]
    producer: Producer
    consume_all: Callable[..., list[Any]]
    model_dir: Path
    scorer: Scorer
    sample_set: SampleSet
    server: ImageServer

    def settings(
        self, input_topic: str, exclusions: str, dead_letter: str, group_id: str, **batch: Any
    ) -> Settings:
        """Settings for one worker on these topics."""
        return make_settings(
            bootstrap=self.bootstrap,
            redis_url=self.redis_url,
            prefix=self.prefix,
            input_topic=input_topic,
            exclusions=exclusions,
            dead_letter=dead_letter,
            group_id=group_id,
            model_dir=self.model_dir,
            **batch,
        )

    def records(self, image_ids: list[str]) -> dict[str, dict[str, str]]:
        """Stored records of the active (tiny) model for these ids."""
        return records_for(self.redis, self.prefix, self.scorer.model_version, image_ids)


@pytest.fixture
def env(request: pytest.FixtureRequest, samples: tuple[SampleSet, ImageServer], tiny_model_dir: Path) -> Env:
    """The services, topic factory, model and sample server for one test."""
    torch.set_num_threads(1)
    fixture = request.getfixturevalue
    return Env(
        bootstrap=fixture("kafka_bootstrap"),
        redis_url=fixture("redis_url"),
        prefix=fixture("redis_prefix"),
        redis=fixture("redis_client"),
        new_topic=fixture("new_topic"),
        new_group_id=fixture("new_group_id"),
        producer=fixture("make_producer")(),
        consume_all=fixture("consume_all"),
        model_dir=tiny_model_dir,
        scorer=Scorer.load(tiny_model_dir, device="cpu"),
        sample_set=samples[0],
        server=samples[1],
    )


# ----------------------------------------------------------------------------- tests
def good_events(env: Env, count: int, *, prefix: str = "img") -> list[tuple[str, bytes]]:
    """`count` valid events cycling over the served cards and photos."""
    names = env.sample_set.cards + env.sample_set.photos
    return [
        (f"{prefix}-{i}", event(f"{prefix}-{i}", env.server.url(names[i % len(names)]))) for i in range(count)
    ]


@pytest.mark.parametrize(
    ("transactional", "decode_processes"),
    [(True, 2), (False, 0)],
    ids=["exactly-once-decode-processes", "at-least-once-in-process-decode"],
)
def test_every_event_ends_in_redis_or_dead_letter(
    env: Env, transactional: bool, decode_processes: int
) -> None:
    """Valid events -> one Redis record each; bad events -> one dead letter each with its reason.

    Run with fetch and decode in child processes and in the worker process (both preparers).
    """
    sample_set, server = env.sample_set, env.server
    input_topic, exclusions, dead_letter = env.new_topic(3), env.new_topic(1), env.new_topic(1)
    good = good_events(env, 12)
    bad_reasons = {
        "bad-json": ("{not json", "InvalidEvent"),
        "bad-schema": (json.dumps({"schema_version": 1, "image_id": "x"}), "InvalidEvent"),
        "missing": (event("missing", server.url("does-not-exist.jpg")).decode(), "HttpError"),
        "not-image": (
            event("not-image", server.url(sample_set.not_image)).decode(),
            "UnsupportedImageFormat",
        ),
        "truncated": (event("truncated", server.url(sample_set.truncated)).decode(), "CorruptImage"),
        "bomb": (event("bomb", server.url(sample_set.bomb)).decode(), "ImageTooLarge"),
        "metadata": (
            event("metadata", "http://169.254.169.254/latest/meta-data/").decode(),
            "ForbiddenAddress",
        ),
        "ftp": (event("ftp", "ftp://example.com/a.jpg").decode(), "UrlNotAllowed"),
    }
    bad = [(key, value.encode()) for key, (value, _reason) in bad_reasons.items()]
    produce(env.producer, input_topic, good[:6] + bad + good[6:])

    group = env.new_group_id()
    settings = env.settings(input_topic, exclusions, dead_letter, group)
    settings = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"transactional": transactional}),
            "decode": settings.decode.model_copy(update={"processes": decode_processes}),
        }
    )
    worker = build_worker(settings, scorer=env.scorer)
    stats = worker.run(max_events=len(good) + len(bad), idle_timeout=30)

    assert stats.committed == len(good) + len(bad)
    version = env.scorer.model_version
    stored = env.records([key for key, _ in good])
    assert set(stored) == {key for key, _ in good}
    for record in stored.values():
        assert (float(record["score"]) >= float(record["threshold"])) == (record["excluded"] == "1")
        assert record["model_version"] == version and record["mode"] == "d_x"
    assert env.records([key for key, _ in bad]) == {}

    dead = env.consume_all(dead_letter, min_messages=len(bad))
    assert len(dead) == len(bad)
    by_key = {r.key.decode(): r for r in dead}
    for key, (value, reason) in bad_reasons.items():
        headers = DeadLetterHeaders.from_kafka_headers(list(by_key[key].headers))
        assert headers.error_type == reason, (key, headers.error_message)
        assert headers.original_topic == input_topic
        assert by_key[key].value == value.encode()  # the original bytes, unchanged

    excluded_ids = {key for key, record in stored.items() if record["excluded"] == "1"}
    published = [ExclusionEvent.model_validate_json(r.value) for r in env.consume_all(exclusions)]
    assert sorted(e.image_id for e in published) == sorted(excluded_ids)
    assert all(e.excluded for e in published)
    assert 0 < len(excluded_ids) < len(good), "the random model should straddle its threshold"

    assert committed_total(env.bootstrap, group, input_topic, 3) == len(good) + len(bad)
    assert env.redis.get(f"{env.prefix.rstrip(':')}:active_version") == version.encode()


def test_a_shadow_worker_scores_into_its_version_and_never_claims_or_publishes(env: Env) -> None:
    """Started before any serving worker, with the default `if_missing` policy: no pointer, no events."""
    input_topic, exclusions, dead_letter = env.new_topic(2), env.new_topic(1), env.new_topic(1)
    good = good_events(env, 10, prefix="shadow")
    produce(env.producer, input_topic, good)
    settings = env.settings(input_topic, exclusions, dead_letter, env.new_group_id())
    settings = settings.model_copy(update={"model": settings.model.model_copy(update={"shadow": True})})

    stats = build_worker(settings, scorer=env.scorer).run(max_events=len(good), idle_timeout=30)

    assert stats.committed == len(good) and stats.published == 0
    stored = env.records([key for key, _ in good])
    assert set(stored) == {key for key, _ in good}
    assert any(record["excluded"] == "1" for record in stored.values()), "some would have been published"
    assert env.redis.get(f"{env.prefix.rstrip(':')}:active_version") is None
    assert env.consume_all(exclusions, timeout=5) == []


class FailingStore(ScoreStore):
    """A real store whose writes fail after `ok_batches` batches (Redis going away mid-run)."""

    def __init__(self, *args: Any, ok_batches: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ok_batches = ok_batches

    def write_batch(self, records: Any) -> Any:
        if self.ok_batches <= 0:
            raise StoreUnavailable("simulated: Redis unreachable")
        self.ok_batches -= 1
        return super().write_batch(records)


def test_a_failed_redis_write_commits_nothing(env: Env) -> None:
    """Redis fails on the first batch: the worker stops; no offset, event or dead letter is committed."""
    input_topic, exclusions, dead_letter = env.new_topic(3), env.new_topic(1), env.new_topic(1)
    items = [*good_events(env, 6), ("bad", b"{not json")]  # the dead letter must not leak out either
    produce(env.producer, input_topic, items)
    group = env.new_group_id()
    # A long commit interval: the dead letter's commit step would otherwise run before the first batch.
    settings = env.settings(input_topic, exclusions, dead_letter, group, commit_interval_ms=60_000)
    client = redis.Redis.from_url(env.redis_url, decode_responses=True)
    store = FailingStore(client, prefix=env.prefix.rstrip(":"), ttl_seconds=600, ok_batches=0)
    worker = build_worker(settings, scorer=env.scorer, store=store)
    with pytest.raises(StoreUnavailable):
        worker.run(max_events=len(items), idle_timeout=30)

    assert committed_total(env.bootstrap, group, input_topic, 3) == 0
    assert env.consume_all(exclusions, timeout=3) == []
    assert env.consume_all(dead_letter, timeout=3) == []


def test_an_older_event_does_not_overwrite_a_newer_score(env: Env) -> None:
    """The newer upload arrives first; the older one, arriving later, leaves the stored record alone."""
    input_topic = env.new_topic(1)
    now = dt.datetime.now(dt.UTC)
    photo, card = env.server.url(env.sample_set.photos[0]), env.server.url(env.sample_set.cards[0])
    newer = event("same", photo, uploaded_at=now, event_id="ev-newer")
    older = event("same", card, uploaded_at=now - dt.timedelta(hours=1), event_id="ev-older")
    settings = env.settings(input_topic, env.new_topic(1), env.new_topic(1), env.new_group_id())
    produce(env.producer, input_topic, [("same", newer)])
    first = build_worker(settings, scorer=env.scorer).run(max_events=1, idle_timeout=30)
    assert first.scored + first.excluded == 1  # stored either way; the random tiny model's verdict is moot
    # The older event arrives later (a delayed producer, a replay) and is handled by a later worker.
    produce(env.producer, input_topic, [("same", older)])
    stats = build_worker(settings, scorer=env.scorer).run(max_events=1, idle_timeout=30)
    assert stats.stale == 1 and stats.committed == 1
    assert env.records(["same"])["same"]["event_id"] == "ev-newer"


def worker_process_env(
    env: Env, group: str, input_topic: str, exclusions: str, dead_letter: str
) -> dict[str, str]:
    """Environment for `alocc worker` subprocesses on these topics (one transactional id for restarts)."""
    return {
        **os.environ,
        "ALOCC_KAFKA__BOOTSTRAP_SERVERS": env.bootstrap,
        "ALOCC_KAFKA__GROUP_ID": group,
        "ALOCC_KAFKA__TRANSACTIONAL_ID": f"test-tx-{uuid.uuid4().hex[:12]}",  # same id across the restart
        "ALOCC_KAFKA__SESSION_TIMEOUT_MS": "6000",
        "ALOCC_REDIS__URL": env.redis_url,
        "ALOCC_REDIS__KEY_PREFIX": env.prefix.rstrip(":"),
        "ALOCC_TOPICS__INPUT": input_topic,
        "ALOCC_TOPICS__EXCLUSIONS": exclusions,
        "ALOCC_TOPICS__DEAD_LETTER": dead_letter,
        "ALOCC_FETCH__ALLOW_PRIVATE_NETWORKS": "true",
        "ALOCC_MODEL__PATH": str(env.model_dir),
        "ALOCC_MODEL__DEVICE": "cpu",
        "ALOCC_MODEL__TORCH_THREADS": "1",
        "ALOCC_BATCH__MAX_SIZE": "4",  # many small transactions, so the kill lands between some of them
        "ALOCC_OBSERVABILITY__PORT": "0",
    }


def start_and_sigkill_once(
    command: list[str], process_env: dict[str, str], progressed: Callable[[], bool], what: str
) -> None:
    """Start `command`, SIGKILL it as soon as `progressed()` holds (within 90 s, while it still runs)."""
    process = subprocess.Popen(command, env=process_env, cwd=REPO_ROOT, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while not progressed():
            assert time.monotonic() < deadline, f"the first {what} made no progress"
            assert process.poll() is None, f"the first {what} exited early"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()


def test_a_killed_worker_restarted_loses_nothing(env: Env) -> None:
    """SIGKILL mid-stream, restart: every event gets a record, each exclusion is seen once."""
    input_topic, exclusions, dead_letter = env.new_topic(3), env.new_topic(1), env.new_topic(1)
    items = [*good_events(env, 300), ("bad-1", b"{not json"), ("bad-2", b"[]")]
    produce(env.producer, input_topic, items)
    group = env.new_group_id()
    process_env = worker_process_env(env, group, input_topic, exclusions, dead_letter)
    command = [sys.executable, "-m", "alocc.cli", "worker", "--exit-when-idle", "4"]
    start_and_sigkill_once(
        command, process_env, lambda: committed_total(env.bootstrap, group, input_topic, 3) >= 10, "worker"
    )
    assert committed_total(env.bootstrap, group, input_topic, 3) < len(items), (
        "killed too late to test anything"
    )

    second = subprocess.run(
        command, env=process_env, cwd=REPO_ROOT, stderr=subprocess.PIPE, timeout=180, check=False
    )
    assert second.returncode == 0, second.stderr.decode()[-2000:]

    assert committed_total(env.bootstrap, group, input_topic, 3) == len(items)
    stored = env.records([key for key, _ in items[:300]])
    assert len(stored) == 300
    excluded_ids = sorted(key for key, record in stored.items() if record["excluded"] == "1")
    published = [ExclusionEvent.model_validate_json(r.value).image_id for r in env.consume_all(exclusions)]
    assert sorted(published) == excluded_ids  # each decision exactly once for a read_committed reader
    dead = env.consume_all(dead_letter)
    assert sorted(r.key.decode() for r in dead) == ["bad-1", "bad-2"]


class SlowScorer:
    """A real scorer that takes at least `seconds` per batch (a slow device)."""

    def __init__(self, scorer: Scorer, seconds: float) -> None:
        self._scorer = scorer
        self._seconds = seconds
        self.input_size = scorer.input_size
        self.model_version = scorer.model_version

    def score(self, images: torch.Tensor, mode: Any = None) -> Any:
        time.sleep(self._seconds)
        return self._scorer.score(images, mode)


def test_two_workers_split_the_work_through_a_rebalance(env: Env) -> None:
    """A second worker joins mid-stream: both work, nothing is lost, each decision is seen once."""
    input_topic, exclusions, dead_letter = env.new_topic(4), env.new_topic(1), env.new_topic(1)
    items = good_events(env, 400)
    produce(env.producer, input_topic, items)
    group = env.new_group_id()

    def start(name: str) -> tuple[threading.Thread, dict[str, Any]]:
        result: dict[str, Any] = {}
        settings = env.settings(input_topic, exclusions, dead_letter, group, max_size=4, max_in_flight=16)
        # Each worker has its own model, slowed to 80 ms a batch so the stream (at least 8 s for one
        # worker) outlasts the second worker's start (model, decode processes) on a loaded machine.
        scorer = SlowScorer(Scorer.load(env.model_dir, device="cpu"), seconds=0.08)
        worker = build_worker(settings, scorer=scorer)

        def target() -> None:
            try:
                result["stats"] = worker.run(idle_timeout=6)
            except Exception as exc:  # noqa: BLE001 - handed to the test thread's assertions
                result["error"] = exc

        thread = threading.Thread(target=target, name=name)
        thread.start()
        return thread, result

    first, first_result = start("worker-a")
    deadline = time.monotonic() + 60
    while committed_total(env.bootstrap, group, input_topic, 4) < 20:
        assert time.monotonic() < deadline, "the first worker made no progress"
        time.sleep(0.1)
    second, second_result = start("worker-b")
    first.join(120)
    second.join(120)
    assert "error" not in first_result and "error" not in second_result, (first_result, second_result)
    a, b = first_result["stats"], second_result["stats"]
    assert a.committed > 0 and b.committed > 0, "both workers should have done part of the work"
    assert a.committed + b.committed >= len(items)  # revoked, uncommitted work is redone by the new owner

    assert committed_total(env.bootstrap, group, input_topic, 4) == len(items)
    stored = env.records([key for key, _ in items])
    assert len(stored) == len(items)
    excluded_ids = sorted(key for key, record in stored.items() if record["excluded"] == "1")
    published = [ExclusionEvent.model_validate_json(r.value).image_id for r in env.consume_all(exclusions)]
    assert sorted(published) == excluded_ids


def test_sigterm_finishes_in_flight_work_commits_and_exits_zero(env: Env) -> None:
    """SIGTERM mid-stream: intake stops, the in-flight batch is finished and committed, exit 0, in bounds."""
    input_topic, exclusions, dead_letter = env.new_topic(3), env.new_topic(1), env.new_topic(1)
    items = good_events(env, 200)
    produce(env.producer, input_topic, items)
    group = env.new_group_id()
    process_env = worker_process_env(env, group, input_topic, exclusions, dead_letter)
    process = subprocess.Popen(
        [sys.executable, "-m", "alocc.cli", "worker"], env=process_env, cwd=REPO_ROOT, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 90
        while committed_total(env.bootstrap, group, input_topic, 3) < 20:
            assert time.monotonic() < deadline and process.poll() is None, "the worker made no progress"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        _, stderr = process.communicate(timeout=60)
        took = time.monotonic() - stopped_at
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert took < 20, f"took {took:.1f}s to stop"
    log = stderr.decode()
    assert "stopping: finishing in-flight work" in log and "worker stopped" in log
    assert "drain timeout" not in log
    committed = committed_total(env.bootstrap, group, input_topic, 3)
    assert 20 <= committed <= len(items)
    # A clean drain commits everything it stored: records and committed offsets match one to one.
    assert len(env.records([key for key, _ in items])) == committed


# ----------------------------------------------------------------------------- the text cascade
_CRASHING_TESSERACT = """#!/bin/sh
# Tesseract that is killed on every second read (it answers --version and --list-langs normally).
case "$1" in --version|--list-langs) exec {real} "$@";; esac
count=$(cat "{counter}" 2>/dev/null || echo 0)
echo $((count + 1)) > "{counter}"
if [ $((count % 2)) -eq 1 ]; then kill -9 $$; fi
exec {real} "$@"
"""


def _with_cascade(model_dir: Path, out: Path, engine_version: str) -> TextCascade:
    """A copy of the tiny model whose card serves a text cascade that sends every image to the verifier
    and calls an image a card when the verifier read characters in it."""
    card = read_card(model_dir)
    rule = characters_rule()
    cascade = TextCascade(
        base_model_version=card.model_version,
        # The command-line engine (run inside the worker's OCR child processes), so that the crashing
        # `tesseract` on PATH is the one that reads.
        verifier=VerifierConfig(engine="tesseract", timeout_s=20),
        engine_version=engine_version,
        # With a plain-line gate that passes nearly everything, deciding by the same rule: the served path
        # that computes every image's look and routes by it runs end to end, and decides as before.
        policy=CascadePolicy(0.0, rule, 0.5, gate=PlainLineGate(flat_from=0.0, rows_to=1.0), gate_rule=rule),
    )
    out.mkdir()
    shutil.copyfile(model_dir / WEIGHTS_FILE, out / WEIGHTS_FILE)
    write_card(out, dataclasses.replace(card, text_cascade=cascade.to_json()))
    return cascade


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract-ocr is not installed")
def test_the_cascade_is_served_and_a_verifier_killed_mid_batch_loses_nothing(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every image goes to a real Tesseract that is killed on every second read: the killed reads keep
    the model's decision (recorded as the fallback), the others are the verifier's; nothing is lost."""
    real = shutil.which("tesseract")
    assert real is not None
    version = subprocess.run([real, "--version"], check=True, capture_output=True, text=True).stdout
    cascade = _with_cascade(env.model_dir, tmp_path / "model", version.splitlines()[0].strip())
    wrapper = tmp_path / "bin" / "tesseract"
    wrapper.parent.mkdir()
    wrapper.write_text(_CRASHING_TESSERACT.format(real=real, counter=tmp_path / "reads"))
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}")

    input_topic, exclusions, dead_letter = env.new_topic(2), env.new_topic(1), env.new_topic(1)
    good = good_events(env, 10, prefix="ocr")
    produce(env.producer, input_topic, good)
    settings = env.settings(input_topic, exclusions, dead_letter, env.new_group_id())
    settings = settings.model_copy(
        update={"model": settings.model.model_copy(update={"path": tmp_path / "model"})}
    )

    worker = build_worker(settings)
    stats = worker.run(max_events=len(good), idle_timeout=60)

    assert stats.committed == len(good) and stats.dead_lettered == 0
    assert stats.verifier_reads + stats.verifier_failures == len(good)
    assert stats.verifier_reads >= 1 and stats.verifier_failures >= 1
    stored = records_for(env.redis, env.prefix, cascade.version, [key for key, _ in good])
    assert set(stored) == {key for key, _ in good}
    by_stage: dict[str, list[str]] = {}
    for key, record in stored.items():
        by_stage.setdefault(record["decided_by"], []).append(key)
        if record["decided_by"] == "verifier":
            assert set(json.loads(record["verifier"])) >= {"read_characters", "ground_emptiness"}
            assert float(record["threshold"]) == 0.5
        else:
            assert record["decided_by"] == "model_fallback"
            assert record["fallback_reason"].startswith("VerifierUnavailable: tesseract failed")
            assert float(record["score"]) == float(record["model_score"])
    assert len(by_stage["model_fallback"]) == stats.verifier_failures
    # The cards carry words Tesseract reads; the photos do not.
    cards = {
        f"ocr-{i}"
        for i in range(len(good))
        if i % (len(env.sample_set.cards) + len(env.sample_set.photos)) < len(env.sample_set.cards)
    }
    read_cards = cards & set(by_stage.get("verifier", []))
    assert read_cards and all(stored[key]["excluded"] == "1" for key in read_cards)
    excluded = {key for key, record in stored.items() if record["excluded"] == "1"}
    published = [ExclusionEvent.model_validate_json(r.value) for r in env.consume_all(exclusions)]
    assert sorted(e.image_id for e in published) == sorted(excluded)
    assert {e.model_version for e in published} <= {cascade.version}
    assert env.redis.get(f"{env.prefix.rstrip(':')}:active_version") == cascade.version.encode()


def _photographed_notice(out: Path) -> Path | None:
    """A notice photographed in a scene, drawn by the dataset generator exactly as `train/photographed`'s
    file 48 (`card-banner-00048.jpg`): the served card's sheet reading alone catches it (its best sheet
    scores 0.9958, between the reading's 0.97382 and the route's bound 0.99817, and reads 33 characters;
    the model scores the whole picture 0.02). None where the generator's fonts or photos are missing."""
    from model.data.build import draw
    from model.data.dataset_errors import DatasetError

    try:
        draw(out, "train/photographed", 1, start=48, workers=1)
    except DatasetError:
        return None
    return out / "train" / "photographed" / "card-banner-00048.jpg"


def test_the_served_cascade_reads_a_photographed_notices_sheet_end_to_end(env: Env, tmp_path: Path) -> None:
    """The shipped default model and its cascade, the real broker, Redis, HTTP and OCR processes: the
    notice is found again in the OCR process, its sheet read, and the picture excluded by the verifier."""
    from ocr_samples import engine_reads

    from model.scoring import default_model_dir

    notice = _photographed_notice(tmp_path / "draw")
    if notice is None or not engine_reads():
        pytest.skip("needs the dataset generator's fonts and photos, and Tesseract with eng and jpn")
    input_topic, exclusions, dead_letter = env.new_topic(1), env.new_topic(1), env.new_topic(1)
    with ImageServer(notice.parent) as server:
        events = [("notice", event("notice", server.url(notice.name)))]
        produce(env.producer, input_topic, events)
        settings = env.settings(input_topic, exclusions, dead_letter, env.new_group_id())
        settings = settings.model_copy(
            update={"model": settings.model.model_copy(update={"path": default_model_dir()})}
        )
        stats = build_worker(settings).run(max_events=1, idle_timeout=60)

    assert stats.committed == 1 and stats.dead_lettered == 0 and stats.verifier_reads == 1
    version = read_card(default_model_dir()).serving_version
    record = records_for(env.redis, env.prefix, version, ["notice"])["notice"]
    features = json.loads(record["verifier"])
    assert (record["decided_by"], record["excluded"]) == ("verifier", "1")
    assert features["sheet_read_characters"] >= 7 and "read_characters" not in features  # the sheet alone
    assert float(record["score"]) >= float(record["threshold"]) > float(record["model_score"])
    published = [ExclusionEvent.model_validate_json(r.value) for r in env.consume_all(exclusions)]
    assert [(e.image_id, e.decided_by, e.model_version) for e in published] == [
        ("notice", "verifier", version)
    ]


# ----------------------------------------------------------------------------- replay
def test_a_replay_rescores_its_range_in_shadow_and_resumes_after_sigkill(env: Env) -> None:
    """`alocc replay --since`: only the range, under the replayed version, active pointer untouched, nothing
    published; SIGKILLed mid-way and started again, it finishes with every event of the range scored."""
    input_topic, exclusions, dead_letter = env.new_topic(2), env.new_topic(1), env.new_topic(1)
    hour_ago = int((time.time() - 3600) * 1000)
    old = good_events(env, 20, prefix="old")
    for key, value in old:  # uploaded an hour ago: before the range
        env.producer.produce(input_topic, key=key.encode(), value=value, timestamp=hour_ago)
    in_range = good_events(env, 300, prefix="new")
    produce(env.producer, input_topic, in_range)
    active_key = f"{env.prefix.rstrip(':')}:active_version"
    env.redis.set(active_key, "the-live-version")
    group = f"test-replay-{uuid.uuid4().hex[:8]}"
    process_env = worker_process_env(env, "unused", input_topic, exclusions, dead_letter)
    since = dt.datetime.fromtimestamp(time.time() - 600, dt.UTC).isoformat()
    command = [sys.executable, "-m", "alocc.cli", "replay", "--since", since, "--group", group, "--json"]
    new_ids = [key for key, _ in in_range]

    # Kill once progress is committed, not merely stored: records are written before their offsets are
    # committed (an offset waits for the verifier's reads of its batch), and a kill between the two rightly
    # restarts from the range's start.
    start_and_sigkill_once(
        command,
        process_env,
        lambda: (
            len(env.records(new_ids)) >= 30
            and committed_total(env.bootstrap, group, input_topic, 2) > len(old)
        ),
        "replay",
    )
    assert len(env.records(new_ids)) < len(new_ids), "killed too late to test anything"

    second = subprocess.run(
        command, env=process_env, cwd=REPO_ROOT, capture_output=True, timeout=180, check=False
    )
    assert second.returncode == 0, second.stderr.decode()[-2000:]
    summary = json.loads(second.stdout.decode().strip().splitlines()[-1])

    assert summary["complete"] and summary["left"] == 0 and summary["range_events"] == len(in_range)
    assert summary["model_version"] == env.scorer.model_version and summary["group"] == group
    assert 0 < summary["left_at_start"] < len(in_range)  # the restart resumed, it did not start over
    assert len(env.records(new_ids)) == len(in_range)
    assert env.records([key for key, _ in old]) == {}  # outside the range
    assert committed_total(env.bootstrap, group, input_topic, 2) == len(old) + len(in_range)
    assert env.redis.get(active_key) == b"the-live-version"  # shadow: the pointer is untouched
    assert env.consume_all(exclusions, timeout=5) == []  # and nothing was published


# ----------------------------------------------------------------------------- promotion
@pytest.fixture(scope="module")
def second_model_dir(
    tmp_path_factory: pytest.TempPathFactory, samples: tuple[SampleSet, ImageServer], tiny_model_dir: Path
) -> Path:
    """Another tiny model (version B), its threshold at the median of its scores on the samples, so that
    it decides some images differently from the first."""
    from model.preprocess import preprocess

    torch.manual_seed(1)
    spec = NetworkSpec(architecture="strided", input_size=32, width=8, r_depth=2)
    directory = tmp_path_factory.mktemp("second-model")
    card = save_checkpoint(directory, build_networks(spec), read_card(tiny_model_dir))
    sample_set, server = samples
    names = sample_set.cards + sample_set.photos
    images = [preprocess(httpx.get(server.url(name)).content, 32) for name in names]
    scores = sorted(
        float(s) for s in Scorer.load(directory, device="cpu").raw_scores(torch.stack(images)).d_x
    )
    median = (scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2
    write_card(
        directory, dataclasses.replace(card, thresholds={"d_x": ThresholdRecord(median, "uncalibrated")})
    )
    return directory


def test_promote_publishes_only_what_changes_and_rollback_restores_the_old_set(
    env: Env, second_model_dir: Path
) -> None:
    """A serves; B is replayed in shadow; promote B publishes exactly the changed decisions and the
    reference indexer then holds B's set; uploads during the rollout are scored by both and published by
    the active one; rollback restores A's set the same way."""
    from search_client.reference_indexer import ReferenceIndexer

    scorer_b = Scorer.load(second_model_dir, device="cpu")
    version_a, version_b = env.scorer.model_version, scorer_b.model_version
    assert version_a != version_b
    input_topic, exclusions, dead_letter = env.new_topic(2), env.new_topic(1), env.new_topic(1)
    first = good_events(env, 24, prefix="before")
    produce(env.producer, input_topic, first)
    ids = [key for key, _ in first]

    # 1. A serves: it claims the pointer and publishes its exclusions.
    worker_a = build_worker(
        env.settings(input_topic, exclusions, dead_letter, env.new_group_id()), scorer=env.scorer
    )
    assert worker_a.run(max_events=len(first), idle_timeout=30).committed == len(first)
    active_key = f"{env.prefix.rstrip(':')}:active_version"
    assert env.redis.get(active_key) == version_a.encode()
    published_by_a = len(env.consume_all(exclusions))

    cli_env = worker_process_env(env, "unused", input_topic, exclusions, dead_letter)
    cli_env["ALOCC_MODEL__PATH"] = str(second_model_dir)

    def alocc(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "alocc.cli", *args],
            env=cli_env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    # 2. B cannot be promoted before it has scores; a replay scores them in shadow.
    refused = alocc("promote", version_b)
    assert refused.returncode == 1 and "alocc replay" in refused.stderr
    replay = alocc("replay", "--group", f"test-replay-{uuid.uuid4().hex[:8]}", "--json")
    assert replay.returncode == 0, replay.stderr[-2000:]
    assert env.redis.get(active_key) == version_a.encode()
    assert len(env.consume_all(exclusions)) == published_by_a  # shadow: nothing published

    # 3. The diff says what promotion will publish.
    diff = json.loads(alocc("diff", version_a, version_b, "--json").stdout)
    decided_a = {
        k: r["excluded"] == "1" for k, r in records_for(env.redis, env.prefix, version_a, ids).items()
    }
    decided_b = {
        k: r["excluded"] == "1" for k, r in records_for(env.redis, env.prefix, version_b, ids).items()
    }
    changed = {k for k in ids if decided_a[k] != decided_b[k]}
    assert changed, "the two tiny models should disagree somewhere"
    assert diff["newly_excluded"] + diff["no_longer_excluded"] == len(changed)

    # 4. Promote B: exactly the changes are published; the indexer now holds B's set.
    promoted = alocc("promote", version_b, "--who", "test", "--json")
    assert promoted.returncode == 0, promoted.stderr[-2000:]
    summary = json.loads(promoted.stdout)
    assert (summary["from"], summary["to"]) == (version_a, version_b)
    events = [ExclusionEvent.model_validate_json(r.value) for r in env.consume_all(exclusions)]
    by_promotion = events[published_by_a:]
    assert sorted(e.image_id for e in by_promotion) == sorted(changed)
    assert all(e.model_version == version_b and e.excluded == decided_b[e.image_id] for e in by_promotion)
    assert summary["published_excluded"] + summary["published_included"] == len(changed)

    def indexed() -> set[str]:
        indexer = ReferenceIndexer({"bootstrap.servers": env.bootstrap}, exclusions)
        try:
            return indexer.catch_up(30).excluded
        finally:
            indexer.close()

    assert indexed() == {k for k in ids if decided_b[k]}
    assert alocc("promote", version_b, "--json").returncode == 0  # again: nothing new to publish
    assert len(env.consume_all(exclusions)) == len(events)

    # 5. During the rollout both versions score new uploads; only the active one (B) publishes.
    later_topic = env.new_topic(1)
    later = good_events(env, 12, prefix="later")
    produce(env.producer, later_topic, later)
    shadow_a = env.settings(later_topic, exclusions, dead_letter, env.new_group_id())
    shadow_a = shadow_a.model_copy(update={"model": shadow_a.model.model_copy(update={"shadow": True})})
    assert build_worker(shadow_a, scorer=env.scorer).run(max_events=12, idle_timeout=30).committed == 12
    serving_b = env.settings(later_topic, exclusions, dead_letter, env.new_group_id())
    assert build_worker(serving_b, scorer=scorer_b).run(max_events=12, idle_timeout=30).committed == 12
    later_ids = [key for key, _ in later]
    for key, record in records_for(env.redis, env.prefix, version_b, later_ids).items():
        decided_b[key] = record["excluded"] == "1"
    for key, record in records_for(env.redis, env.prefix, version_a, later_ids).items():
        decided_a[key] = record["excluded"] == "1"
    assert set(decided_b) == set(decided_a) == set(ids) | set(later_ids)
    assert indexed() == {k for k, excluded in decided_b.items() if excluded}

    # 6. Roll back: A again, through the same differences, recorded in the switch log.
    rolled = alocc("rollback", "--who", "test", "--json")
    assert rolled.returncode == 0, rolled.stderr[-2000:]
    assert json.loads(rolled.stdout)["to"] == version_a
    assert env.redis.get(active_key) == version_a.encode()
    assert indexed() == {k for k, excluded in decided_a.items() if excluded}
    listing = json.loads(alocc("models", "list", "--json").stdout)
    assert listing["active"] == version_a
    assert [(s["from_version"], s["to_version"]) for s in listing["switches"][:2]] == [
        (version_b, version_a),
        (version_a, version_b),
    ]
    images = {v["version"]: v["images"] for v in listing["versions"]}
    assert images[version_a] == images[version_b] == len(ids) + len(later_ids)
