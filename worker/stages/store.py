"""Scores in Redis: one hash per (model version, image), written atomically, read in batches by search.

Layout (prefix `alocc` by default; key names in `search_client.keys`), ready for several model versions side
by side (replay, shadow scoring, promotion):

- `alocc:score:{model_version}:{image_id}` — hash: score, excluded (0/1), threshold, mode, model_version,
  scored_at, uploaded_at (RFC 3339, from the event), event_id, item_id, shop_id, the cascade's model_score,
  decided_by, verifier (its features as JSON) and fallback_reason where they apply, plus the ordering key
  `uploaded_at_us` and `prev_excluded` (the state before this event; see below). Expires after the TTL.
- `alocc:active_version` — string: the model version whose scores search should read. Promotion or
  rollback is one SET of this key.
- `alocc:published:{image_id}` — string "1"/"0": the image's exclusion state as the active version's
  workers last published it. Expires with the records.

Writes go through one Lua script, so "an older event never overwrites a newer one" is decided inside
Redis, atomically: the record is replaced only when the event's (uploaded_at, event_id) is newer than
the stored one. The script also returns the previous `excluded` state, which the worker needs to
decide whether an "un-excluded" event must be published, and whether the record's model version is the
active one (read in the same script): only the active version publishes, and its previous state is
`alocc:published:{image_id}`, the state the indexer last heard for the image from whichever version was
active then, so a newly promoted version un-excludes what the old one excluded. A shadow version's
write compares with its own last record and leaves the published state alone. Redelivery after a crash
is harmless: the same event finds itself already stored and gets the same answer it got the first time
(`prev_excluded` is kept in the record for that reason).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis

from search_client.keys import KeyLayout
from worker.failures import StoreUnavailable

# KEYS[1] = record key, KEYS[2] = active-version pointer, KEYS[3] = the image's published exclusion state
# ARGV = uploaded_at_us, event_id, ttl_s, model_version, then field/value pairs to store
# Returns {status, previous_excluded, active}: status 1 = applied, 0 = stale (a newer event is stored),
# 2 = replay of the stored event; previous_excluded is "1", "0" or "" (none); active is 1 when ARGV[4] is
# the active version. The previous state of an active write is the image's published state, whichever
# version published it, so a newly promoted version un-excludes what the old one excluded; a shadow
# write compares with its own version's record and never touches the published state.
_WRITE_SCRIPT = """
local active = redis.call('GET', KEYS[2]) == ARGV[4]
local flag = active and 1 or 0
local cur = redis.call('HMGET', KEYS[1], 'uploaded_at_us', 'event_id', 'excluded', 'prev_excluded')
local new_us = tonumber(ARGV[1])
local prev = ''
if cur[1] then
  local cur_us = tonumber(cur[1])
  if new_us < cur_us or (new_us == cur_us and ARGV[2] < cur[2]) then
    return {0, cur[3] or '', flag}
  end
  if new_us == cur_us and ARGV[2] == cur[2] then
    return {2, cur[4] or '', flag}
  end
  prev = cur[3] or ''
end
if active then
  prev = redis.call('GET', KEYS[3]) or ''
