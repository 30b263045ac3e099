"""The quadrant route: the largest part score and how the reading budget is split."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from model.checkpoint import ModelCard, save_checkpoint
from model.networks import AloccNetworks
from model.quadrants import largest_part_scores, route_bounds, split_parts
from model.scoring import ScoreMode, Scorer

TinyModelFactory = Callable[..., tuple[AloccNetworks, ModelCard]]


@pytest.fixture
def scorer(tmp_path: Path, tiny_model: TinyModelFactory) -> Scorer:
    save_checkpoint(tmp_path / "ckpt", *tiny_model())
    return Scorer.load(tmp_path / "ckpt", device="cpu")


def test_largest_part_score_is_the_max_of_each_part_scored_alone(scorer: Scorer) -> None:
    import torch

    from model.preprocess import normalise

    parts = torch.randint(
        0, 256, (3, 4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    largest = largest_part_scores(scorer, parts)
    alone = [scorer.score(normalise(picture), ScoreMode.D_X).scores.max() for picture in parts]
    assert largest.shape == (3,) and largest.dtype == np.float32
    assert np.allclose(largest, alone, atol=1e-6)
    assert largest_part_scores(scorer, parts[:0]).shape == (0,)
    with pytest.raises(ValueError):
        largest_part_scores(scorer, parts[0])


def test_split_parts_and_decode_with_parts_keep_the_whole_picture_as_the_model_sees_it() -> None:
    import io

    import torch
    from PIL import Image

    from model.decode import QUADRANTS, decode_pixels, decode_with_parts

    buffer = io.BytesIO()
    Image.effect_noise((300, 200), 60).convert("RGB").save(buffer, "JPEG")
    decoded = decode_with_parts(buffer.getvalue(), 32)
    assert decoded.shape == (1 + QUADRANTS, 32, 32, 3)
    assert np.array_equal(decoded[0], decode_pixels(buffer.getvalue(), 32))
    batch = torch.from_numpy(np.stack([decoded, decoded])).permute(0, 1, 4, 2, 3)
    whole, parts = split_parts(batch)
    assert (
        tuple(whole.shape) == (2, 3, 32, 32) and parts is not None and tuple(parts.shape) == (2, 4, 3, 32, 32)
    )
    plain, none = split_parts(whole)
    assert none is None and plain is whole
    with pytest.raises(ValueError):
        split_parts(batch[:, :1])


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
    from model.cascade_fit import photo_source as _source
    from model.cascade_quadrants import _layout, format_tables

    assert _layout("train/target/card-photo_side-00012.jpg") == "photo_side"
    assert _source("calib/other/photo-lomiri-16.04-00012.jpg") == "lomiri-16.04"
    families = {"card:caption_strip": {"rate": 0.25}, "photo": {"rate": 0.01}, "printed": {"rate": 0.0}}
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
                "alpha": 0.003,
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
    assert "| whole picture only | 0.003 | 3.75% | 0.500 | 95.0% | 93.5% | 98.3% | - | 11 |" in table
    assert (
        "| served | card | 0.5900 | 10.0% | 10.0% | 25.0% | 10.0% | 10.0% | 10.0% | 1.0% | 0.0% | 20.0% |"
        in table
    )


def test_a_policy_with_the_quadrant_route_reads_what_a_part_sends_and_keeps_old_cards_json() -> None:
    from cascade_samples import characters_rule

    from model.cascade import CascadePolicy

    plain = CascadePolicy(send_from=0.9, rule=characters_rule(), threshold=0.5)
    routed = CascadePolicy(0.9, plain.rule, 0.5, parts_send_from=0.8)
    scores, parts = np.array([0.1, 0.1, 0.95]), np.array([0.85, 0.2, 0.1])
    read = {"read_characters": 30, "read_boxes": 8, "read_area": 0.2, "lines": 3, "largest_text_height": 0.1}
    features = [{**read, "ground_emptiness": 0.5}] * 3

    assert plain.sends(scores).tolist() == [False, False, True]
    assert routed.sends(scores, part_scores=parts).tolist() == [True, False, True]
    assert (routed.cascade_scores(scores, features, part_scores=parts) > 0).tolist() == [True, False, True]
    with pytest.raises(ValueError, match="part scores"):
        routed.sends(scores)
    with pytest.raises(ValueError, match="finite"):
        CascadePolicy(0.9, plain.rule, 0.5, parts_send_from=float("nan"))
    assert "parts_send_from" not in plain.to_json()  # the versions of earlier cards do not change
    assert CascadePolicy.from_json(routed.to_json()) == routed
    assert CascadePolicy.from_json(plain.to_json()) == plain
    by_member = CascadePolicy(0.9, plain.rule, 0.5, parts_send_from=0.8, parts_member=1)
    assert "parts_member" not in routed.to_json() and by_member.to_json()["parts_member"] == 1
    assert CascadePolicy.from_json(by_member.to_json()) == by_member
    with pytest.raises(ValueError, match="parts member"):
        CascadePolicy(0.9, plain.rule, 0.5, parts_member=1)


def test_one_member_scores_the_parts_as_it_scores_alone_and_a_single_d_is_member_zero(
    tmp_path: Path, scorer: Scorer
) -> None:
    import torch

    from model.checkpoint import ThresholdRecord
    from model.errors import ConfigError
    from model.networks import build_networks
    from model.preprocess import normalise
    from model.presets import get_preset

    torch.manual_seed(0)
    spec = get_preset("strided", width=4, input_size=32, d_members=2, member_sizes=(24, 32))
    card = ModelCard(
        preset="strided",
        network=spec.to_dict(),
        input_size=32,
        default_mode="d_x",
        thresholds={"d_x": ThresholdRecord(0.5, "uncalibrated")},
    )
    save_checkpoint(tmp_path / "ensemble", build_networks(spec), card)
    ensemble = Scorer.load(tmp_path / "ensemble", device="cpu")
    parts = torch.randint(
        0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    flat = normalise(parts.reshape(-1, 3, 32, 32))

    by_member = [ensemble.member_d_x(flat, member) for member in (0, 1)]
    # The ensemble's logit is the mean of its members' (the first reads the input at its own 24 px).
    logits = np.mean([np.log(p / (1 - p)) for p in by_member], axis=0)
    assert np.allclose(1 / (1 + np.exp(-logits)), ensemble.score(flat, ScoreMode.D_X).scores, atol=1e-5)
    assert np.allclose(largest_part_scores(ensemble, parts, 1), by_member[1].reshape(2, 4).max(axis=1))
    with pytest.raises(ConfigError):
        ensemble.member_d_x(flat, 2)
    assert np.allclose(scorer.member_d_x(flat, 0), scorer.score(flat, ScoreMode.D_X).scores)
    with pytest.raises(ConfigError):
        scorer.member_d_x(flat, 1)


def test_a_parts_rule_decides_what_only_the_quadrant_route_sent() -> None:
    import dataclasses

    from cascade_samples import characters_rule

    from model.cascade import CascadePolicy

    main = characters_rule()
    never = dataclasses.replace(main, bias=-100.0)  # a rule that calls nothing a card
    policy = CascadePolicy(0.9, main, 0.5, parts_send_from=0.8, parts_rule=never)
    scores, parts = np.array([0.1, 0.95]), np.array([0.85, 0.85])
    read = {"read_characters": 30, "read_boxes": 8, "read_area": 0.2, "lines": 3, "largest_text_height": 0.1}
    features = [{**read, "ground_emptiness": 0.5}] * 2

    decided = policy.cascade_scores(scores, features, part_scores=parts)
    # The first is sent by its corners alone: the parts rule decides; the second by its whole score.
    assert decided[0] < 0.01 and decided[1] > 0.5
    assert np.allclose(decided[1], main.score(scores[1:], features[1:]))
    assert CascadePolicy.from_json(policy.to_json()) == policy
    assert "parts_rule" not in dataclasses.replace(policy, parts_rule=None).to_json()
    with pytest.raises(ValueError, match="parts rule"):
        CascadePolicy(0.9, main, 0.5, parts_rule=never)


def test_the_first_stage_skips_the_corners_that_cannot_change_a_decision_and_decides_the_same(
    scorer: Scorer,
) -> None:
    import torch

    from model.cascade import BASE_RULE_INPUTS, CascadePolicy, CascadeRule
    from model.cascade_decisions import CascadeDecisions
    from model.screen import PlainLineGate, screen_batch

    pixels = torch.randint(
        0, 256, (12, 5, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    pixels[:3] = 235  # plain pictures the gate passes (one busy row each)
    pixels[:3, :, :, 16, 8:24] = 20
    everything = screen_batch(scorer, pixels, with_looks=True, parts_member=None)
    scores = np.asarray(everything.result.scores)
    rule = CascadeRule((1.0,) * 7, 0.0, (0.0,) * 7, (1.0,) * 7, BASE_RULE_INPUTS)
    send_from = float(np.median(scores))  # half the batch is sent by its whole score
    policy = CascadePolicy(
        send_from, rule, 0.5, gate=PlainLineGate(0.5, 0.2), gate_rule=rule, parts_send_from=0.0
    )

    skipped = screen_batch(
        scorer, pixels, with_looks=True, parts_member=None, parts_matter=policy.parts_matter
    )

    matter = policy.parts_matter(scores, everything.looks)
    assert policy.gate is not None and everything.looks is not None
    assert policy.gate.sends(everything.looks[:3]).all()  # the gate's pictures need no corners
    assert 0 < matter.sum() < len(matter)
    assert everything.part_scores is not None and skipped.part_scores is not None
    assert np.array_equal(skipped.part_scores[matter], everything.part_scores[matter])
    assert np.isnan(skipped.part_scores[~matter]).all()
    decisions = CascadeDecisions(policy)
    for row, score in enumerate(scores):
        look = everything.looks[row] if everything.looks is not None else None
        full = decisions.screen(float(score), False, 0.9, look, part_score=float(everything.part_scores[row]))
        cheap = decisions.screen(float(score), False, 0.9, look, part_score=float(skipped.part_scores[row]))
        assert full == cheap


def test_the_first_stage_scores_each_pictures_best_sheet_where_the_batch_has_sheets(scorer: Scorer) -> None:
    import torch

    from model.decode import QUADRANTS
    from model.preprocess import normalise
    from model.screen import screen_batch
    from model.sheets import best_sheet_scores

    slots = 3
    pixels = torch.randint(
        0,
        256,
        (4, 1 + QUADRANTS + slots, 3, 32, 32),
        dtype=torch.uint8,
        generator=torch.Generator().manual_seed(2),
    )
    pixels[0, 1 + QUADRANTS :] = 0  # no sheet at all
    pixels[1, 1 + QUADRANTS + 1 :] = 0  # one sheet, then empty slots

    screened = screen_batch(scorer, pixels, with_looks=False, parts_member=None)
    corners_only = screen_batch(scorer, pixels[:, : 1 + QUADRANTS], with_looks=False, parts_member=None)

    assert screened.sheet_scores is not None and corners_only.sheet_scores is None
    assert np.array_equal(screened.part_scores, corners_only.part_scores)  # the corners are the same four
    assert screened.sheet_scores[0] == 0.0
    alone = scorer.score(normalise(pixels[1, 1 + QUADRANTS : 2 + QUADRANTS]), ScoreMode.D_X).scores
    assert np.isclose(screened.sheet_scores[1], alone.max(), atol=1e-6)
    sheets = pixels[:, 1 + QUADRANTS :]
    assert np.allclose(screened.sheet_scores, best_sheet_scores(scorer, sheets), atol=1e-6)
    with pytest.raises(ValueError):
        best_sheet_scores(scorer, sheets[0])


def test_decode_with_parts_adds_the_sheet_slots_after_the_corners() -> None:
    from PIL import Image

    from model.decode import QUADRANTS, decode_with_parts
    from model.sheets import SheetSearch

    picture = Image.new("RGB", (320, 240), (90, 120, 60))
    plain = decode_with_parts(picture, 32)
    with_sheets = decode_with_parts(picture, 32, sheets=SheetSearch(slots=2))
    assert plain.shape == (1 + QUADRANTS, 32, 32, 3)
    assert with_sheets.shape == (1 + QUADRANTS + 2, 32, 32, 3)
    assert np.array_equal(with_sheets[: 1 + QUADRANTS], plain)
    assert not with_sheets[1 + QUADRANTS :].any()  # a plain picture holds no sheet
