"""The streaming worker: the only place that knows every stage.

    Kafka consume -> validate -> fetch (async, pooled) -> decode (thread pool) -> micro-batch
    -> score (device thread) [-> text verifier, for the few images the model is unsure of]
    -> Redis (pipelined compare-and-set) -> exclusion/dead-letter events + offsets (one transaction) -> commit

With a text cascade on the model's card, the images the model scores at or above its `send_from` go to
the verifier (`worker.stages.verify`) and are stored and decided when it answers; the rest of the batch
is stored at once. Offsets wait for them like for any unfinished message (the finished prefix rule).

The main thread runs `Worker.run`: it polls Kafka with a short timeout, moves finished downloads into
the batcher, hands full batches to the scoring thread, writes scored batches to Redis, and commits. It
never blocks on a download or a model call, so the consumer keeps its group membership however slow a
batch is, and the next batch's downloads and decodes overlap the current batch's scoring.

Commit order of one step (`_commit_step`), written down because correctness depends on it:

1. Redis: each message's score record is written (at batch completion, before any commit).
2. Produce the exclusion events and dead-letter records of the committed messages.
3. Send the offsets (first unfinished offset per partition) in the same Kafka transaction.
4. Commit the transaction.

With the transactional sink, steps 2-4 run on a commit thread while the loop goes on (one step in
flight; drain, revoke and lost wait for it and settle it on the loop thread before anything else), so
a slow transaction no longer stalls every image behind it.

Offsets advance only over a partition's finished prefix (`OffsetLedger`), and a message's output
events are produced in the transaction that moves the offset past it. Any failure before 4 leaves the
offsets where they were: an aborted transaction rewinds the consumer to the first uncommitted message,
and a fatal error stops the worker without committing. Redis writes are idempotent, so redoing a step
after a crash gives the same records and the same decisions.

Rebalancing (cooperative-sticky): on revoke, the batch being scored is finished and the finished
prefix committed; the rest of the revoked partitions' work is dropped (their next owner redoes it). On
lost, nothing is committed and the partitions' work is dropped.

Only messages of assigned partitions, above what this worker committed while holding them, are taken.
A message fetched before its partition was revoked belongs to the next owner; and the client has been
seen to restart a handed-over partition (one the group had no offset for) from its first offset after
the new owner had committed past it. Either, taken, would be decided and published twice: the offset
commit itself does not check who owns a partition.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import functools
import gc
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from pydantic import ValidationError

from model.cascade_decisions import SHEET_READING, CascadeDecisions, Verdict, describe_failure
from schemas.events import ImageUploaded
from worker.committer import Committer
from worker.failures import BadInput, InvalidEvent, KafkaFatalError, WorkerError
from worker.guard import FailureRateGuard
from worker.health import HealthState
from worker.ledger import OffsetLedger, TopicPartitionKey, commit_offsets
from worker.observers import WorkerObserver
from worker.prometheus_metrics import WorkerMetrics
from worker.sink import CommitAborted, OutputSink
from worker.stages.batch import MicroBatcher
from worker.stages.decide import DecisionStage
from worker.stages.fetch import redact_url
from worker.stages.output import OutputRecord, dead_letter_record
from worker.stages.prepare import PreparedImage, Preparer
from worker.stages.score import ScoredBatch, ScoringStage
from worker.stages.store import ScoreStore
from worker.stages.verify import Reading, VerificationStage

log = structlog.get_logger("alocc.worker")

# How long a revoke may wait for the batch on the device before dropping it (bounded rebalance callback).
_REVOKE_WAIT_S = 10.0
_LAG_INTERVAL_S = 10.0


@dataclass(eq=False)
class InFlight:
    """One consumed message on its way through the stages."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    epoch: int
    consumed_at: float
    event: ImageUploaded | None = None
    pixels: Any = None  # (3, S, S) uint8 tensor between decode and scoring
    outputs: list[OutputRecord] = field(default_factory=list)
    outcome: str = ""  # scored | excluded | stale | dead_lettered
    reason: str = ""  # dead-letter reason
    finished: bool = False

    @property
    def tp(self) -> TopicPartitionKey:
        """(topic, partition)."""
        return (self.topic, self.partition)


@dataclass(eq=False)
class _AwaitingVerifier:
    """An event the verifier is reading, with the model's result to fall back on."""

    item: InFlight
    model_score: float
    model_excluded: bool
    model_threshold: float
    mode: str
    look: Any  # the image's plain-line look (`model.screen`): which of the cascade's rules decides
    sheet_score: float | None = None  # its best sheet's score, where the cascade has the sheet route
    route: str = ""  # the route that sent it (`alocc_verifier_sends_total`'s label)
    future: concurrent.futures.Future[Reading] | None = None


