"""Promote a model version to the one search reads, or roll back to the previous one.

`promote(NEW)`:
1. **Refuses** when images scored under the active version have no score under NEW (search would find no
   record for them): a catch-up replay closes the gap; `force` overrides.
2. **Switches** `alocc:active_version` to NEW in one Lua script that first checks the pointer still names
   the version the caller saw, and appends the switch (who, when, from, to) to `alocc:switches`.
3. **Publishes the differences only**: for every image NEW scored, one script compares NEW's decision with
   `alocc:published:{image}` (what the indexer last heard, from whichever version was active), updates it,
   and returns the record when they differ; an exclusion event is then published for exactly those images
   (an image nobody published before gets an event only when NEW excludes it). The indexer converges with
   the least traffic, and a promotion run twice publishes nothing the second time.

`rollback()` promotes the version the last switch came from, the same way.

From the switch on, workers of NEW publish new uploads themselves (their writes find NEW active), and
workers of the old version write shadow records only.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis
import structlog
from confluent_kafka import Producer

from schemas.events import ExclusionEvent
from search_client.keys import KeyLayout
from worker.version_diff import scored_keys

log = structlog.get_logger("alocc.promotion")

_SCAN_COUNT = 1000
_SWITCHES_KEPT = 1000

# KEYS[1] = active pointer, KEYS[2] = switch log; ARGV = expected (or ""), new, the switch record (JSON).
# Returns {1, previous} when switched, {0, current} when the pointer no longer names `expected`.
_SWITCH_SCRIPT = """
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then
  return {0, current}
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('LPUSH', KEYS[2], ARGV[3])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
return {1, current}
"""

# KEYS[1] = the image's record under the new active version, KEYS[2] = its published state; ARGV[1] = ttl.
# Returns the record's fields when the published state changes (and stores it), else an empty list.
_PUBLISH_SCRIPT = """
local excluded = redis.call('HGET', KEYS[1], 'excluded')
if not excluded then
  return {}
end
local published = redis.call('GET', KEYS[2])
if published == excluded or ((not published) and excluded == '0') then
  return {}
end
redis.call('SET', KEYS[2], excluded, 'EX', tonumber(ARGV[1]))
return redis.call('HGETALL', KEYS[1])
"""


class PromotionRefused(RuntimeError):
    """The switch would leave search without scores, or the pointer moved meanwhile."""


@dataclass(frozen=True)
class Switch:
    """One change of the active version."""

    who: str
    at: str  # RFC 3339, UTC
    from_version: str  # "" when no version was active
    to_version: str

    def to_json(self) -> str:
        """The switch log's entry."""
        return json.dumps(
            {"who": self.who, "at": self.at, "from": self.from_version, "to": self.to_version}, sort_keys=True
        )

    @classmethod
    def from_json(cls, text: str) -> Switch:
        """Read a switch log entry."""
        data = json.loads(text)
        return cls(data["who"], data["at"], data["from"], data["to"])


@dataclass(frozen=True)
class PromotionResult:
    """What a promotion or rollback did."""

    switch: Switch
    checked: int  # images scored under the new version
    excluded_events: int  # exclusion events published with excluded = true
    included_events: int  # and with excluded = false
    missing_scores: int  # images of the old version without a score under the new one (forced through)
    seconds: float

    def summary(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "from": self.switch.from_version,
            "to": self.switch.to_version,
            "who": self.switch.who,
            "at": self.switch.at,
            "images_checked": self.checked,
            "published_excluded": self.excluded_events,
            "published_included": self.included_events,
            "missing_scores_forced": self.missing_scores,
            "seconds": round(self.seconds, 2),
        }


def scored_images(client: redis.Redis, keys: KeyLayout, version: str) -> Iterator[str]:
    """Ids of the images with a record under `version` (SCAN: each at least once, in no order)."""
    prefix = keys.record(version, "")
    for key in scored_keys(client, keys, version):
        yield key[len(prefix) :]


def missing_scores(client: redis.Redis, keys: KeyLayout, old: str, new: str) -> list[str]:
    """Images scored under `old` that have no record under `new`."""
    missing: list[str] = []
    batch: list[str] = []

    def check() -> None:
        pipe = client.pipeline(transaction=False)
        for image_id in batch:
            pipe.exists(keys.record(new, image_id))
        missing.extend(image_id for image_id, found in zip(batch, pipe.execute(), strict=True) if not found)
        batch.clear()

    for image_id in set(scored_images(client, keys, old)):
        batch.append(image_id)
        if len(batch) >= _SCAN_COUNT:
            check()
    if batch:
        check()
    return missing


def switch_log(client: redis.Redis, keys: KeyLayout, limit: int = 20) -> list[Switch]:
    """The last switches, newest first."""
    return [Switch.from_json(str(entry)) for entry in client.lrange(keys.switch_log, 0, limit - 1)]


