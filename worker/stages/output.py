"""Build the worker's output records: exclusion events and dead-letter records.

Pure functions; producing them (inside a transaction) is the sink's job.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from schemas.events import DeadLetterHeaders, ExclusionEvent, ImageUploaded
from worker.stages.store import WriteOutcome, WriteStatus


@dataclass(frozen=True)
class OutputRecord:
    """One Kafka record to produce."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, str | bytes | None]] | None = None


def should_publish(excluded: bool, outcome: WriteOutcome) -> bool:
    """Whether a decision is news for the search indexer.

    Published when the image is judged an announcement card, and when an image that was excluded no
    longer is; not for ordinary products, never for an event older than the stored one, and never by a
    model version that is not the active one (shadow scoring writes Redis only).
    """
    if outcome.status is WriteStatus.STALE or not outcome.active:
        return False
    return excluded or outcome.previous_excluded is True


def exclusion_record(
    topic: str,
    event: ImageUploaded,
    *,
    excluded: bool,
    score: float,
    threshold: float,
    mode: str,
    model_version: str,
    decided_at: dt.datetime,
    model_score: float | None = None,
    decided_by: str = "model",
    verifier: dict[str, float] | None = None,
) -> OutputRecord:
    """The exclusion event for one decision, keyed by image_id (the topic can be compacted)."""
    body = ExclusionEvent(
        image_id=event.image_id,
        item_id=event.item_id,
        shop_id=event.shop_id,
        excluded=excluded,
        score=float(score),
        threshold=float(threshold),
        mode=mode,
        model_version=model_version,
        decided_at=decided_at,
        source_event_id=event.event_id,
        model_score=float(score if model_score is None else model_score),
        decided_by=decided_by,  # type: ignore[arg-type]  # validated by the schema's Literal
        verifier=verifier,
    )
    return OutputRecord(topic, event.image_id.encode("utf-8"), body.model_dump_json().encode("utf-8"))


def dead_letter_record(
    topic: str,
    *,
    key: bytes | None,
    value: bytes | None,
    reason: str,
    message: str,
    original_topic: str,
    original_partition: int,
    original_offset: int,
    worker_id: str,
    failed_at: dt.datetime,
) -> OutputRecord:
    """The dead-letter record: the original key and value unchanged, the failure in headers."""
    headers = DeadLetterHeaders(
        error_type=reason,
        error_message=message[:1000],
        original_topic=original_topic,
        original_partition=original_partition,
        original_offset=original_offset,
        failed_at=failed_at,
        worker_id=worker_id,
    )
    return OutputRecord(topic, key, value, list(headers.to_kafka_headers()))
