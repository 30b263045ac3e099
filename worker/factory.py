"""Build a `Worker` from `Settings`: the one place where settings become clients and stages."""

from __future__ import annotations

import functools
from typing import Any

import redis
import structlog
import torch
from confluent_kafka import Consumer

from model.cascade import TextCascade, card_cascade
from model.cascade_decisions import CascadeDecisions
from model.sheets import SheetSearch
from search_client import connect
from worker.app import LoopSettings, Topics, Worker
from worker.failures import ConfigurationError
from worker.guard import FailureRateGuard
from worker.health import HealthServer, HealthState
from worker.prometheus_metrics import WorkerMetrics
from worker.settings import Settings
from worker.sink import AtLeastOnceSink, OutputSink, TransactionalSink
from worker.stages.decode_processes import ChildConfig, DecodeProcessPool
from worker.stages.fetch import BackgroundFetcher
from worker.stages.prepare import ImagePreparer, Preparer
from worker.stages.score import BatchScorer, ScoringStage
from worker.stages.store import ScoreStore
from worker.stages.verify import VerificationStage

log = structlog.get_logger("alocc.worker")


def load_scorer(settings: Settings) -> Any:
    """Load the model named by the settings (`model.scoring.Scorer`)."""
    from model.scoring import Scorer

    if settings.model.torch_threads:
        torch.set_num_threads(settings.model.torch_threads)
    return Scorer.load(settings.model.path, device=settings.model.device, mode=settings.model.mode)


def redis_client(settings: Settings) -> redis.Redis:
    """A Redis client for the configured URL (strings decoded)."""
    return connect(settings.redis.url.get_secret_value(), socket_timeout_s=settings.redis.socket_timeout_s)


def build_sink(settings: Settings) -> OutputSink:
    """Transactional (exactly-once) or at-least-once output, per `ALOCC_KAFKA__TRANSACTIONAL`."""
    config = settings.kafka.producer_config()
    if settings.kafka.transactional:
        return TransactionalSink(config)
    return AtLeastOnceSink(config)


def build_worker(
    settings: Settings,
    *,
    scorer: BatchScorer | None = None,
    store: ScoreStore | None = None,
    serve_health: bool = True,
    end_offsets: dict[tuple[str, int], int] | None = None,
) -> Worker:
    """Create every stage and client from `settings`.

    Args:
        settings: The settings root.
        scorer: An already loaded model (tests, benchmarks); default loads `settings.model`.
        store: A score store to use instead of one built from `settings.redis`.
        serve_health: Start the metrics/health HTTP server when its port is not 0.
        end_offsets: A bounded run (replay): per (topic, partition), the first offset not to process.
    """
    loaded = scorer if scorer is not None else load_scorer(settings)
    closers: list[Any] = []
    cascade = served_cascade(settings, loaded)
    version = cascade.version if cascade is not None else loaded.model_version
    if store is None:
        store = ScoreStore(
            redis_client(settings),
            prefix=settings.redis.key_prefix,
            ttl_seconds=settings.redis.ttl_seconds,
            attempts=settings.redis.write_attempts,
        )
    # A shadow worker never claims the pointer: with `if_missing`, one started before any serving worker
    # would otherwise make its model the active version.
    policy = "never" if settings.model.shadow else settings.redis.active_version_policy
    active = store.claim_active_version(version, policy)
    # Checked again on every write (the store's script reads the pointer): this line only tells operators.
    if active == version:
        log.info("model version is active: publishing exclusion events", model_version=active)
    else:
        log.warning(
            "model version is not the active one: shadow scoring, no exclusion events",
            model_version=version,
            active_version=active,
        )

    metrics = WorkerMetrics()
    health = HealthState(settings.observability.healthy_tick_s, store.ping)
    health.model_loaded = True
    if serve_health and settings.observability.port:
        server = HealthServer(
            settings.observability.host, settings.observability.port, health, metrics.registry
        )
        server.start()
        closers.append(_Stopper(server))

    with_parts = cascade is not None and cascade.policy.parts_send_from is not None
    sheets = cascade.policy.sheets if cascade is not None else None
    preparer = build_preparer(
        settings, loaded.input_size, closers, with_parts=with_parts, sheets=sheets.search if sheets else None
    )
    verification = (
        build_verification(settings, cascade, closers, input_size=loaded.input_size)
        if cascade is not None
        else None
    )

    return Worker(
        consumer=Consumer(settings.kafka.consumer_config()),
        sink=build_sink(settings),
        store=store,
        preparer=preparer,
        scoring=ScoringStage(
            loaded,
            warm_up_batches=(1, settings.batch.max_size),
            with_looks=cascade is not None and cascade.policy.gate is not None,
            with_parts=with_parts,
            parts_member=cascade.policy.parts_member if cascade is not None else None,
            parts_matter=cascade.policy.parts_matter if cascade is not None else None,
            sheet_slots=sheets.search.slots if sheets is not None else 0,
            sheet_member=sheets.member if sheets is not None else None,
        ),
        verification=verification,
        decisions=CascadeDecisions(cascade.policy if cascade is not None else None),
        serving_version=version,
        end_offsets=end_offsets,
        topics=Topics(settings.topics.input, settings.topics.exclusions, settings.topics.dead_letter),
        settings=LoopSettings(
            max_batch=settings.batch.max_size,
            max_wait_s=settings.batch.max_wait_ms / 1000,
            start_when_idle=settings.batch.start_when_idle,
            max_in_flight=settings.batch.max_in_flight,
            commit_interval_s=settings.batch.commit_interval_ms / 1000,
            poll_timeout_s=settings.kafka.poll_timeout_s,
            drain_timeout_s=settings.drain_timeout_s,
            worker_id=settings.worker_id,
        ),
        guard=FailureRateGuard(
            settings.guard.window, settings.guard.min_events, settings.guard.max_failure_ratio
        ),
        metrics=metrics,
        health=health,
        on_close=closers,
    )


