"""A second, cheap screen beside the model's score: does the picture look like one line on a plain ground?

The model has learned cards as blocks of text, so a card that is one short line of large text on an empty
ground ("SOLD OUT", "臨時休業") scores like a product, and a score band would never show it to the verifier.
What such a card looks like is easy to measure on the model's own input (the same `(3, S, S)` uint8
pixels, so training, fitting and serving see one preprocessing): most of the picture is flat, and what is
not flat sits in a few rows. Two numbers per image, from the grey image's neighbour differences:

- `flat_share`: the share of pixels whose gradient stays under `BUSY_GRADIENT` grey levels;
- `busy_rows`: the share of rows holding at least `ROW_BUSY_PIXELS` pixels that are not flat.

`PlainLineGate` sends an image to the verifier when `flat_share >= flat_from` and `0 < busy_rows <= rows_to`
(a picture with nothing on it is not sent), and says how the verifier reads what it sends: where the gate
has a `line_read`, the line is also cut out and read alone (`model.verifier.line_read`);
`model.cascade_fit` sets both on the training family's one-line cards (`train/one-line`) and reports what
the gate adds to the verifier's share of calibration photos. It costs a few microseconds per image.

`screen_batch` is the first stage of a batch as the worker and `alocc score` both run it: the model's
score, the looks where the cascade has a gate, the largest part scores where it has the quadrant route.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from model.verifier.line_read import LineRead

# A neighbour difference under this many grey levels (0-255) is flat: a plain ground after JPEG.
BUSY_GRADIENT = 3.0
# A row with fewer busy pixels than this is empty (one stray pixel of noise does not make a line).
ROW_BUSY_PIXELS = 2
LOOK_NAMES = ("flat_share", "busy_rows")


def plain_line_looks(pixels: Any) -> npt.NDArray[np.float64]:
    """`(N, 2)` [flat_share, busy_rows] for uint8 pixels `(N, 3, S, S)` or one image `(3, S, S)`.

    Takes a torch tensor (on any device) or a numpy array; the arithmetic is numpy's on the CPU copy.
    """
    array = np.asarray(pixels.cpu() if hasattr(pixels, "cpu") else pixels, dtype=np.float32)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[1] != 3:
        raise ValueError(f"expected (N, 3, S, S) pixels, got {array.shape}")
    gray = array.mean(axis=1)
    gradient = np.zeros_like(gray)
    gradient[:, :, :-1] = np.abs(np.diff(gray, axis=2))
    gradient[:, :-1, :] = np.maximum(gradient[:, :-1, :], np.abs(np.diff(gray, axis=1)))
    busy = gradient >= BUSY_GRADIENT
    flat_share = 1.0 - busy.mean(axis=(1, 2))
    busy_rows = (busy.sum(axis=2) >= ROW_BUSY_PIXELS).mean(axis=1)
    return np.stack([flat_share, busy_rows], axis=1).astype(np.float64)


@dataclass(frozen=True)
class ScreenedBatch:
    """What the first stage knows of a batch: the model's `BatchScores`, and where the cascade needs them,
    the plain-line looks, the largest part scores (`model.quadrants`) and the best sheet scores
    (`model.sheets`)."""

    result: Any  # model.scoring.BatchScores
    looks: npt.NDArray[np.float64] | None
    part_scores: npt.NDArray[np.float32] | None
    sheet_scores: npt.NDArray[np.float32] | None = None
    # the slot of each picture's best sheet (-1: none), where `sheet_scores` are given (the sheet reading
    # reads that sheet: `model.sheets.sheet_to_read`)
    sheet_slots: npt.NDArray[np.int64] | None = None


def screen_batch(
    scorer: Any,
    pixels: Any,
    *,
    with_looks: bool,
    parts_member: int | None,
    parts_matter: Callable[[Any, Any], npt.NDArray[np.bool_]] | None = None,
    sheet_member: int | None = None,
) -> ScreenedBatch:
    """Score a stacked uint8 batch as the worker and `alocc score` both do: `(N, 3, S, S)`, or
    `(N, 1 + P, 3, S, S)` with each picture's parts (`model.quadrants.split_parts`): its four corners, then,
    where `P` is larger, its sheet slots (`model.decode.decode_with_parts` with a sheet search). The whole
    pictures are normalised after stacking (the arithmetic of `model.preprocess.preprocess`) and scored; the
    looks are taken where `with_looks`; the part scores where the batch has parts (by `parts_member`, or the
    whole ensemble), of the pictures `parts_matter(scores, looks)` names (`CascadePolicy.parts_matter`; all
    without it) and NaN for the others: no bound is reached by NaN; the best sheet scores where the batch
    has sheet slots (by `sheet_member`, or the whole ensemble), of every picture."""
    import torch

    from model.decode import QUADRANTS
    from model.preprocess import normalise
    from model.quadrants import largest_part_scores, split_parts
    from model.sheets import best_sheets

    whole, parts = split_parts(pixels)
    result = scorer.score(normalise(whole))
    looks = plain_line_looks(whole) if with_looks else None
    part_scores = sheet_scores = sheet_slots = None
    if parts is not None:
        corners = parts[:, :QUADRANTS]
        wanted = np.ones(len(whole), dtype=bool)
        if parts_matter is not None:
            wanted = np.asarray(parts_matter(np.asarray(result.scores), looks), dtype=bool)
        part_scores = np.full(len(whole), np.nan, dtype=np.float32)
        if wanted.any():
            chosen = corners[torch.from_numpy(wanted).to(parts.device)]
            part_scores[wanted] = largest_part_scores(scorer, chosen, parts_member)
        if parts.shape[1] > QUADRANTS:
            sheet_scores, sheet_slots = best_sheets(scorer, parts[:, QUADRANTS:], sheet_member)
    return ScreenedBatch(
        result=result,
        looks=looks,
        part_scores=part_scores,
        sheet_scores=sheet_scores,
        sheet_slots=sheet_slots,
    )


@dataclass(frozen=True)
class PlainLineGate:
    """Send to the verifier what looks like one line on a plain ground, whatever the model scored."""

    flat_from: float
    rows_to: float
    line_read: LineRead | None = None  # how the verifier reads the gate's images besides the page reading

    def sends(self, looks: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Which images (rows of `plain_line_looks`) the gate sends."""
        array = np.asarray(looks, dtype=np.float64).reshape(-1, len(LOOK_NAMES))
        return (array[:, 0] >= self.flat_from) & (array[:, 1] > 0) & (array[:, 1] <= self.rows_to)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready record (the card stores it); floats always, as the cascade's digest needs. A gate
        without a line reading writes no such field, so the versions of cards written before it stay."""
        record: dict[str, Any] = {"flat_from": float(self.flat_from), "rows_to": float(self.rows_to)}
        if self.line_read is not None:
            record["line_read"] = self.line_read.to_json()
        return record

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> PlainLineGate:
        """Read what `to_json` wrote."""
        flat_from, rows_to = float(record["flat_from"]), float(record["rows_to"])
        if not (math.isfinite(flat_from) and math.isfinite(rows_to)):
            raise ValueError("the plain-line gate's bounds must be finite")
        line_read = record.get("line_read")
        return cls(flat_from, rows_to, LineRead.from_json(line_read) if line_read is not None else None)

    @classmethod
    def fit(
        cls, one_line_looks: npt.ArrayLike, recall: float = 0.95, line_read: LineRead | None = None
    ) -> PlainLineGate:
        """Bounds that pass about `recall` of the given one-line cards: each bound at its (1 - recall) / 2
        quantile, so the two cut the same share. `line_read` is kept as given."""
        array = np.asarray(one_line_looks, dtype=np.float64).reshape(-1, len(LOOK_NAMES))
        if not len(array):
            raise ValueError("fitting the gate needs one-line cards")
        tail = (1.0 - recall) / 2
        return cls(
            flat_from=float(np.quantile(array[:, 0], tail, method="lower")),
            rows_to=float(np.quantile(array[:, 1], 1.0 - tail, method="higher")),
            line_read=line_read,
        )
