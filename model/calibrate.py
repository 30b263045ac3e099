"""Threshold calibration with the conformal finite-sample rank rule.

Given n calibration scores of non-text images (photos) and a target false-positive rate alpha, take
k = ceil((n + 1)(1 - alpha)) and the k-th smallest calibration score s_(k). Exclude an image iff its
score is **strictly greater** than s_(k). If the new photo's score is exchangeable with the
calibration scores, its rank among the n + 1 is uniform, and it exceeds s_(k) only when its rank is
above k: probability (n + 1 - k)/(n + 1) <= alpha. With `>=` instead, an image tying s_(k) would be
excluded and the bound becomes (n + 2 - k)/(n + 1), which can exceed alpha; with ties among scores
`>` stays conservative. Scores are float32, so the stored threshold is the next float32 above s_(k),
and the scoring rule `score >= threshold` is exactly `score > s_(k)`.

If k > n the sample cannot certify alpha: the minimum n is ceil(1/alpha - 1). Calibration then
refuses, unless asked to fall back to the maximum score, which is flagged in the card.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from model.checkpoint import ThresholdRecord, write_card
from model.errors import CalibrationSampleTooSmall, ConfigError
from model.preprocess import normalise
from model.scoring import RawScores, ScoreMode, Scorer, cascade_scores
from model.training_data import load_folder

log = logging.getLogger(__name__)


def conformal_rank(n: int, alpha: float) -> int:
    """k = ceil((n + 1)(1 - alpha)), computed so that float error cannot push it up by one."""
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
    return math.ceil(round((n + 1) * (1.0 - alpha), 9))


def min_calibration_size(alpha: float) -> int:
    """Smallest n for which `conformal_rank(n, alpha) <= n`."""
    n = max(1, math.ceil(round(1.0 / alpha - 1.0, 9)))
    while conformal_rank(n, alpha) > n:  # guard against rounding at the boundary
        n += 1
    return n


def next_float32_above(value: float) -> float:
    """The smallest float32 strictly greater than `value` (as float32)."""
    return float(np.nextafter(np.float32(value), np.float32(np.inf)))


@dataclass(frozen=True)
class ConformalThreshold:
    """Result of `conformal_threshold`.

    Attributes:
        threshold: Exclude iff score >= threshold (the next float32 above `rank_score`).
        rank_score: The k-th smallest calibration score; exclude iff score > rank_score.
        rank: k (1-based); equals n with `fallback` when the sample was too small.
        n: Calibration sample size.
        alpha: Target false-positive rate.
        fallback: True when n was too small and the maximum was used instead (no guarantee).
    """

    threshold: float
    rank_score: float
    rank: int
    n: int
    alpha: float
    fallback: bool


def conformal_threshold(scores: np.ndarray, alpha: float, *, allow_max: bool = False) -> ConformalThreshold:
    """Threshold with finite-sample false-positive rate <= alpha on exchangeable negatives.

    Args:
        scores: Calibration scores of negative (non-text) images, any order.
        alpha: Target false-positive rate.
        allow_max: When the sample is too small, use its maximum (flagged `fallback`) instead of raising.

    Raises:
        CalibrationSampleTooSmall: ceil((n + 1)(1 - alpha)) > n and `allow_max` is False.
    """
    values = np.sort(np.asarray(scores, dtype=np.float32).ravel())
    n = int(values.size)
    rank = conformal_rank(n, alpha)
    fallback = rank > n
    if fallback:
        needed = min_calibration_size(alpha)
        if not allow_max or n == 0:
            raise CalibrationSampleTooSmall(
                f"{n} calibration images cannot certify a false-positive rate of {alpha}: "
                f"at least {needed} are needed"
            )
        log.warning("only %d calibration images, %d needed for alpha=%s: using the maximum", n, needed, alpha)
        rank = n
    rank_score = float(values[rank - 1])
    if rank_score >= 1.0:
        # sigmoid(logit) rounds to exactly 1.0 in float32 once the logit passes about 17: the
        # calibration photos are as confident as any card can be, so the threshold lies above every
        # possible score and this mode will flag nothing. Safe for products, useless for cards.
        log.warning(
            "the rank-%d calibration score is 1.0 (scores saturate in float32): this mode will flag nothing",
            rank,
        )
    return ConformalThreshold(next_float32_above(rank_score), rank_score, rank, n, alpha, fallback)


def left_out_flags(scores: npt.ArrayLike, sources: Sequence[str], alpha: float) -> dict[str, int]:
    """Per calibration source: how many of its photos reach the bound set on the other sources alone (at
    `alpha`, the largest of theirs where they are too few): how a source calibration never saw would fare.
    A single source has nothing to be measured against: no entry."""
    values = np.asarray(scores, dtype=np.float32).ravel()
    names = np.asarray(list(sources))
    flags = {}
    for name in sorted(set(names.tolist())):
        inside = names == name
        if inside.all():
            break
        bound = conformal_threshold(values[~inside], alpha, allow_max=True).threshold
        flags[name] = int(np.sum(values[inside] >= bound))
    return flags


def empirical_threshold(negative_scores: np.ndarray, fpr: float) -> float:
    """Threshold (for `score >= threshold`) whose false-positive rate on this sample is <= fpr.

    This is the plain in-sample rule used for model selection, not a guarantee on new data.
    """
    values = np.sort(np.asarray(negative_scores, dtype=np.float32).ravel())
    if values.size == 0:
        raise ConfigError("no negative scores")
    rank = max(1, math.ceil(round(values.size * (1.0 - fpr), 9)))
    return next_float32_above(float(values[rank - 1]))


def rates_at(target_scores: np.ndarray, other_scores: np.ndarray, threshold: float) -> dict[str, float]:
    """False-negative rate on targets and false-positive rate on others at `score >= threshold`."""
    t = np.float32(threshold)
    return {
        "fnr": float(np.mean(np.asarray(target_scores) < t)) if len(target_scores) else float("nan"),
        "fpr": float(np.mean(np.asarray(other_scores) >= t)) if len(other_scores) else float("nan"),
    }


def raw_scores_uint8(
    scorer: Scorer, images: torch.Tensor, batch_size: int = 256, *, d_x_only: bool = False
) -> RawScores:
    """Score a (N, 3, S, S) uint8 tensor in batches; returns every raw score.

    With `d_x_only` (a discriminator-only training run, whose R was never trained) R is not run:
    d_x alone is computed, and d_rx and the reconstruction error are NaN.
    """

    def score(batch: torch.Tensor) -> RawScores:
        if not d_x_only:
            return scorer.raw_scores(batch)
        d_x = scorer.score(batch, ScoreMode.D_X).scores
        missing = np.full_like(d_x, np.nan)
        return RawScores(d_x=d_x, d_rx=missing, reconstruction_error=missing)

    parts = [score(normalise(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]
    return RawScores(
        d_x=np.concatenate([p.d_x for p in parts]),
        d_rx=np.concatenate([p.d_rx for p in parts]),
        reconstruction_error=np.concatenate([p.reconstruction_error for p in parts]),
    )


def images_at_the_threshold(
    scores: np.ndarray, names: list[str], rank_score: float, limit: int = 5
) -> list[tuple[str, float]]:
    """The calibration images whose scores set the threshold: the rank-k image and those above it.

    With a strict target these are a handful of images, and they decide how many text images the
    model misses; several crops of one photograph here mean that one picture set the threshold.
    Highest first, at most `limit`.
    """
    at_or_above = np.flatnonzero(scores >= np.float32(rank_score))
    order = at_or_above[np.argsort(-scores[at_or_above], kind="stable")][:limit]
    return [(names[i], float(scores[i])) for i in order]


def _record(result: ConformalThreshold, fingerprint: str, method_note: str = "") -> ThresholdRecord:
    return ThresholdRecord(
        threshold=result.threshold,
        method="conformal-max-fallback" if result.fallback else "conformal",
        target_fpr=result.alpha,
        n=result.n,
        rank=result.rank,
        rank_score=result.rank_score,
        data_fingerprint=fingerprint,
        fallback=result.fallback,
        note=method_note,
    )


def calibrate_checkpoint(
    model_dir: str | Path,
    other_dir: str | Path,
    *,
    target_fpr: float,
    gate_fpr: float = 0.1,
    target_dir: str | Path | None = None,
    default_mode: ScoreMode | str | None = None,
    allow_max: bool = False,
    device: str = "auto",
    cache_dir: str | Path | None = None,
) -> dict[str, dict[str, float]]:
    """Calibrate every mode's threshold on `other_dir` and write them into the checkpoint's card.

    Args:
        default_mode: Mode to make the card's default; "auto" picks the one with the lowest FN rate
            on `target_dir`; None keeps the card's.

    Returns a per-mode report: threshold, calibration FPR, and (with `target_dir`) the FN rate.
    """
    scorer = Scorer.load(model_dir, device=device, mode=ScoreMode.D_X)
    card = scorer.card
    others = load_folder(other_dir, card.input_size, cache_dir=cache_dir)
    other_raw = raw_scores_uint8(scorer, others.images)
    target_raw = None
    if target_dir is not None:
        target_raw = raw_scores_uint8(
            scorer, load_folder(target_dir, card.input_size, cache_dir=cache_dir).images
        )

    fp = others.fingerprint
    records: dict[str, ThresholdRecord] = {}
    records["d_x"] = _record(conformal_threshold(other_raw.d_x, target_fpr, allow_max=allow_max), fp)
    records["d_rx"] = _record(conformal_threshold(other_raw.d_rx, target_fpr, allow_max=allow_max), fp)
    gate = _record(
        conformal_threshold(other_raw.d_x, gate_fpr, allow_max=allow_max), fp, "cascade gate on d_x"
    )
    other_cascade = cascade_scores(other_raw.d_x, other_raw.d_rx, gate.threshold)
    records["cascade"] = _record(conformal_threshold(other_cascade, target_fpr, allow_max=allow_max), fp)

    report: dict[str, dict[str, float]] = {}
    for mode, record in records.items():
        other_scores = {"d_x": other_raw.d_x, "d_rx": other_raw.d_rx, "cascade": other_cascade}[mode]
        measured = {"calibration_fpr": rates_at(np.zeros(0), other_scores, record.threshold)["fpr"]}
        if target_raw is not None:
            target_scores = {
                "d_x": target_raw.d_x,
                "d_rx": target_raw.d_rx,
                "cascade": cascade_scores(target_raw.d_x, target_raw.d_rx, gate.threshold),
            }[mode]
            measured["target_fnr"] = rates_at(target_scores, np.zeros(0), record.threshold)["fnr"]
        if mode == "cascade":
            measured["r_run_fraction_on_calibration"] = float(
                np.mean(other_raw.d_x >= np.float32(gate.threshold))
            )
        record.measured = measured
        assert record.rank_score is not None  # set by _record from the conformal result
        setters = images_at_the_threshold(other_scores, others.names, record.rank_score)
        log.info(
            "%s threshold %.4f is set by: %s",
            mode,
            record.threshold,
            ", ".join(f"{name} ({score:.4f})" for name, score in setters),
        )
        report[mode] = {"threshold": record.threshold, "rank_score": record.rank_score, **measured}

    if default_mode == "auto":
        if target_raw is None:
            raise ConfigError("default mode 'auto' picks the lowest FN rate and needs target images")
        # The mode that misses the fewest target images at its calibrated threshold.
        chosen = min(ScoreMode, key=lambda m: (report[m.value]["target_fnr"], m is not ScoreMode.D_X))
    else:
        chosen = ScoreMode(default_mode) if default_mode is not None else ScoreMode(card.default_mode)
    new_card = dataclasses.replace(
        card,
        thresholds=records,
        cascade_gate=gate,
        default_mode=chosen.value,
        data={**card.data, "calibration_fingerprint": fp, "calibration_n": len(others.names)},
    )
    write_card(model_dir, new_card)
    return report