end
local fields = {'uploaded_at_us', ARGV[1], 'event_id', ARGV[2], 'prev_excluded', prev}
local excluded = ''
for i = 5, #ARGV, 2 do
  fields[#fields + 1] = ARGV[i]
  fields[#fields + 1] = ARGV[i + 1]
  if ARGV[i] == 'excluded' then excluded = ARGV[i + 1] end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
if active then
  redis.call('SET', KEYS[3], excluded, 'EX', tonumber(ARGV[3]))
end
return {1, prev, flag}
"""


class WriteStatus(StrEnum):
    """What the compare-and-set did with one record."""

    APPLIED = "applied"
    STALE = "stale"  # a newer event's result is stored; nothing written
    REPLAY = "replay"  # this very event was stored before (redelivery)


@dataclass(frozen=True)
class ScoreRecord:
    """One image's result, as written to Redis."""

    image_id: str
    item_id: str
    shop_id: str
    event_id: str
    uploaded_at: dt.datetime
    score: float
    excluded: bool
    threshold: float
    mode: str
    model_version: str
    scored_at: dt.datetime
    # The cascade's part: the model's own score, which stage decided (`model.cascade_decisions`), the
    # verifier's features when it read the image, and why it could not when the model's decision stood in.
    model_score: float | None = None
    decided_by: str = "model"
    verifier: dict[str, float] | None = None
    fallback_reason: str = ""


@dataclass(frozen=True)
class WriteOutcome:
    """Result of writing one record."""

    status: WriteStatus
    # The state before this event: the image's published state when `active`, else this version's last
    # record. None: no earlier state.
    previous_excluded: bool | None
    active: bool = True  # the record's model version was the active version when it was written


def _us(when: dt.datetime) -> int:
    # Integer microseconds since the epoch: exact in Lua's doubles (< 2**53) and totally ordered.
    delta = when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _model_score(record: ScoreRecord) -> float:
    return float(record.score if record.model_score is None else record.model_score)


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


class ScoreStore:
    """Writes score records in pipelined batches through the compare-and-set script."""

    def __init__(self, client: redis.Redis, *, prefix: str, ttl_seconds: int, attempts: int = 3) -> None:
        """Create the store.

        Args:
            client: A Redis client (decode_responses=True).
            prefix: Key prefix.
            ttl_seconds: Lifetime of each record.
            attempts: Tries per batch on connection errors before raising `StoreUnavailable`.
        """
        self._client = client
        self._keys = KeyLayout(prefix)
        self._ttl = ttl_seconds
        self._attempts = attempts
        # register_script runs EVALSHA and loads the script when Redis answers NOSCRIPT (also in pipelines).
        self._script = client.register_script(_WRITE_SCRIPT)

    @property
    def keys(self) -> KeyLayout:
        """The key layout in use."""
        return self._keys

    def ping(self) -> bool:
        """True when Redis answers."""
        try:
            return bool(self._client.ping())
        except redis.RedisError:
            return False

    def claim_active_version(self, model_version: str, policy: str) -> str | None:
        """Point the active-version key at `model_version` per `policy`; returns the active version."""
        key = self._keys.active_version
        if policy == "always":
            self._client.set(key, model_version)
        elif policy == "if_missing":
            self._client.set(key, model_version, nx=True)
        value = self._client.get(key)
        return None if value is None else str(value)

    def write_batch(self, records: Sequence[ScoreRecord]) -> list[WriteOutcome]:
        """Write records in one pipeline; returns one outcome per record, in order.

        Raises:
            StoreUnavailable: Redis could not be reached after the configured attempts.
        """
        if not records:
            return []
        last_error: Exception | None = None
        for attempt in range(self._attempts):
            try:
                return self._write_once(records)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                last_error = exc
                time.sleep(min(2.0, 0.1 * 2**attempt))
        raise StoreUnavailable(f"Redis write failed after {self._attempts} attempts: {last_error}")

    def _write_once(self, records: Sequence[ScoreRecord]) -> list[WriteOutcome]:
        pipe = self._client.pipeline(transaction=False)
        for record in records:
            fields = {
                "score": repr(float(record.score)),
                "excluded": "1" if record.excluded else "0",
                "threshold": repr(float(record.threshold)),
                "mode": record.mode,
                "model_version": record.model_version,
                "scored_at": _iso(record.scored_at),
                "uploaded_at": _iso(record.uploaded_at),
                "item_id": record.item_id,
                "shop_id": record.shop_id,
                "image_id": record.image_id,
                "model_score": repr(_model_score(record)),
                "decided_by": record.decided_by,
            }
            if record.verifier is not None:
                fields["verifier"] = json.dumps(record.verifier, sort_keys=True, separators=(",", ":"))
            if record.fallback_reason:
                fields["fallback_reason"] = record.fallback_reason
            args: list[Any] = [_us(record.uploaded_at), record.event_id, self._ttl, record.model_version]
            for name, value in fields.items():
                args.extend((name, value))
            keys = [
                self._keys.record(record.model_version, record.image_id),
                self._keys.active_version,
                self._keys.published_state(record.image_id),
            ]
            self._script(keys=keys, args=args, client=pipe)
        replies = pipe.execute()
        outcomes = []
        for status, previous, active in replies:
            code = int(status)
            kind = (
                WriteStatus.APPLIED if code == 1 else WriteStatus.STALE if code == 0 else WriteStatus.REPLAY
            )
            previous_excluded = None if previous in ("", None) else previous == "1"
            outcomes.append(WriteOutcome(kind, previous_excluded, active=int(active) == 1))
        return outcomes
