"""Store a scored batch in Redis and decide what each event publishes: the stage between score and commit.

For every event it builds the score record from the event and its verdict (`model.cascade_decisions`),
writes all of them in one pipelined compare-and-set (`ScoreStore.write_batch`), and turns each write's
outcome into a decision: the event's outcome (`scored`, `excluded`, or `stale` when a newer event of the
image is already stored) and the exclusion event to publish, if the decision is news for the search indexer
(`should_publish`).

The Redis write comes first and is idempotent: the decisions are committed to Kafka later, with the
offsets, and a step that is redone writes the same records and reaches the same decisions.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass

from model.cascade_decisions import Verdict
from schemas.events import ImageUploaded
from worker.stages.output import OutputRecord, exclusion_record, should_publish
from worker.stages.store import ScoreRecord, ScoreStore, WriteStatus


@dataclass(frozen=True)
class Decision:
    """What became of one scored event."""

    record: ScoreRecord
    outcome: str  # "scored" | "excluded" | "stale"
    exclusion: OutputRecord | None  # the exclusion event to publish with the offsets, if any


@dataclass(frozen=True)
class StoredBatch:
    """The decisions of one batch, in the order of its events, and when and how fast they were stored."""

    decisions: list[Decision]
    store_seconds: float
    stored_at: dt.datetime


class DecisionStage:
    """Writes score records and decides, for one served model version."""

    def __init__(self, store: ScoreStore, *, exclusions_topic: str) -> None:
        """Write through `store`; exclusion events go to `exclusions_topic`."""
        self._store = store
        self._exclusions_topic = exclusions_topic

    def store_and_decide(
        self, verdicts: Sequence[tuple[ImageUploaded, Verdict]], *, mode: str, model_version: str
    ) -> StoredBatch:
        """Store and decide events still worth finishing, each with its verdict.

        Args:
            verdicts: The events and what decided each (the model alone, the verifier, or the fallback).
            mode: The model's scoring mode.
            model_version: The served version the records are written under (the cascade's, if served).

        Raises:
            StoreUnavailable: Redis could not be reached; fatal, so nothing of the batch gets committed.
        """
        decided_at = dt.datetime.now(dt.UTC)
        records = [
            ScoreRecord(
                image_id=event.image_id,
                item_id=event.item_id,
                shop_id=event.shop_id,
                event_id=event.event_id,
                uploaded_at=event.uploaded_at,
                score=verdict.score,
                excluded=verdict.excluded,
                threshold=verdict.threshold,
                mode=mode,
                model_version=model_version,
                scored_at=decided_at,
                model_score=verdict.model_score,
                decided_by=verdict.decided_by,
                verifier=verdict.features,
                fallback_reason=verdict.fallback_reason,
            )
            for event, verdict in verdicts
        ]
        started = time.perf_counter()
        outcomes = self._store.write_batch(records)
        store_seconds = time.perf_counter() - started
        stored_at = dt.datetime.now(dt.UTC)
        decisions = []
        for (event, _verdict), record, outcome in zip(verdicts, records, outcomes, strict=True):
            if outcome.status is WriteStatus.STALE:
                verdict = "stale"
            else:
                verdict = "excluded" if record.excluded else "scored"
            exclusion = None
            if should_publish(record.excluded, outcome):
                exclusion = exclusion_record(
                    self._exclusions_topic,
                    event,
                    excluded=record.excluded,
                    score=record.score,
                    threshold=record.threshold,
                    mode=record.mode,
                    model_version=record.model_version,
                    decided_at=decided_at,
                    model_score=record.model_score,
                    decided_by=record.decided_by,
                    verifier=record.verifier,
                )
            decisions.append(Decision(record, verdict, exclusion))
        return StoredBatch(decisions, store_seconds, stored_at)
