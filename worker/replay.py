"""`alocc replay`: rescore a time range of the upload topic with another model version, in shadow.

A replay is the worker itself (`worker.factory.build_worker`: fetch, decode, batch, score, verify, store),
run as a bounded job:

- **Shadow.** It never claims `alocc:active_version` (`ALOCC_MODEL__SHADOW` is forced on), so it writes the
  new version's score records only; search keeps reading the active version, and no exclusion event is
  published (only the active version publishes). `alocc diff` then compares the two versions.
- **Its own consumer group**, `alocc-replay-<version>` unless `--group` names one, so it never moves the
  live workers' offsets, and several replay processes in one group split the partitions.
- **A fixed range.** The start offsets come from the broker's timestamp index (`--since`, else each
  partition's earliest offset); the end offsets from `--until` the same way, else the partitions' ends when
  the replay first starts. The range is stored in Redis (`<prefix>:replay:<group>`) by the first process,
  so every process of the group and every restart uses the same one.
- **Resumable.** Progress is the group's committed offsets, committed with the outputs as the worker does:
  a replay killed and started again goes on where its group stopped, and records already written are
  idempotent.
- **Done** when the group's committed offset reached the end of every partition of the range; the command
  then prints a summary and exits 0. A progress bar (on stderr) shows the rate, the ETA and the events left
  in each unfinished partition.

Bad events are dead-lettered to the configured dead-letter topic, as the live worker does.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis
from confluent_kafka import Consumer, KafkaException, TopicPartition

from worker.settings import Settings

_DONE_CHECK_S = 1.0
_INIT_WAIT_S = 60.0


@dataclass(frozen=True)
class ReplayRange:
    """Per partition of one topic: the first offset to rescore and the first one not to."""

    topic: str
    starts: dict[int, int]
    ends: dict[int, int]

    @property
    def total(self) -> int:
        """Events in the range."""
        return sum(max(0, self.ends[p] - self.starts[p]) for p in self.starts)

    def to_json(self) -> str:
        """What Redis stores."""
        return json.dumps(
            {"topic": self.topic, "starts": self.starts, "ends": self.ends},
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> ReplayRange:
        """Read what `to_json` wrote."""
        data = json.loads(text)
        return cls(
            topic=data["topic"],
            starts={int(p): int(o) for p, o in data["starts"].items()},
            ends={int(p): int(o) for p, o in data["ends"].items()},
        )


def _millis(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


def compute_range(
    consumer: Consumer,
    topic: str,
    since: dt.datetime | None,
    until: dt.datetime | None,
    explicit: dict[int, tuple[int, int]] | None = None,
) -> ReplayRange:
    """The offsets of the range in every partition of `topic`, from the broker's timestamp index.

    A partition with no message at or after a timestamp gets its end offset for it. With `explicit`
    (partition -> (start, end)), those offsets instead, and every other partition is skipped (an empty
    range at its beginning).

    Raises:
        KafkaException: the broker could not answer.
        ValueError: the topic does not exist.
    """
    metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise ValueError(f"topic {topic!r} not found")
    partitions = sorted(metadata.partitions)
    if explicit is not None:
        unknown = set(explicit) - set(partitions)
        if unknown:
            raise ValueError(f"topic {topic!r} has no partition {sorted(unknown)}")
        spans = {p: explicit.get(p, (0, 0)) for p in partitions}
        return ReplayRange(
            topic, {p: s for p, (s, _) in spans.items()}, {p: e for p, (_, e) in spans.items()}
        )
    watermarks = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in partitions}

    def offsets_at(when: dt.datetime | None, default: int) -> dict[int, int]:
        if when is None:
            return {p: watermarks[p][default] for p in partitions}
        found = consumer.offsets_for_times(
            [TopicPartition(topic, p, _millis(when)) for p in partitions], timeout=10
        )
        return {tp.partition: tp.offset if tp.offset >= 0 else watermarks[tp.partition][1] for tp in found}

    return ReplayRange(topic, offsets_at(since, 0), offsets_at(until, 1))


class RangeRecord:
    """The group's range in Redis: set once by the first process, read by every other and every restart."""

    def __init__(self, client: redis.Redis, prefix: str, group: str) -> None:
        """Keys live under `<prefix>:replay:<group>`."""
        self._client = client
        self._key = f"{prefix}:replay:{group}"

    def claim(self, proposed: ReplayRange) -> tuple[ReplayRange, bool]:
        """Store `proposed` unless a range is stored; returns the stored range and whether it was ours."""
        created = bool(self._client.hsetnx(self._key, "range", proposed.to_json()))
        stored = self._client.hget(self._key, "range")
        assert stored is not None
        return ReplayRange.from_json(str(stored)), created

    def stored(self) -> ReplayRange | None:
        """The stored range, if any."""
        value = self._client.hget(self._key, "range")
        return None if value is None else ReplayRange.from_json(str(value))

    def mark_initialised(self) -> None:
        """Record that the group's start offsets are committed."""
        self._client.hset(self._key, "initialised", "1")

    def initialised(self) -> bool:
        """Whether the group's start offsets are committed."""
        return self._client.hget(self._key, "initialised") == "1"


