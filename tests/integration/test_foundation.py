"""The guarantees the worker builds on, proven against the real broker and the real Redis.

* A consumer group with the cooperative-sticky strategy splits a topic's partitions between its
  members, and together they read every message exactly once.
* Committed offsets survive a consumer restart: the next member of the group resumes after them.
* A transactional producer commits its output together with the consumer's offsets; an aborted
  transaction's output is invisible to `read_committed` readers and leaves the offsets where they were.
* Redis takes a pipelined batch of writes and gives it back.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

if TYPE_CHECKING:
    from tests.integration.conftest import Record

POLL_S = 0.1
# A rebalance on a loaded 2-core machine takes seconds; this bounds a hung test, not a normal one.
DEADLINE_S = 60.0


def _produce(producer: Producer, topic: str, values: list[bytes], *, partitions: int = 1) -> None:
    """Write `values` round-robin over `partitions` and wait until the broker has acknowledged all."""
    errors: list[str] = []

    def on_delivery(error: object, _message: Message) -> None:
        if error is not None:
            errors.append(str(error))

    for index, value in enumerate(values):
        producer.produce(topic, value=value, partition=index % partitions, on_delivery=on_delivery)
    assert producer.flush(30) == 0, "messages still in flight after 30 s"
    assert errors == []


def _poll_message(consumer: Consumer) -> Message | None:
    """One poll; a broker error fails the test instead of hiding in a skipped message."""
    message = consumer.poll(POLL_S)
    if message is None:
        return None
    if message.error() is not None:
        raise KafkaException(message.error())
    return message


def _consume(consumer: Consumer, count: int) -> list[Message]:
    """Poll until `count` messages arrived (or fail at the deadline)."""
    messages: list[Message] = []
    deadline = time.monotonic() + DEADLINE_S
    while len(messages) < count:
        assert time.monotonic() < deadline, f"got {len(messages)} of {count} messages"
        message = _poll_message(consumer)
        if message is not None:
            messages.append(message)
    return messages


def _value(message: Message) -> bytes:
    value = message.value()
    assert value is not None
    return value


def _position(message: Message) -> tuple[int, int]:
    """(partition, offset) of a consumed message."""
    partition, offset = message.partition(), message.offset()
    assert partition is not None and offset is not None
    return partition, offset


def _assigned(consumer: Consumer) -> set[int]:
    return {tp.partition for tp in consumer.assignment()}


def test_cooperative_sticky_group_splits_partitions_and_reads_each_message_once(
    new_topic: Callable[..., str],
    new_group_id: Callable[[], str],
    make_consumer: Callable[..., Consumer],
    make_producer: Callable[..., Producer],
) -> None:
    topic = new_topic(partitions=4)
    group = new_group_id()
    # Frequent heartbeats: members learn of a rebalance through them, and this one takes two rounds.
    config = {"partition.assignment.strategy": "cooperative-sticky", "heartbeat.interval.ms": 500}
    first = make_consumer(config, group_id=group)
    second = make_consumer(config, group_id=group)
    first.subscribe([topic])
    second.subscribe([topic])

    # Both members must poll for the incremental rebalance to finish: the first one gets all four
    # partitions, then gives two up to the second without stopping work on the other two.
    early: list[Message] = []
    deadline = time.monotonic() + DEADLINE_S
    while not (len(_assigned(first)) == 2 and len(_assigned(second)) == 2):
        assert time.monotonic() < deadline, f"assignment {_assigned(first)} / {_assigned(second)}"
        for consumer in (first, second):
            message = _poll_message(consumer)
            if message is not None:
                early.append(message)
    assert early == []  # nothing was produced yet
    assert _assigned(first).isdisjoint(_assigned(second))
    assert _assigned(first) | _assigned(second) == {0, 1, 2, 3}

    values = [f"message-{i}".encode() for i in range(200)]
    _produce(make_producer(), topic, values, partitions=4)

    received: dict[int, list[Message]] = {0: [], 1: []}
    deadline = time.monotonic() + DEADLINE_S
    while sum(len(got) for got in received.values()) < len(values):
        assert time.monotonic() < deadline, f"read {sum(map(len, received.values()))} of {len(values)}"
        for index, consumer in enumerate((first, second)):
            message = _poll_message(consumer)
            if message is not None:
                received[index].append(message)
    # A short extra poll: a duplicate delivery would show up here.
    for index, consumer in enumerate((first, second)):
        extra = consumer.poll(1.0)
        assert extra is None or extra.error() is not None, f"unexpected extra message on consumer {index}"

    for index, consumer in enumerate((first, second)):
        assert received[index], f"consumer {index} read nothing"
        assert {m.partition() for m in received[index]} <= _assigned(consumer)
    everything = received[0] + received[1]
    positions = [_position(m) for m in everything]
    assert len(set(positions)) == len(positions) == len(values)
    assert sorted(map(_value, everything)) == sorted(values)


def test_committed_offsets_survive_a_consumer_restart(
    new_topic: Callable[..., str],
    new_group_id: Callable[[], str],
    make_consumer: Callable[..., Consumer],
    make_producer: Callable[..., Producer],
) -> None:
    topic = new_topic(partitions=2)
    group = new_group_id()
    values = [f"event-{i}".encode() for i in range(20)]
    _produce(make_producer(), topic, values, partitions=2)

    before = make_consumer(group_id=group)
    before.subscribe([topic])
    first_part = _consume(before, 12)
    # Synchronous commit of the positions after the consumed messages, then leave the group.
    committed = before.commit(asynchronous=False)
    assert committed is not None
    before.close()
    expected = {tp.partition: tp.offset for tp in committed}
    for partition, offset in map(_position, first_part):
        assert offset < expected[partition]

    after = make_consumer(group_id=group)
    stored = after.committed([TopicPartition(topic, p) for p in (0, 1)], timeout=10)
    assert {tp.partition: tp.offset for tp in stored} == expected
    after.subscribe([topic])
    second_part = _consume(after, len(values) - len(first_part))
    assert after.poll(1.0) is None  # nothing left: the restart re-read nothing

    first_positions = set(map(_position, first_part))
    second_positions = set(map(_position, second_part))
    assert first_positions.isdisjoint(second_positions)
    assert sorted(map(_value, first_part + second_part)) == sorted(values)


def _transform(value: bytes) -> bytes:
    return b"processed:" + value


def _process_in_transaction(
    consumer: Consumer, producer: Producer, output: str, count: int, *, commit: bool
) -> list[bytes]:
    """Consume `count` messages and, in one transaction, produce their results and the group's offsets.

    Commits the transaction when `commit` is true, aborts it otherwise; returns the produced values.
    """
    messages = _consume(consumer, count)
    producer.begin_transaction()
    produced = [_transform(_value(m)) for m in messages]
    for value in produced:
        producer.produce(output, value=value)
    producer.send_offsets_to_transaction(
        consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30
    )
    if commit:
        producer.commit_transaction(30)
    else:
        # Deliver first: abort_transaction purges records still queued in the client, and this test
        # needs the aborted records in the log (seen by read_uncommitted, hidden from read_committed).
        producer.flush(30)
        producer.abort_transaction(30)
    return produced


def _committed_offset(make_consumer: Callable[..., Consumer], group: str, topic: str) -> int:
    probe = make_consumer(group_id=group)
    (stored,) = probe.committed([TopicPartition(topic, 0)], timeout=10)
    probe.close()
    return int(stored.offset)


def test_transaction_commits_output_with_offsets_and_hides_aborted_output(
    new_topic: Callable[..., str],
    new_group_id: Callable[[], str],
    make_consumer: Callable[..., Consumer],
    make_producer: Callable[..., Producer],
    consume_all: Callable[..., list[Record]],
) -> None:
    source, output = new_topic(), new_topic()
    group = new_group_id()
    inputs = [f"upload-{i}".encode() for i in range(10)]
    _produce(make_producer(), source, inputs)

    consumer = make_consumer({"isolation.level": "read_committed"}, group_id=group)
    consumer.subscribe([source])
    producer = make_producer({"transactional.id": f"test-tx-{uuid.uuid4().hex[:16]}"})
    producer.init_transactions(30)

    committed_output = _process_in_transaction(consumer, producer, output, 5, commit=True)
    assert _committed_offset(make_consumer, group, source) == 5

    aborted_output = _process_in_transaction(consumer, producer, output, 5, commit=False)
    consumer.close()

    # read_committed sees exactly the committed transaction; the aborted records exist in the log
    # (a read_uncommitted reader sees them) but are invisible.
    visible = consume_all(output, read_committed=True)
    assert [r.value for r in visible] == committed_output
    everything = consume_all(output, read_committed=False, min_messages=10)
    assert [r.value for r in everything] == committed_output + aborted_output

    # The aborted transaction's offsets were discarded with it: a restarted member of the group resumes
    # at the first unprocessed input and so processes the aborted batch again.
    assert _committed_offset(make_consumer, group, source) == 5
    restarted = make_consumer({"isolation.level": "read_committed"}, group_id=group)
    restarted.subscribe([source])
    assert list(map(_value, _consume(restarted, 5))) == inputs[5:]


def test_redis_pipelined_write_and_read_back(redis_client: redis.Redis, redis_prefix: str) -> None:
    scores = {f"{redis_prefix}score:{i}": f"{i / 100:.2f}" for i in range(100)}

    writes = redis_client.pipeline(transaction=False)
    for key, value in scores.items():
        writes.set(key, value, ex=600)
    assert writes.execute() == [True] * len(scores)

    reads = redis_client.pipeline(transaction=False)
    for key in scores:
        reads.get(key)
        reads.ttl(key)
    replies = reads.execute()
    values, ttls = replies[0::2], replies[1::2]
    assert [v.decode() for v in values] == list(scores.values())
    assert all(0 < ttl <= 600 for ttl in ttls)
