"""Pydantic models of every message on the wire.

These models are the single source of truth: the JSON Schema files next to this module are generated
from them (`python -m schemas.generate`) and a unit test keeps the two in sync.

- `ImageUploaded`: the input event on `images.uploaded`.
- `ExclusionEvent`: the decision the search indexer consumes (key = image_id, compactable topic).
- `DeadLetterHeaders`: the headers of a dead-letter record; its value and key are the original
  message's bytes, unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

INPUT_SCHEMA_VERSION = 1
#: prefix of the Kafka header names of a dead-letter record
DEAD_LETTER_HEADER_PREFIX = "alocc."


class ImageUploaded(BaseModel):
    """An image was uploaded for an item and needs a score.

    Unknown extra fields are tolerated (ignored) so producers can add fields without breaking the worker.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)

    schema_version: Literal[1] = Field(description="Version of this event's schema; only 1 exists.")
    event_id: str = Field(min_length=1, max_length=200, description="Unique id of this event.")
    image_id: str = Field(min_length=1, max_length=200, description="Stable id of the image.")
    item_id: str = Field(min_length=1, max_length=200, description="The item the image belongs to.")
    shop_id: str = Field(min_length=1, max_length=200, description="The shop that owns the item.")
    image_url: str = Field(
        min_length=1, max_length=4096, description="Where to download the image (http or https)."
    )
    uploaded_at: AwareDatetime = Field(description="RFC 3339 time of the upload, with a UTC offset.")


class ExclusionEvent(BaseModel):
    """Whether an image must be kept out of search, published when that decision matters.

    Published when an image is judged an announcement card (`excluded` true), and when an image that
    was excluded no longer is (`excluded` false). Ordinary product pictures produce no event.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_id: str = Field(description="Stable id of the image; also the record key.")
    item_id: str
    shop_id: str
    excluded: bool = Field(description="True: keep this image out of search.")
    score: float = Field(
        description="The deciding score; higher = more like an announcement card. The text cascade's score "
        "(0 where the model alone decided) or, without it or as its fallback, the model's."
    )
    threshold: float = Field(description="The score at or above which an image is excluded.")
    mode: str = Field(description="The model's scoring mode (d_x, d_rx, cascade).")
    model_version: str = Field(
        description="Version of what decided: the model's, or the text cascade's (`<model>-ocr-<digest>`)."
    )
    decided_at: datetime = Field(description="When the worker made the decision (UTC).")
    source_event_id: str = Field(description="event_id of the upload event that led to this decision.")
    model_score: float | None = Field(
        default=None, description="The ALOCC model's own score (the cascade's first stage)."
    )
    decided_by: Literal["model", "verifier", "model_fallback"] = Field(
        default="model",
        description="Which stage decided: the model alone, the text verifier, or the model because the "
        "verifier failed on this image.",
    )
    verifier: dict[str, float] | None = Field(
        default=None,
        description="The text verifier's features, when it read the image (counts, fractions; never text).",
    )


class DeadLetterHeaders(BaseModel):
    """Headers of a dead-letter record; the record's value and key are the original message's.

    Kafka header names are the field names prefixed with `alocc.` (for example `alocc.error_type`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    error_type: str = Field(
        description="The reason, one name per reason (e.g. InvalidEvent, ForbiddenAddress, CorruptImage)."
    )
    error_message: str = Field(
        description="A readable description of the failure (no secrets, no URL query)."
    )
    original_topic: str
    original_partition: int = Field(ge=0)
    original_offset: int = Field(ge=0)
    failed_at: datetime = Field(description="When the worker gave up on the message (UTC).")
    worker_id: str = Field(description="Which worker dead-lettered the message.")

    def to_kafka_headers(self) -> list[tuple[str, bytes]]:
        """Encode as Kafka headers: `alocc.<field>` = UTF-8 text."""
        out: list[tuple[str, bytes]] = []
        for name, value in self.model_dump(mode="json").items():
            out.append((f"{DEAD_LETTER_HEADER_PREFIX}{name}", str(value).encode("utf-8")))
        return out

    @classmethod
    def from_kafka_headers(
        cls, headers: Sequence[tuple[str, str | bytes | None]] | None
    ) -> DeadLetterHeaders:
        """Decode the headers of a dead-letter record (other headers are ignored)."""
        fields: dict[str, str] = {}
        for name, value in headers or []:
            if name.startswith(DEAD_LETTER_HEADER_PREFIX) and value is not None:
                text = value.decode("utf-8") if isinstance(value, bytes) else value
                fields[name.removeprefix(DEAD_LETTER_HEADER_PREFIX)] = text
        return cls.model_validate(fields)
