"""Micro-batching: collect ready items until the batch is full or its oldest item has waited long enough."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class MicroBatcher(Generic[T]):
    """A FIFO of items that yields batches of at most `max_size`, at most `max_wait_s` after the first item.

    Not thread-safe: the worker's main loop is the only user.
    """

    def __init__(self, max_size: int, max_wait_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        """Create an empty batcher.

        Args:
            max_size: Most items in one batch.
            max_wait_s: Longest the oldest waiting item may wait before a partial batch is released.
            clock: Monotonic clock (injectable for tests).
        """
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._max_size = max_size
        self._max_wait_s = max_wait_s
        self._clock = clock
        self._items: deque[tuple[float, T]] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: T) -> None:
        """Queue one item, stamped with the current time."""
        self._items.append((self._clock(), item))

    def ready(self) -> bool:
        """True when a full batch is waiting or the oldest item has waited `max_wait_s`."""
        if not self._items:
            return False
        if len(self._items) >= self._max_size:
            return True
        return self._clock() - self._items[0][0] >= self._max_wait_s

    def time_until_ready(self) -> float | None:
        """Seconds until `ready()` turns true by waiting alone (0 if ready now), None if empty."""
        if not self._items:
            return None
        if len(self._items) >= self._max_size:
            return 0.0
        return max(0.0, self._max_wait_s - (self._clock() - self._items[0][0]))

    def take(self) -> list[T]:
        """Remove and return the oldest items, at most `max_size`."""
        count = min(self._max_size, len(self._items))
        return [self._items.popleft()[1] for _ in range(count)]

    def discard(self, predicate: Callable[[T], bool]) -> list[T]:
        """Remove and return every item for which `predicate` is true (for example revoked partitions)."""
        kept: deque[tuple[float, T]] = deque()
        dropped: list[T] = []
        for stamped in self._items:
            (dropped.append(stamped[1]) if predicate(stamped[1]) else kept.append(stamped))
        self._items = kept
        return dropped
