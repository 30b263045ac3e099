"""The scorer adapter: a list of decoded uint8 images in, one `Scorer.score` call, plain results out.

Scoring runs on its own single thread so the main loop keeps polling Kafka (the consumer's
`max.poll.interval.ms` never expires during a slow batch) and the next batch's downloads and decodes
overlap with this batch's model call. One thread, because there is one device per worker.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from model.decode import QUADRANTS
from model.screen import screen_batch


class BatchScorer(Protocol):
    """The part of `model.scoring.Scorer` the worker uses."""

    input_size: int
    model_version: str

    def score(self, images: torch.Tensor, mode: Any = None) -> Any:
        """Score `(N, 3, S, S)` float images in [-1, 1]; returns a `BatchScores`."""
        ...

    def member_d_x(self, images: torch.Tensor, member: int) -> np.ndarray:
        """One ensemble member's sigmoid(D(X)) (the quadrant route's parts, where the card names one)."""
        ...


@dataclass(frozen=True)
class ScoredBatch:
    """Scores of one batch, aligned with the input list."""

    scores: np.ndarray  # (N,) float32
    excluded: np.ndarray  # (N,) bool
    # (N, 2) plain-line looks of the same pixels (`model.screen`) where the cascade has a gate, else None
    looks: np.ndarray | None
    # (N,) largest part scores (`model.quadrants`) where the cascade has the quadrant route, else None;
    # NaN for the pictures whose corners cannot change a decision (not scored)
    part_scores: np.ndarray | None
    # (N,) best sheet scores (`model.sheets`) where the cascade has the sheet route, else None
    sheet_scores: np.ndarray | None
    # (N,) the slot of each picture's best sheet (-1: none), with `sheet_scores` (the sheet reading reads it)
    sheet_slots: np.ndarray | None
    threshold: float
    mode: str
    model_version: str
    seconds: float


class ScoringStage:
    """Runs `BatchScorer.score` on a dedicated thread."""

    def __init__(
        self,
        scorer: BatchScorer,
        *,
        warm_up_batches: tuple[int, ...] = (),
        with_looks: bool = False,
        with_parts: bool = False,
        parts_member: int | None = None,
        parts_matter: Callable[[Any, Any], np.ndarray] | None = None,
        sheet_slots: int = 0,
        sheet_member: int | None = None,
    ) -> None:
        """Create the stage around a loaded model.

        Device placement, pinned memory, non-blocking copies, bf16 autocast and splitting a batch on
        CUDA out-of-memory are `Scorer.score`'s job; this stage only batches and runs it off the main loop.

        Args:
            scorer: The loaded model.
            warm_up_batches: Batch sizes to score once on blank images now, so the first real batches
                do not pay for kernel selection and buffer allocation (on this CPU the first batch of
                32 takes about 8 ms and later ones 5 ms; a GPU's first call costs far more). They run
                on the stage's own thread: torch keeps a CPU thread team per calling thread, and the
                team to warm is the one that scores real batches. In cascade mode this warms D(X)
                only: blank images do not pass the gate to R.
            with_looks: Also compute each image's plain-line look (the served cascade has a gate). Off
                otherwise: it costs about 0.12 ms an image on this CPU, a share of a GPU host's scoring
                thread worth keeping.
            with_parts: The images come with their corner squares (`(1 + P, 3, S, S)` each, the preparer
                decodes them so when the served cascade has the quadrant route): the whole picture is
                scored as always, and each picture's largest part score is computed too (P more passes
                of the discriminator per picture; of one member, `parts_member`, where the card names one).
            parts_matter: Which pictures' part scores can change a decision (`CascadePolicy.parts_matter`,
                from their scores and looks); the others are not scored (NaN). None: all of them.
            sheet_slots: The parts end with this many sheet slots (the served cascade has the sheet route:
                `model.sheets`); each picture's best sheet score is computed too, by `sheet_member` where the
                card names one (one more pass of the discriminator per sheet found; none for empty slots).
        """
        self._scorer = scorer
        self._with_looks = with_looks
        self._parts_member = parts_member
        self._parts_matter = parts_matter
        self._sheet_member = sheet_member
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="alocc-score")
        side = scorer.input_size
        blank = torch.zeros(
            (1 + QUADRANTS + sheet_slots, 3, side, side) if with_parts else (3, side, side), dtype=torch.uint8
        )
        for size in warm_up_batches:
            self.submit([blank] * size).result()

    @property
    def model_version(self) -> str:
        """Version of the loaded model."""
        return self._scorer.model_version

    def submit(self, pixels: list[torch.Tensor]) -> concurrent.futures.Future[ScoredBatch]:
        """Score a batch of `(3, S, S)` uint8 images (`(1 + P, 3, S, S)` with parts) in the background."""
        return self._thread.submit(self.score, pixels)

    def score(self, pixels: list[torch.Tensor]) -> ScoredBatch:
        """Score a batch of `(3, S, S)` uint8 images (or `(1 + P, 3, S, S)`: with their parts) now, on the
        calling thread."""
        started = time.perf_counter()
        screened = screen_batch(
            self._scorer,
            torch.stack(pixels),
            with_looks=self._with_looks,
            parts_member=self._parts_member,
            parts_matter=self._parts_matter,
            sheet_member=self._sheet_member,
        )
        result = screened.result
        mode = getattr(result.mode, "value", result.mode)
        return ScoredBatch(
            scores=np.asarray(result.scores, dtype=np.float32),
            excluded=np.asarray(result.excluded, dtype=bool),
            looks=screened.looks,
            part_scores=screened.part_scores,
            sheet_scores=screened.sheet_scores,
            sheet_slots=screened.sheet_slots,
            threshold=float(result.threshold),
            mode=str(mode),
            model_version=str(result.model_version),
            seconds=time.perf_counter() - started,
        )

    def close(self) -> None:
        """Stop the scoring thread after the current batch."""
        self._thread.shutdown(wait=True, cancel_futures=True)
