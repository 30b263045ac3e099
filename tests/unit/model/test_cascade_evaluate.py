"""`alocc cascade evaluate`'s table and plot, on synthetic folders (no OCR engine involved)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cascade_samples import characters_rule

from model.cascade import CascadePolicy
from model.cascade_evaluate import format_table, plot_band, verifier_only_flags
from model.cascade_fit import EvalFolder, family_rates

_READ = {"read_characters": 30, "read_boxes": 8, "read_area": 0.2, "lines": 3}
_BLANK = {"read_characters": 0, "read_boxes": 0, "read_area": 0.0, "lines": 0}


def _row(read: bool) -> dict[str, float]:
    return {**(_READ if read else _BLANK), "largest_text_height": 0.1, "ground_emptiness": 0.5}


def _folders() -> list[EvalFolder]:
    cards = EvalFolder(
        "eval/target",
        True,
        scores=np.array([0.9, 0.2, 0.95, 0.6]),
        looks=np.zeros((4, 2)),
        features=[_row(True), _row(True), _row(False), _row(True)],
        kinds=["card:a", "card:a", "card:b", "card:b"],
    )
    other = EvalFolder(
        "eval/other",
        False,
        scores=np.array([0.1, 0.7, 0.05]),
        looks=np.zeros((3, 2)),
        features=[_row(False), _row(True), _row(False)],
        kinds=["photo"] * 3,
    )
    return [cards, other]


def test_rates_per_family_count_misses_of_cards_and_flags_of_the_rest_with_the_share_read() -> None:
    folders = _folders()
    flagged = [np.array([True, False, True, True]), np.array([False, True, False])]
    sent = [np.array([True, False, True, True]), np.array([False, True, False])]

    rates = family_rates(folders, flagged, sent)

    assert rates["eval/target"]["rate"] == 0.25 and rates["eval/target"]["measure"] == "missed"
    card_a = rates["eval/target"]["families"]["card:a"]
    assert (card_a["images"], card_a["rate"], card_a["verifier_share"]) == (2, 0.5, 0.5)
    low, high = card_a["interval95"]  # 1 of 2: the exact interval is wide
    assert low == pytest.approx(0.0126, abs=1e-4) and high == pytest.approx(0.9874, abs=1e-4)
    assert rates["eval/other"]["rate"] == 1 / 3 and rates["eval/other"]["measure"] == "flagged"
    assert "verifier_share" not in family_rates(folders, flagged)["eval/other"]


def test_the_table_and_the_band_plot_show_all_three_columns(tmp_path: Path) -> None:
    rule = characters_rule()
    alone = CascadePolicy(0.0, rule, 0.5)
    folders = _folders()
    assert verifier_only_flags(alone, folders[0]).tolist() == [True, True, False, True]
    cascade = CascadePolicy(0.5, rule, 0.5)
    report = {
        "cascade_version": "m-ocr-1",
        "model_threshold": 0.9,
        "send_from": cascade.send_from,
        "cascade_threshold": cascade.threshold,
        "read_ms": 60.0,
        "columns": {
            "model_only": family_rates(folders, [f.scores >= 0.9 for f in folders]),
            "verifier_only": family_rates(folders, [verifier_only_flags(alone, f) for f in folders]),
            "cascade": family_rates(
                folders,
                [cascade.cascade_scores(f.scores, f.features) >= 0.5 for f in folders],
                [cascade.sends(f.scores) for f in folders],
            ),
        },
        "model_scores": {f.folder: {"scores": f.scores.tolist(), "kinds": f.kinds} for f in folders},
    }

    table = format_table(report)
    plot_band(report, tmp_path / "band.png")

    assert "| eval/target / card:a | 2 | missed | 50.0% | 0.0% | 50.0% | 1.3-98.7% | 50.0% |" in table
    assert "| eval/other / all | 3 | flagged | 0.0% | 33.3% | 33.3% | 0.8-90.6% | 33.3% |" in table
    assert (tmp_path / "band.png").stat().st_size > 10_000
    # With the quadrant route, the largest part scores are plotted beside the model's.
    routed = {
        **report,
        "parts_send_from": 0.7,
        "part_scores": {f.folder: [0.5] * len(f.scores) for f in folders},
    }
    plot_band(routed, tmp_path / "band-parts.png")
    assert (tmp_path / "band-parts.png").stat().st_size > (tmp_path / "band.png").stat().st_size


def test_the_rate_interval_is_exact_and_closed_at_the_ends() -> None:
    from model.metrics import rate_interval

    low, high = rate_interval(3, 438)
    assert low == pytest.approx(0.00141, abs=1e-5) and high == pytest.approx(0.01989, abs=1e-5)
    assert rate_interval(0, 10)[0] == 0.0 and rate_interval(10, 10)[1] == 1.0
    assert all(np.isnan(rate_interval(0, 0)))
    with pytest.raises(ValueError):
        rate_interval(5, 4)


class _Measured:
    """The two calls `_second_readings` makes: the folder's files, and the second engine's reads of some."""

    def __init__(self, read: dict[str, int]) -> None:
        self.read = read
        self.asked: list[str] = []

    def files(self, folder: str) -> list[str]:
        return [f"{folder}/{i}.png" for i in range(4)]

    def second(self, keys: list[str], second: object) -> list[dict[str, float]]:
        self.asked.extend(keys)
        return [{**_row(False), "read_characters": self.read[key]} for key in keys]


def test_the_evaluation_reads_again_only_what_the_first_readings_leave_products() -> None:
    import dataclasses
    import functools

    from model.cascade_evaluate import _second_readings
    from model.verifier.second_read import SecondRead

    policy = dataclasses.replace(CascadePolicy(0.5, characters_rule(), 0.5), second_read=SecondRead(9))
    cards = _folders()[0]  # scores 0.9, 0.2, 0.95, 0.6; the third read nothing
    cards = dataclasses.replace(cards, features=[{**row, "boxes": 1} for row in cards.features])
    first = dataclasses.replace(policy, second_read=None).cascade_scores(cards.scores, cards.features)
    measured = _Measured({"eval/target/2.png": 12})

    read_again = functools.partial(_second_readings, measured, first_scores=first, parts=None, sheets=None)
    seconds = read_again(policy, cards)

    # The second picture is not sent (0.2 < 0.5); the first and last read as cards; the third is read again.
    assert measured.asked == ["eval/target/2.png"]
    assert seconds is not None and [row is not None for row in seconds] == [False, False, True, False]
    flagged = policy.cascade_scores(cards.scores, cards.features, second_features=seconds) >= 0.5
    assert flagged.tolist() == [True, False, True, True]
    assert read_again(CascadePolicy(0.5, characters_rule(), 0.5), cards) is None  # no second reading
