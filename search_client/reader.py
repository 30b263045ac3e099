"""Batch reads for search: resolve the active model version, then one pipelined round trip."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import redis

from search_client.keys import KeyLayout


class ScoreReader:
    """Reads score records of the active (or a named) model version."""

    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        """Create the reader over a client (decode_responses=True)."""
        self._client = client
        self._keys = KeyLayout(prefix)

    def active_version(self) -> str | None:
        """The model version search reads, or None if no worker has claimed one yet."""
        value = self._client.get(self._keys.active_version)
        return None if value is None else str(value)

    def get_many(self, image_ids: Iterable[str], model_version: str | None = None) -> list[dict[str, Any]]:
        """One result per id, in order: `{"image_id", "found": False}` or the stored record.

        Args:
            image_ids: Images to look up.
            model_version: Read this version instead of the active one (shadow comparisons).
        """
        ids = list(image_ids)
        version = model_version or self.active_version()
        if version is None:
            return [{"image_id": image_id, "found": False} for image_id in ids]
        pipe = self._client.pipeline(transaction=False)
        for image_id in ids:
            pipe.hgetall(self._keys.record(version, image_id))
        return [decode_record(image_id, raw) for image_id, raw in zip(ids, pipe.execute(), strict=True)]


def decode_record(image_id: str, raw: dict[str, str]) -> dict[str, Any]:
    """Turn one stored hash into the JSON-ready record search consumes (`found: False` when empty)."""
    if not raw:
        return {"image_id": image_id, "found": False}
    return {
        "image_id": image_id,
        "found": True,
        "score": float(raw["score"]),
        "excluded": raw["excluded"] == "1",
        "threshold": float(raw["threshold"]),
        "mode": raw["mode"],
        "model_version": raw["model_version"],
        "scored_at": raw["scored_at"],
        "uploaded_at": raw["uploaded_at"],
        "item_id": raw.get("item_id"),
        "shop_id": raw.get("shop_id"),
        "event_id": raw.get("event_id"),
        # Records written before the cascade have none of these: the model decided alone.
        "model_score": float(raw.get("model_score", raw["score"])),
        "decided_by": raw.get("decided_by", "model"),
        "verifier": json.loads(raw["verifier"]) if "verifier" in raw else None,
        "fallback_reason": raw.get("fallback_reason") or None,
    }


def connect(url: str, *, socket_timeout_s: float = 2.0) -> redis.Redis:
    """A Redis client configured the way the reader and the worker expect (strings decoded, timeouts)."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=socket_timeout_s,
        health_check_interval=30,
    )
