"""The commit pipeline: one commit step (outputs + offsets) at a time, on its own thread if the sink allows.

A step is what `Worker` decided to commit: the Kafka records of the finished messages and the offsets past
them. The committer runs it through the sink, either at once on the calling thread or, with a sink that
commits in the background (the transactional one), on a single commit thread while the worker loop goes on
polling, scoring and writing Redis. A transaction commit takes 10-100 ms and, run inline, stalled every
image behind it.

One step is in flight at most. `settle` waits for it and reports how it ended; the worker releases or
rewinds its messages accordingly, on its own thread, so the ledger is never touched from here.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import time
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from confluent_kafka import TopicPartition

from worker.sink import OutputSink
from worker.stages.output import OutputRecord

Payload = TypeVar("Payload")


@dataclass(frozen=True)
class CommittedStep(Generic[Payload]):
    """A step that went through: the caller's payload and the sink's seconds."""

    payload: Payload
    seconds: float


class _GroupMetadata:
    """The consumer as a background commit sees it: only its group metadata, read beforehand."""

    def __init__(self, metadata: Any) -> None:
        self._metadata = metadata

    def consumer_group_metadata(self) -> Any:
        """The group metadata read on the worker's thread when the step started."""
        return self._metadata


def _timed_commit(
    sink: OutputSink, records: list[OutputRecord], offsets: list[TopicPartition], consumer: Any
) -> float:
    started = time.perf_counter()
    sink.commit(records, offsets, consumer)
    return time.perf_counter() - started


class Committer(Generic[Payload]):
    """Runs commit steps through an `OutputSink`, one at a time."""

    def __init__(self, sink: OutputSink) -> None:
        """Use a background thread when the sink says it commits safely off the consumer's thread."""
        self._sink = sink
        self._executor = (
            concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="alocc-commit")
            if getattr(sink, "commits_in_background", False)
            else None
        )
        self._future: concurrent.futures.Future[float] | None = None
        self._payload: Payload | None = None

    @property
    def in_flight(self) -> bool:
        """A step was started and not settled yet."""
        return self._future is not None

    @property
    def done(self) -> bool:
        """The step in flight has ended (settling it will not wait)."""
        return self._future is not None and self._future.done()

    def start(
        self,
        records: list[OutputRecord],
        offsets: list[TopicPartition],
        consumer: Any,
        payload: Payload,
        *,
        inline: bool,
    ) -> None:
        """Start a step; settle the previous one first. `inline` runs it on this thread (drain, revoke).

        The consumer is touched on this thread only: a background step gets its group metadata, read here.
        """
        if self._future is not None:
            raise RuntimeError("a commit step is still in flight; settle it first")
        future: concurrent.futures.Future[float]
        if self._executor is not None and not inline:
            group = _GroupMetadata(consumer.consumer_group_metadata())
            future = self._executor.submit(_timed_commit, self._sink, records, offsets, group)
        else:
            future = concurrent.futures.Future()
            try:
                future.set_result(_timed_commit(self._sink, records, offsets, consumer))
            except Exception as exc:  # noqa: BLE001 - raised again by settle(), on the worker's thread
                future.set_exception(exc)
        self._future, self._payload = future, payload

    def settle(self) -> CommittedStep[Payload] | None:
        """Wait for the step in flight; None when there is none.

        Raises:
            CommitAborted: the step was aborted (nothing of it is visible; the caller rewinds).
            KafkaFatalError: the producer cannot continue (propagated from the sink).
        """
        future, payload = self._future, self._payload
        self._future = self._payload = None
        if future is None:
            return None
        seconds = future.result()
        assert payload is not None
        return CommittedStep(payload, seconds)

    def close(self, timeout_s: float = 30.0) -> None:
        """Let a step still in flight end (whatever its outcome), then stop the commit thread.

        Only after a fatal stop is a step still in flight here; it covers finished, stored messages only,
        so its outcome is consistent either way.
        """
        if self._future is not None:
            with contextlib.suppress(Exception):
                self._future.result(timeout=timeout_s)
            self._future = self._payload = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
