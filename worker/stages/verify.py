"""The cascade's second stage in the worker: the text verifier reads the images the model is unsure of.

`CascadeDecisions` turns a model score into a verdict, or says that the verifier must read the image
(model score >= the card's `send_from`, or, where the card has a plain-line gate, a picture that looks like
one line of text on a plain ground: `model.screen`); the verifier's
features then give the verdict (`model.cascade.CascadePolicy`). Without a cascade every verdict is the
model's own.

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
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from model.cascade import CascadePolicy
from model.verifier.features import TextFeatures
from worker.stages.prepare import Fetcher, fetch_then

MODEL = "model"
VERIFIER = "verifier"
MODEL_FALLBACK = "model_fallback"
# Why an image was sent to the verifier; the route also names the rule that decides it.
SCORE_ROUTE = "model_score"
PLAIN_LINE_ROUTE = "plain_line"


@dataclass(frozen=True)
class Verdict:
    """The decision for one image, and what it rests on."""

    score: float  # the deciding score: the cascade's (0 below send_from), or the model's (alone, fallback)
    excluded: bool
    threshold: float
    decided_by: str  # MODEL | VERIFIER | MODEL_FALLBACK
    model_score: float
    features: dict[str, float] | None = None  # the verifier's features, when it read the image
    fallback_reason: str = ""


class CascadeDecisions:
    """Verdicts from model scores and, where the policy sends an image, the verifier's features."""

    def __init__(self, policy: CascadePolicy | None) -> None:
        """Decide with `policy`, or with the model alone when it is None."""
        self.policy = policy

    def screen(
        self,
        model_score: float,
        model_excluded: bool,
        model_threshold: float,
        look: npt.ArrayLike | None = None,
    ) -> Verdict | None:
        """The model's verdict, or None when the verifier must read the image.

        `look` is the image's plain-line look (`model.screen.plain_line_looks`), which a gated policy needs.
        """
        if self.policy is None:
            return Verdict(model_score, model_excluded, model_threshold, MODEL, model_score)
        looks = None if look is None else np.asarray(look, dtype=np.float64).reshape(1, -1)
        if self.policy.sends([model_score], looks)[0]:
            return None
        return Verdict(0.0, False, self.policy.threshold, MODEL, model_score)

    def route(self, look: npt.ArrayLike | None) -> str:
        """The route of an image the verifier reads: the gate's where the gate passes its look."""
        gate = None if self.policy is None else self.policy.gate
        if gate is not None and look is not None and gate.sends(np.asarray(look).reshape(1, -1))[0]:
            return PLAIN_LINE_ROUTE
        return SCORE_ROUTE

    def verified(
        self, model_score: float, features: TextFeatures, look: npt.ArrayLike | None = None
    ) -> Verdict:
        """The cascade's verdict once the verifier read the image (the rule for its look decides)."""
        assert self.policy is not None
        row = features.as_dict()
        looks = None if look is None else np.asarray(look, dtype=np.float64).reshape(1, -1)
        score = float(self.policy.read_scores([model_score], [row], looks)[0])
        return Verdict(
            score,
            score >= self.policy.threshold,
            self.policy.threshold,
            VERIFIER,
            model_score,
            {name: float(value) for name, value in row.items()},
        )

    @staticmethod
    def fallback(model_score: float, model_excluded: bool, model_threshold: float, reason: str) -> Verdict:
        """The model's own decision, when the verifier could not read an image it was sent."""
        return Verdict(
            model_score, model_excluded, model_threshold, MODEL_FALLBACK, model_score, fallback_reason=reason
        )


@dataclass(frozen=True)
class Reading:
    """What the verifier made of one image, and how long it took (download included)."""

    features: TextFeatures
    seconds: float


class Reader(Protocol):
    """Image bytes in, the verifier's features out (`OcrProcessReader`; a `TextVerifier` in tests)."""

    def features(self, data: bytes) -> TextFeatures:
        """Read one image; raises on any failure."""
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

    def submit(self, url: str) -> concurrent.futures.Future[Reading]:
        """Download and read `url`; the future raises on any failure (the caller falls back)."""
        return fetch_then(self._fetcher, url, self._pool, self._read)

    def _read(self, data: bytes, fetch_s: float, result: concurrent.futures.Future[Reading]) -> None:
        started = time.monotonic()
        try:
            features = self._reader.features(data)
        except Exception as exc:  # noqa: BLE001 - any failure of one read falls back for that image only
            result.set_exception(exc)
            return
        result.set_result(Reading(features, fetch_s + time.monotonic() - started))

    def close(self) -> None:
        """Stop the read threads (reads not started are cancelled)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def describe_failure(error: BaseException) -> str:
    """A short reason for the record: the error's class and its first words (never recognised text)."""
    return f"{type(error).__name__}: {str(error)[:200]}"