@dataclass(frozen=True)
class Topics:
    """The topics the worker reads and writes."""

    input: str
    exclusions: str
    dead_letter: str


@dataclass(frozen=True)
class LoopSettings:
    """Plain knobs of the run loop."""

    max_batch: int
    max_wait_s: float
    start_when_idle: bool
    max_in_flight: int
    commit_interval_s: float
    poll_timeout_s: float
    drain_timeout_s: float
    worker_id: str


@dataclass(frozen=True)
class _CommitPayload:
    """What a commit step covers: released and counted once it went through, rewound if aborted."""

    prefixes: dict[TopicPartitionKey, list[InFlight]]
    items: list[InFlight]
    outcomes: list[tuple[bool, str]]
    offsets: dict[TopicPartitionKey, int]  # the commit offset sent for each partition


@dataclass
class RunStats:
    """What one `run` did (committed messages only)."""

    consumed: int = 0
    scored: int = 0
    excluded: int = 0
    stale: int = 0
    dead_lettered: int = 0
    published: int = 0
    batches: int = 0
    commits: int = 0
    aborted_commits: int = 0
    seconds: float = 0.0
    slowest_commit_s: float = 0.0
    slowest_batch_s: float = 0.0
    verifier_reads: int = 0  # images the text verifier read (stored, committed or not)
    verifier_failures: int = 0  # images it was sent but could not read: the model's decision stood
    skipped: int = 0  # messages not processed: of a partition no longer assigned, or redelivered
    first_input_at: float | None = None  # monotonic time of the first consumed message
    last_commit_at: float | None = None  # monotonic time of the last successful commit

    @property
    def active_seconds(self) -> float:
        """From the first consumed message to the last commit (excludes group join and idle tail)."""
        if self.first_input_at is None or self.last_commit_at is None:
            return 0.0
        return max(0.0, self.last_commit_at - self.first_input_at)

    @property
    def committed(self) -> int:
        """Messages whose offsets were committed."""
        return self.scored + self.excluded + self.stale + self.dead_lettered


