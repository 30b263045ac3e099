"""`alocc replay-bench`: how fast `alocc replay` rescores, and what its records cost in Redis.

Produces N upload events (a realistic mix: `--card-share` cards, the rest photographs and products) to a
fresh topic with P partitions, serves the images from a separate process over local HTTP, then for each
`--runs` configuration `P:K` (partitions in use: the topic's; K replay processes in one group) starts K
`alocc replay` processes of the configured model at once and times them from start to the last exit
(process start-up, torch and the model included). Each configuration replays into its own key prefix.

Redis memory: `MEMORY USAGE` of a sample of the replayed records (and of a published-state key, which the
active version's workers add per image), scaled to a million images.

Topics, keys and the image server are removed afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from confluent_kafka import Producer

from tools.bench import ExternalImageServer, Topics
from tools.sample_images import make_event, write_samples
from worker.factory import redis_client
from worker.settings import Settings

_SAMPLE = 2000  # records sampled for MEMORY USAGE


def produce(bootstrap: str, topic: str, urls: list[str], count: int) -> None:
    """`count` upload events cycling over `urls`, as fast as the producer goes."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "enable.idempotence": True})
    for index in range(count):
        image_id = f"rb-{index}"
        value = make_event(image_id, urls[index % len(urls)])
        while True:
            try:
                producer.produce(topic, key=image_id.encode(), value=value)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(120)


def replay_once(base_env: dict[str, str], topic: str, processes: int, prefix: str) -> dict[str, Any]:
    """Run `processes` replays of `topic` in one new group at once; returns their combined figures."""
    group = f"replay-bench-{uuid.uuid4().hex[:10]}"
    env = {**base_env, "ALOCC_TOPICS__INPUT": topic, "ALOCC_REDIS__KEY_PREFIX": prefix}
    command = [sys.executable, "-m", "alocc.cli", "replay", "--group", group, "--json"]
    started = time.monotonic()
    running = [
        subprocess.Popen(
            command,
            env={**env, "ALOCC_WORKER_ID": f"rb-{index}"},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for index in range(processes)
    ]
    summaries = []
    for process in running:
        out, _ = process.communicate(timeout=7200)
        if process.returncode != 0:
            raise RuntimeError(f"a replay exited {process.returncode}")
        summaries.append(json.loads(out.strip().splitlines()[-1]))
    seconds = time.monotonic() - started
    total = summaries[0]["range_events"]
    return {
        "processes": processes,
        "events": total,
        "seconds": round(seconds, 1),
        "events_per_s": round(total / seconds, 1),
        "per_process_scored": [s["scored"] + s["dead_lettered"] for s in summaries],
        "model_version": summaries[0]["model_version"],
    }


def redis_memory(client: redis.Redis, prefix: str) -> dict[str, Any]:
    """Mean `MEMORY USAGE` of sampled records under `prefix`, and per million images."""
    keys = []
    for key in client.scan_iter(match=f"{prefix}:score:*", count=1000):
        keys.append(key)
        if len(keys) >= _SAMPLE:
            break
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    sizes = [size for size in pipe.execute() if size]
    published = f"{prefix}:published:sample"
    client.set(published, "1", ex=60)
    published_bytes = int(client.memory_usage(published) or 0)
    record_bytes = sum(sizes) / max(1, len(sizes))
    return {
        "sampled_records": len(sizes),
        "record_bytes": round(record_bytes, 1),
        "published_state_bytes": published_bytes,
        "mib_per_million_images_one_version": round(record_bytes * 1e6 / 2**20, 1),
        "mib_per_million_images_active_version": round((record_bytes + published_bytes) * 1e6 / 2**20, 1),
    }


def main(events: int, runs: list[tuple[int, int]], card_share: float, images: int) -> int:
    """Run the benchmark and print one JSON object."""
    settings = Settings()
    bootstrap = settings.kafka.bootstrap_servers
    client = redis_client(settings)
    topics = Topics(bootstrap)
    report: dict[str, Any] = {"events": events, "card_share": card_share, "cpu_count": os.cpu_count()}
    prefixes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="alocc-replay-bench-") as folder:
        cards = max(1, round(images * card_share))
        samples = write_samples(Path(folder), cards=cards, photos=images - cards)
        server = ExternalImageServer(Path(folder), 0.0)
        try:
            by_partitions: dict[int, str] = {}
            for count in sorted({p for p, _ in runs}):
                by_partitions[count] = topics.create(count)
                started = time.monotonic()
                urls = [server.url(name) for name in samples.cards + samples.photos]
                produce(bootstrap, by_partitions[count], urls, events)
                report.setdefault("produce_seconds", {})[count] = round(time.monotonic() - started, 1)
            scratch = topics.create(1)
            base_env = {
                **os.environ,
                "ALOCC_TOPICS__EXCLUSIONS": scratch,
                "ALOCC_TOPICS__DEAD_LETTER": scratch,
                "ALOCC_FETCH__ALLOW_PRIVATE_NETWORKS": "true",
                "ALOCC_OBSERVABILITY__PORT": "0",
                "ALOCC_OBSERVABILITY__LOG_LEVEL": "WARNING",
            }
            report["runs"] = []
            for count, processes in runs:
                prefix = f"alocc-replay-bench-{uuid.uuid4().hex[:8]}"
                prefixes.append(prefix)
                result = replay_once(base_env, by_partitions[count], processes, prefix)
                report["runs"].append({"partitions": count, **result})
                print(json.dumps(report["runs"][-1]), file=sys.stderr, flush=True)
            report["redis"] = redis_memory(client, prefixes[0])
        finally:
            server.stop()
            topics.close()
            for prefix in prefixes:
                batch = list(client.scan_iter(match=f"{prefix}:*", count=5000))
                for start in range(0, len(batch), 5000):
                    client.delete(*batch[start : start + 5000])
    print(json.dumps(report, sort_keys=True))
    return 0
