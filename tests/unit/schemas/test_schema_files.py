"""The JSON Schema files are generated from the pydantic models and must stay in sync."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas.events import DeadLetterHeaders, ExclusionEvent, ImageUploaded
from schemas.generate import SCHEMA_DIR, SCHEMAS, out_of_date, render, write_all


def test_committed_schema_files_match_the_models() -> None:
    assert out_of_date() == [], "run `python -m schemas.generate` and commit the result"


def test_regenerating_gives_identical_files(tmp_path: Path) -> None:
    write_all(tmp_path)
    for name in SCHEMAS:
        assert (tmp_path / name).read_text(encoding="utf-8") == (SCHEMA_DIR / name).read_text(
            encoding="utf-8"
        )


def test_rendering_is_deterministic() -> None:
    assert render(ImageUploaded) == render(ImageUploaded)
    assert sorted(json.loads(render(ImageUploaded))["required"]) == sorted(
        ["schema_version", "event_id", "image_id", "item_id", "shop_id", "image_url", "uploaded_at"]
    )


def test_input_event_tolerates_unknown_fields_and_needs_a_zone() -> None:
    body = {
        "schema_version": 1,
        "event_id": "e",
        "image_id": "i",
        "item_id": "it",
        "shop_id": "s",
        "image_url": "https://img.example/a.jpg",
        "uploaded_at": "2026-11-26T10:00:00+09:00",
        "something_new": [1, 2],
    }
    event = ImageUploaded.model_validate(body)
    assert event.uploaded_at.utcoffset() == dt.timedelta(hours=9)
    with pytest.raises(ValidationError):
        ImageUploaded.model_validate({**body, "uploaded_at": "2026-11-26T10:00:00"})
    with pytest.raises(ValidationError):
        ImageUploaded.model_validate({**body, "schema_version": 2})


def test_exclusion_event_round_trips() -> None:
    event = ExclusionEvent(
        image_id="i",
        item_id="it",
        shop_id="s",
        excluded=True,
        score=0.9,
        threshold=0.7,
        mode="d_x",
        model_version="v1",
        decided_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        source_event_id="e",
    )
    assert ExclusionEvent.model_validate_json(event.model_dump_json()) == event


def test_dead_letter_headers_round_trip_through_kafka_headers() -> None:
    headers = DeadLetterHeaders(
        error_type="CorruptImage",
        error_message="truncated",
        original_topic="images.uploaded",
        original_partition=2,
        original_offset=41,
        failed_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        worker_id="w-1",
    )
    encoded = [*headers.to_kafka_headers(), ("unrelated", b"x")]
    assert ("alocc.error_type", b"CorruptImage") in encoded
    assert DeadLetterHeaders.from_kafka_headers(encoded) == headers
