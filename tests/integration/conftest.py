"""Fixtures for tests against the real Kafka broker and Redis.

Every test in this folder is marked `integration` (see `tests/conftest.py`, which also provides the
session endpoints `kafka_bootstrap` and `redis_url`). Names are uuid-based so that tests, and test
sessions running side by side, never share a topic, a consumer group or a Redis key.

Kafka:
    `admin`            a session `AdminClient`, returned once the broker answers metadata requests.
    `new_topic`        `new_topic(partitions=1, *, config=None) -> name`; created, waited for, deleted after.
    `new_group_id`     `new_group_id() -> str`, a fresh consumer group id.
    `make_consumer`    `make_consumer(config=None, *, group_id=None) -> Consumer`; closed after the test.
    `make_producer`    `make_producer(config=None) -> Producer`; flushed after the test.
    `consume_all`      `consume_all(topic, *, read_committed=True, min_messages=0, timeout=15.0)
                       -> list[Record]`: every message of a topic, read without committing anything.

Redis:
    `redis_prefix`     a per-test key prefix; give it to the code under test as its key prefix.
    `redis_client`     a `redis.Redis` on `redis_url`; keys under `redis_prefix` are deleted after the test.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

KafkaConfig = dict[str, str | int | float | bool]
# How long a topic may take to be created and get a leader on a slow shared machine.
TOPIC_READY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Record:
    """One consumed Kafka message, detached from the consumer (readable in assertion output)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, str | bytes | None], ...]

    @classmethod
    def of(cls, message: Message) -> Record:
        """Copy a consumed (error-free) message."""
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        assert topic is not None and partition is not None and offset is not None
        headers = message.headers()
        return cls(
            topic=topic,
            partition=partition,
            offset=offset,
            key=message.key(),
            value=message.value(),
            headers=tuple(headers) if isinstance(headers, list) else (),
        )


@pytest.fixture(scope="session")
def kafka_config(kafka_bootstrap: str) -> KafkaConfig:
    """The connection properties every client of the test broker needs."""
    return {"bootstrap.servers": kafka_bootstrap}


@pytest.fixture(scope="session")
def admin(kafka_config: KafkaConfig) -> AdminClient:
    """An `AdminClient` for the test broker, returned once the broker answers metadata requests."""
    client = AdminClient(kafka_config)
    client.list_topics(timeout=30)
    return client


