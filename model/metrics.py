"""Binary classification metrics for the one-class model, in plain numpy.

The positive class is the trained class (announcement cards, or the inlier digit in the MNIST protocol);
a sample is predicted positive when its score is at or above the threshold, the same rule as
`BatchScores.excluded`. So the false-positive rate is the share of *other* images flagged (a product
wrongly hidden from search) and the false-negative rate is the share of target images missed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ConfusionCounts:
    """Counts of a thresholded binary decision (positive = the trained class)."""

    tp: int
    fp: int
    tn: int
    fn: int


@dataclass(frozen=True)
class BinaryMetrics:
    """Threshold-dependent and threshold-free metrics of one scoring mode.

    Rates whose denominator is empty (e.g. the FPR with no negative samples) are NaN.
    """

    accuracy: float
    fpr: float
    fnr: float
    precision: float
    recall: float
    f1: float
    auroc: float
    threshold: float

    def as_dict(self) -> dict[str, float]:
        """Return the metrics as a plain dict of floats (JSON friendly except for NaN)."""
        return {key: float(value) for key, value in asdict(self).items()}


def _as_arrays(labels: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[npt.NDArray[np.bool_], FloatArray]:
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"labels and scores must be 1-D of equal length, got {y.shape} and {s.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0/1 or boolean")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    return y.astype(bool), s


def _ratio(num: int, den: int) -> float:
    return float(num) / den if den else float("nan")


def confusion_counts(labels: npt.ArrayLike, predicted: npt.ArrayLike) -> ConfusionCounts:
    """Count the outcomes of a binary decision against the labels.

    Args:
        labels: 1 for the positive (trained) class, 0 for the others.
        predicted: the decision per sample (True = flagged as the positive class).

    Returns:
        The confusion counts.
    """
    y = np.asarray(labels)
    pred = np.asarray(predicted)
    if y.shape != pred.shape or y.ndim != 1:
        raise ValueError(f"labels and predictions must be 1-D of one length, got {y.shape}, {pred.shape}")
    if not (np.isin(y, (0, 1)).all() and np.isin(pred, (0, 1)).all()):
        raise ValueError("labels and predictions must be 0/1 or boolean")
    y = y.astype(bool)
    pred = pred.astype(bool)
    return ConfusionCounts(
        tp=int(np.sum(pred & y)),
        fp=int(np.sum(pred & ~y)),
        tn=int(np.sum(~pred & ~y)),
        fn=int(np.sum(~pred & y)),
    )


def auroc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the ROC curve, with ties counted as half (the Mann-Whitney U statistic).

    Args:
        labels: 1 for the positive class, 0 for the negatives.
        scores: higher means more like the positive class.

    Returns:
        The probability that a random positive scores above a random negative (ties count 1/2);
        NaN when one of the classes is absent.
    """
    y, s = _as_arrays(labels, scores)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    # Midranks: tied scores share the mean of the ranks they occupy, which is what makes a tie
    # between a positive and a negative worth exactly one half.
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(s.size, dtype=np.float64)
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    mid = first + (counts + 1) / 2.0  # 1-based mean rank of each tie group
    ranks[order] = np.repeat(mid, counts)
    rank_sum = ranks[y].sum()
    u = rank_sum - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(labels: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The ROC curve at every distinct score used as a threshold (`score >= t` is positive).

    Args:
        labels: 1 for the positive class, 0 for the negatives (both classes must be present).
        scores: higher means more like the positive class.

    Returns:
        `(fpr, tpr, thresholds)`, starting at (0, 0) with threshold +inf and ending at (1, 1).
    """
    y, s = _as_arrays(labels, scores)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("the ROC curve needs both classes")
    order = np.argsort(-s, kind="mergesort")
    s_desc = s[order]
    y_desc = y[order]
    # One point per distinct score: take the cumulative counts at the last index of each tie group.
    last_of_group = np.r_[np.flatnonzero(np.diff(s_desc)), s_desc.size - 1]
    tps = np.cumsum(y_desc)[last_of_group]
    fps = (last_of_group + 1) - tps
    tpr = np.r_[0.0, tps / n_pos]
    fpr = np.r_[0.0, fps / n_neg]
    thresholds = np.r_[np.inf, s_desc[last_of_group]]
    return fpr, tpr, thresholds


def binary_metrics(labels: npt.ArrayLike, scores: npt.ArrayLike, threshold: float) -> BinaryMetrics:
    """All the metrics of one mode, deciding `score >= threshold`.

    Args:
        labels: 1 for the positive (trained) class, 0 for the others.
        scores: higher means more like the positive class.
        threshold: the decision threshold (never tuned on these labels by the callers).

    Returns:
        Accuracy, FPR, FNR, precision, recall, F1 (positive class), AUROC and the threshold.
    """
    _, s = _as_arrays(labels, scores)
    return metrics_from_decisions(labels, scores, s >= threshold, threshold)


def metrics_from_decisions(
    labels: npt.ArrayLike, scores: npt.ArrayLike, predicted: npt.ArrayLike, threshold: float
) -> BinaryMetrics:
    """All the metrics of one mode, from decisions already taken (e.g. `BatchScores.excluded`).

    Taking the decision from the scorer rather than re-deriving it from the threshold keeps the
    evaluation faithful to whatever comparison (`>` or `>=`) the scorer applies.

    Args:
        labels: 1 for the positive (trained) class, 0 for the others.
        scores: higher means more like the positive class (used for the AUROC only).
        predicted: the decision per sample (True = flagged as the positive class).
        threshold: the threshold the decisions were taken at, recorded with the metrics.

    Returns:
        Accuracy, FPR, FNR, precision, recall, F1 (positive class), AUROC and the threshold.
    """
    c = confusion_counts(labels, predicted)
    total = c.tp + c.fp + c.tn + c.fn
    # F1 = 2TP / (2TP + FP + FN); written this way it is 0, not NaN, when nothing is predicted positive.
    return BinaryMetrics(
        accuracy=_ratio(c.tp + c.tn, total),
        fpr=_ratio(c.fp, c.fp + c.tn),
        fnr=_ratio(c.fn, c.fn + c.tp),
        precision=_ratio(c.tp, c.tp + c.fp),
        recall=_ratio(c.tp, c.tp + c.fn),
        f1=_ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn),
        auroc=auroc(labels, scores),
        threshold=float(threshold),
    )


def quantile_threshold(inlier_scores: npt.ArrayLike, miss_share: float) -> float:
    """A threshold that leaves about `miss_share` of the given scores below it.

    Used where a threshold must come from inlier data only, e.g. the MNIST protocol: with
    `miss_share=0.1` about 10% of the held-out inliers fall below the threshold (are missed).

    Args:
        inlier_scores: scores of samples of the positive class, not the test samples.
        miss_share: the share of those inliers that may fall below the threshold, in [0, 1).

    Returns:
        The threshold.
    """
    s = np.asarray(inlier_scores, dtype=np.float64)
    if s.size == 0:
        raise ValueError("no inlier scores to take a quantile of")
    if not 0.0 <= miss_share < 1.0:
        raise ValueError(f"miss_share must be in [0, 1), got {miss_share}")
    return float(np.quantile(s, miss_share, method="lower"))


def rate_interval(events: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a rate seen as `events` of `trials`.

    What a per-family rate can resolve: 3 photos flagged of 438 (0.7%) is 0.14-2.0% at 95%, so a target of
    0.3% is neither met nor refuted by that count alone. `(nan, nan)` for no trials.
    """
    from scipy.stats import beta  # imported here, not at CLI start

    if trials <= 0:
        return float("nan"), float("nan")
    if not 0 <= events <= trials:
        raise ValueError(f"{events} events of {trials} trials")
    tail = (1.0 - confidence) / 2
    low = 0.0 if events == 0 else float(beta.ppf(tail, events, trials - events + 1))
    high = 1.0 if events == trials else float(beta.ppf(1.0 - tail, events + 1, trials - events))
    return low, high