def commit_start_offsets(config: dict[str, Any], replay: ReplayRange) -> int:
    """Commit each partition's start offset for the group where it has none yet; returns how many.

    Committed by a consumer that never joins the group: the broker refuses such a commit while members are
    active, so this never moves a running replay back (that refusal is ignored).
    """
    consumer = Consumer({**config, "enable.auto.commit": False})
    try:
        tps = [TopicPartition(replay.topic, p) for p in sorted(replay.starts)]
        committed = consumer.committed(tps, timeout=10)
        missing = [
            TopicPartition(tp.topic, tp.partition, replay.starts[tp.partition])
            for tp in committed
            if tp.offset < 0
        ]
        if missing:
            try:
                consumer.commit(offsets=missing, asynchronous=False)
            except KafkaException:
                return 0  # the group is live: another process started it
        return len(missing)
    finally:
        consumer.close()


class GroupProgress:
    """The group's committed offsets against the range: what is left, and whether it is done."""

    def __init__(self, config: dict[str, Any], replay: ReplayRange) -> None:
        """Read offsets through a consumer of the group that never joins it."""
        self._consumer = Consumer({**config, "enable.auto.commit": False})
        self._replay = replay
        self._lock = threading.Lock()
        self._checked = 0.0
        self._left: dict[int, int] = dict(self._full())

    def _full(self) -> dict[int, int]:
        return {p: max(0, self._replay.ends[p] - self._replay.starts[p]) for p in self._replay.starts}

    def left(self, *, max_age_s: float = 0.0) -> dict[int, int]:
        """Events left per partition (at most `max_age_s` old)."""
        with self._lock:
            if time.monotonic() - self._checked >= max_age_s:
                tps = [TopicPartition(self._replay.topic, p) for p in sorted(self._replay.starts)]
                try:
                    committed = self._consumer.committed(tps, timeout=10)
                except KafkaException:
                    return dict(self._left)  # keep the last answer; the next check asks again
                for tp in committed:
                    start, end = self._replay.starts[tp.partition], self._replay.ends[tp.partition]
                    at = tp.offset if tp.offset >= 0 else start
                    self._left[tp.partition] = max(0, end - max(at, start))
                self._checked = time.monotonic()
            return dict(self._left)

    def done(self) -> bool:
        """Whether every partition's committed offset reached its end."""
        return not any(self.left(max_age_s=_DONE_CHECK_S).values())

    def close(self) -> None:
        """Close the offsets consumer."""
        self._consumer.close()


def progress_bar(progress: GroupProgress, total: int, stop: threading.Event) -> None:
    """Draw the replay's progress on stderr until `stop` is set: rate, ETA, events left per partition."""
    from tqdm import tqdm

    with tqdm(total=total, unit="ev", desc="replay", file=sys.stderr, dynamic_ncols=True) as bar:
        while True:
            left = progress.left(max_age_s=1.0)
            bar.n = total - sum(left.values())
            unfinished = {p: n for p, n in sorted(left.items()) if n}
            shown = dict(list(unfinished.items())[:8])
            bar.set_postfix_str(
                " ".join(f"p{p}:{n}" for p, n in shown.items())
                + (" ..." if len(unfinished) > len(shown) else "")
            )
            bar.refresh()
            if stop.wait(1.0):
                return


def replay_settings(settings: Settings, version: str, group: str | None) -> Settings:
    """The worker's settings for a replay of `version`: shadow, its own group and transactional id."""
    group_id = group or f"alocc-replay-{version}"
    return settings.model_copy(
        update={
            "model": settings.model.model_copy(update={"shadow": True}),
            "kafka": settings.kafka.model_copy(
                update={"group_id": group_id, "transactional_id": f"{group_id}-{settings.worker_id}"}
            ),
        }
    )
