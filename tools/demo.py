"""`alocc demo`: the whole product on one machine, in about a minute.

Expects the local Kafka and Redis to run and be named in the environment
(`eval "$(deploy/local/services up)"`, which `make demo` does). Then it:

1. writes sample pictures (announcement cards and photographs the model never saw) and the bad payloads
   into a temporary folder and serves them over HTTP on 127.0.0.1;
2. creates this run's topics and produces one event per picture, plus a few bad events (broken JSON,
   a schema error, a missing file, bytes that are not an image, a truncated JPEG, a decompression bomb,
   a cloud-metadata address and an ftp:// URL);
3. runs the real worker (private networks allowed, for the local server) until it is idle;
4. prints a summary, a few Redis records as search reads them, and a few exclusion events.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from schemas.events import DeadLetterHeaders, ExclusionEvent
from search_client import ScoreReader
from tools.sample_images import ImageServer, SampleSet, make_event, write_samples
from worker.factory import build_worker, load_scorer, redis_client, served_cascade
from worker.logs import configure_logging
from worker.settings import Settings

_event = functools.partial(make_event, shop_id="demo-shop")


def demo_events(samples: SampleSet, server: ImageServer, run_id: str) -> list[tuple[str, bytes]]:
    """(key, value) of every event the demo produces: one per sample picture, then the bad ones."""
    events = []
    for name in samples.cards + samples.photos:
        key = f"{run_id}-{Path(name).stem}"
        events.append((key, _event(key, server.url(name))))
    bad = {
        "broken-json": b'{"schema_version": 1, "image_id": ',
        "schema-error": json.dumps({"schema_version": 1, "image_id": "x", "image_url": 42}).encode(),
        "missing-file": _event(f"{run_id}-missing", server.url("no-such-file.jpg")),
        "not-an-image": _event(f"{run_id}-not-an-image", server.url(samples.not_image)),
        "truncated-jpeg": _event(f"{run_id}-truncated", server.url(samples.truncated)),
        "decompression-bomb": _event(f"{run_id}-bomb", server.url(samples.bomb)),
        "metadata-address": _event(f"{run_id}-metadata", "http://169.254.169.254/latest/meta-data/iam/"),
        "ftp-url": _event(f"{run_id}-ftp", "ftp://files.example.com/picture.jpg"),
    }
    # Interleave the bad ones so they land between good events, as they would in real traffic.
    step = max(1, len(events) // (len(bad) + 1))
    for position, (key, value) in enumerate(bad.items(), start=1):
        events.insert(min(len(events), position * step + position - 1), (f"{run_id}-{key}", value))
    return events


def _create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    specs = [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names]
    for future in admin.create_topics(specs).values():
        future.result(30)


def _read_topic(bootstrap: str, topic: str, timeout: float = 10.0) -> list[Any]:
    """Every committed message of a topic (read_committed, no group offsets)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"demo-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions])
        messages: list[Any] = []
        at_end: set[int | None] = set()
        deadline = time.monotonic() + timeout
        while len(at_end) < len(metadata.partitions) and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())
                continue
            messages.append(message)
        return messages
    finally:
        consumer.close()


