"""Produce output records and commit input offsets, as one unit.

Commit order of one step (the worker calls `commit` only after the step's Redis writes succeeded):

1. Redis: every finished message's score record is already written (pipelined, idempotent) — done by
   the worker before calling `commit`.
2. Produce the step's exclusion events and dead-letter records.
3. Send the input offsets (last finished offset + 1 per partition) with the consumer group metadata.
4. Commit.

`TransactionalSink` (exactly-once for Kafka outputs): steps 2-4 are one Kafka transaction; a
`read_committed` reader sees the events if and only if the offsets moved. A failure before the commit
aborts the transaction: nothing of the step is visible and the offsets stay where they were. A commit
whose outcome cannot be known stops the worker rather than redo the step (see `TransactionalSink.commit`).

`AtLeastOnceSink` (switchable, idempotent producer): produce, flush and check every delivery, then
commit offsets synchronously. A crash between the two re-delivers the step, so an event can appear
twice (same content and key, harmless on a compacted topic); it is never lost.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from worker.failures import KafkaFatalError, WorkerError
from worker.stages.output import OutputRecord

# Between tries of a transaction call whose error was retriable (a timeout has waited already).
_RETRY_PAUSE_S = 0.1


class CommitAborted(WorkerError):
    """A commit step failed in a way that can be retried: nothing was committed; rewind and redo."""


class OutputSink(Protocol):
    """Produces a step's records and commits its offsets atomically (or at least once).

    A sink whose class sets `commits_in_background = True` is committed from the worker's commit
    thread, one step at a time, with an object offering only `consumer_group_metadata()` in place of
    the consumer; other sinks are committed on the worker's loop thread with the consumer itself.
    """

    def commit(
        self, records: Sequence[OutputRecord], offsets: Sequence[TopicPartition], consumer: Any
    ) -> None:
        """Produce `records` and commit `offsets` for `consumer`'s group.

        Raises:
            CommitAborted: nothing was committed; the caller rewinds to the last committed offsets.
            KafkaFatalError: the producer cannot continue (fenced, fatal error).
        """
        ...

    def close(self, timeout: float) -> None:
        """Flush and release the producer."""
        ...


def _is_fatal(error: KafkaError) -> bool:
    return bool(error.fatal()) or error.code() in {
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    }


class TransactionalSink:
    """Exactly-once output: records and offsets in one Kafka transaction per step."""

    # `commit` may run on the worker's commit thread: it uses the producer and, of the consumer, only
    # `consumer_group_metadata()` (which the worker reads on its own thread and passes in).
    commits_in_background = True

    def __init__(self, producer_config: dict[str, Any], *, timeout_s: float = 30.0) -> None:
        """Create the producer and initialise transactions (fences an older producer with the same id)."""
        if "transactional.id" not in producer_config:
            raise ValueError("TransactionalSink needs transactional.id")
        self._producer = Producer(producer_config)
        self._timeout = timeout_s
        try:
            self._producer.init_transactions(timeout_s)
        except KafkaException as exc:
            raise KafkaFatalError(f"cannot initialise transactions: {exc.args[0]}") from exc

    def commit(
        self, records: Sequence[OutputRecord], offsets: Sequence[TopicPartition], consumer: Any
    ) -> None:
        """Run one transaction: produce, send offsets, commit (see the module docstring).

        Errors follow librdkafka's contract for each call. Before `commit_transaction` nothing can be
        visible, so any error short of a fatal one aborts. `commit_transaction` itself is retried while its
        error is retriable (a timeout: the commit may be under way, and aborting then could rewind over a
        transaction that did commit, deciding its messages twice); an error that requires an abort aborts;
        any other leaves the outcome unknown, and the worker must stop (a restart's `init_transactions`
        completes or aborts it, and consumption resumes at the committed offsets).
        """
        producer = self._producer
        deadline = time.monotonic() + self._timeout
        try:
            producer.begin_transaction()
            for record in records:
                producer.produce(record.topic, value=record.value, key=record.key, headers=record.headers)
                producer.poll(0)
            if offsets:
                producer.send_offsets_to_transaction(
                    list(offsets), consumer.consumer_group_metadata(), self._remaining(deadline)
                )
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if _is_fatal(error):
                raise KafkaFatalError(f"producer cannot continue: {error}") from exc
            self._abort(deadline)
            raise CommitAborted(f"transaction aborted: {error}") from exc
        except BufferError as exc:
            self._abort(deadline)
            raise CommitAborted(f"producer queue full: {exc}") from exc
        self._commit(deadline)

    def _commit(self, deadline: float) -> None:
        while True:
            try:
                self._producer.commit_transaction(self._remaining(deadline))
                return
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if _is_fatal(error):
                    raise KafkaFatalError(f"producer cannot continue: {error}") from exc
                if error.txn_requires_abort():
                    self._abort(deadline)
                    raise CommitAborted(f"transaction aborted: {error}") from exc
                if not error.retriable() or time.monotonic() >= deadline:
                    raise KafkaFatalError(f"transaction outcome unknown: {error}") from exc
                time.sleep(_RETRY_PAUSE_S)

    def _abort(self, deadline: float) -> None:
        while True:
            try:
                self._producer.abort_transaction(self._remaining(deadline))
                return
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if _is_fatal(error) or not error.retriable() or time.monotonic() >= deadline:
                    raise KafkaFatalError(f"cannot abort transaction: {error}") from exc
                time.sleep(_RETRY_PAUSE_S)

    @staticmethod
    def _remaining(deadline: float) -> float:
        # A call that timed out may be called again: each try gets what is left of the step's time.
        return max(1.0, deadline - time.monotonic())

    def close(self, timeout: float) -> None:
        """Flush anything outstanding (there is no open transaction between steps)."""
        self._producer.flush(timeout)


class AtLeastOnceSink:
    """At-least-once output: idempotent producer, flush and verify, then a synchronous offset commit."""

    def __init__(self, producer_config: dict[str, Any], *, timeout_s: float = 30.0) -> None:
        """Create the idempotent producer."""
        config = {k: v for k, v in producer_config.items() if not k.startswith("transaction")}
        self._producer = Producer(config)
        self._timeout = timeout_s

    def commit(
        self, records: Sequence[OutputRecord], offsets: Sequence[TopicPartition], consumer: Any
    ) -> None:
        """Produce and flush every record, check each delivery, then commit offsets."""
        failures: list[KafkaError] = []

        def delivered(error: KafkaError | None, _message: Any) -> None:
            if error is not None:
                failures.append(error)

        try:
            for record in records:
                self._producer.produce(
                    record.topic,
                    value=record.value,
                    key=record.key,
                    headers=record.headers,
                    on_delivery=delivered,
                )
                self._producer.poll(0)
        except (BufferError, KafkaException) as exc:
            self._producer.flush(self._timeout)
            raise CommitAborted(f"produce failed: {exc}") from exc
        remaining = self._producer.flush(self._timeout)
        if remaining or failures:
            if any(_is_fatal(f) for f in failures):
                raise KafkaFatalError(f"producer cannot continue: {failures[0]}")
            raise CommitAborted(f"{remaining} records undelivered, {len(failures)} failed")
        if offsets:
            try:
                consumer.commit(offsets=list(offsets), asynchronous=False)
            except KafkaException as exc:
                raise CommitAborted(f"offset commit failed: {exc.args[0]}") from exc

    def close(self, timeout: float) -> None:
        """Flush anything outstanding."""
        self._producer.flush(timeout)
