"""The quadrant route: the largest part score and how the reading budget is split."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from model.checkpoint import ModelCard, save_checkpoint
from model.networks import AloccNetworks
from model.quadrants import largest_part_scores, route_bounds
from model.scoring import ScoreMode, Scorer

TinyModelFactory = Callable[..., tuple[AloccNetworks, ModelCard]]


@pytest.fixture
def scorer(tmp_path: Path, tiny_model: TinyModelFactory) -> Scorer:
    save_checkpoint(tmp_path / "ckpt", *tiny_model())
    return Scorer.load(tmp_path / "ckpt", device="cpu")


def test_largest_part_score_is_the_max_of_each_part_scored_alone(scorer: Scorer) -> None:
    import torch

    from model.preprocess import normalise

    rng = np.random.default_rng(0)
    parts = rng.integers(0, 256, size=(3, 4, 32, 32, 3), dtype=np.uint8)
    largest = largest_part_scores(scorer, parts)
    alone = [
        scorer.score(normalise(torch.from_numpy(picture).permute(0, 3, 1, 2).contiguous()), ScoreMode.D_X)
        for picture in parts
    ]
    assert largest.shape == (3,) and largest.dtype == np.float32
    assert np.allclose(largest, [result.scores.max() for result in alone], atol=1e-6)
    assert largest_part_scores(scorer, parts[:0]).shape == (0,)
    with pytest.raises(ValueError):
        largest_part_scores(scorer, parts[0])


def test_route_bounds_split_the_share_between_whole_and_parts() -> None:
    whole = np.linspace(0.0, 0.99, 100)  # photo i scores i / 100 whole
    parts = whole[::-1].copy()  # and the reverse on its parts
    send_from, parts_from = route_bounds(whole, parts, share=0.1, whole_share=0.03)
    sent = (whole >= send_from) | (parts >= parts_from)
    assert (whole >= send_from).sum() == 3 and sent.sum() == 10
    # The gate's photos count against the share: two of the part route's seven are taken already.
    gated = np.zeros(100, dtype=bool)
    gated[[0, 1]] = True
    send_from, parts_from = route_bounds(whole, parts, share=0.1, whole_share=0.03, already_sent=gated)
    assert ((whole >= send_from) | (parts >= parts_from) | gated).sum() == 10


def test_route_bounds_never_go_over_the_share_on_ties() -> None:
    whole = np.zeros(10)
    parts = np.r_[np.full(5, 0.9), np.zeros(5)]
    send_from, parts_from = route_bounds(whole, parts, share=0.3, whole_share=0.0)
    assert send_from == 2.0 and (parts >= parts_from).sum() == 0  # a tie of five at the edge of three
    assert route_bounds(whole, parts, share=0.5, whole_share=0.0)[1] == pytest.approx(0.9)
    with pytest.raises(ValueError):
        route_bounds(whole, parts, share=0.1, whole_share=0.2)
    with pytest.raises(ValueError):
        route_bounds(whole, parts[:3], share=0.1, whole_share=0.0)


def test_the_report_tables_show_the_simulation_and_every_family() -> None:
    from model.cascade_quadrants import _layout, _source, format_tables

    assert _layout("train/target/card-photo_side-00012.jpg") == "photo_side"
    assert _source("calib/other/photo-lomiri-16.04-00012.jpg") == "lomiri-16.04"
    families = {"card:caption_strip": 0.25, "photo": 0.01, "printed": 0.0}
    folder = {"rate": 0.1, "verifier_share": 0.2, "families": families}
    row = {name: folder for name in ("eval/target", "check/target", "check/one-line", "check/photographed")}
    report = {
        "model_version": "m-1",
        "held_out_model": "m-ho",
        "held_out_layouts": ["photo_side"],
        "share": 0.0375,
        "held_out": [
            {
                "route": "whole picture only",
                "calib_sent": 0.0375,
                "threshold": 0.5,
                "unseen_sent": 0.95,
                "unseen_caught": 0.935,
                "unseen_caught_of_sent": 0.983,
                "unseen_val_caught": None,
                "calib_flags_source_left_out": 11,
            }
        ],
        "evaluation": [{"route": "served", "alpha": None, "threshold": 0.59, **row, "eval/other": folder}],
    }
    table = format_tables(report)
    assert "| whole picture only | 3.75% | 0.500 | 95.0% | 93.5% | 98.3% | - | 11 |" in table
    assert (
        "| served | card | 0.5900 | 10.0% | 10.0% | 25.0% | 10.0% | 10.0% | 10.0% | 1.0% | 0.0% | 20.0% |"
        in table
    )
