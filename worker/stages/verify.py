"""The cascade's second stage in the worker: the text verifier reads the images the model is unsure of.

Which images it reads and how their verdicts are made is `model.cascade_decisions.CascadeDecisions`.

`VerificationStage` runs the reads off the event loop. It downloads the image again, through its own
SSRF-safe fetcher with the same limits: the decode processes never send raw bytes back to the worker (that
would copy every upload across a pipe to serve the few the verifier reads). The reads run on a small thread
pool, each thread with its own OCR child process (`model.verifier.ocr_processes`: the engine's models stay
loaded, and a crash or hang of the engine costs one read), so a thread only waits, and the pool's size is
how many cores the verifier may take.

A read that fails (download error, a bad image, an engine timeout or crash) never loses the event and is
never dead-lettered: the model's own decision at its card's threshold stands, recorded as
`decided_by = "model_fallback"` with the reason.
"""

from __future__ import annotations

import concurrent.futures
import functools
import time
from dataclasses import dataclass
from typing import Protocol

from model.verifier.features import TextFeatures
from model.verifier.line_read import LineRead
from model.verifier.panel_read import PanelRead
from worker.stages.prepare import Fetcher, fetch_then


@dataclass(frozen=True)
class Reading:
    """What the verifier made of one image, and how long it took (download included)."""

    features: TextFeatures
    seconds: float


class Reader(Protocol):
    """Image bytes in, the verifier's features out (`OcrProcessReader`; a `TextVerifier` in tests)."""

    def features(
        self, data: bytes, *, line_read: LineRead | None = None, panel_read: PanelRead | None = None
    ) -> TextFeatures:
        """Read one image (with the line or the panel reading too, where given); raises on any failure."""
        ...


class VerificationStage:
    """Downloads and reads images on a thread pool; `submit(url)` returns a future of `Reading`."""

    def __init__(self, fetcher: Fetcher, reader: Reader, *, workers: int) -> None:
        """Create the stage.

        Args:
            fetcher: Downloads bytes (normally its own `BackgroundFetcher`).
            reader: Reads an image with the verifier the model card names, with the worker's image limits.
            workers: Reads at once (each takes about one core while its engine runs).
        """
        self._fetcher = fetcher
        self._reader = reader
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="alocc-verify"
        )

    def submit(
        self, url: str, *, line_read: LineRead | None = None, panel_read: PanelRead | None = None
    ) -> concurrent.futures.Future[Reading]:
        """Download and read `url` (with `line_read` too, for the plain-line gate's images; `panel_read`, for
        the score route's); the future raises on any failure (the caller falls back)."""
        read = functools.partial(self._read, line_read=line_read, panel_read=panel_read)
        return fetch_then(self._fetcher, url, self._pool, read)

    def _read(
        self,
        data: bytes,
        fetch_s: float,
        result: concurrent.futures.Future[Reading],
        *,
        line_read: LineRead | None,
        panel_read: PanelRead | None,
    ) -> None:
        started = time.monotonic()
        try:
            features = self._reader.features(data, line_read=line_read, panel_read=panel_read)
        except Exception as exc:  # noqa: BLE001 - any failure of one read falls back for that image only
            result.set_exception(exc)
            return
        result.set_result(Reading(features, fetch_s + time.monotonic() - started))

    def close(self) -> None:
        """Stop the read threads (reads not started are cancelled)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
