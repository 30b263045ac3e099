"""The quadrant route: the model's discriminator on each corner of the picture, to reach cards it scores low.

The model learned cards as pictures filled with a notice. A notice that fills only part of a picture (a
caption strip across a photograph, a panel beside a product shot) scores like the photograph around it,
so the model's score never sends it to the verifier: 36% of the caption-strip cards of `check/target` score
under the served `send_from`. The same discriminator, shown the picture's four corner squares at twice the
model's input scale (`model.decode.decode_quadrants`), sees such a notice fill a part the way a card fills
the whole. The route sends a picture when its largest part score reaches `parts_send_from`; the whole
picture's score still sends the pictures it is most sure of.

How the reading budget is split between the two (`route_bounds`) is chosen on the training family, on
designs a discriminator never learned (`model.cascade_quadrants`), never on an evaluation family. It costs
four more discriminator passes per picture: on a GPU a few microseconds; on two CPU cores about 6 core-ms
with the three-member default model, about 2.7 with one of its members (`parts_member`, as served).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import torch


class PartScorer(Protocol):
    """What scoring the parts needs of `model.scoring.Scorer`."""

    def score(self, images: torch.Tensor, mode: Any = None) -> Any:
        """Score `(N, 3, S, S)` float images in [-1, 1]; returns a `BatchScores`."""
        ...

    def member_d_x(self, images: torch.Tensor, member: int) -> np.ndarray:
        """One ensemble member's sigmoid(D(X)) of `(N, 3, S, S)` float images."""
        ...


def largest_part_scores(
    scorer: PartScorer, parts: torch.Tensor, member: int | None = None
) -> npt.NDArray[np.float32]:
    """`(N,)` the largest `d_x` score over each picture's parts; `parts` is an `(N, P, 3, S, S)` uint8 tensor
    (`split_parts` of what `model.decode.decode_with_parts` gives), `S` the scorer's input size. Scored by
    the whole ensemble, or by one of its members where `member` is given (`Scorer.member_d_x`)."""
    from model.preprocess import normalise
    from model.scoring import ScoreMode

    if parts.ndim != 5 or parts.shape[2] != 3:
        raise ValueError(f"expected (N, parts, 3, S, S) pixels, got {tuple(parts.shape)}")
    count, per_picture = parts.shape[:2]
    if count == 0:
        return np.zeros(0, dtype=np.float32)
    images = normalise(parts.reshape(-1, *parts.shape[2:]))
    if member is None:
        scores = scorer.score(images, ScoreMode.D_X).scores
    else:
        scores = scorer.member_d_x(images, member)
    return np.asarray(scores, dtype=np.float32).reshape(count, per_picture).max(axis=1)


def split_parts(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`(whole, parts)` of a stacked batch: `(N, 3, S, S)` pixels have no parts (None); `(N, 1 + P, 3, S, S)`
    (each picture decoded by `model.decode.decode_with_parts`) are the whole picture, then its parts."""
    if pixels.ndim == 4:
        return pixels, None
    if pixels.ndim != 5 or pixels.shape[1] < 2:
        raise ValueError(
            f"expected (N, 3, S, S) or (N, 1 + parts, 3, S, S) pixels, got {tuple(pixels.shape)}"
        )
    return pixels[:, 0], pixels[:, 1:]


def route_bounds(
    whole: npt.ArrayLike,
    parts: npt.ArrayLike,
    share: float,
    whole_share: float,
    already_sent: npt.ArrayLike | None = None,
) -> tuple[float, float]:
    """`(send_from, parts_send_from)` that read `share` of the calibration photos between them.

    `whole` and `parts` are the calibration photos' whole-picture and largest-part scores. The whole score
    sends the `whole_share` it scores highest; the part score sends the next highest of the rest until
    `share` of all photos is sent. `already_sent` marks photos another route reads anyway (the plain-line
    gate), which count against the share. A bound that sends nothing is 2.0 (scores are <= 1).
    """
    whole_scores = np.asarray(whole, dtype=np.float64)
    part_scores = np.asarray(parts, dtype=np.float64)
    if whole_scores.shape != part_scores.shape or whole_scores.ndim != 1 or not len(whole_scores):
        raise ValueError("whole and part scores must be two equal, non-empty 1-d arrays")
    if not 0.0 <= whole_share <= share <= 1.0:
        raise ValueError(f"need 0 <= whole_share <= share <= 1, got {whole_share}, {share}")
    other = (
        np.zeros(len(whole_scores), dtype=bool)
        if already_sent is None
        else np.asarray(already_sent, dtype=bool).reshape(len(whole_scores))
    )
    send_from = float(np.quantile(whole_scores, 1.0 - whole_share)) if whole_share > 0 else 2.0
    sent = other | (whole_scores >= send_from)
    room = round(share * len(whole_scores)) - int(sent.sum())
    rest = np.sort(part_scores[~sent])[::-1]
    if room <= 0 or not len(rest):
        return send_from, 2.0
    room = min(room, len(rest))
    bound = float(rest[room - 1])
    if room < len(rest) and rest[room] == bound:  # a tie at the edge: send fewer, never over the budget
        bound = float(np.nextafter(bound, 2.0))
    return send_from, bound
