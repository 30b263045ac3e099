"""`alocc cascade fit` end to end on synthetic measurements: what is fitted on what, and what is reported."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model.cascade import GATE_RULE_INPUTS, RULE_INPUTS, CascadePolicy
from model.cascade_fit import (
    DEFAULT_LINE_READ,
    FLOOR_GRID,
    Measurements,
    fit_and_calibrate,
    format_curve,
)
from model.verifier.engines import VerifierConfig
from model.verifier.line_read import LineRead

_FLAT_LINE = (0.95, 0.1)  # the look of one line on a plain ground
_BUSY = (0.3, 0.9)  # the look of a photograph


def _read(characters: int, *, glyphs: int = 0, emptiness: float = 0.4) -> dict[str, float]:
    return {
        "boxes": characters // 3,
        "read_boxes": characters // 3,
        "read_characters": characters,
        "read_area": 0.01 * characters,
        "lines": min(characters, 4) // 2,
        "largest_text_height": 0.1 if characters else 0.0,
        "ground_emptiness": emptiness,
        "confident_characters": characters,
        "drawing_marks": glyphs,
        "drawing_glyphs": glyphs,
        "drawing_aspect": 4.0 if glyphs > 1 else 1.0,
    }


class _Synthetic(Measurements):
    """Every folder the fit reads, made up: cards score high and read text; photos do not; one-line cards
    score like photos, look flat, and read nothing as a page but four characters as a line."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp, tmp / "out", VerifierConfig(), None)
        rng = np.random.default_rng(0)
        self.items: dict[str, tuple[float, tuple[float, float], dict[str, float], dict[str, float]]] = {}
        self.line_reads: list[str] = []

        def add(folder: str, n: int, kind: str) -> None:
            for index in range(n):
                key = f"{folder}/{kind}-x-{index:04d}.jpg"
                if kind == "card":
                    page = _read(int(rng.integers(12, 40)))
                    self.items[key] = (float(rng.uniform(0.5, 1.0)), _BUSY, page, page)
                elif kind == "line":
                    page, line = _read(0, emptiness=0.97), _read(4, glyphs=4, emptiness=0.98)
                    self.items[key] = (float(rng.uniform(0.0, 0.2)), _FLAT_LINE, page, line)
                elif kind == "product" and index % 10 == 0:  # a product cut out on a flat ground
                    page, line = _read(0, emptiness=0.97), _read(0, glyphs=1, emptiness=0.97)
                    self.items[key] = (float(rng.uniform(0.0, 0.2)), _FLAT_LINE, page, line)
                else:
                    page = _read(int(rng.integers(0, 3)))
                    self.items[key] = (float(rng.beta(1, 8)), _BUSY, page, page)

        add("val/target", 60, "card")
        add("val/other", 60, "photo")
        add("train/target", 40, "card")
        add("train/one-line", 60, "line")
        add("train/negatives", 80, "product")
        add("train/structured", 20, "photo")
        add("calib/other", 400, "product")
        for folder, kind in [
            ("eval/target", "card"),
            ("check/target", "card"),
            ("check/one-line", "line"),
            ("check/photographed", "card"),
            ("eval/other", "product"),
        ]:
            add(folder, 20, kind)

    def files(self, folder: str, limit: int | None = None) -> list[str]:
        keys = sorted(key for key in self.items if key.startswith(f"{folder}/"))
        return keys if limit is None else keys[:: max(1, len(keys) // limit)][:limit]

    def scores(self, keys: Sequence[str]) -> np.ndarray:
        return np.array([self.items[key][0] for key in keys])

    def looks(self, keys: Sequence[str]) -> np.ndarray:
        return np.array([self.items[key][1] for key in keys]).reshape(-1, 2)

    def features(self, keys: Sequence[str], line_read: LineRead | None = None) -> list[dict[str, Any]]:
        if line_read is None:
            return [self.items[key][2] for key in keys]
        self.line_reads.extend(keys)
        return [self.items[key][3] for key in keys]

    def unread(self, keys: Sequence[str]) -> list[dict[str, Any]]:
        blank = {
            "read_characters": 0,
            "read_boxes": 0,
            "read_area": 0.0,
            "lines": 0,
            "largest_text_height": 0.0,
        }
        return [{**self.items[key][3], **blank, "confident_characters": 0} for key in keys]

    def model_version(self) -> str:
        return "synthetic-model"

    def engine_version(self) -> str:
        return "synthetic-engine"


def test_the_fit_reads_the_gates_pictures_as_lines_and_reports_the_held_out_one_line_cards(
    tmp_path: Path,
) -> None:
    measured = _Synthetic(tmp_path)

    report = fit_and_calibrate(
        measured, per_folder=40, shares=[0.001, 0.05, 0.2], alpha=0.01, budget_share=0.2
    )

    policy = CascadePolicy.from_json(report["policy"])
    assert policy.gate is not None and policy.gate.line_read == DEFAULT_LINE_READ
    assert policy.gate_rule is not None and policy.gate_rule.inputs == GATE_RULE_INPUTS
    assert policy.gate_rule.weights[0] == 0.0  # the gate's rule gives the model's score no weight
    assert policy.rule.inputs == RULE_INPUTS
    # The shape rule, fitted on the same pictures unread, scores a line of four glyphs over a flat product.
    shape_rule = policy.gate_shape_rule
    assert shape_rule is not None and shape_rule.weights[0] == 0.0
    line, product = measured.unread(["train/one-line/line-x-0000.jpg", "train/negatives/product-x-0000.jpg"])
    line_score, product_score = shape_rule.score([0.5, 0.5], [line, product])
    assert line_score > 0.5 > product_score
    assert report["fit"]["gate_shape_rule"]["one_line_cards_unread"] > 0
    # Only what the gate passes is read as a line: one-line cards and flat products, never a photo.
    assert measured.line_reads and all("/line-" in key or "/product-" in key for key in measured.line_reads)
    # The 20 one-line cards that fitted nothing are caught: they read only as lines.
    assert report["held_out_one_line"] == {"cards": 20, "recall": 1.0}
    assert report["fit"]["gate_recall"] == 0.99
    # The gate alone reads 10% of the calibration photos: a 0.1% share is no point of the curve.
    assert report["gate_share_calib_photos"] == 0.1
    assert all(point["verifier_share_calib_photos"] >= 0.1 for point in report["curve"])
    assert report["curve"][-1]["eval"]["check/one-line"]["rate"] == 0.0
    assert "20 training one-line cards that fitted nothing" in format_curve(report)
    # The rules' floor: none served unless asked; each floor of the grid calibrated and measured.
    assert policy.min_confident == 0 and report["min_confident"] == 0
    floors = report["confidence_floor"]
    assert [row["min_confident"] for row in floors] == list(FLOOR_GRID)
    assert floors[0]["threshold"] == report["curve"][-1]["threshold"]  # no floor: the chosen point's
    assert all(0 <= row["train_card_recall"] <= 1 for row in floors)
    assert "the rules' floor at the chosen point (served: 0)" in format_curve(report)
    floored = fit_and_calibrate(
        measured, per_folder=40, shares=[0.2], alpha=0.01, budget_share=0.2, min_confident=2
    )
    assert CascadePolicy.from_json(floored["policy"]).min_confident == 2


def test_a_fit_that_reads_pages_only_keeps_the_gate_without_a_line_reading(tmp_path: Path) -> None:
    measured = _Synthetic(tmp_path)

    report = fit_and_calibrate(
        measured, per_folder=40, shares=[0.2], alpha=0.01, budget_share=0.2, line_read=None
    )

    policy = CascadePolicy.from_json(report["policy"])
    assert policy.gate is not None and policy.gate.line_read is None
    assert policy.gate_rule is not None and policy.gate_rule.inputs == RULE_INPUTS
    assert policy.gate_shape_rule is None  # no line reading, no glyphs to weigh
    assert not measured.line_reads
    assert report["held_out_one_line"]["recall"] == 0.0  # as pages, the one-line cards read nothing