class Promoter:
    """Switches the active version and publishes what changes for the indexer."""

    def __init__(
        self, client: redis.Redis, keys: KeyLayout, producer: Producer, *, exclusions_topic: str, ttl_s: int
    ) -> None:
        """Promote through `client` (decode_responses=True) and publish with `producer` to `exclusions_topic`.

        Args:
            client: Redis.
            keys: The key layout of the scores.
            producer: An idempotent producer.
            exclusions_topic: Where the indexer listens.
            ttl_s: The published state's lifetime (the records' TTL).
        """
        self._client = client
        self._keys = keys
        self._producer = producer
        self._topic = exclusions_topic
        self._ttl_s = ttl_s
        self._switch = client.register_script(_SWITCH_SCRIPT)
        self._publish = client.register_script(_PUBLISH_SCRIPT)

    def promote(self, version: str, *, who: str, force: bool = False) -> PromotionResult:
        """Make `version` the active one; see the module docstring.

        Raises:
            PromotionRefused: scores are missing (without `force`), or the pointer moved meanwhile.
        """
        started = time.monotonic()
        active = self._client.get(self._keys.active_version)
        current = "" if active is None else str(active)
        missing: list[str] = []
        if current and current != version:
            missing = missing_scores(self._client, self._keys, current, version)
            if missing and not force:
                examples = ", ".join(sorted(missing)[:5])
                raise PromotionRefused(
                    f"{len(missing)} images scored under the active version {current} have no score under "
                    f"{version} (e.g. {examples}): run `alocc replay` with {version} to close the gap, "
                    "or promote with --force"
                )
        switch = Switch(who, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), current, version)
        if current != version:
            done, seen = self._switch(
                keys=[self._keys.active_version, self._keys.switch_log],
                args=[current, version, switch.to_json(), _SWITCHES_KEPT],
            )
            if int(done) != 1:
                raise PromotionRefused(
                    f"the active version changed meanwhile (now {seen!r}); nothing was done"
                )
            log.info("active version switched", who=who, from_version=current, to_version=version)
        checked, excluded, included = self._publish_changes(version)
        log.info(
            "promotion published", version=version, excluded=excluded, included=included, checked=checked
        )
        return PromotionResult(switch, checked, excluded, included, len(missing), time.monotonic() - started)

    def rollback(self, *, who: str, force: bool = False) -> PromotionResult:
        """Promote the version the last switch came from.

        Raises:
            PromotionRefused: no earlier version, the last switch did not go to the active version, or as
                `promote`.
        """
        log_entries = switch_log(self._client, self._keys, limit=1)
        pointer = self._client.get(self._keys.active_version)
        active = None if pointer is None else str(pointer)
        if not log_entries or not log_entries[0].from_version:
            raise PromotionRefused("no earlier active version to roll back to")
        last = log_entries[0]
        if last.to_version != active:
            raise PromotionRefused(
                f"the last switch went to {last.to_version}, but {active} is active: promote explicitly"
            )
        return self.promote(last.from_version, who=who, force=force)

    def _publish_changes(self, version: str) -> tuple[int, int, int]:
        checked = excluded = included = 0
        for image_id in scored_images(self._client, self._keys, version):
            checked += 1
            fields = self._publish(
                keys=[self._keys.record(version, image_id), self._keys.published_state(image_id)],
                args=[self._ttl_s],
            )
            if not fields:
                continue
            record = dict(zip(fields[::2], fields[1::2], strict=True))
            event = _exclusion_event(image_id, version, record)
            self._produce(image_id, event)
            if event.excluded:
                excluded += 1
            else:
                included += 1
        if self._producer.flush(60) != 0:
            raise RuntimeError("exclusion events were not delivered within 60 s; promote again to resend")
        return checked, excluded, included

    def _produce(self, image_id: str, event: ExclusionEvent) -> None:
        while True:
            try:
                self._producer.produce(
                    self._topic, key=image_id.encode(), value=event.model_dump_json().encode()
                )
                break
            except BufferError:
                self._producer.poll(0.1)
        self._producer.poll(0)


def _exclusion_event(image_id: str, version: str, record: dict[str, str]) -> ExclusionEvent:
    verifier = record.get("verifier")
    return ExclusionEvent(
        image_id=image_id,
        item_id=record.get("item_id", ""),
        shop_id=record.get("shop_id", ""),
        excluded=record["excluded"] == "1",
        score=float(record["score"]),
        threshold=float(record["threshold"]),
        mode=record.get("mode", ""),
        model_version=version,
        decided_at=dt.datetime.now(dt.UTC),
        source_event_id=record.get("event_id", ""),
        model_score=float(record.get("model_score", record["score"])),
        decided_by=record.get("decided_by", "model"),  # type: ignore[arg-type]  # validated by the schema
        verifier=json.loads(verifier) if verifier else None,
    )
