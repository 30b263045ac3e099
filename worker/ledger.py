"""Per-partition bookkeeping of consumed messages, so offsets are committed only past finished work.

Messages finish out of order (a fast download overtakes a slow one), but a Kafka offset commit means
"everything before this offset is done". The ledger keeps each partition's messages in offset order and
hands out only the finished prefix: the commit offset is the first unfinished message's offset.
Outputs of finished messages that wait behind an unfinished one stay here until the prefix reaches
them, so their events are produced in the same transaction as the offset that covers them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar


class Entry(Protocol):
    """What the ledger needs from a tracked message."""

    @property
    def offset(self) -> int:
        """The message's offset in its partition."""
        ...

    @property
    def finished(self) -> bool:
        """True once the message's side effects (Redis write or failure verdict) are done."""
        ...


E = TypeVar("E", bound=Entry)
TopicPartitionKey = tuple[str, int]


@dataclass
class _Partition(Generic[E]):
    entries: deque[E] = field(default_factory=deque)


class OffsetLedger(Generic[E]):
    """Tracks in-flight messages per partition in offset order."""

    def __init__(self) -> None:
        self._partitions: dict[TopicPartitionKey, _Partition[E]] = {}

    def __len__(self) -> int:
        """Number of tracked (uncommitted) messages."""
        return sum(len(p.entries) for p in self._partitions.values())

    def track(self, key: TopicPartitionKey, entry: E) -> None:
        """Add a message; offsets within a partition must increase."""
        partition = self._partitions.setdefault(key, _Partition())
        if partition.entries and entry.offset <= partition.entries[-1].offset:
            raise ValueError(f"offset {entry.offset} of {key} is not after {partition.entries[-1].offset}")
        partition.entries.append(entry)

    def finished_prefix(self) -> dict[TopicPartitionKey, list[E]]:
        """For each partition, its leading run of finished messages (not removed)."""
        prefixes: dict[TopicPartitionKey, list[E]] = {}
        for key, partition in self._partitions.items():
            run: list[E] = []
            for entry in partition.entries:
                if not entry.finished:
                    break
                run.append(entry)
            if run:
                prefixes[key] = run
        return prefixes

    def release(self, prefixes: dict[TopicPartitionKey, list[E]]) -> None:
        """Forget messages whose offsets were committed (the lists `finished_prefix` returned)."""
        for key, run in prefixes.items():
            partition = self._partitions.get(key)
            if partition is None:
                continue  # revoked meanwhile
            for entry in run:
                if partition.entries and partition.entries[0] is entry:
                    partition.entries.popleft()

    def drop(self, keys: set[TopicPartitionKey]) -> dict[TopicPartitionKey, list[E]]:
        """Forget every message of these partitions; returns what was dropped (uncommitted)."""
        dropped: dict[TopicPartitionKey, list[E]] = {}
        for key in keys:
            partition = self._partitions.pop(key, None)
            if partition is not None and partition.entries:
                dropped[key] = list(partition.entries)
        return dropped

    def partitions(self) -> set[TopicPartitionKey]:
        """Partitions with tracked messages."""
        return {key for key, p in self._partitions.items() if p.entries}

    def first_offsets(self) -> dict[TopicPartitionKey, int]:
        """Each partition's first uncommitted tracked offset (where to rewind to after an abort)."""
        return {key: p.entries[0].offset for key, p in self._partitions.items() if p.entries}


def commit_offsets(prefixes: dict[TopicPartitionKey, list[E]]) -> dict[TopicPartitionKey, int]:
    """The Kafka commit offset (last finished offset + 1) for each partition's finished prefix."""
    return {key: run[-1].offset + 1 for key, run in prefixes.items() if run}