def _wait_for_topic(admin: AdminClient, name: str, partitions: int) -> None:
    """Block until the topic's metadata shows every partition with a leader."""
    deadline = time.monotonic() + TOPIC_READY_TIMEOUT_S
    while True:
        topic = admin.list_topics(topic=name, timeout=10).topics.get(name)
        if (
            topic is not None
            and topic.error is None
            and len(topic.partitions) == partitions
            and all(p.leader >= 0 for p in topic.partitions.values())
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {name} not ready after {TOPIC_READY_TIMEOUT_S}s")
        time.sleep(0.1)


@pytest.fixture
def new_topic(admin: AdminClient) -> Iterator[Callable[..., str]]:
    """Factory: `new_topic(partitions=1, *, config=None) -> name` creates a uuid-named topic.

    The topic is created through the AdminClient (replication factor 1) and returned only when all its
    partitions have a leader. `config` holds topic configs, e.g. `{"retention.ms": "60000"}`. The topics a
    test created are deleted after it.
    """
    created: list[str] = []

    def create(partitions: int = 1, *, config: Mapping[str, str] | None = None) -> str:
        name = f"test-{uuid.uuid4().hex[:16]}"
        spec = NewTopic(name, num_partitions=partitions, replication_factor=1, config=dict(config or {}))
        admin.create_topics([spec], operation_timeout=TOPIC_READY_TIMEOUT_S)[name].result(
            timeout=TOPIC_READY_TIMEOUT_S
        )
        created.append(name)
        _wait_for_topic(admin, name, partitions)
        return name

    yield create
    if created:
        for future in admin.delete_topics(created, operation_timeout=TOPIC_READY_TIMEOUT_S).values():
            # Deletion is housekeeping on a broker that is wiped on its next start; a failure here must
            # not turn a passing test red.
            with contextlib.suppress(KafkaException):
                future.result(timeout=TOPIC_READY_TIMEOUT_S)


@pytest.fixture
def new_group_id() -> Callable[[], str]:
    """Factory: `new_group_id() -> str` returns a fresh, uuid-named consumer group id."""

    def make() -> str:
        return f"test-group-{uuid.uuid4().hex[:16]}"

    return make


@pytest.fixture
def make_consumer(
    kafka_config: KafkaConfig, new_group_id: Callable[[], str]
) -> Iterator[Callable[..., Consumer]]:
    """Factory: `make_consumer(config=None, *, group_id=None) -> Consumer`.

    Defaults: the test broker, a fresh group (unless `group_id` is given), `auto.offset.reset=earliest`
    and `enable.auto.commit=false`; `config` overrides or extends them. Consumers still open after the
    test are closed (leaving their group).
    """
    consumers: list[Consumer] = []

    def make(config: Mapping[str, Any] | None = None, *, group_id: str | None = None) -> Consumer:
        settings: KafkaConfig = {
            **kafka_config,
            "group.id": group_id or new_group_id(),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **(config or {}),
        }
        consumer = Consumer(settings)
        consumers.append(consumer)
        return consumer

    yield make
    for consumer in consumers:
        consumer.close()  # a no-op for a consumer the test closed itself


@pytest.fixture
def make_producer(kafka_config: KafkaConfig) -> Iterator[Callable[..., Producer]]:
    """Factory: `make_producer(config=None) -> Producer` on the test broker; flushed after the test."""
    producers: list[Producer] = []

    def make(config: Mapping[str, Any] | None = None) -> Producer:
        producer = Producer({**kafka_config, **(config or {})})
        producers.append(producer)
        return producer

    yield make
    for producer in producers:
        producer.flush(10)


@pytest.fixture
def consume_all(kafka_config: KafkaConfig) -> Callable[..., list[Record]]:
    """Factory: read every message of a topic, from the beginning of each partition to its end.

    `consume_all(topic, *, read_committed=True, min_messages=0, timeout=15.0) -> list[Record]`

    It assigns all partitions (no group membership, nothing committed) and stops once every partition has
    reached its end and at least `min_messages` were read, or after `timeout` seconds, returning what it
    has. With `read_committed` (the default) aborted transactions are invisible and reading stops at the
    last stable offset; `read_committed=False` also returns messages of aborted or open transactions.
    Records come back sorted by (partition, offset).
    """

    def consume(
        topic: str, *, read_committed: bool = True, min_messages: int = 0, timeout: float = 15.0
    ) -> list[Record]:
        consumer = Consumer(
            {
                **kafka_config,
                "group.id": f"test-reader-{uuid.uuid4().hex[:16]}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "isolation.level": "read_committed" if read_committed else "read_uncommitted",
            }
        )
        try:
            metadata = consumer.list_topics(topic=topic, timeout=10).topics[topic]
            if metadata.error is not None:
                raise KafkaException(metadata.error)
            partitions = sorted(metadata.partitions)
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
            records: list[Record] = []
            at_end: set[int] = set()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if len(at_end) == len(partitions) and len(records) >= min_messages:
                    break
                message = consumer.poll(0.2)
                if message is None:
                    continue
                error = message.error()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(error)
                partition = message.partition()
                assert partition is not None
                if error is not None:
                    at_end.add(partition)
                    continue
                # A partition that was at its end has new data: wait for its next end-of-partition event.
                at_end.discard(partition)
                records.append(Record.of(message))
            return sorted(records, key=lambda r: (r.partition, r.offset))
        finally:
            consumer.close()

    return consume


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix unique to this test (`test:<uuid>:`); all its Redis keys should start with it."""
    return f"test:{uuid.uuid4().hex}:"


@pytest.fixture
def redis_client(redis_url: str, redis_prefix: str) -> Iterator[redis.Redis]:
    """A `redis.Redis` (bytes responses) on the test Redis.

    The database is shared, so isolation is by key prefix: the keys under `redis_prefix` are deleted
    after the test; never flush the database.
    """
    client = redis.Redis.from_url(redis_url, socket_timeout=10)
    client.ping()
    yield client
    keys = list(client.scan_iter(match=f"{redis_prefix}*", count=500))
    if keys:
        client.delete(*keys)
    client.close()