def served_cascade(settings: Settings, scorer: Any) -> TextCascade | None:
    """The text cascade the loaded model's card names, unless `verifier.enabled` is false.

    Raises:
        ConfigurationError: the card's cascade is unreadable or was fitted over other weights.
    """
    card = getattr(scorer, "card", None)  # test doubles of the scorer carry no card
    try:
        cascade = card_cascade(getattr(card, "text_cascade", None), scorer.model_version)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
    if cascade is None:
        return None
    if not settings.verifier.enabled:
        log.warning(
            "text verifier disabled: serving the model alone under its own version",
            model_version=scorer.model_version,
            cascade_version=cascade.version,
        )
        return None
    return cascade


def build_verification(
    settings: Settings, cascade: TextCascade, closers: list[Any], *, input_size: int = 0
) -> VerificationStage:
    """The verifier stage of `cascade`: its own SSRF-safe fetcher and OCR child processes (both appended
    to `closers`); where the cascade reads sheets, they are found again on pictures decoded for the model's
    input of `input_size`.

    Raises:
        ConfigurationError: the OCR engine or its language models are not installed.
    """
    from model.verifier import VerifierUnavailable
    from model.verifier.ocr_processes import OcrProcessReader

    # Each OCR child loads the second engine too, where the cascade reads pages or sheets with it: loaded on
    # first use, its models (about a second) would wait inside an upload's decision.
    seconds = cascade.policy.second_engines()
    reader = OcrProcessReader(cascade.verifier, image_limits(settings), seconds[0] if seconds else None)
    try:
        installed = reader.check()
    except VerifierUnavailable as exc:
        raise ConfigurationError(
            f"the model card serves a text cascade, but its verifier cannot run here: {exc}. "
            "Install it, or set ALOCC_VERIFIER__ENABLED=false to serve the model alone"
        ) from exc
    if installed != cascade.engine_version:
        # Another release reads differently (tesserocr 2.13.0 flagged 5 of the evaluation's 438 photos where
        # the card's 2.8.0 flags 3; docs/CASCADE.md): the card's version would name decisions it did not make.
        if not settings.verifier.allow_engine_mismatch:
            raise ConfigurationError(
                f"the model card's text cascade was calibrated with {cascade.engine_version}, but "
                f"{installed} is installed: install the card's release (pyproject.toml pins it), attach a "
                "cascade fitted with this one, or set ALOCC_VERIFIER__ALLOW_ENGINE_MISMATCH=true to serve it "
                "anyway"
            )
        log.warning(
            "OCR engine version differs from the card's", installed=installed, card=cascade.engine_version
        )
    for second in seconds:
        _check_second_engine(reader, second, settings)
    log.info(
        "serving the text cascade",
        cascade_version=cascade.version,
        engine=installed,
        send_from=cascade.policy.send_from,
        threshold=cascade.policy.threshold,
        verifier_processes=settings.verifier.workers,
    )
    closers.append(reader)
    try:
        reader.warm(settings.verifier.workers)  # one child per read thread, loaded before the first upload
    except VerifierUnavailable as exc:
        raise ConfigurationError(f"the text verifier's OCR processes could not start: {exc}") from exc
    fetcher = BackgroundFetcher(settings.fetch)
    closers.append(fetcher)
    sheets = cascade.policy.sheets
    return VerificationStage(
        fetcher,
        reader,
        workers=settings.verifier.workers,
        sheets=sheets.search if sheets is not None and sheets.read_from is not None else None,
        input_size=input_size,
    )


