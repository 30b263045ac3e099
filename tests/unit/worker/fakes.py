"""Fakes for the worker's unit tests: an in-memory consumer, sink, store, fetcher and scorer.

They implement just the surface the worker uses, with the same semantics where it matters (offsets,
rebalance callbacks, commit failures), so the run loop can be tested without Kafka, Redis or a model.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import functools
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from confluent_kafka import TopicPartition

from model.cascade import CascadePolicy
from model.cascade_decisions import CascadeDecisions, LayoutFirst, Readings, SecondAfter, SheetSecond
from model.errors import CorruptImage
from model.verifier import TextFeatures, VerifierUnavailable
from model.verifier.line_read import LineRead
from model.verifier.panel_read import PanelRead
from worker.app import LoopSettings, Topics, Worker
from worker.failures import BadInput, HttpError
from worker.guard import FailureRateGuard
from worker.sink import CommitAborted
from worker.stages.output import OutputRecord
from worker.stages.prepare import ImagePreparer
from worker.stages.score import ScoringStage
from worker.stages.store import ScoreRecord, WriteOutcome, WriteStatus
from worker.stages.verify import Reading

INPUT = "in"
SIZE = 8


@dataclass
class FakeMessage:
    """The parts of `confluent_kafka.Message` the worker reads."""

    _topic: str
    _partition: int
    _offset: int
    _key: bytes | None
    _value: bytes | None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def error(self) -> None:
        return None


@dataclass
class FakeConsumer:
    """An in-memory consumer of one topic: partitions are lists of (key, value)."""

    partitions: Mapping[int, Sequence[tuple[bytes | None, bytes]]]
    positions: dict[int, int] = field(default_factory=dict)
    committed: dict[int, int] = field(default_factory=dict)
    assigned: list[int] = field(default_factory=list)
    paused: set[int] = field(default_factory=set)
    seeks: list[tuple[int, int]] = field(default_factory=list)
    callbacks: dict[str, Callable[..., None]] = field(default_factory=dict)
    closed: bool = False
    #: called with the consumer before each consume; tests use it to trigger rebalances
    before_consume: Callable[[FakeConsumer], None] | None = None

    def subscribe(self, topics: list[str], **callbacks: Callable[..., None]) -> None:
        assert topics == [INPUT]
        self.callbacks = callbacks

    def assign_all(self) -> None:
        parts = [TopicPartition(INPUT, p) for p in self.partitions if p not in self.assigned]
        self.assigned.extend(tp.partition for tp in parts)
        for tp in parts:
            self.positions.setdefault(tp.partition, self.committed.get(tp.partition, 0))
        self.callbacks["on_assign"](self, parts)

    def revoke(self, partitions: list[int]) -> None:
        self.callbacks["on_revoke"](self, [TopicPartition(INPUT, p) for p in partitions])
        for p in partitions:
            self.assigned.remove(p)
            self.positions.pop(p, None)

    def lose(self, partitions: list[int]) -> None:
        self.callbacks["on_lost"](self, [TopicPartition(INPUT, p) for p in partitions])
        for p in partitions:
            self.assigned.remove(p)
            self.positions.pop(p, None)

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        del timeout
        if not self.assigned and not self.closed and "on_assign" in self.callbacks and not self.positions:
            self.assign_all()
        if self.before_consume is not None:
            self.before_consume(self)
        out: list[FakeMessage] = []
        for p in list(self.assigned):
            if p in self.paused:
                continue
            while len(out) < num_messages and self.positions[p] < len(self.partitions[p]):
                offset = self.positions[p]
                key, value = self.partitions[p][offset]
                out.append(FakeMessage(INPUT, p, offset, key, value))
                self.positions[p] = offset + 1
        return out

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(INPUT, p) for p in self.assigned]

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused.update(tp.partition for tp in partitions)

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused.difference_update(tp.partition for tp in partitions)

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.partition, tp.offset))
        self.positions[tp.partition] = tp.offset

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [
            TopicPartition(INPUT, tp.partition, self.positions.get(tp.partition, -1)) for tp in partitions
        ]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        del cached
        return 0, len(self.partitions[tp.partition])

    def consumer_group_metadata(self) -> str:
        return "group-metadata"

    def close(self) -> None:
        if self.assigned:
            self.revoke(list(self.assigned))
        self.closed = True


@dataclass
class FakeSink:
    """Records commit steps; `fail_next` makes the next N commits abort (nothing committed)."""

    consumer: FakeConsumer
    steps: list[tuple[list[OutputRecord], dict[int, int]]] = field(default_factory=list)
    fail_next: int = 0
    closed: bool = False

    def commit(
        self, records: Sequence[OutputRecord], offsets: Sequence[TopicPartition], consumer: Any
    ) -> None:
        assert consumer is self.consumer
        if self.fail_next:
            self.fail_next -= 1
            raise CommitAborted("simulated abort")
        for tp in offsets:
            assert tp.partition in self.consumer.assigned, "committed a partition it does not own"
            previous = self.consumer.committed.get(tp.partition, 0)
            assert tp.offset >= previous, "offsets went backwards"
            self.consumer.committed[tp.partition] = tp.offset
        self.steps.append((list(records), {tp.partition: tp.offset for tp in offsets}))

    def close(self, timeout: float) -> None:
        del timeout
        self.closed = True

    @property
    def records(self) -> list[OutputRecord]:
        return [record for records, _ in self.steps for record in records]


@dataclass
class FakeStore:
    """In-memory score store with the real compare-and-set semantics on (uploaded_at, event_id).

    `active` says whether the records' model version is the active one: then the previous state is the
    image's published state, which the write updates (as the Redis script does).
    """

    rows: dict[str, ScoreRecord] = field(default_factory=dict)
    prev: dict[str, bool | None] = field(default_factory=dict)
    published: dict[str, bool] = field(default_factory=dict)
    active: bool = True
    fail: Exception | None = None
    batches: int = 0

    def write_batch(self, records: Sequence[ScoreRecord]) -> list[WriteOutcome]:
        if self.fail is not None:
            raise self.fail
        self.batches += 1
        outcomes = []
        for record in records:
            current = self.rows.get(record.image_id)
            if current is not None:
                new, old = (record.uploaded_at, record.event_id), (current.uploaded_at, current.event_id)
                if new < old:
                    outcomes.append(WriteOutcome(WriteStatus.STALE, current.excluded, active=self.active))
                    continue
                if new == old:
                    outcomes.append(
                        WriteOutcome(WriteStatus.REPLAY, self.prev[record.image_id], active=self.active)
                    )
                    continue
            previous = current.excluded if current is not None else None
            if self.active:
                previous = self.published.get(record.image_id)
                self.published[record.image_id] = record.excluded
            self.prev[record.image_id] = previous
            self.rows[record.image_id] = record
            outcomes.append(WriteOutcome(WriteStatus.APPLIED, previous, active=self.active))
        return outcomes

    def claim_active_version(self, model_version: str, policy: str) -> str:
        del policy
        return model_version

    def ping(self) -> bool:
        return True


class FakeFetcher:
    """Resolves `fake://<name>` from a dict of payloads; unknown names fail with HttpError 404."""

    def __init__(self, payloads: dict[str, bytes]) -> None:
        self.payloads = payloads
        self.requests: list[str] = []

    def submit(self, url: str) -> concurrent.futures.Future[bytes]:
        self.requests.append(url)
        future: concurrent.futures.Future[bytes] = concurrent.futures.Future()
        name = url.removeprefix("fake://")
        if name in self.payloads:
            future.set_result(self.payloads[name])
        else:
            future.set_exception(HttpError("server answered 404"))
        return future


def fake_decode(data: bytes) -> torch.Tensor:
    """Payload -> image: b"card" -> white (excluded by FakeScorer), b"photo" -> black, b"line" -> one white
    row on black (a one-line card: scores low, looks plain), b"texture" -> a checkerboard (scores 0.5)."""
    if data == b"corrupt":
        raise CorruptImage("simulated corrupt image")
    if data == b"line":
        image = torch.zeros((3, SIZE, SIZE), dtype=torch.uint8)
        image[:, SIZE // 2, 1:-1] = 255
        return image
    if data == b"texture":
        board = (torch.arange(SIZE)[:, None] + torch.arange(SIZE)[None, :]) % 2 * 255
        return board.to(torch.uint8).expand(3, SIZE, SIZE).contiguous()
    if data == b"strip":  # a photo with a notice across its lower quarter: scores 0.25 whole
        image = torch.zeros((3, SIZE, SIZE), dtype=torch.uint8)
        image[:, 3 * SIZE // 4 :, :] = 255
        return image
    value = 255 if data.startswith(b"card") else 0
    return torch.full((3, SIZE, SIZE), value, dtype=torch.uint8)


def fake_decode_with_parts(data: bytes, sheet_slots: int = 0) -> torch.Tensor:
    """`fake_decode`'s picture, then its four corner squares (`(5, 3, S, S)`): b"strip"'s lower corners are
    its white notice; every other picture's corners look like the picture. With `sheet_slots`, then that
    many sheet slots: b"pinned" (a dark scene, scored 0.0 whole) holds one white sheet; b"pinned-far..."
    (the same, its notice photographed from further away) a light grey sheet in its second slot (scored
    about 0.9), after a black one; no other picture holds any (all-zero slots)."""
    whole = fake_decode(data[:6] if data.startswith(b"pinned") else data)
    black, white = torch.zeros_like(whole), torch.full_like(whole, 255)
    parts = [whole, black, black, white, white] if data == b"strip" else [whole] * 5
    sheets = [black] * sheet_slots
    if data == b"pinned" and sheet_slots:
        sheets[0] = white
    if data.startswith(b"pinned-far") and sheet_slots > 1:
        sheets[0], sheets[1] = torch.full_like(whole, 1), torch.full_like(whole, 230)
    return torch.stack(parts + sheets)


@dataclass(frozen=True)
class FakeScores:
    scores: np.ndarray
    excluded: np.ndarray
    mode: str
    threshold: float
    model_version: str


class FakeScorer:
    """Score = mean pixel mapped to [0, 1]; excluded when >= 0.5 (white cards)."""

    input_size = SIZE
    model_version = "fake-v1"

    def __init__(self) -> None:
        self.batches: list[int] = []
        #: when set to an Event, each batch waits for it (a slow device the test controls)
        self.gate: threading.Event | None = None

    def score(self, images: torch.Tensor, mode: Any = None) -> FakeScores:
        del mode
        if self.gate is not None:
            assert self.gate.wait(10), "the test never released the batch"
        self.batches.append(images.shape[0])
        scores = ((images.mean(dim=(1, 2, 3)) + 1) / 2).numpy().astype(np.float32)
        return FakeScores(scores, scores >= 0.5, "d_x", 0.5, self.model_version)


class FakeVerification:
    """The verifier stage answering from a thread after `delay_s`: `fake://<name>` reads `characters[name]`
    characters; a name missing from the dict makes the read fail, as a crashed engine would."""

    def __init__(
        self,
        characters: dict[str, int],
        delay_s: float = 0.02,
        glyphs: dict[str, int] | None = None,
        confident: dict[str, int] | None = None,
        second: dict[str, int] | None = None,
    ) -> None:
        self.characters = characters
        self.delay_s = delay_s
        self.glyphs = glyphs or {}  # name: the glyph-sized marks its drawing has (the gate's line reading)
        self.confident = confident or {}  # name: its characters read confidently (default: all of them)
        self.second = second or {}  # name: the characters the second engine reads (default: none)
        self.second_reads: list[str] = []  # urls the second engine read
        self.sheet_second_reads: list[str] = []  # urls whose sheet the second engine read
        self.requests: list[str] = []
        self.line_reads: dict[str, LineRead | None] = {}  # url: the line reading it was asked for
        self.panel_reads: dict[str, PanelRead | None] = {}  # url: the panel reading it was asked for
        self.pages: dict[str, bool] = {}  # url: whether its page was read
        self.sheet_slots: dict[str, int | None] = {}  # url: the sheet slot read (the sheet reading)
        self.layout_firsts: dict[str, LayoutFirst | None] = {}  # url: the layout band it was asked to try
        self.closed = False

    def submit(
        self,
        url: str,
        *,
        line_read: LineRead | None = None,
        panel_read: PanelRead | None = None,
        page: bool = True,
        sheet_slot: int | None = None,
        layout_first: LayoutFirst | None = None,
        second_after: SecondAfter | None = None,
        sheet_second: SheetSecond | None = None,
    ) -> concurrent.futures.Future[Reading]:
        self.requests.append(url)
        self.layout_firsts[url] = layout_first
        self.line_reads[url] = line_read
        self.panel_reads[url] = panel_read
        self.pages[url] = page
        self.sheet_slots[url] = sheet_slot
        future: concurrent.futures.Future[Reading] = concurrent.futures.Future()
        count = self.characters.get(url.removeprefix("fake://"))

        def answer() -> None:
            if count is None:
                future.set_exception(VerifierUnavailable("tesseract failed: simulated crash"))
                return
            glyphs = self.glyphs.get(url.removeprefix("fake://"), 0)
            features = TextFeatures(
                count,
                count,
                count,
                0.1 if count else 0.0,
                1 if count else 0,
                0.1,
                0.8,
                self.confident.get(url.removeprefix("fake://"), count),
                drawing_marks=glyphs,
                drawing_glyphs=glyphs,
                drawing_aspect=4.0 if glyphs else 0.0,
            )
            # The page, the sheet and the layout find the same characters here.
            if layout_first is not None and layout_first.card(features):
                future.set_result(Reading(Readings(layout=features), self.delay_s))
                return
            first = Readings(
                features if page else None,
                features if sheet_slot is not None and not (sheet_second and sheet_second.alone) else None,
                features if layout_first is not None else None,
            )
            read = self.second.get(url.removeprefix("fake://"), 0)
            by_second = TextFeatures(read, read, read, 0.1 if read else 0.0, 1 if read else 0, 0.1, 0.8, read)
            if first.sheet is not None and sheet_second is not None and sheet_second.wanted(first.sheet):
                self.sheet_second_reads.append(url)
                first = dataclasses.replace(first, second_sheet=by_second)
            second = None
            if second_after is not None and second_after.wanted(first):
                self.second_reads.append(url)
                second = by_second
            future.set_result(Reading(dataclasses.replace(first, second=second), self.delay_s))

        threading.Timer(self.delay_s, answer).start()
        return future

    def close(self) -> None:
        self.closed = True


def event_bytes(image_id: str, name: str, *, event_id: str | None = None, minutes: int = 0) -> bytes:
    """A valid input event whose image is `fake://<name>`."""
    uploaded = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=minutes)
    body = {
        "schema_version": 1,
        "event_id": event_id or f"ev-{image_id}-{minutes}",
        "image_id": image_id,
        "item_id": "i",
        "shop_id": "s",
        "image_url": f"fake://{name}",
        "uploaded_at": uploaded.isoformat(),
    }
    return json.dumps(body).encode()


@dataclass
class Rig:
    """A worker wired to fakes."""

    worker: Worker
    consumer: FakeConsumer
    sink: FakeSink
    store: FakeStore
    scorer: FakeScorer


def make_rig(
    partitions: Mapping[int, Sequence[tuple[bytes | None, bytes]]],
    *,
    payloads: dict[str, bytes] | None = None,
    max_batch: int = 4,
    max_in_flight: int = 64,
    commit_interval_s: float = 0.0,
    guard: FailureRateGuard | None = None,
    fetcher: Any = None,
    drain_timeout_s: float = 2.0,
    max_wait_s: float = 0.005,
    start_when_idle: bool = False,
    store: FakeStore | None = None,
    cascade: tuple[CascadePolicy, FakeVerification] | None = None,
    end_offsets: dict[int, int] | None = None,
) -> Rig:
    """Build a worker over fakes (with a text cascade: its policy and a fake verifier stage)."""
    consumer = FakeConsumer(partitions)
    sink = FakeSink(consumer)
    store = store if store is not None else FakeStore()
    scorer = FakeScorer()
    default_payloads = {"card": b"card", "photo": b"photo", "corrupt": b"corrupt"}
    with_parts = bool(cascade and cascade[0].parts_send_from is not None)
    sheets = cascade[0].sheets if cascade else None
    slots = sheets.search.slots if sheets is not None else 0
    decode = functools.partial(fake_decode_with_parts, sheet_slots=slots) if with_parts else fake_decode
    preparer = ImagePreparer(fetcher or FakeFetcher(payloads or default_payloads), decode, workers=1)
    worker = Worker(
        consumer=consumer,  # type: ignore[arg-type]
        sink=sink,
        store=store,  # type: ignore[arg-type]
        preparer=preparer,
        scoring=ScoringStage(
            scorer,
            with_looks=bool(cascade and cascade[0].gate is not None),
            with_parts=with_parts,
            sheet_slots=slots,
        ),
        verification=cascade[1] if cascade else None,  # type: ignore[arg-type]
        decisions=CascadeDecisions(cascade[0] if cascade else None),
        serving_version=f"{scorer.model_version}-ocr-test" if cascade else None,
        end_offsets={(INPUT, p): end for p, end in (end_offsets or {}).items()},
        topics=Topics(INPUT, "exclusions", "dlq"),
        settings=LoopSettings(
            max_batch=max_batch,
            max_wait_s=max_wait_s,
            start_when_idle=start_when_idle,
            max_in_flight=max_in_flight,
            commit_interval_s=commit_interval_s,
            poll_timeout_s=0.01,
            drain_timeout_s=drain_timeout_s,
            worker_id="test-worker",
        ),
        guard=guard or FailureRateGuard(window=100, min_events=100, max_failure_ratio=1.0),
    )
    return Rig(worker, consumer, sink, store, scorer)


__all__ = ["BadInput"]