class Worker:
    """Consumes image events, scores them, stores and publishes results, commits. Single use."""

    def __init__(
        self,
        *,
        consumer: Consumer,
        sink: OutputSink,
        store: ScoreStore,
        preparer: Preparer,
        scoring: ScoringStage,
        verification: VerificationStage | None = None,
        decisions: CascadeDecisions | None = None,
        serving_version: str | None = None,
        end_offsets: dict[TopicPartitionKey, int] | None = None,
        topics: Topics,
        settings: LoopSettings,
        guard: FailureRateGuard,
        metrics: WorkerMetrics | None = None,
        health: HealthState | None = None,
        on_close: list[Any] | None = None,
        observers: list[WorkerObserver] | None = None,
    ) -> None:
        """Wire the stages; `Worker.from_settings` (in `worker.factory`) builds them from settings.

        Args:
            consumer: A subscribed-to-nothing-yet Kafka consumer (manual commits).
            sink: Produces outputs and commits offsets (transactional or at-least-once).
            store: Redis score store.
            preparer: Fetch + decode stage.
            scoring: Model stage.
            verification: The text verifier, when a cascade is served.
            decisions: Turns model scores (and the verifier's features) into verdicts; model alone by default.
            serving_version: The version records are written under (the cascade's when one is served);
                default: the model's.
            end_offsets: A bounded run (replay): per partition, the first offset not to process. A message
                at or past it is left unconsumed and its partition paused, so its offset is never committed.
            topics: Topic names.
            settings: Loop knobs.
            guard: Failure-rate guard.
            metrics: Prometheus metrics (a private registry by default).
            health: Health state updated by the loop.
            on_close: Extra objects with `close()` to call when the run ends (fetcher, HTTP server).
            observers: Told of every stored and committed event (benchmarks).
        """
        self._consumer = consumer
        self._sink = sink
        self._deciding = DecisionStage(store, exclusions_topic=topics.exclusions)
        self._preparer = preparer
        self._scoring = scoring
        self._verification = verification
        self._decisions = decisions or CascadeDecisions(None)
        if self._decisions.policy is not None and verification is None:
            raise ValueError("a cascade policy needs its verification stage")
        self._serving_version = serving_version or scoring.model_version
        self._end_offsets = dict(end_offsets or {})
        self._at_end: set[TopicPartitionKey] = set()  # assigned partitions that reached their end offset
        self._topics = topics
        self._settings = settings
        self._guard = guard
        self.metrics = metrics or WorkerMetrics()
        self.health = health
        self._on_close = on_close or []
        self.observers: list[WorkerObserver] = list(observers or [])

        self._ledger: OffsetLedger[InFlight] = OffsetLedger()
        self._batcher: MicroBatcher[InFlight] = MicroBatcher(settings.max_batch, settings.max_wait_s)
        self._prepared: queue.SimpleQueue[tuple[InFlight, concurrent.futures.Future[PreparedImage]]] = (
            queue.SimpleQueue()
        )
        self._epochs: dict[TopicPartitionKey, int] = {}
        # Per assigned partition, the offset this worker committed up to while holding it.
        self._committed: dict[TopicPartitionKey, int] = {}
        self._rebalanced_at = 0.0  # monotonic time of the last assign, revoke or lost callback
        self._next_epoch = 1
        self._scoring_future: concurrent.futures.Future[ScoredBatch] | None = None
        self._scoring_items: list[InFlight] = []
        self._preparing = 0  # downloads/decodes started and not yet collected by the main loop
        self._read: queue.SimpleQueue[_AwaitingVerifier] = queue.SimpleQueue()
        self._verifying = 0  # reads started and not yet collected by the main loop
        self._stop = threading.Event()
        self._fatal = False
        self._paused = False
        self._assignment_changed = False
        self._last_commit = 0.0
        self._batch_done = False  # a scored batch waits for its commit: commit without waiting the interval
        self._committer: Committer[_CommitPayload] = Committer(sink)
        self._last_lag = 0.0
        self.stats = RunStats()
        self._used = False

    # ------------------------------------------------------------------ control
    def stop(self) -> None:
        """Ask the loop to stop: intake stops, in-flight work finishes (bounded), then close. Signal-safe."""
        self._stop.set()

    def run(
        self,
        *,
        max_events: int | None = None,
        idle_timeout: float | None = None,
        install_signal_handlers: bool = False,
        done: Callable[[], bool] | None = None,
    ) -> RunStats:
        """Run until stopped, `max_events` consumed and finished, or `idle_timeout` seconds without input.

        Args:
            max_events: Stop taking input after this many messages; return once they are committed.
            idle_timeout: Return once nothing arrived for this long (nor a rebalance happened) and nothing
                is in flight.
            install_signal_handlers: Stop on SIGTERM/SIGINT (main thread only).
            done: Asked whenever nothing is in flight; return once it says True (a replay: the whole
                range committed, by this process or the others of its group).

        Raises:
            FatalWorkerError: the worker cannot continue; nothing in flight was committed.
        """
        if self._used:
            raise RuntimeError("a Worker runs once; build a new one")
        self._used = True
        # The model, the clients and every import live as long as the run: move them out of the cyclic
        # collector's reach, so a full collection scans only what the loop allocates. Without this a
        # gen-2 collection walked the whole heap and paused the loop for up to 250 ms (measured).
        gc.collect()
        gc.freeze()
        previous = self._install_signals() if install_signal_handlers else {}
        started = time.monotonic()
        last_input = self._last_commit = started
        drain_deadline: float | None = None
        try:
            self._consumer.subscribe(
                [self._topics.input],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            if self.health is not None:
                self.health.consumer_ready = True
            log.info("worker started", input=self._topics.input, worker_id=self._settings.worker_id)
            while True:
                now = time.monotonic()
                if self.health is not None:
                    self.health.tick()
                if self._stop.is_set() and drain_deadline is None:
                    drain_deadline = now + self._settings.drain_timeout_s
                    log.info("stopping: finishing in-flight work", in_flight=len(self._ledger))
                limit_reached = max_events is not None and self.stats.consumed >= max_events
                intake_open = drain_deadline is None and not limit_reached and self._has_room()
                if self._poll(intake_open):
                    last_input = time.monotonic()
                self._collect_prepared()
                self._collect_scored()
                self._collect_verified()
                self._start_scoring(force=drain_deadline is not None or limit_reached)
                self._commit_step(force=drain_deadline is not None or limit_reached)
                self._report_lag()
                idle = len(self._ledger) == 0
                if drain_deadline is not None and (idle or time.monotonic() >= drain_deadline):
                    if not idle:
                        log.warning(
                            "drain timeout: uncommitted work will be redelivered", in_flight=len(self._ledger)
                        )
                    break
                if limit_reached and idle:
                    break
                if done is not None and idle and done():
                    log.info("bounded run complete")
                    break
                # A rebalance restarts the idle clock: partitions handed over bring input after it.
                quiet_since = max(last_input, self._rebalanced_at)
                if idle_timeout is not None and idle and time.monotonic() - quiet_since >= idle_timeout:
                    log.info("idle: exiting", idle_seconds=idle_timeout)
                    break
        except BaseException:
            # Fatal errors, interrupts, bugs: commit nothing more, close, and let the caller see the error.
            self._fatal = True
            raise
        finally:
            self._close()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.stats.seconds = time.monotonic() - started
            gc.unfreeze()  # a process that builds another worker (tests, the bench) can collect this one
            log.info("worker stopped", **self._stats_fields())
        return self.stats

    # ------------------------------------------------------------------ stages
    def _has_room(self) -> bool:
        in_flight = len(self._ledger)
        limit = self._settings.max_in_flight
        # Hysteresis: once full, reopen only at 3/4 so pause/resume does not flap per message.
        return in_flight < (limit * 3 // 4 if self._paused else limit)

    def _poll(self, intake_open: bool) -> bool:
        """Consume what intake allows; returns True if messages arrived."""
        consumer = self._consumer
        if intake_open == self._paused or self._assignment_changed:
            assignment = consumer.assignment()
            if intake_open:  # a partition at its end offset stays paused
                assignment = [tp for tp in assignment if (tp.topic, tp.partition) not in self._at_end]
            if assignment:
                (consumer.resume if intake_open else consumer.pause)(assignment)
            self._paused = not intake_open
            self._assignment_changed = False
        room = max(1, self._settings.max_in_flight - len(self._ledger)) if intake_open else 1
        # consume(n, timeout) waits until n messages or the timeout: wait for the first one only, then
        # take what is already fetched without waiting, so a lone event is not held for the timeout.
        # Each call's messages are accepted before the next call: a rebalance callback runs inside
        # `consume`, and a message returned before it may belong to a partition it revoked.
        messages = consumer.consume(num_messages=1, timeout=self._poll_timeout())
        arrived = self._accept_all(messages)
        if messages and room > 1:
            arrived |= self._accept_all(consumer.consume(num_messages=min(room, 500) - 1, timeout=0))
        self.metrics.in_flight.set(len(self._ledger))
        return arrived

    def _accept_all(self, messages: list[Message]) -> bool:
        """Accept what one `consume` call returned; True if it held a message (not only errors)."""
        arrived = False
        for message in messages:
            error = message.error()
            if error is not None:
                self._handle_consumer_error(error)
                continue
            self._accept(message)
            arrived = True
        return arrived

    def _poll_timeout(self) -> float:
        timeout = self._settings.poll_timeout_s
        if not self._prepared.empty():
            return 0.001  # decoded images are waiting to be batched
        if self._scoring_future is not None:
            # The model thread finishes on its own; a few ms of pickup delay costs less than a busy loop
            # competing with it for the CPU.
            return 0.005
        wait = self._batcher.time_until_ready()
        if wait is not None:
            timeout = min(timeout, max(wait, 0.001))
        if len(self._ledger):
            timeout = min(timeout, 0.01)  # downloads in flight complete on other threads
        return timeout

    def _handle_consumer_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal():
            raise KafkaFatalError(f"consumer error: {error}")
        log.warning("consumer error", error=str(error))

    def _skip(self, key: TopicPartitionKey, offset: int, reason: str) -> None:
        """Leave a message alone: it is not this worker's to process (see the callers)."""
        self.metrics.skipped_messages.labels(reason).inc()
        self.stats.skipped += 1
        log.debug("message skipped", topic=key[0], partition=key[1], offset=offset, reason=reason)

    def _accept(self, message: Message) -> None:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        assert topic is not None and partition is not None and offset is not None
        key = (topic, partition)
        end = self._end_offsets.get(key)
        if end is not None and offset >= end:
            # Past the bounded range: not ours to process. Pause the partition; the message (and any
            # others already fetched) stay uncommitted, so the group's offset stays at the end.
            if key not in self._at_end:
                self._at_end.add(key)
                self._consumer.pause([TopicPartition(topic, partition)])
            return
        epoch = self._epochs.get(key)
        if epoch is None:
            # Not assigned to this worker (revoked or lost since it was fetched): its owner processes it
            # from the group's committed offset. Taking it would commit its offset and outputs twice.
            self._skip(key, offset, "unassigned")
            return
        if offset < self._committed.get(key, 0):
            # Redelivered below what this worker committed while it held the partition (the client
            # restarted the partition's fetch from an older offset): done already, not done twice.
            self._skip(key, offset, "already_committed")
            return
        item = InFlight(
            topic=topic,
            partition=partition,
            offset=offset,
            key=_as_bytes(message.key()),
            value=_as_bytes(message.value()),
            epoch=epoch,
            consumed_at=time.monotonic(),
        )
        try:
            self._ledger.track(key, item)
        except ValueError:
            # The consumer went back (offset reset): drop the partition's uncommitted work, restart there.
            log.warning(
                "offset went backwards; restarting partition", topic=topic, partition=partition, offset=offset
            )
            self._forget({key}, still_assigned=True)
            item.epoch = self._epochs[key]
            self._ledger.track(key, item)
        self.stats.consumed += 1
        if self.stats.first_input_at is None:
            self.stats.first_input_at = item.consumed_at
        try:
            event = ImageUploaded.model_validate_json(item.value or b"")
        except ValidationError as exc:
            detail = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors()[:5]
            )
            self._fail(item, InvalidEvent(detail))
            return
        item.event = event
        future = self._preparer.submit(event.image_url)
        self._preparing += 1
        future.add_done_callback(functools.partial(self._on_prepared, item))

    def _on_prepared(self, item: InFlight, future: concurrent.futures.Future[PreparedImage]) -> None:
        # Runs on a fetch or decode thread: only hand over; the main loop does the rest.
        self._prepared.put((item, future))

    def _collect_prepared(self) -> None:
        while True:
            try:
                item, future = self._prepared.get_nowait()
            except queue.Empty:
                return
            self._preparing -= 1
            if not self._current(item) or future.cancelled():
                continue
            try:
                prepared = future.result()
            except BadInput as exc:
                self._fail(item, exc)
                continue
            item.pixels = prepared.pixels
            self.metrics.stage_seconds.labels("fetch").observe(prepared.fetch_s)
            self.metrics.stage_seconds.labels("decode").observe(prepared.decode_s)
            self._batcher.add(item)

    def _start_scoring(self, *, force: bool) -> None:
        if self._scoring_future is not None or not len(self._batcher):
            return
        # start_when_idle: the device is free (checked above), so start it on what is ready; while it
        # works, the next images queue up, so batches grow by themselves under load and an image waits
        # at most about one batch's scoring time before its own (continuous batching).
        # Otherwise wait for a full batch or max_wait, but only while more images are on their way:
        # with no download or decode outstanding the partial batch goes to the idle device now.
        if not (self._settings.start_when_idle or self._batcher.ready() or force or self._preparing == 0):
            return
        items = [item for item in self._batcher.take() if self._current(item)]
        if not items:
            return
        self._scoring_items = items
        self._scoring_future = self._scoring.submit([item.pixels for item in items])

    def _collect_scored(self, wait_s: float = 0.0) -> None:
        future = self._scoring_future
        if future is None:
            return
        try:
            result = future.result(timeout=wait_s)
        except concurrent.futures.TimeoutError:
            return
        items = self._scoring_items
        self._scoring_future, self._scoring_items = None, []
        self.metrics.batch_size.observe(len(items))
        self.metrics.stage_seconds.labels("score").observe(result.seconds)
        self.stats.slowest_batch_s = max(self.stats.slowest_batch_s, result.seconds)
        self.stats.batches += 1
        now: list[tuple[InFlight, Verdict]] = []
        for row, item in enumerate(items):
            if not self._current(item):
                continue
            item.pixels = None  # free the tensor now; the record waits for its commit
            score, excluded = float(result.scores[row]), bool(result.excluded[row])
            look = None if result.looks is None else result.looks[row]
            part_score = None if result.part_scores is None else float(result.part_scores[row])
            sheet_score = None if result.sheet_scores is None else float(result.sheet_scores[row])
            verdict = self._decisions.screen(
                score, excluded, result.threshold, look, part_score=part_score, sheet_score=sheet_score
            )
            if verdict is not None:
                if self._decisions.in_card_band(score):
                    self.metrics.card_band.inc()
                elif self._decisions.sheet_card(sheet_score):
                    self.metrics.sheet_cards.inc()
                now.append((item, verdict))
            else:
                self._send_to_verifier(item, score, excluded, result, row)
        self._store_and_finish(now, result.mode)
        self._batch_done = True

    def _send_to_verifier(
        self, item: InFlight, score: float, excluded: bool, result: ScoredBatch, row: int
    ) -> None:
        assert self._verification is not None and item.event is not None
        look = None if result.looks is None else result.looks[row]
        part_score = None if result.part_scores is None else float(result.part_scores[row])
        sheet_score = None if result.sheet_scores is None else float(result.sheet_scores[row])
        decisions = self._decisions
        page = decisions.reads_page(score, look, part_score=part_score, sheet_score=sheet_score)
        sheet_slot = None
        if decisions.reads_sheet(score, sheet_score):
            assert result.sheet_slots is not None
            sheet_slot = int(result.sheet_slots[row])
        route = decisions.route(look, score) if page else SHEET_READING
        awaiting = _AwaitingVerifier(
            item, score, excluded, result.threshold, result.mode, look, sheet_score, route
        )
        future = self._verification.submit(
            item.event.image_url,
            line_read=decisions.line_read(look) if page else None,
            panel_read=decisions.panel_read(look, score) if page else None,
            page=page,
            sheet_slot=sheet_slot,
            layout_first=decisions.layout_first(score, look) if page else None,
            second_after=decisions.second_after(score, look, sheet_score=sheet_score) if page else None,
            sheet_second=decisions.sheet_second(score, sheet_score),
        )
        self.metrics.verifier_sends.labels(route).inc()
        self._verifying += 1
        self.metrics.verifier_in_flight.set(self._verifying)
        future.add_done_callback(functools.partial(self._on_read, awaiting))

    def _on_read(self, awaiting: _AwaitingVerifier, future: concurrent.futures.Future[Reading]) -> None:
        # Runs on a read or fetch thread: only hand over; the main loop does the rest.
        awaiting.future = future
        self._read.put(awaiting)

    def _collect_verified(self) -> None:
        """Decide the images the verifier answered for (or failed on), grouped by scoring mode."""
        by_mode: dict[str, list[tuple[InFlight, Verdict]]] = {}
        while True:
            try:
                awaiting = self._read.get_nowait()
            except queue.Empty:
                break
            self._verifying -= 1
            item = awaiting.item
            if not self._current(item):
                continue
            by_mode.setdefault(awaiting.mode, []).append((item, self._verdict_of(awaiting)))
        self.metrics.verifier_in_flight.set(self._verifying)
        for mode, verdicts in by_mode.items():
            self._store_and_finish(verdicts, mode)

    def _verdict_of(self, awaiting: _AwaitingVerifier) -> Verdict:
        future = awaiting.future
        assert future is not None
        error = future.exception() if not future.cancelled() else concurrent.futures.CancelledError()
        if error is None:
            reading = future.result()
            self.stats.verifier_reads += 1
            self.metrics.stage_seconds.labels("verify").observe(reading.seconds)
            self.metrics.verifier_read_seconds.labels(awaiting.route).observe(reading.seconds)
            read = reading.read
            verdict = self._decisions.verdict(
                awaiting.model_score, read, awaiting.look, sheet_score=awaiting.sheet_score
            )
            result = "read"
            if read.page is None and read.sheet is None and read.layout is not None:
                result = "layout_card"
            elif read.second is not None:
                result = "second_card" if verdict.excluded else "second_read"
            elif read.second_sheet is not None:
                result = "sheet_second_card" if verdict.excluded else "sheet_second_read"
            elif verdict.excluded and self._decisions.shape_card(
                awaiting.model_score, read.page, awaiting.look
            ):
                result = "shape_card"
            elif not verdict.excluded and self._decisions.unconfident(
                awaiting.model_score, read.page, awaiting.look
            ):
                result = "unconfident"
            self.metrics.verifier_reads.labels(result).inc()
            return verdict
        self.stats.verifier_failures += 1
        self.metrics.verifier_reads.labels("failed").inc()
        reason = describe_failure(error)
        item = awaiting.item
        log.warning(
            "text verifier failed: the model's decision stands",
            topic=item.topic,
            partition=item.partition,
            offset=item.offset,
            image_id=item.event.image_id if item.event else None,
            reason=reason,
        )
        return self._decisions.fallback(
            awaiting.model_score, awaiting.model_excluded, awaiting.model_threshold, reason
        )

    def _store_and_finish(self, verdicts: list[tuple[InFlight, Verdict]], mode: str) -> None:
        """Write the verdicts' records and finish their events (their offsets can then be committed)."""
        if not verdicts:
            return
        events = []
        for item, verdict in verdicts:
            assert item.event is not None
            events.append((item.event, verdict))
        # StoreUnavailable is fatal: no commit.
        stored = self._deciding.store_and_decide(events, mode=mode, model_version=self._serving_version)
        self.metrics.stage_seconds.labels("store").observe(stored.store_seconds)
        for (item, verdict), decision in zip(verdicts, stored.decisions, strict=True):
            item.outcome = decision.outcome
            if decision.exclusion is not None:
                item.outputs.append(decision.exclusion)
            item.finished = True
            self.metrics.decisions.labels(verdict.decided_by).inc()
            to_store = (stored.stored_at - decision.record.uploaded_at).total_seconds()
            if to_store >= 0:
                self.metrics.upload_to_score.observe(to_store)
            for observer in self.observers:
                observer.on_stored(decision.record.image_id, to_store)
        self._batch_done = True

    def _fail(self, item: InFlight, error: BadInput) -> None:
        """Finish a message as bad input: its dead-letter record is produced with its offset."""
        item.pixels = None
        item.reason = error.reason
        item.outcome = "dead_lettered"
        item.outputs.append(
            dead_letter_record(
                self._topics.dead_letter,
                key=item.key,
                value=item.value,
                reason=error.reason,
                message=str(error),
                original_topic=item.topic,
                original_partition=item.partition,
                original_offset=item.offset,
                worker_id=self._settings.worker_id,
                failed_at=dt.datetime.now(dt.UTC),
            )
        )
        item.finished = True
        log.warning(
            "bad input: dead-lettering",
            topic=item.topic,
            partition=item.partition,
            offset=item.offset,
            image_id=item.event.image_id if item.event else None,
            url=redact_url(item.event.image_url) if item.event else None,
            reason=error.reason,
            detail=str(error)[:300],
        )

    def _commit_step(self, *, force: bool = False) -> None:
        """One commit step: outputs + offsets of every partition's finished prefix (see module docstring).

        With a sink that commits in the background, the step runs on the commit thread while this loop
        goes on polling, scoring and writing Redis (a transaction commit takes 10-100 ms, and stalled
        every image behind it); one step at a time, and `force` (drain, revoke) waits for it.
        """
        if self._committer.in_flight:
            if not (force or self._committer.done):
                return
            self._finish_commit()
        now = time.monotonic()
        # A stored batch is committed at once unless the next batch is already on the device (the loop
        # starts scoring before it commits): under load, commits follow the interval, so transactions
        # do not eat the loop's time; otherwise the commit overlaps the next batch's filling, where
        # waiting for the interval only added up to its length to every event's latency.
        quiet = self._batch_done and self._scoring_future is None
        if not (force or quiet) and now - self._last_commit < self._settings.commit_interval_s:
            return
        self._batch_done = False
        prefixes = self._ledger.finished_prefix()
        if not prefixes:
            return
        items = [item for run in prefixes.values() for item in run]
        outcomes = [(item.outcome == "dead_lettered", item.reason) for item in items]
        self._guard.check(outcomes)  # raises before a mostly-failing step is committed
        records = [record for item in items for record in item.outputs]
        payload = _CommitPayload(prefixes, items, outcomes, commit_offsets(prefixes))
        offsets = [TopicPartition(t, p, o) for (t, p), o in payload.offsets.items()]
        self._committer.start(records, offsets, self._consumer, payload, inline=force)
        if force or self._committer.done:
            self._finish_commit()

    def _finish_commit(self) -> None:
        """Wait for the step in flight and account for it: release and count, or rewind after an abort.

        Raises:
            KafkaFatalError: the producer cannot continue (propagated from the sink).
        """
        try:
            step = self._committer.settle()
        except CommitAborted as exc:
            self.metrics.commits.labels("aborted").inc()
            self.stats.aborted_commits += 1
            log.warning("commit aborted; rewinding to the last committed offsets", error=str(exc))
            self._rewind()
            return
        if step is None:
            return
        pending, commit_seconds = step.payload, step.seconds
        self._last_commit = self.stats.last_commit_at = time.monotonic()
        self.metrics.commits.labels("ok").inc()
        self.metrics.stage_seconds.labels("commit").observe(commit_seconds)
        self.stats.slowest_commit_s = max(self.stats.slowest_commit_s, commit_seconds)
        self._guard.extend(pending.outcomes)  # only now: an aborted step is redone and would count twice
        self._ledger.release(pending.prefixes)
        for key, offset in pending.offsets.items():
            if key in self._epochs:  # not revoked meanwhile
                self._committed[key] = max(offset, self._committed.get(key, 0))
        self.stats.commits += 1
        wall_now = dt.datetime.now(dt.UTC)
        for item in pending.items:
            self._count(item, wall_now)

    def _count(self, item: InFlight, wall_now: dt.datetime) -> None:
        self.metrics.events.labels(item.outcome).inc()
        if item.outcome == "dead_lettered":
            self.metrics.dead_letters.labels(item.reason).inc()
            self.stats.dead_lettered += 1
        elif item.outcome == "stale":
            self.stats.stale += 1
        elif item.outcome == "excluded":
            self.stats.excluded += 1
        else:
            self.stats.scored += 1
        for record in item.outputs:
            if record.topic == self._topics.exclusions:
                self.stats.published += 1
                self.metrics.published.labels(str(item.outcome == "excluded").lower()).inc()
        if item.event is not None and item.outcome != "dead_lettered":
            latency = (wall_now - item.event.uploaded_at).total_seconds()
            if latency >= 0:
                self.metrics.upload_to_decision.observe(latency)
            for observer in self.observers:
                observer.on_committed(item.event.image_id, latency)

    def _rewind(self) -> None:
        """After an aborted commit: drop all uncommitted work and seek back to its first offset."""
        firsts = self._ledger.first_offsets()
        self._forget(set(firsts), still_assigned=True)
        for (topic, partition), offset in firsts.items():
            try:
                self._consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                # Not fetching yet / no longer assigned: its next owner starts at the committed offset anyway.
                log.warning("seek failed", topic=topic, partition=partition, offset=offset, error=str(exc))

    def _forget(self, keys: set[TopicPartitionKey], *, still_assigned: bool = False) -> None:
        """Drop uncommitted work of these partitions; results still in flight for them are ignored.

        A partition `still_assigned` (a rewind) gets a new epoch, so its refetched messages are taken;
        otherwise (revoked, lost) it has none, and messages of it fetched before are dropped.
        """
        self._ledger.drop(keys)
        if self._at_end & keys:
            # A rewound partition at its end must fetch again from the seek: let the next poll resume it.
            self._at_end -= keys
            self._assignment_changed = True
        for key in keys:
            if still_assigned:
                self._epochs[key] = self._new_epoch()
            else:
                self._epochs.pop(key, None)
                self._committed.pop(key, None)
        self._batcher.discard(lambda item: item.tp in keys)

    def _current(self, item: InFlight) -> bool:
        return self._epochs.get(item.tp) == item.epoch

    def _new_epoch(self) -> int:
        self._next_epoch += 1
        return self._next_epoch

    # ---------------------------------------------------------- rebalance (main thread, inside consume)
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._rebalanced_at = time.monotonic()
        for tp in partitions:
            self._epochs[(tp.topic, tp.partition)] = self._new_epoch()
            self._committed.pop((tp.topic, tp.partition), None)  # it starts at the group's offset
            self._at_end.discard((tp.topic, tp.partition))
        self._assignment_changed = True
        self.metrics.rebalances.labels("assigned").inc(len(partitions))
        log.info("partitions assigned", partitions=[f"{tp.topic}[{tp.partition}]" for tp in partitions])
        del consumer

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._rebalanced_at = time.monotonic()
        keys = {(tp.topic, tp.partition) for tp in partitions}
        self.metrics.rebalances.labels("revoked").inc(len(partitions))
        if not self._fatal:
            self._finish_commit()  # a step in flight settles first, as if it had been synchronous
        if not self._fatal and keys & self._ledger.partitions():
            # Finish what is nearly done: the batch on the device (bounded wait), then commit the finished
            # prefixes while the partitions are still ours. The rest is dropped for the next owner.
            if self._scoring_future is not None:
                self._collect_scored(wait_s=_REVOKE_WAIT_S)
            self._commit_step(force=True)
        self._forget(keys)
        log.info("partitions revoked", partitions=sorted(f"{t}[{p}]" for t, p in keys))
        del consumer

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._rebalanced_at = time.monotonic()
        keys = {(tp.topic, tp.partition) for tp in partitions}
        self.metrics.rebalances.labels("lost").inc(len(partitions))
        if not self._fatal:
            self._finish_commit()  # a step already in flight settles (it may fail: the group moved on)
        # Another member may own them already: commit nothing more, drop their work.
        self._forget(keys)
        log.warning("partitions lost", partitions=sorted(f"{t}[{p}]" for t, p in keys))
        del consumer

    # ------------------------------------------------------------------ housekeeping
    def _report_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag < _LAG_INTERVAL_S:
            return
        self._last_lag = now
        try:
            assignment = self._consumer.assignment()
            positions = self._consumer.position(assignment) if assignment else []
            for tp in positions:
                # Cached: the high watermark arrives with every fetch response, so this never blocks the loop.
                _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
                if tp.offset >= 0:
                    self.metrics.consumer_lag.labels(str(tp.partition)).set(max(0, high - tp.offset))
        except KafkaException as exc:
            log.debug("lag unavailable", error=str(exc))

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum: int, _frame: FrameType | None) -> None:
            del signum
            self.stop()

        previous: dict[int, Any] = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.getsignal(signum)
            signal.signal(signum, handler)
        return previous

    def _close(self) -> None:
        """Final commit (unless fatal), then close every stage; bounded."""
        if not self._fatal:
            try:
                if self._scoring_future is not None:
                    self._collect_scored(wait_s=self._settings.drain_timeout_s)
                self._commit_step(force=True)
            except (WorkerError, KafkaException) as exc:
                self._fatal = True
                log.error("final commit failed; uncommitted work will be redelivered", error=str(exc))
        # A fatal stop may leave a step in flight: it ends before the producer closes.
        self._committer.close(timeout_s=30)
        try:
            self._consumer.close()  # leaves the group; the revoke callback commits nothing new
        except (KafkaException, RuntimeError) as exc:
            log.warning("consumer close failed", error=str(exc))
        self._sink.close(5.0)
        self._preparer.close()
        self._scoring.close()
        if self._verification is not None:
            self._verification.close()
        for closeable in self._on_close:
            closeable.close()

    def _stats_fields(self) -> dict[str, Any]:
        stats = self.stats
        return {
            "consumed": stats.consumed,
            "scored": stats.scored,
            "excluded": stats.excluded,
            "stale": stats.stale,
            "dead_lettered": stats.dead_lettered,
            "published": stats.published,
            "batches": stats.batches,
            "commits": stats.commits,
            "verifier_reads": stats.verifier_reads,
            "verifier_failures": stats.verifier_failures,
            "skipped": stats.skipped,
            "seconds": round(stats.seconds, 3),
        }


def _as_bytes(data: str | bytes | None) -> bytes | None:
    return data.encode("utf-8") if isinstance(data, str) else data