def main(args: argparse.Namespace) -> int:
    """Run the demo; returns the exit code."""
    configure_logging("WARNING", "console")
    base = Settings()
    from model.errors import DefaultModelMissing

    try:
        scorer = load_scorer(base)
    except DefaultModelMissing as exc:
        print(f"demo: {exc}\n(set ALOCC_MODEL__PATH to a checkpoint directory to use another model)")
        return 2
    run_id = f"demo-{dt.datetime.now(dt.UTC):%H%M%S}-{uuid.uuid4().hex[:4]}"
    bootstrap = base.kafka.bootstrap_servers
    topics = {
        "input": f"{run_id}.images.uploaded",
        "exclusions": f"{run_id}.images.exclusions",
        "dead_letter": f"{run_id}.images.uploaded.dlq",
    }
    settings = base.model_copy(
        update={
            "kafka": base.kafka.model_copy(
                update={"group_id": f"alocc-{run_id}", "transactional_id": f"alocc-{run_id}"}
            ),
            "topics": base.topics.model_copy(update=topics),
            "fetch": base.fetch.model_copy(update={"allow_private_networks": True}),
            "observability": base.observability.model_copy(update={"port": 0}),
            # The demo deploys the default model as the serving one: with `if_missing`, a pointer left at
            # another version (an earlier default, a promotion) would make it a shadow that publishes nothing.
            "redis": base.redis.model_copy(update={"active_version_policy": "always"}),
        }
    )
    print(f"model       {scorer.model_version} (mode {scorer.mode}, threshold {scorer.threshold():.4f})")
    cascade = served_cascade(settings, scorer)
    version = cascade.version if cascade is not None else scorer.model_version
    if cascade is not None:
        parts_from = cascade.policy.parts_send_from
        corners = "" if parts_from is None else f" or a corner's score {parts_from:.4f}"
        card_from = cascade.policy.card_from
        band = "" if card_from is None else f"; the model alone makes cards from {card_from:.4f}"
        sheets = cascade.policy.sheets
        band += "" if sheets is None else f", and from a sheet's score {sheets.card_from:.5f}"
        if sheets is not None and sheets.read_from is not None:
            again = sheets.second_read
            twice = "" if again is None else f", or {again.min_characters} read again by {again.engine}"
            band += (
                f" (sheets from {sheets.read_from:.5f} read: a card from {sheets.read_characters} characters"
                f"{twice})"
            )
        layout = cascade.policy.layout_band
        if layout is not None:
            band += (
                f"; the score route's cards on their layout, unread, from {layout.cards_from:.5f} "
                f"(grounds from {layout.min_emptiness:.3f} empty)"
            )
        if cascade.policy.gate_shape_rule is not None:
            band += "; a plain line of glyphs read as nothing weighed on its shape"
        if cascade.policy.min_confident:
            band += f"; a reading counts from {cascade.policy.min_confident} confident character(s)"
        second = cascade.policy.second_read
        if second is not None:
            ground = "" if second.max_ground is None else f", grounds up to {second.max_ground:.3f} flat"
            sure = "" if second.min_confident is None else f", or {second.min_confident} read confidently"
            band += f"; pages left products read again ({second.engine}{ground}): "
            band += f"cards from {second.min_characters}{sure}"
        print(
            f"cascade     {cascade.version} ({cascade.engine_version} reads from model score "
            f"{cascade.policy.send_from:.4f}{corners}, threshold {cascade.policy.threshold:.4f}{band})"
        )
    print(f"topics      {topics['input']} -> {topics['exclusions']}, {topics['dead_letter']}")
    with tempfile.TemporaryDirectory(prefix="alocc-demo-") as folder:
        cards = args.good // 2
        samples = write_samples(Path(folder), cards=cards, photos=args.good - cards, seed=7)
        with ImageServer(Path(folder)) as server:
            events = demo_events(samples, server, run_id)
            _create_topics(bootstrap, list(topics.values()), partitions=3)
            producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
            for key, value in events:
                producer.produce(topics["input"], key=key.encode(), value=value)
            producer.flush(30)
            good = len(samples.cards) + len(samples.photos)
            print(f"produced    {len(events)} events ({good} pictures, {len(events) - good} bad)")
            print(f"images      served from {server.base_url}")
            print("running     the worker until it has been idle for", args.idle, "s ...\n")
            worker = build_worker(settings, scorer=scorer, serve_health=False)
            stats = worker.run(idle_timeout=args.idle)

    dead = [
        DeadLetterHeaders.from_kafka_headers(m.headers())
        for m in _read_topic(bootstrap, topics["dead_letter"])
    ]
    exclusions = [
        ExclusionEvent.model_validate_json(m.value()) for m in _read_topic(bootstrap, topics["exclusions"])
    ]
    throughput = stats.committed / stats.active_seconds if stats.active_seconds else 0.0
    print("\nsummary")
    print(f"  events         {stats.consumed}")
    print(f"  scored         {stats.scored + stats.excluded}")
    print(f"  excluded       {stats.excluded}  (announcement cards kept out of search)")
    print(
        f"  dead-lettered  {stats.dead_lettered}  "
        + ", ".join(f"{r} x{n}" for r, n in sorted(Counter(d.error_type for d in dead).items()))
    )
    print(f"  exclusion events published  {len(exclusions)}")
    seconds = stats.active_seconds
    print(f"  throughput     {throughput:.1f} events/s over {seconds:.2f} s ({stats.batches} batches)")
    if cascade is not None:
        print(f"  verifier read  {stats.verifier_reads} images ({stats.verifier_failures} failed reads)")

    card_ids = [f"{run_id}-{Path(n).stem}" for n in samples.cards]
    photo_ids = [f"{run_id}-{Path(n).stem}" for n in samples.photos]
    reader = ScoreReader(redis_client(settings), prefix=settings.redis.key_prefix)
    results = reader.get_many(card_ids + photo_ids, model_version=version)
    cards_excluded = sum(1 for r in results[: len(card_ids)] if r.get("excluded"))
    photos_excluded = sum(1 for r in results[len(card_ids) :] if r.get("excluded"))
    print(f"  cards excluded {cards_excluded}/{len(card_ids)}")
    print(f"  photos excluded {photos_excluded}/{len(photo_ids)}")

    print("\nRedis records (as `alocc scores get` prints them)")
    for result in results[:2] + results[len(card_ids) : len(card_ids) + 2]:
        print(
            "  "
            + json.dumps(
                {
                    k: result[k]
                    for k in ("image_id", "excluded", "score", "model_score", "decided_by", "verifier")
                }
            )
        )
    print(json.dumps(reader.get_many([f"{run_id}-unknown"])[0]).join(("  ", "")))
    print("\nexclusion events (read_committed)")
    for exclusion in exclusions[:3]:
        print(
            "  "
            + exclusion.model_dump_json(
                include={"image_id", "excluded", "score", "model_score", "decided_by", "model_version"}
            )
        )
    print("\ndead letters")
    for header in dead[:8]:
        where = f"{header.original_partition}/{header.original_offset}"
        print(f"  partition/offset {where:<6} {header.error_type:<22} {header.error_message[:70]}")
    return 0