def _check_second_engine(reader: Any, second: Any, settings: Settings) -> None:
    """Refuse to serve a cascade whose second engine (`model.verifier.second_read`) cannot run here, or is
    another release than the card's unless told to (as for the main engine).

    Raises:
        ConfigurationError: the second engine is missing or differs from the card's.
    """
    from model.verifier import VerifierUnavailable

    try:
        installed = reader.check_second(second)
    except VerifierUnavailable as exc:
        raise ConfigurationError(
            f"the model card's text cascade reads a second time with {second.engine}, which cannot run "
            f"here: {exc}. Install it, or set ALOCC_VERIFIER__ENABLED=false to serve the model alone"
        ) from exc
    if installed == second.engine_version:
        return
    if not settings.verifier.allow_engine_mismatch:
        raise ConfigurationError(
            f"the model card's second reading was calibrated with {second.engine_version}, but {installed} "
            "is installed: install the card's release (pyproject.toml), attach a cascade calibrated with "
            "this one, or set ALOCC_VERIFIER__ALLOW_ENGINE_MISMATCH=true to serve it anyway"
        )
    log.warning(
        "second OCR engine version differs from the card's", installed=installed, card=second.engine_version
    )


def image_limits(settings: Settings) -> Any:
    """The limits on an image (`model.decode.ImageLimits`), as decoding and the verifier both apply them."""
    from model.preprocess import ImageLimits

    return ImageLimits(
        max_bytes=settings.fetch.max_bytes,
        max_pixels=settings.decode.max_pixels,
        allowed_formats=frozenset(settings.decode.allowed_formats),
    )


def build_preparer(
    settings: Settings,
    input_size: int,
    closers: list[Any],
    *,
    with_parts: bool = False,
    sheets: SheetSearch | None = None,
) -> Preparer:
    """The fetch + decode stage: child processes (`decode.processes` > 0) or threads in this process.

    `with_parts`: each picture also as its corner squares (the served cascade has the quadrant route);
    `sheets`: and as its sheets, searched so (the served cascade has the sheet route).
    Anything that must be closed after the preparer is appended to `closers`.
    """
    from model.decode import warm_up
    from model.preprocess import preprocess_uint8

    limits = image_limits(settings)
    if settings.decode.processes > 0:
        config = ChildConfig(
            fetch=settings.fetch.model_dump(mode="json"),
            size=input_size,
            max_bytes=limits.max_bytes,
            max_pixels=limits.max_pixels,
            allowed_formats=sorted(limits.allowed_formats),
            threads=max(1, settings.decode.workers // settings.decode.processes),
            log_level=settings.observability.log_level,
            log_format=settings.observability.log_format,
            with_parts=with_parts,
            sheets=None if sheets is None else sheets.to_json(),
        )
        return DecodeProcessPool(config, settings.decode.processes)
    warm_up(input_size, limits)
    fetcher = BackgroundFetcher(settings.fetch)
    closers.append(fetcher)
    decode = functools.partial(
        preprocess_uint8, size=input_size, limits=limits, with_parts=with_parts, sheets=sheets
    )
    return ImagePreparer(fetcher, decode, settings.decode.workers)


class _Stopper:
    """Adapts `HealthServer.stop` to the `close()` the worker calls on shutdown."""

    def __init__(self, server: HealthServer) -> None:
        self._server = server

    def close(self) -> None:
        self._server.stop()
