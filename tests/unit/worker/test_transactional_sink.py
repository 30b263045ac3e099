"""The transactional sink follows librdkafka's error contract for each call of a transaction."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

import worker.sink
from worker.failures import KafkaFatalError
from worker.sink import CommitAborted, TransactionalSink
from worker.stages.output import OutputRecord


class FakeProducer:
    """Records the transaction calls; `failures[name]` lists the errors its next calls raise, in turn."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.calls: list[str] = []
        self.failures: dict[str, list[KafkaError]] = {}

    def _call(self, name: str) -> None:
        self.calls.append(name)
        pending = self.failures.get(name)
        if pending:
            raise KafkaException(pending.pop(0))

    def init_transactions(self, timeout: float) -> None:
        self._call("init")

    def begin_transaction(self) -> None:
        self._call("begin")

    def produce(self, topic: str, **kwargs: Any) -> None:
        self._call("produce")

    def poll(self, timeout: float) -> int:
        return 0

    def send_offsets_to_transaction(
        self, offsets: list[TopicPartition], metadata: Any, timeout: float
    ) -> None:
        self._call("send_offsets")

    def commit_transaction(self, timeout: float) -> None:
        self._call("commit")

    def abort_transaction(self, timeout: float) -> None:
        self._call("abort")

    def flush(self, timeout: float) -> int:
        return 0


class Group:
    def consumer_group_metadata(self) -> str:
        return "group-metadata"


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch) -> TransactionalSink:
    monkeypatch.setattr(worker.sink, "Producer", FakeProducer)
    monkeypatch.setattr(worker.sink, "_RETRY_PAUSE_S", 0.0)
    return TransactionalSink({"transactional.id": "test"}, timeout_s=5.0)


def producer(sink: TransactionalSink) -> FakeProducer:
    fake = sink._producer
    assert isinstance(fake, FakeProducer)
    return fake


def commit(sink: TransactionalSink) -> None:
    sink.commit([OutputRecord("exclusions", b"img", b"{}")], [TopicPartition("in", 0, 5)], Group())


def test_a_commit_that_timed_out_is_committed_again_not_aborted(sink: TransactionalSink) -> None:
    # The commit may be under way at the broker: an abort now could rewind over a committed transaction.
    fake = producer(sink)
    fake.failures["commit"] = [KafkaError(KafkaError._TIMED_OUT, "timed out", retriable=True)] * 2
    commit(sink)
    assert fake.calls == ["init", "begin", "produce", "send_offsets", "commit", "commit", "commit"]


def test_a_commit_error_that_requires_an_abort_aborts(sink: TransactionalSink) -> None:
    fake = producer(sink)
    fake.failures["commit"] = [KafkaError(KafkaError.ILLEGAL_GENERATION, "stale", txn_requires_abort=True)]
    with pytest.raises(CommitAborted):
        commit(sink)
    assert fake.calls[-2:] == ["commit", "abort"]


def test_a_commit_whose_outcome_is_unknown_stops_the_worker(sink: TransactionalSink) -> None:
    fake = producer(sink)
    fake.failures["commit"] = [KafkaError(KafkaError._STATE, "neither retriable nor abortable")]
    with pytest.raises(KafkaFatalError, match="outcome unknown"):
        commit(sink)
    assert "abort" not in fake.calls


def test_an_error_before_the_commit_aborts_and_a_retriable_abort_is_retried(sink: TransactionalSink) -> None:
    fake = producer(sink)
    fake.failures["send_offsets"] = [KafkaError(KafkaError.REBALANCE_IN_PROGRESS, "rebalancing")]
    fake.failures["abort"] = [KafkaError(KafkaError._TIMED_OUT, "timed out", retriable=True)]
    with pytest.raises(CommitAborted):
        commit(sink)
    assert fake.calls[-3:] == ["send_offsets", "abort", "abort"]
    assert "commit" not in fake.calls


def test_a_fenced_producer_is_fatal(sink: TransactionalSink) -> None:
    fake = producer(sink)
    fake.failures["commit"] = [KafkaError(KafkaError._FENCED, "fenced", fatal=True)]
    with pytest.raises(KafkaFatalError, match="cannot continue"):
        commit(sink)
