"""Batch reads for search: the active version and its records in one round trip (one script)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import redis

from search_client.keys import KeyLayout

# KEYS[1] = the active-version pointer; ARGV[1] = the record key prefix ("<prefix>:score:"), ARGV[2..] = ids.
# Returns {active or "", fields of each id's record under it (flat lists, empty when missing)}: the pointer
# and the records are read in one round trip and one atomic step, so a promotion between the two reads
# cannot mix versions. The record keys are built inside the script: fine on one Redis; a Redis Cluster
# would need the keys in one hash slot.
_READ_ACTIVE_SCRIPT = """
local active = redis.call('GET', KEYS[1])
if not active then
  return {''}
end
local out = {active}
for i = 2, #ARGV do
  out[#out + 1] = redis.call('HGETALL', ARGV[1] .. active .. ':' .. ARGV[i])
end
return out
"""


class ScoreReader:
    """Reads score records of the active (or a named) model version."""

    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        """Create the reader over a client (decode_responses=True)."""
        self._client = client
        self._keys = KeyLayout(prefix)
        self._read_active = client.register_script(_READ_ACTIVE_SCRIPT)

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
        if model_version is None:
            return self.get_active(ids)
        version = model_version
        pipe = self._client.pipeline(transaction=False)
        for image_id in ids:
            pipe.hgetall(self._keys.record(version, image_id))
        return [decode_record(image_id, raw) for image_id, raw in zip(ids, pipe.execute(), strict=True)]

    def get_active(self, image_ids: Iterable[str]) -> list[dict[str, Any]]:
        """Records of the active version, with the pointer read in the same round trip (one script)."""
        ids = list(image_ids)
        reply = self._read_active(keys=[self._keys.active_version], args=[self._keys.records_prefix, *ids])
        if not reply or not reply[0]:
            return [{"image_id": image_id, "found": False} for image_id in ids]
        return [
            decode_record(image_id, dict(zip(flat[::2], flat[1::2], strict=True)))
            for image_id, flat in zip(ids, reply[1:], strict=True)
        ]


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
