"""A reference indexer: the set of excluded images, kept from the exclusion topic the way search should.

It shows the indexer's side of the contract (`docs/SEARCH-CONTRACT.md`) and the tests use it to check
what search would end up with:

- read with `isolation.level=read_committed` (the worker publishes in transactions; an aborted one must
  never reach search), from the beginning of every partition of the (compacted) topic;
- apply each event in partition order: `excluded: true` adds the image, `false` removes it; the topic is
  keyed by image id, so one image's events are ordered within its partition and the last one wins;
- a new indexer bootstraps by reading the compacted topic from the beginning to its end, then follows it.

It commits nothing and joins no group: every run rebuilds the set from the topic.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from schemas.events import ExclusionEvent


class ExcludedSet:
    """The images search must hide, from exclusion events applied in order."""

    def __init__(self) -> None:
        """Start empty."""
        self.excluded: set[str] = set()
        self.events = 0

    def apply(self, event: ExclusionEvent) -> bool:
        """Apply one event; returns whether the set changed."""
        self.events += 1
        before = event.image_id in self.excluded
        if event.excluded:
            self.excluded.add(event.image_id)
        else:
            self.excluded.discard(event.image_id)
        return before != event.excluded


class ReferenceIndexer:
    """Reads the exclusion topic from the beginning into an `ExcludedSet`."""

    def __init__(self, config: dict[str, Any], topic: str) -> None:
        """Connect with librdkafka `config` (bootstrap, security); assign every partition from the start."""
        self._consumer = Consumer(
            {
                **config,
                "group.id": f"alocc-reference-indexer-{uuid.uuid4().hex[:12]}",  # never used to commit
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "isolation.level": "read_committed",
            }
        )
        metadata = self._consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise KafkaException(metadata.error if metadata is not None else f"no topic {topic}")
        self._partitions = sorted(metadata.partitions)
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in self._partitions])
        self.state = ExcludedSet()
        self._at_end: set[int] = set()

    def catch_up(self, timeout_s: float = 60.0) -> ExcludedSet:
        """Read until every partition is at its end (the bootstrap); returns the set.

        Raises:
            TimeoutError: the end was not reached in time.
        """
        deadline = time.monotonic() + timeout_s
        while len(self._at_end) < len(self._partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the exclusion topic's end was not reached in {timeout_s} s")
            self.poll(0.2)
        return self.state

    def poll(self, timeout_s: float, on_change: Callable[[ExclusionEvent], None] | None = None) -> None:
        """Apply what arrives within `timeout_s`."""
        message = self._consumer.poll(timeout_s)
        if message is None:
            return
        error = message.error()
        partition = message.partition()
        assert partition is not None
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                self._at_end.add(partition)
                return
            raise KafkaException(error)
        self._at_end.discard(partition)
        event = ExclusionEvent.model_validate_json(message.value() or b"")
        if self.state.apply(event) and on_change is not None:
            on_change(event)

    def close(self) -> None:
        """Leave."""
        self._consumer.close()
