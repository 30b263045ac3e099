"""The layout band's fit and bound (`model.cascade_layout`), on measurements made up for the test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model.cascade import CascadePolicy, CascadeRule, TextCascade
from model.cascade_layout import with_layout_band
from model.errors import ConfigError
from model.verifier.engines import VerifierConfig


def _layout(words: int, rng: np.random.Generator) -> dict[str, float]:
    return {
        "boxes": words,
        "read_boxes": words,
        "read_characters": words,
        "read_area": min(0.5, words * 0.01 + rng.uniform(0, 0.01)),
        "lines": max(0, words // 5),
        "largest_text_height": 0.08 if words else 0.0,
        "ground_emptiness": rng.uniform(0.5, 0.9) if words > 10 else rng.uniform(0.1, 0.5),
        "confident_characters": words,
    }


class _Measured:
    """What `with_layout_band` asks of `model.cascade_fit.Measurements`: cards with many words found and
    high model scores, photos with few."""

    data = Path("made-up")

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.records: dict[str, tuple[float, dict[str, float]]] = {}
        for folder, count, card in (
            ("val/target", 80, True),
            ("val/other", 80, False),
            ("train/target", 60, True),
        ):
            for i in range(count):
                score = rng.uniform(0.9, 1.0) if card else rng.uniform(0.0, 0.95)
                words = int(rng.integers(15, 60)) if card else int(rng.integers(0, 8))
                self.records[f"{folder}/{i:03d}.png"] = (score, _layout(words, rng))
        for i in range(2000):
            source = ("sky", "fur", "bus")[i % 3]
            words = int(rng.integers(0, 6))
            self.records[f"calib/other/photo-{source}-{i:05d}.jpg"] = (
                rng.uniform(0.0, 0.97),
                _layout(words, rng),
            )

    def files(self, folder: str) -> list[str]:
        return sorted(key for key in self.records if key.startswith(folder + "/"))

    def scores(self, keys: list[str]) -> np.ndarray:
        return np.array([self.records[key][0] for key in keys])

    def layout(self, keys: list[str]) -> list[dict[str, Any]]:
        return [self.records[key][1] for key in keys]

    def looks(self, keys: list[str]) -> np.ndarray:
        raise AssertionError("no gate here")


def _cascade(photos: int) -> TextCascade:
    rule = CascadeRule(weights=(1.0,), bias=0.0, means=(0.0,), scales=(1.0,), inputs=("model_logit",))
    calibration = {
        "target_fpr": 0.001,
        "calibration_photos": photos,
        "card_band": {"false_positive_bound": 0.0015},
    }
    return TextCascade(
        "alocc-x", VerifierConfig(), "tesserocr 2.8.0", CascadePolicy(0.9, rule, 0.99), calibration
    )


def test_the_band_is_bounded_above_the_calibration_photos_and_adds_its_alpha_to_the_union_bound() -> None:
    measured = _Measured()
    calibration = measured.files("calib/other")
    sources = [key.split("-")[1] for key in calibration]
    banded = with_layout_band(_cascade(len(calibration)), measured, calibration, sources, 0.0005)  # type: ignore[arg-type]

    band = banded.policy.layout_band
    assert band is not None
    step = banded.calibration["layout_band"]
    assert step["false_positive_bound"] == pytest.approx(0.0015 + 0.0005)  # after the card band's
    assert step["rule_fitted_on"] == {"cards": 80, "other": 80, "folders": ["val/target", "val/other"]}
    # The floor keeps 95% of the band's training cards' grounds (theirs 0.5-0.9 here).
    assert 0.5 <= band.min_emptiness < 0.6 and step["emptiness_floor"]["min_emptiness"] == band.min_emptiness
    # No calibration photo reaches the band (the bound sits at or above the conformal one).
    photos = band.rule.score(measured.scores(calibration), measured.layout(calibration))
    assert band.cards_from >= step["conformal_bound"] and (photos >= band.cards_from).mean() <= 0.0005
    decided = step["train_cards_decided"]
    assert decided["sent"] == 60 and decided["decided"] > 0.5  # cards with many words found
    assert banded.version != _cascade(len(calibration)).version  # the band changes decisions


def test_the_band_refuses_photos_other_than_the_cascades() -> None:
    measured = _Measured()
    calibration = measured.files("calib/other")
    with pytest.raises(ConfigError, match="calibrated on 6000"):
        with_layout_band(_cascade(6000), measured, calibration, ["sky"] * len(calibration), 0.0005)  # type: ignore[arg-type]


def test_the_emptiness_floor_keeps_the_share_asked_of_the_bands_training_cards() -> None:
    from model.cascade_layout import emptiness_floor

    grounds = [0.1 * i for i in range(1, 11)]  # 0.1 .. 1.0
    assert emptiness_floor(grounds, keep=0.9) == pytest.approx(0.19)
    assert np.mean(np.array(grounds) >= emptiness_floor(grounds, keep=0.9)) == pytest.approx(0.9)
    assert emptiness_floor(grounds, keep=1.0) == 0.0  # no floor
    assert emptiness_floor([], keep=0.95) == 0.0
