"""`alocc bench`: how fast the pipeline is, on this machine, against the real broker and Redis.

One run measures and prints:

- `decode_ceiling_ips`: decode + preprocess only (bytes already in memory), all cores.
- `fetch_ceiling_ips`: downloads only, through the worker's own fetcher (client, pools, concurrency)
  from the bench's image server; neither decode nor model involved.
- `model_ceiling_ips`: the worker's scoring stage only (`Scorer.score` on its thread), full batches,
  the configured mode.
- `naive_ips`: one event at a time, each step waiting for the last: consume, fetch, decode, score,
  write Redis, publish, commit (`naive_loop`).
- `worker_ips`: the real worker end to end (first consumed message to last commit), serving the default
  model's text cascade when its card has one; `worker_core_ms_per_event` is what it cost (its process,
  its decode processes and its OCR processes, from its run's start: building the worker, the OCR
  engines' loading included, is a start cost paid once per worker, left out). With a cascade, the
  same events are run again with the model alone (`model_only_ips`, `model_only_core_ms_per_event`), so
  `verifier_added_core_ms_per_event` is the verifier's cost on this mix, and `verifier_share` the share
  of events it read (`verifier_sends_by_route`: by which route; `verifier_read_ms_per_event_by_route`: the
  reads' time per event, by the route that sent them). `verifier_added_core_ms_per_event_by_part`
  says where the cascade's cost went: the OCR processes (the reads), the decode processes (the quadrants
  and the sheet search) and the worker's own process (the member's passes over parts and sheets, the
  verifier's downloads). A shared machine's
  speed drifts from one run to the next: `--cost-rounds N` runs the pair N times, alternating, and
  reports the medians (what the cascade added, and `cascade_to_model_core_ratio`, which moves less than
  a difference) with every round's figures. The mix is `--card-share` cards (5% by default), the rest
  photographs and products from evaluation-only sources.
- `p99_latency_ms`: upload-to-score latency (the score record written in Redis: search reads it
  there, so that is when the decision takes effect) while events arrive at half of `worker_ips`,
  with the target it should meet (`max_wait + 2 x one batch's scoring time`);
  `p99_commit_latency_ms` is the same events' latency to the committed Kafka transaction (exclusion
  events visible to `read_committed` readers, offsets stored).
- `peak_rss_mb`: this process's peak resident memory; `--rss-events N ...` also runs the worker alone on
  N events in a fresh process each, to show memory does not grow with the stream.

Images are served by a local HTTP server, so "fetch" is real HTTP over loopback without a network's
latency. Topics and Redis keys are uuid-named and removed afterwards.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime as dt
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis
import torch
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from schemas.events import ImageUploaded
from tools.cpu_usage import CpuUsage
from tools.sample_images import make_event, write_samples
from worker.factory import build_worker, load_scorer, redis_client, served_cascade
from worker.logs import configure_logging
from worker.settings import Settings
from worker.stages.output import exclusion_record
from worker.stages.score import ScoringStage
from worker.stages.store import ScoreRecord, ScoreStore

_event = functools.partial(make_event, shop_id="bench-shop")


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """Resident set size of this process now, in MiB (from /proc; 0.0 where there is none)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            pages = int(handle.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


@dataclass
class BenchContext:
    """The settings, model, served images and scratch names shared by the measurements."""

    settings: Settings
    scorer: Any
    server: Any  # an object with url(name); None in an --rss-child process (the parent serves the images)
    images: list[str]  # served file names
    payloads: list[bytes]
    run_id: str

    def url(self, index: int) -> str:
        """URL of the index-th sample (cycling)."""
        assert self.server is not None
        return self.server.url(self.images[index % len(self.images)])

    @property
    def prefix(self) -> str:
        """Redis key prefix of this run."""
        return f"alocc-bench-{self.run_id}"

    def worker_settings(self, topic: str, exclusions: str, dead_letter: str) -> Settings:
        """The configured settings, pointed at this run's topics, keys and the local image server."""
        s = self.settings
        return s.model_copy(
            update={
                "kafka": s.kafka.model_copy(
                    update={
                        "group_id": f"bench-{uuid.uuid4().hex[:12]}",
                        "transactional_id": f"bench-{uuid.uuid4().hex}",
                    }
                ),
                # The run's keys are its own: its worker claims the active version there, so it publishes
                # exclusion events as a serving worker does (a non-active version publishes nothing).
                "redis": s.redis.model_copy(
                    update={"key_prefix": self.prefix, "active_version_policy": "always"}
                ),
                "topics": s.topics.model_copy(
                    update={"input": topic, "exclusions": exclusions, "dead_letter": dead_letter}
                ),
                "fetch": s.fetch.model_copy(update={"allow_private_networks": True}),
                "observability": s.observability.model_copy(update={"port": 0}),
            }
        )


class Topics:
    """Creates uuid-named topics and deletes them on close."""

    def __init__(self, bootstrap: str) -> None:
        """Connect the admin client."""
        self._admin = AdminClient({"bootstrap.servers": bootstrap})
        self._created: list[str] = []

    def create(self, partitions: int) -> str:
        """A fresh topic with `partitions` partitions, ready for use."""
        name = f"bench-{uuid.uuid4().hex[:16]}"
        self._admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[
            name
        ].result(30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            topic = self._admin.list_topics(name, timeout=5).topics.get(name)
            if topic and topic.error is None and all(p.leader >= 0 for p in topic.partitions.values()):
                break
            time.sleep(0.1)
        self._created.append(name)
        return name

    def close(self) -> None:
        """Delete the created topics (best effort)."""
        if self._created:
            for future in self._admin.delete_topics(self._created).values():
                # Cleanup must not hide the measurements.
                with contextlib.suppress(KafkaException):
                    future.result(30)


def produce_events(bootstrap: str, topic: str, ctx: BenchContext, count: int, tag: str) -> None:
    """Produce `count` events cycling over the samples, as fast as the producer goes."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    for index in range(count):
        image_id = f"{tag}-{index}"
        while True:
            try:
                producer.produce(topic, key=image_id.encode(), value=_event(image_id, ctx.url(index)))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(60)


# ----------------------------------------------------------------------------- ceilings
def decode_ceiling(ctx: BenchContext, count: int) -> float:
    """Images per second of decode + preprocess over all cores (bytes already in memory)."""
    from model.preprocess import ImageLimits, preprocess

    limits = ImageLimits(max_pixels=ctx.settings.decode.max_pixels)
    size = ctx.scorer.input_size
    workers = ctx.settings.decode.workers
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda data: preprocess(data, size, limits=limits), ctx.payloads[:workers]))  # warm-up
        started = time.perf_counter()
        list(
            pool.map(
                lambda i: preprocess(ctx.payloads[i % len(ctx.payloads)], size, limits=limits), range(count)
            )
        )
        return count / (time.perf_counter() - started)


def fetch_ceiling(ctx: BenchContext, count: int) -> float:
    """Images per second of downloads alone, through the worker's fetcher and settings.

    The same HTTP client, pool and concurrency as the worker, from the same kind of image server, so
    it shows whether fetching (client or server) rather than decoding or the model limits the worker.
    """
    from worker.stages.fetch import BackgroundFetcher

    settings = ctx.worker_settings("unused", "unused", "unused").fetch
    fetcher = BackgroundFetcher(settings)
    try:
        warm = min(count, 2 * settings.concurrency)
        for future in [fetcher.submit(ctx.url(i)) for i in range(warm)]:
            future.result(60)
        started = time.perf_counter()
        for future in [fetcher.submit(ctx.url(i)) for i in range(count)]:
            future.result(60)
        return count / (time.perf_counter() - started)
    finally:
        fetcher.close()


def model_ceiling(ctx: BenchContext, batches: int) -> tuple[float, float]:
    """(images per second, seconds per full batch) of the worker's scoring stage alone.

    Scored exactly as the worker scores: uint8 images through `ScoringStage` on its own thread. On a
    busy machine `Scorer.score` called from the main thread was measured 15-20x slower than the same
    call on the stage's thread (torch's intra-op thread team of the main thread spins against other
    processes for the cores), so a main-thread figure would not be the worker's ceiling.
    """
    from model.preprocess import ImageLimits, preprocess_uint8

    size = ctx.scorer.input_size
    batch_size = ctx.settings.batch.max_size
    limits = ImageLimits(max_pixels=ctx.settings.decode.max_pixels)
    pixels = [
        preprocess_uint8(ctx.payloads[i % len(ctx.payloads)], size, limits=limits) for i in range(batch_size)
    ]
    stage = ScoringStage(ctx.scorer)
    try:
        stage.submit(pixels).result()  # warm-up (allocations, kernels)
        started = time.perf_counter()
        for _ in range(batches):
            stage.submit(pixels).result()
        seconds = time.perf_counter() - started
    finally:
        stage.close()
    return batches * batch_size / seconds, seconds / batches


# ----------------------------------------------------------------------------- naive loop
def naive_loop(ctx: BenchContext, bootstrap: str, topic: str, exclusions: str, count: int) -> float:
    """One event at a time, every step synchronous; returns events per second."""
    from model.preprocess import ImageLimits, preprocess

    settings = ctx.settings
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-naive-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    store = ScoreStore(redis_client(settings), prefix=ctx.prefix, ttl_seconds=3600)
    limits = ImageLimits(max_pixels=settings.decode.max_pixels)
    consumer.subscribe([topic])
    done = 0
    started: float | None = None
    try:
        with httpx.Client(timeout=10.0) as client:
            while done < count:
                message = consumer.poll(1.0)
                if message is None or message.error() is not None:
                    continue
                started = started or time.perf_counter()
                event = ImageUploaded.model_validate_json(message.value() or b"")
                data = client.get(event.image_url).content
                result = ctx.scorer.score(preprocess(data, ctx.scorer.input_size, limits=limits)[None])
                excluded = bool(result.excluded[0])
                now = dt.datetime.now(dt.UTC)
                store.write_batch(
                    [
                        ScoreRecord(
                            event.image_id,
                            event.item_id,
                            event.shop_id,
                            event.event_id,
                            event.uploaded_at,
                            float(result.scores[0]),
                            excluded,
                            float(result.threshold),
                            str(result.mode),
                            result.model_version,
                            now,
                        )
                    ]
                )
                if excluded:
                    record = exclusion_record(
                        exclusions,
                        event,
                        excluded=True,
                        score=float(result.scores[0]),
                        threshold=float(result.threshold),
                        mode=str(result.mode),
                        model_version=result.model_version,
                        decided_at=now,
                    )
                    producer.produce(record.topic, key=record.key, value=record.value)
                    producer.flush(10)
                consumer.commit(message=message, asynchronous=False)
                done += 1
    finally:
        consumer.close()
    assert started is not None
    return done / (time.perf_counter() - started)


# ----------------------------------------------------------------------------- the worker
def worker_run(
    ctx: BenchContext, bootstrap: str, count: int, topics: Topics, *, verifier: bool = True
) -> dict[str, Any]:
    """Produce `count` events, then let the real worker drain them; returns its throughput and cost.

    `core_ms_per_event` is the CPU of the worker's process and of its children (its decode and OCR
    processes) during the run, per event. What was spent building the worker (loading the model, starting
    the processes, the OCR engines' loading) is a start cost, left out (`cpu.children_start_seconds`: the
    children's). `verifier=False` serves the model alone (`ALOCC_VERIFIER__ENABLED=false`), so two runs on
    one mix give what the verifier adds.
    """
    topic, exclusions, dead_letter = topics.create(3), topics.create(1), topics.create(1)
    produce_events(bootstrap, topic, ctx, count, tag="w" if verifier else "m")
    settings = ctx.worker_settings(topic, exclusions, dead_letter)
    settings = settings.model_copy(
        update={"verifier": settings.verifier.model_copy(update={"enabled": verifier})}
    )
    worker = build_worker(settings, scorer=ctx.scorer, serve_health=False)
    with CpuUsage(others=_other_processes(ctx)) as cpu:
        stats = worker.run(max_events=count, idle_timeout=60)
    if stats.committed != count:
        raise RuntimeError(f"worker committed {stats.committed} of {count} events")
    return {
        "worker_ips": count / stats.active_seconds,
        "batches": stats.batches,
        "events": count,
        "core_ms_per_event": (cpu.process_seconds + cpu.reaped_children_seconds) * 1000 / count,
        "core_ms_per_event_by_part": core_ms_by_part(cpu, count),
        "verifier_reads": stats.verifier_reads,
        "verifier_failures": stats.verifier_failures,
        "verifier_sends_by_route": sends_by_route(worker.metrics.registry, count),
        "verifier_read_ms_per_event_by_route": read_ms_by_route(worker.metrics.registry, count),
        "excluded": stats.excluded,
        "cpu": cpu.report(),
    }


def sends_by_route(registry: Any, count: int) -> dict[str, float]:
    """The share of `count` events sent to the verifier by each route (`alocc_verifier_sends_total`): which
    of the cascade's routes the reads, and so most of its cost, come from on this mix."""
    sends = _by_route(registry, "alocc_verifier_sends", "_total")
    return {route: round(value / count, 4) for route, value in sends.items()}


def read_ms_by_route(registry: Any, count: int) -> dict[str, float]:
    """The verifier's read time per event of `count`, by the route that sent the reads
    (`alocc_verifier_read_seconds`: download included, wall time of a read that holds one OCR process):
    which route the OCR processes' cost comes from on this mix."""
    seconds = _by_route(registry, "alocc_verifier_read_seconds", "_sum")
    return {route: round(value * 1000 / count, 2) for route, value in seconds.items()}


def _by_route(registry: Any, metric_name: str, sample_suffix: str) -> dict[str, float]:
    """The non-zero `sample_suffix` samples of a metric labelled by route, by route (sorted)."""
    values: dict[str, float] = {}
    for metric in registry.collect():
        if metric.name != metric_name:
            continue
        for sample in metric.samples:
            if sample.name.endswith(sample_suffix) and sample.value:
                values[sample.labels["route"]] = sample.value
    return dict(sorted(values.items()))


def core_ms_by_part(cpu: CpuUsage, count: int) -> dict[str, float]:
    """Core-ms per event by where it was spent: the worker's own process (consuming, scoring, the member's
    passes over parts and sheets, Redis and Kafka clients, the verifier's downloads), its decode processes
    (fetch, decode, the quadrants and the sheet search) and its OCR processes (the reads)."""
    parts = {"worker_process": cpu.process_seconds}
    for role, seconds in cpu.reaped_children_seconds_by_role.items():
        parts[f"{role}_processes"] = seconds
    return {part: round(seconds * 1000 / count, 2) for part, seconds in sorted(parts.items())}


def added_by_part(rounds: list[tuple[dict[str, float], dict[str, float]]]) -> dict[str, float]:
    """The median over `rounds` of `(with the cascade, model alone)` `core_ms_by_part` of what the cascade
    added in each part (a part the model alone does not run, such as the OCR processes, counts from 0)."""
    if not rounds:
        raise ValueError("no cost rounds to summarise")
    names = sorted({name for pair in rounds for run in pair for name in run})
    return {
        name: round(
            float(np.median([cascade.get(name, 0.0) - alone.get(name, 0.0) for cascade, alone in rounds])), 2
        )
        for name in names
    }


def cost_rounds_summary(rounds: list[tuple[float, float]]) -> dict[str, Any]:
    """What the cascade cost over `rounds` of `(with the cascade, model alone)` core-ms per event, each
    pair run back to back: the medians of each run's cost, of what the cascade added and of the ratio of
    the two (a ratio moves less than a difference when the machine's speed drifts), and with more than
    one round every round's figures, so that the spread is in the report too."""
    if not rounds:
        raise ValueError("no cost rounds to summarise")
    cascade = [pair[0] for pair in rounds]
    alone = [pair[1] for pair in rounds]
    added = [with_cascade - model_alone for with_cascade, model_alone in rounds]
    ratio = [with_cascade / model_alone for with_cascade, model_alone in rounds]
    summary: dict[str, Any] = {
        "cost_rounds": len(rounds),
        "worker_core_ms_per_event": round(float(np.median(cascade)), 2),
        "model_only_core_ms_per_event": round(float(np.median(alone)), 2),
        "verifier_added_core_ms_per_event": round(float(np.median(added)), 2),
        "cascade_to_model_core_ratio": round(float(np.median(ratio)), 2),
    }
    if len(rounds) > 1:
        summary["verifier_added_core_ms_per_event_rounds"] = [round(value, 2) for value in added]
        summary["model_only_core_ms_per_event_rounds"] = [round(value, 2) for value in alone]
    return summary


@dataclass
class LatencyRun:
    """What `latency_run` measured, per event and at worst."""

    to_score_s: list[float]  # upload -> score record in Redis (what search reads)
    to_commit_s: list[float]  # upload -> transaction committed (exclusion events visible)
    slowest_commit_ms: float
    slowest_batch_ms: float

    def report(self) -> dict[str, float]:
        """Percentiles in ms, as the bench prints them."""

        def ms(values: list[float], q: float) -> float:
            return round(float(np.percentile(values, q)) * 1000, 1)

        return {
            "p50_latency_ms": ms(self.to_score_s, 50),
            "p99_latency_ms": ms(self.to_score_s, 99),
            "p50_commit_latency_ms": ms(self.to_commit_s, 50),
            "p99_commit_latency_ms": ms(self.to_commit_s, 99),
            "latency_run_slowest_commit_ms": self.slowest_commit_ms,
            "latency_run_slowest_batch_ms": self.slowest_batch_ms,
        }


def _other_processes(ctx: BenchContext) -> dict[str, int]:
    """Pids of the processes sharing the machine with the worker (best effort).

    The image server, and the local Kafka and Redis when `deploy/local/services` runs them from this
    checkout.
    """
    pids: dict[str, int] = {}
    server_pid = getattr(ctx.server, "pid", None)
    if server_pid is not None:
        pids["image_server"] = int(server_pid)
    state = Path(
        os.environ.get("LOCAL_SERVICES_DIR", Path(__file__).resolve().parents[1] / "var" / "services")
    )
    for name in ("kafka", "redis"):
        with contextlib.suppress(OSError, ValueError):
            pids[name] = int((state / name / f"{name}.pid").read_text().strip())
    return pids


class LatencyRecorder:
    """A worker observer that keeps (image_id, seconds since upload) of every stored and committed event."""

    def __init__(self) -> None:
        """Start with nothing recorded."""
        self.to_store: list[tuple[str, float]] = []
        self.to_commit: list[tuple[str, float]] = []

    def on_stored(self, image_id: str, upload_to_store_s: float) -> None:
        """Record the upload-to-Redis-write time of one event."""
        self.to_store.append((image_id, upload_to_store_s))

    def on_committed(self, image_id: str, upload_to_commit_s: float) -> None:
        """Record the upload-to-commit time of one event."""
        self.to_commit.append((image_id, upload_to_commit_s))


def latency_run(ctx: BenchContext, bootstrap: str, rate: float, count: int, topics: Topics) -> LatencyRun:
    """Produce `count` events at `rate` per second while the worker runs; see `LatencyRun`."""
    topic, exclusions, dead_letter = topics.create(3), topics.create(1), topics.create(1)
    worker = build_worker(
        ctx.worker_settings(topic, exclusions, dead_letter), scorer=ctx.scorer, serve_health=False
    )
    recorder = LatencyRecorder()
    worker.observers.append(recorder)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run(max_events=count + 1, idle_timeout=30)
        except Exception as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=run, name="bench-worker")
    thread.start()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "enable.idempotence": True})
    # One warm-up event, and wait until it is committed: the group has formed and the model is warm.
    producer.produce(topic, key=b"warm", value=_event("warm", ctx.url(0)))
    producer.flush(10)
    deadline = time.monotonic() + 60
    while worker.stats.committed < 1 and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    interval = 1.0 / rate
    next_at = time.perf_counter()
    for index in range(count):
        next_at += interval
        image_id = f"lat-{index}"
        producer.produce(topic, key=image_id.encode(), value=_event(image_id, ctx.url(index)))
        producer.poll(0)
        pause = next_at - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    producer.flush(10)
    thread.join(300)
    if errors:
        raise errors[0]
    return LatencyRun(
        to_score_s=[seconds for image_id, seconds in recorder.to_store if image_id.startswith("lat-")],
        to_commit_s=[seconds for image_id, seconds in recorder.to_commit if image_id.startswith("lat-")],
        slowest_commit_ms=round(worker.stats.slowest_commit_s * 1000, 1),
        slowest_batch_ms=round(worker.stats.slowest_batch_s * 1000, 1),
    )


