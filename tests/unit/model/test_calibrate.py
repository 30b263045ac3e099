"""The conformal rank rule on known numbers."""

from __future__ import annotations

import numpy as np
import pytest

from model.calibrate import (
    conformal_rank,
    conformal_threshold,
    empirical_threshold,
    images_at_the_threshold,
    min_calibration_size,
    rates_at,
)
from model.errors import CalibrationSampleTooSmall


def test_rank_on_known_numbers() -> None:
    assert conformal_rank(19, 0.1) == 18  # ceil(20 * 0.9) = 18
    assert conformal_rank(99, 0.01) == 99  # ceil(100 * 0.99) = 99 exactly, despite float error
    assert conformal_rank(1000, 0.003) == 998  # ceil(1001 * 0.997) = ceil(997.997)
    assert min_calibration_size(0.1) == 9
    assert min_calibration_size(0.01) == 99
    assert min_calibration_size(0.003) == 333


def test_threshold_excludes_strictly_above_the_rank_score() -> None:
    scores = np.arange(1, 20, dtype=np.float32)[::-1]  # 19..1, order must not matter
    result = conformal_threshold(scores, 0.1)
    assert (result.rank, result.rank_score, result.n, result.fallback) == (18, 18.0, 19, False)
    # Decision rule: excluded iff score >= threshold, i.e. score > 18.
    assert not np.float32(18.0) >= np.float32(result.threshold)
    assert np.float32(18.000002) >= np.float32(result.threshold)
    assert np.mean(scores >= np.float32(result.threshold)) == pytest.approx(1 / 19)


def test_the_images_that_set_the_threshold_are_the_rank_score_and_those_above() -> None:
    scores = np.arange(1, 20, dtype=np.float32)  # 1..19: rank 18 of 19 at alpha 0.1
    names = [f"photo-{int(v):02d}.jpg" for v in scores]
    result = conformal_threshold(scores, 0.1)
    assert images_at_the_threshold(scores, names, result.rank_score) == [
        ("photo-19.jpg", 19.0),
        ("photo-18.jpg", 18.0),
    ]
    assert images_at_the_threshold(scores, names, result.rank_score, limit=1) == [("photo-19.jpg", 19.0)]


def test_ties_at_the_rank_score_are_not_excluded() -> None:
    scores = np.array([0.1] * 5 + [0.9] * 5, dtype=np.float32)
    result = conformal_threshold(scores, 0.3)  # k = ceil(11 * 0.7) = 8 -> the score 0.9
    assert result.rank == 8 and result.rank_score == pytest.approx(0.9)
    assert not np.any(scores >= np.float32(result.threshold))


def test_too_small_sample_refuses_or_falls_back() -> None:
    scores = np.linspace(0, 1, 8, dtype=np.float32)
    with pytest.raises(CalibrationSampleTooSmall, match="at least 9"):
        conformal_threshold(scores, 0.1)
    result = conformal_threshold(scores, 0.1, allow_max=True)
    assert result.fallback and result.rank == 8 and result.rank_score == 1.0


def test_guarantee_holds_on_fresh_exchangeable_samples() -> None:
    rng = np.random.default_rng(0)
    alpha, n = 0.05, 59
    rates = []
    for _ in range(400):
        calibration, fresh = rng.normal(size=n), rng.normal(size=2000)
        rates.append(np.mean(fresh >= conformal_threshold(calibration, alpha).threshold))
    # Marginal coverage: E[FPR] <= alpha (k = 57, so E[FPR] = 3/60 = 0.05).
    assert np.mean(rates) <= alpha + 0.005


def test_empirical_threshold_and_rates() -> None:
    others = np.arange(100, dtype=np.float32)
    threshold = empirical_threshold(others, 0.05)  # rank 95 -> score 94; exclude > 94
    assert rates_at(np.zeros(0), others, threshold)["fpr"] == 0.05
    targets = np.array([10, 94, 95, 200], dtype=np.float32)
    assert rates_at(targets, others, threshold)["fnr"] == 0.5


def test_saturated_calibration_scores_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    scores = np.ones(100, dtype=np.float32)
    with caplog.at_level("WARNING"):
        result = conformal_threshold(scores, 0.05)
    assert not np.any(scores >= np.float32(result.threshold))  # flags nothing, as the warning says
    assert "saturate" in caplog.text
