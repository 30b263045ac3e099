"""The commit pipeline and the decision stage, each on its own (the worker loop tests cover them together)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from fakes import FakeStore, event_bytes

from model.cascade_decisions import MODEL, MODEL_FALLBACK, VERIFIER, Verdict
from schemas.events import ExclusionEvent, ImageUploaded
from worker.committer import Committer
from worker.sink import CommitAborted
from worker.stages.decide import DecisionStage
from worker.stages.output import OutputRecord


class RecordingSink:
    """Commits on whatever thread calls it; `gate` holds a background commit until set."""

    def __init__(self, *, background: bool, abort: bool = False) -> None:
        self.commits_in_background = background
        self.abort = abort
        self.gate = threading.Event()
        self.gate.set()
        self.calls: list[tuple[list[OutputRecord], list[TopicPartition], Any, str]] = []

    def commit(
        self, records: Sequence[OutputRecord], offsets: Sequence[TopicPartition], consumer: Any
    ) -> None:
        self.gate.wait(5)
        if self.abort:
            raise CommitAborted("simulated abort")
        self.calls.append((list(records), list(offsets), consumer, threading.current_thread().name))

    def close(self, timeout: float) -> None:
        del timeout


class GroupConsumer:
    def consumer_group_metadata(self) -> str:
        return "group-metadata"


def test_an_inline_step_commits_on_the_callers_thread_with_the_consumer_itself() -> None:
    sink = RecordingSink(background=True)
    committer: Committer[str] = Committer(sink)
    consumer = GroupConsumer()

    committer.start([], [TopicPartition("t", 0, 5)], consumer, "payload", inline=True)

    assert committer.done
    step = committer.settle()
    assert step is not None and step.payload == "payload" and step.seconds >= 0
    assert sink.calls[0][2] is consumer
    assert sink.calls[0][3] == threading.current_thread().name
    assert not committer.in_flight and committer.settle() is None
    committer.close()


def test_a_background_step_runs_on_the_commit_thread_with_the_group_metadata_only() -> None:
    sink = RecordingSink(background=True)
    sink.gate.clear()
    committer: Committer[str] = Committer(sink)

    committer.start([], [TopicPartition("t", 0, 5)], GroupConsumer(), "payload", inline=False)

    assert committer.in_flight and not committer.done
    with pytest.raises(RuntimeError, match="still in flight"):
        committer.start([], [], GroupConsumer(), "second", inline=False)
    sink.gate.set()
    step = committer.settle()
    assert step is not None and step.payload == "payload"
    _records, _offsets, consumer, thread = sink.calls[0]
    assert consumer.consumer_group_metadata() == "group-metadata"
    assert not isinstance(consumer, GroupConsumer)
    assert thread.startswith("alocc-commit")
    committer.close()


def test_a_sink_that_cannot_commit_in_the_background_is_always_inline() -> None:
    sink = RecordingSink(background=False)
    committer: Committer[str] = Committer(sink)

    committer.start([], [], GroupConsumer(), "payload", inline=False)

    assert committer.done
    assert sink.calls[0][3] == threading.current_thread().name
    committer.close()


def test_an_aborted_step_is_raised_when_settled_and_leaves_nothing_in_flight() -> None:
    committer: Committer[str] = Committer(RecordingSink(background=True, abort=True))

    committer.start([], [], GroupConsumer(), "payload", inline=False)

    with pytest.raises(CommitAborted):
        committer.settle()
    assert not committer.in_flight
    committer.close()


def _event(image_id: str, minutes: int) -> ImageUploaded:
    return ImageUploaded.model_validate_json(event_bytes(image_id, image_id, minutes=minutes))


def _verdicts(scores: list[float], threshold: float = 0.5) -> list[Verdict]:
    return [Verdict(score, score >= threshold, threshold, MODEL, score) for score in scores]


def test_decisions_publish_exclusions_and_un_exclusions_but_not_products_or_stale_events() -> None:
    stage = DecisionStage(FakeStore(), exclusions_topic="exclusions")
    first = stage.store_and_decide(
        list(zip([_event("product", 1), _event("card", 1)], _verdicts([0.1, 0.9]), strict=True)),
        mode="d_x",
        model_version="v1",
    )
    assert [d.outcome for d in first.decisions] == ["scored", "excluded"]
    assert [d.exclusion is not None for d in first.decisions] == [False, True]

    second = stage.store_and_decide(
        list(zip([_event("product", 0), _event("card", 2)], _verdicts([0.9, 0.2]), strict=True)),
        mode="d_x",
        model_version="v1",
    )

    product, card = second.decisions
    assert (product.outcome, product.exclusion, product.record.score) == ("stale", None, pytest.approx(0.9))
    assert card.outcome == "scored"  # no longer a card: the indexer hears of it
    assert card.exclusion is not None and card.exclusion.topic == "exclusions"
    assert card.record.score == pytest.approx(0.2)
    assert second.store_seconds >= 0


def test_a_verifier_verdict_is_recorded_and_published_with_the_model_score_and_the_features() -> None:
    stage = DecisionStage(FakeStore(), exclusions_topic="exclusions")
    features = {"read_characters": 42.0, "ground_emptiness": 0.9}
    verdicts = [
        Verdict(0.8, True, 0.2, VERIFIER, 0.45, features),
        Verdict(0.9, True, 0.97, MODEL_FALLBACK, 0.9, fallback_reason="VerifierUnavailable: timed out"),
    ]

    stored = stage.store_and_decide(
        list(zip([_event("card", 1), _event("other", 1)], verdicts, strict=True)),
        mode="d_rx",
        model_version="m-ocr-1234abcd",
    )

    read, fallback = stored.decisions
    record = read.record
    assert (record.decided_by, record.model_score, record.verifier) == (VERIFIER, 0.45, features)
    assert fallback.record.fallback_reason.startswith("VerifierUnavailable")
    assert read.exclusion is not None and read.exclusion.value is not None
    event = ExclusionEvent.model_validate_json(read.exclusion.value)
    assert (event.decided_by, event.model_score, event.verifier) == ("verifier", 0.45, features)
    assert (event.score, event.threshold, event.model_version) == (0.8, 0.2, "m-ocr-1234abcd")