def rss_child(args: argparse.Namespace) -> int:
    """`--rss-child N --rss-topics IN,EXCL,DLQ --rss-prefix P`: run only the worker, in this fresh process.

    The parent produced the N events and serves the images, so this process's peak RSS
    (`getrusage`) is the model plus the worker, and nothing else.
    """
    settings = Settings()
    scorer = load_scorer(settings)
    after_load = peak_rss_mb()
    before_worker = current_rss_mb()
    topic, exclusions, dead_letter = args.rss_topics.split(",")
    ctx = BenchContext(settings, scorer, None, [], [], args.rss_prefix.removeprefix("alocc-bench-"))
    worker = build_worker(
        ctx.worker_settings(topic, exclusions, dead_letter), scorer=scorer, serve_health=False
    )
    with CpuUsage() as usage:
        stats = worker.run(max_events=args.rss_child, idle_timeout=60)
    measured = usage.report()
    result = {
        "events": args.rss_child,
        "committed": stats.committed,
        "worker_ips": round(stats.committed / stats.active_seconds, 1) if stats.active_seconds else 0.0,
        "rss_after_model_load_mb": round(after_load, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        # The fetch-and-decode children, sampled from /proc while they ran (getrusage's figure for
        # children counts the parent's pages a child shares between fork and exec).
        "decode_children_peak_rss_mb": measured["decode_children_peak_rss_mb"],
        "decode_child_peak_rss_mb": measured["decode_child_peak_rss_mb"],
        "current_rss_before_worker_mb": round(before_worker, 1),
        "current_rss_after_worker_mb": round(current_rss_mb(), 1),
    }
    print(json.dumps(result))
    return 0


def rss_runs(ctx: BenchContext, bootstrap: str, counts: list[int], topics: Topics) -> dict[str, Any]:
    """For each count: produce that many events here, then run the worker alone in a fresh process."""
    results: dict[str, Any] = {}
    for count in counts:
        names = [topics.create(3), topics.create(1), topics.create(1)]
        produce_events(bootstrap, names[0], ctx, count, tag=f"rss{count}")
        child = subprocess.run(
            [
                sys.executable, "-m", "alocc.cli", "bench",
                "--rss-child", str(count), "--rss-topics", ",".join(names), "--rss-prefix", ctx.prefix,
            ],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        if child.returncode != 0:
            raise RuntimeError(f"rss run for {count} events failed:\n{child.stderr[-2000:]}")
        results[str(count)] = json.loads(child.stdout.strip().splitlines()[-1])
    return results


class ExternalImageServer:
    """The sample image server in a separate process (`python -m tools.sample_images`), like a real CDN."""

    def __init__(self, directory: Path, delay_ms: float) -> None:
        """Start the server process and read its base URL."""
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tools.sample_images", str(directory), "--delay-ms", str(delay_ms)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        self.base_url = self._process.stdout.readline().strip()
        if not self.base_url.startswith("http://"):
            self.stop()
            raise RuntimeError("the image server did not start")

    def url(self, name: str) -> str:
        """URL of one served file."""
        return f"{self.base_url}/{name}"

    @property
    def pid(self) -> int:
        """The server process's id (for CPU accounting)."""
        return self._process.pid

    def stop(self) -> None:
        """Stop the server process."""
        self._process.terminate()
        self._process.wait(10)


class BenchSession:
    """Loads the model, writes and serves the samples, and cleans up topics and keys."""

    def __init__(self, args: argparse.Namespace) -> None:
        self._args = args
        self._tmp = tempfile.TemporaryDirectory(prefix="alocc-bench-")

    def __enter__(self) -> tuple[BenchContext, Topics]:
        settings = Settings()
        scorer = load_scorer(settings)
        directory = Path(self._tmp.name)
        # The mix of uploads: `--card-share` cards, the rest photos and products (evaluation-only sources).
        cards = max(1, round(self._args.images * self._args.card_share))
        samples = write_samples(directory, cards=cards, photos=max(1, self._args.images - cards))
        # Cards spread through the stream as uploads would be (a seeded order, the same every run): listed
        # first, they came as one burst of reads that set the half-load latency run's p99.
        names = samples.cards + samples.photos
        np.random.default_rng(0).shuffle(names)
        self._server = ExternalImageServer(directory, self._args.fetch_latency_ms)
        self._topics = Topics(settings.kafka.bootstrap_servers)
        self._ctx = BenchContext(
            settings,
            scorer,
            self._server,
            names,
            [(directory / n).read_bytes() for n in names],
            uuid.uuid4().hex[:12],
        )
        return self._ctx, self._topics

    def __exit__(self, *exc: object) -> None:
        self._topics.close()
        client: redis.Redis = redis_client(self._ctx.settings)
        keys = list(client.scan_iter(match=f"{self._ctx.prefix}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        self._server.stop()
        self._tmp.cleanup()


def main(args: argparse.Namespace) -> int:
    """Run every measurement and print the results."""
    from model.errors import ModelError

    configure_logging("WARNING", "json")
    try:
        if getattr(args, "rss_child", None):
            return rss_child(args)
        return _run_all(args)
    except ModelError as exc:
        print(f"bench: cannot load the model: {exc}", file=sys.stderr)
        return 2


def _run_all(args: argparse.Namespace) -> int:
    report: dict[str, Any] = {}
    with BenchSession(args) as (ctx, topics):
        bootstrap = ctx.settings.kafka.bootstrap_servers
        report["device"] = str(getattr(ctx.scorer, "device", "cpu"))
        report["model_version"] = ctx.scorer.model_version
        cascade = served_cascade(ctx.settings, ctx.scorer)
        report["cascade_version"] = cascade.version if cascade is not None else None
        report["card_share"] = args.card_share
        report["images"] = len(ctx.images)
        report["mode"] = str(getattr(ctx.scorer.mode, "value", ctx.scorer.mode))
        report["input_size"] = ctx.scorer.input_size
        report["batch_size"] = ctx.settings.batch.max_size
        report["max_wait_ms"] = ctx.settings.batch.max_wait_ms
        report["cpu_count"] = os.cpu_count()
        report["fetch_latency_ms"] = args.fetch_latency_ms
        report["torch_threads"] = torch.get_num_threads()
        report["decode_ceiling_ips"] = round(decode_ceiling(ctx, max(256, args.naive_events)), 1)
        report["fetch_ceiling_ips"] = round(fetch_ceiling(ctx, max(512, args.naive_events)), 1)
        model_ips, batch_seconds = model_ceiling(ctx, batches=max(4, 256 // ctx.settings.batch.max_size))
        report["model_ceiling_ips"] = round(model_ips, 1)
        report["batch_score_ms"] = round(batch_seconds * 1000, 2)

        naive_topic = topics.create(1)
        produce_events(bootstrap, naive_topic, ctx, args.naive_events, tag="n")
        report["naive_ips"] = round(
            naive_loop(ctx, bootstrap, naive_topic, topics.create(1), args.naive_events), 1
        )

        measured = worker_run(ctx, bootstrap, args.events, topics)
        report["worker_ips"] = round(measured["worker_ips"], 1)
        report["worker_events"] = args.events
        report["worker_mean_batch"] = round(args.events / measured["batches"], 1)
        report["worker_run_cpu"] = measured["cpu"]
        report["worker_core_ms_per_event"] = round(measured["core_ms_per_event"], 2)
        report["worker_excluded_share"] = round(measured["excluded"] / args.events, 4)
        if cascade is not None:
            reads = measured["verifier_reads"] + measured["verifier_failures"]
            report["verifier_share"] = round(reads / args.events, 4)
            report["verifier_sends_by_route"] = measured["verifier_sends_by_route"]
            report["verifier_read_ms_per_event_by_route"] = measured["verifier_read_ms_per_event_by_route"]
            report["verifier_failures"] = measured["verifier_failures"]
            alone = worker_run(ctx, bootstrap, args.events, topics, verifier=False)
            report["model_only_ips"] = round(alone["worker_ips"], 1)
            report["model_only_excluded_share"] = round(alone["excluded"] / args.events, 4)
            runs = [(measured, alone)]
            for _ in range(max(1, args.cost_rounds) - 1):
                with_cascade = worker_run(ctx, bootstrap, args.events, topics)
                runs.append((with_cascade, worker_run(ctx, bootstrap, args.events, topics, verifier=False)))
            report.update(
                cost_rounds_summary(
                    [(pair[0]["core_ms_per_event"], pair[1]["core_ms_per_event"]) for pair in runs]
                )
            )
            report["verifier_added_core_ms_per_event_by_part"] = added_by_part(
                [
                    (pair[0]["core_ms_per_event_by_part"], pair[1]["core_ms_per_event_by_part"])
                    for pair in runs
                ]
            )
        ceiling = min(report["decode_ceiling_ips"], report["model_ceiling_ips"])
        report["worker_vs_fetch_ceiling"] = round(report["worker_ips"] / report["fetch_ceiling_ips"], 2)
        report["worker_vs_naive"] = round(report["worker_ips"] / report["naive_ips"], 1)
        report["worker_vs_ceiling"] = round(report["worker_ips"] / ceiling, 2)

        rate = report["worker_ips"] / 2
        report["latency_rate_ips"] = round(rate, 1)
        report.update(latency_run(ctx, bootstrap, rate, args.latency_events, topics).report())
        report["p99_target_ms"] = round(ctx.settings.batch.max_wait_ms + 2 * batch_seconds * 1000, 1)
        report["peak_rss_mb"] = round(peak_rss_mb(), 1)
        if args.rss_events:
            report["worker_rss_by_events"] = rss_runs(ctx, bootstrap, args.rss_events, topics)

    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        for key, value in report.items():
            print(f"{key:>22}: {value}")
    return 0
