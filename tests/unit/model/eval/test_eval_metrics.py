"""Metrics on hand-computed numbers, cross-checked against scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from model.metrics import (
    auroc,
    binary_metrics,
    confusion_counts,
    metrics_from_decisions,
    quantile_threshold,
    roc_curve,
)


def test_auroc_perfect_and_reversed() -> None:
    assert auroc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert auroc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0


def test_auroc_ties_count_half() -> None:
    # Every positive ties with every negative: AUROC is exactly one half.
    assert auroc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    # Pairs (pos, neg): (0.8 vs 0.8) tie = 0.5, (0.8 vs 0.2) = 1, (0.4 vs 0.8) = 0, (0.4 vs 0.2) = 1 -> 2.5/4.
    assert auroc([1, 1, 0, 0], [0.8, 0.4, 0.8, 0.2]) == pytest.approx(0.625)


def test_auroc_one_class_is_nan() -> None:
    assert math.isnan(auroc([1, 1], [0.1, 0.2]))


def test_auroc_matches_sklearn_on_random_scores_with_ties() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    s = np.round(rng.normal(size=500) + y * 0.7, 1)  # rounding makes many ties
    assert auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_roc_curve_matches_sklearn() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + y, 1)
    fpr, tpr, thr = roc_curve(y, s)
    sk_fpr, sk_tpr, sk_thr = sk_roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_allclose(thr[1:], sk_thr[1:])
    assert np.trapezoid(tpr, fpr) == pytest.approx(auroc(y, s))


def test_binary_metrics_threshold_is_inclusive() -> None:
    m = binary_metrics([1, 1, 0, 0, 1], [0.5, 0.4, 0.5, 0.1, 0.9], threshold=0.5)
    # tp=2 (0.5, 0.9), fp=1 (0.5), tn=1, fn=1 (0.4)
    assert m.fpr == pytest.approx(1 / 2)
    assert m.fnr == pytest.approx(1 / 3)


def test_confusion_counts_and_decisions() -> None:
    c = confusion_counts([1, 1, 0, 0, 1], [True, False, True, False, True])
    assert (c.tp, c.fp, c.tn, c.fn) == (2, 1, 1, 1)
    # A scorer that decides `score > threshold` is evaluated by its own decisions, not re-derived ones.
    m = metrics_from_decisions([1, 0], [0.5, 0.5], [False, False], threshold=0.5)
    assert (m.fnr, m.fpr, m.auroc) == (1.0, 0.0, 0.5)


def test_binary_metrics_known_numbers() -> None:
    # 4 targets, 6 others; threshold 0.5 flags targets 0.9, 0.7, 0.6 and other 0.55.
    labels = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    scores = [0.9, 0.7, 0.6, 0.2, 0.55, 0.3, 0.1, 0.05, 0.4, 0.45]
    m = binary_metrics(labels, scores, 0.5)
    assert m.accuracy == pytest.approx(8 / 10)
    assert m.fpr == pytest.approx(1 / 6)
    assert m.fnr == pytest.approx(1 / 4)
    assert m.precision == pytest.approx(3 / 4)
    assert m.recall == pytest.approx(3 / 4)
    assert m.f1 == pytest.approx(0.75)
    assert m.f1 == pytest.approx(f1_score(labels, np.asarray(scores) >= 0.5))
    assert m.threshold == 0.5
    assert set(m.as_dict()) == {"accuracy", "fpr", "fnr", "precision", "recall", "f1", "auroc", "threshold"}


def test_f1_is_zero_when_nothing_flagged() -> None:
    m = binary_metrics([1, 0, 1], [0.1, 0.2, 0.3], threshold=0.9)
    assert m.f1 == 0.0
    assert m.fnr == 1.0
    assert m.fpr == 0.0
    assert math.isnan(m.precision)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError):
        auroc([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError):
        auroc([0, 1], [0.1])
    with pytest.raises(ValueError):
        auroc([0, 1], [0.1, float("nan")])


def test_quantile_threshold_misses_the_requested_share() -> None:
    inliers = np.arange(100, dtype=float)
    t = quantile_threshold(inliers, 0.1)
    assert np.mean(inliers < t) == pytest.approx(0.09, abs=0.011)
    with pytest.raises(ValueError):
        quantile_threshold([], 0.1)
