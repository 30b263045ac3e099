"""The cascade on the model card: one version names the model, the verifier, the rule and the thresholds."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model.cascade import BASE_RULE_INPUTS, CascadePolicy, CascadeRule, TextCascade
from model.cascade_card import attach, cascade_from_fit, source_margin, with_card_band, with_rules_floor
from model.cascade_fit import CurvePoint, choose_point, plot_curve, send_from_for_share
from model.checkpoint import ModelCard, load_checkpoint, read_card, save_checkpoint
from model.errors import ConfigError
from model.networks import AloccNetworks
from model.verifier.engines import VerifierConfig

# The `tiny_model` fixture's type (tests/unit/model/conftest.py). Not imported from there: with the
# integration tests in the same run, `conftest` names that folder's module instead.
TinyModelFactory = Callable[..., tuple[AloccNetworks, ModelCard]]

_RULE = CascadeRule(
    weights=(1.0,) * 7, bias=-1.0, means=(0.0,) * 7, scales=(1.0,) * 7, inputs=BASE_RULE_INPUTS
)


def _cascade(**changes: Any) -> TextCascade:
    base = TextCascade(
        base_model_version="alocc-strided-20261127-2ba47864",
        verifier=VerifierConfig(),
        engine_version="tesseract 5.3.0",
        policy=CascadePolicy(send_from=0.3, rule=_RULE, threshold=0.18),
    )
    return dataclasses.replace(base, **changes)


def test_the_cascade_version_names_every_part_that_changes_a_decision() -> None:
    cascade = _cascade()
    assert cascade.version.startswith("alocc-strided-20261127-2ba47864-ocr-")
    changed = [
        _cascade(engine_version="tesseract 5.4.0"),
        _cascade(verifier=VerifierConfig(side=768)),
        _cascade(policy=CascadePolicy(send_from=0.4, rule=_RULE, threshold=0.18)),
        _cascade(policy=CascadePolicy(send_from=0.3, rule=_RULE, threshold=0.2)),
        _cascade(base_model_version="alocc-strided-20261201-00000000"),
    ]
    assert len({cascade.version, *(other.version for other in changed)}) == 1 + len(changed)
    # What was measured describes the version; it does not make another one.
    assert _cascade(measured={"eval/target": {"rate": 0.02}}).version == cascade.version


def test_the_card_record_round_trips_and_refuses_a_hand_edited_threshold() -> None:
    record = json.loads(json.dumps(_cascade(calibration={"target_fpr": 0.003}).to_json()))
    assert TextCascade.from_json(record) == _cascade(calibration={"target_fpr": 0.003})

    record["policy"]["threshold"] = 0.01
    with pytest.raises(ValueError, match="edited by hand"):
        TextCascade.from_json(record)


def _point(share: float, recall: float) -> CurvePoint:
    return CurvePoint(CascadePolicy(1 - share, _RULE, 0.2), share, recall, 1.0)


def test_the_chosen_point_is_the_largest_share_within_the_budget_whatever_the_training_recall() -> None:
    curve = [_point(0.1, 1.0), _point(0.05, 0.97), _point(0.0305, 0.99), _point(0.02, 1.0), _point(0.01, 0.9)]
    # 3.05% of 2,000 photos is 61: one photo above 3% is within the budget; 3.1% is not.
    assert choose_point(curve, 0.03, 2000).calib_share == 0.0305
    assert choose_point([*curve[:2], _point(0.031, 1.0), *curve[3:]], 0.03, 2000).calib_share == 0.02
    assert choose_point(curve, 0.05, 2000).calib_share == 0.05
    assert choose_point([_point(0.1, 1.0), _point(0.05, 1.0)], 0.03, 2000).calib_share == 0.05  # none fits


def test_the_grid_counts_the_gates_images_in_the_share() -> None:
    scores = np.linspace(0.0, 0.99, 100)
    gated = np.zeros(100, dtype=bool)
    gated[:3] = True  # three low-scoring pictures the gate reads anyway

    send_from = send_from_for_share(scores, gated, 0.10)

    assert ((scores >= send_from) | gated).sum() == 10
    assert send_from_for_share(scores, gated, 0.02) > 1.0  # the gate alone reads more: none by score


def _fit_report(model_version: str) -> dict[str, Any]:
    policy = CascadePolicy(send_from=0.3, rule=_RULE, threshold=0.18)
    evaluation = {"eval/target": {"images": 10, "rate": 0.1, "measure": "missed", "verifier_share": 1.0}}
    return {
        "model_version": model_version,
        "verifier": dataclasses.asdict(VerifierConfig()),
        "engine_version": "tesseract 5.3.0",
        "alpha": 0.003,
        "budget_share": 0.03,
        "fit": {"cards": 200, "other": 400},
        "calibration_photos": 2000,
        "chosen_send_from": 0.3,
        "curve": [
            {"send_from": 0.1, "verifier_share_calib_photos": 0.1, "train_card_recall": 1.0, "eval": {}},
            {
                "send_from": 0.3,
                "verifier_share_calib_photos": 0.03,
                "train_card_recall": 1.0,
                "eval": evaluation,
            },
        ],
        "policy": policy.to_json(),
    }


def test_attach_writes_the_cascade_on_a_copy_of_the_checkpoint_with_its_own_serving_version(
    tmp_path: Path, tiny_model: TinyModelFactory
) -> None:
    networks, card = tiny_model()
    saved = save_checkpoint(tmp_path / "model", networks, card)
    assert saved.serving_version == saved.model_version

    attached = attach(tmp_path / "model", tmp_path / "cascade", _fit_report(saved.model_version))

    assert read_card(tmp_path / "model").text_cascade is None  # the source is left as it was
    _networks, loaded = load_checkpoint(tmp_path / "cascade")
    assert loaded == attached
    assert loaded.model_version == saved.model_version  # the same ALOCC weights
    assert loaded.serving_version.startswith(f"{saved.model_version}-ocr-")
    cascade = TextCascade.from_json(loaded.text_cascade or {})
    assert cascade.calibration["verifier_share_calib_photos"] == 0.03
    assert cascade.measured["eval/target"]["rate"] == 0.1


def test_attach_refuses_a_fit_over_another_model(tmp_path: Path, tiny_model: TinyModelFactory) -> None:
    networks, card = tiny_model()
    saved = save_checkpoint(tmp_path / "model", networks, card)
    with pytest.raises(ConfigError, match="fitted over 'alocc-other'"):
        cascade_from_fit(_fit_report("alocc-other"), saved)
    report = _fit_report(saved.model_version)
    del report["engine_version"]
    with pytest.raises(ConfigError, match="engine's version"):
        cascade_from_fit(report, saved)


def test_the_curve_plot_shows_every_card_folder_and_the_flags(tmp_path: Path) -> None:
    def rates(miss: float, flag: float) -> dict[str, Any]:
        return {
            "eval/target": {"rate": miss, "measure": "missed"},
            "check/one-line": {"rate": 2 * miss, "measure": "missed"},
            "eval/other": {"rate": flag, "measure": "flagged"},
        }

    curve = [
        {"send_from": sf, "verifier_share_calib_photos": share, "train_card_recall": 0.9, "eval": rates(m, f)}
        for sf, share, m, f in ((0.2, 0.05, 0.01, 0.004), (0.5, 0.02, 0.03, 0.008))
    ]
    report = {"curve": curve, "chosen_send_from": 0.2, "budget_share": 0.05, "alpha": 0.003}
    report["verifier"] = {"engine": "tesserocr"}

    plot_curve(report, tmp_path / "curve.png")

    assert (tmp_path / "curve.png").stat().st_size > 10_000


def test_the_quadrant_route_goes_on_the_cascade_it_was_measured_over_at_the_alpha_asked() -> None:
    from model.cascade_card import with_quadrant_route

    cascade = _cascade(calibration={"target_fpr": 0.003})
    row = {"route": "whole 0.0025 + parts", "send_from": 0.9, "parts_send_from": 0.7, "threshold": 0.6}
    report = {
        "cascade_version": cascade.version,
        "whole_share": 0.0025,
        "parts_member": 1,
        "held_out_layouts": ["photo_side"],
        "evaluation": [
            {"route": "served", "alpha": None, "threshold": 0.18},
            {**row, "alpha": 0.003, "threshold": 0.4},
            {**row, "alpha": 0.001, "eval/target": {"measure": "missed", "rate": 0.02}},
        ],
    }

    routed = with_quadrant_route(cascade, report, 0.001)

    policy = routed.policy
    assert (policy.send_from, policy.parts_send_from, policy.threshold) == (0.9, 0.7, 0.6)
    assert policy.parts_member == 1
    assert policy.rule == cascade.policy.rule
    assert routed.calibration["target_fpr"] == 0.001
    assert routed.calibration["quadrant_route"]["whole_share"] == 0.0025
    assert routed.measured == {"eval/target": {"measure": "missed", "rate": 0.02}}
    assert routed.version != cascade.version  # the route is part of what decides
    assert TextCascade.from_json(json.loads(json.dumps(routed.to_json()))) == routed
    with pytest.raises(ConfigError, match="no route at alpha"):
        with_quadrant_route(cascade, report, 0.002)
    with pytest.raises(ConfigError, match="measured over"):
        with_quadrant_route(_cascade(engine_version="tesseract 5.4.0"), report, 0.001)


def test_the_card_band_starts_above_the_calibration_photos_and_adds_its_alpha_to_the_bound() -> None:
    cascade = _cascade(
        calibration={"target_fpr": 0.001, "calibration_photos": 2000},
        measured={"eval/target": {"measure": "missed", "rate": 0.02}},
    )
    photos = np.linspace(0.0, 0.97, 2000, dtype=np.float32)
    one_source = ["skimage"] * 2000

    banded = with_card_band(cascade, photos, one_source, 0.0005)

    # 2,000 photos certify alpha 0.0005 only above the highest of them; one source leaves no margin.
    assert banded.policy.card_from is not None and banded.policy.card_from > photos.max()
    assert banded.policy.card_from == pytest.approx(0.97, abs=1e-6)
    assert banded.calibration["card_band"]["false_positive_bound"] == pytest.approx(0.0015)
    assert banded.measured == {}  # the earlier evaluation no longer describes these decisions
    assert banded.version != cascade.version
    assert TextCascade.from_json(json.loads(json.dumps(banded.to_json()))) == banded
    with pytest.raises(ConfigError, match="calibrated on 2000 photos"):
        with_card_band(cascade, photos[:1000], one_source[:1000], 0.0005)
    with pytest.raises(ConfigError, match="above send_from"):
        with_card_band(cascade, np.zeros(2000, dtype=np.float32) + 0.1, one_source, 0.0005)


def _sigmoid(logit: float) -> float:
    return float(1 / (1 + np.exp(-logit)))


def test_the_band_rises_by_as_much_as_one_source_has_scored_above_the_others() -> None:
    # Source "a" tops out at logit 2, "b" at logit 0, "c" at logit 1: "a" stood 1 logit above the rest.
    scores = np.array([_sigmoid(2.0), 0.2, _sigmoid(0.0), 0.1, _sigmoid(1.0)])
    sources = ["a", "a", "b", "b", "c"]
    assert source_margin(scores, sources) == pytest.approx(1.0, abs=1e-5)
    assert source_margin(scores[2:], sources[2:]) == pytest.approx(1.0, abs=1e-5)  # "c" over "b"
    assert source_margin([0.6, 0.3, 0.6], ["a", "a", "b"]) == 0.0  # no source above all the others
    assert source_margin([0.9, 0.8], ["a", "a"]) == 0.0

    cascade = _cascade(calibration={"target_fpr": 0.001})
    photos = np.r_[np.full(1000, 0.5), np.full(999, 0.6), _sigmoid(3.0)].astype(np.float32)
    named = ["a"] * 1000 + ["b"] * 1000

    banded = with_card_band(cascade, photos, named, 0.0005)

    # The highest photo (logit 3, source "b") stood 3 - logit(0.5) = 3 logits above source "a": 6 in all.
    assert banded.policy.card_from == pytest.approx(_sigmoid(6.0), abs=1e-5)
    assert banded.calibration["card_band"]["source_margin_logits"] == pytest.approx(3.0, abs=1e-4)


def test_attach_without_a_fit_gives_the_cards_own_cascade_a_band(
    tmp_path: Path, tiny_model: TinyModelFactory
) -> None:
    networks, card = tiny_model()
    saved = save_checkpoint(tmp_path / "model", networks, card)
    with pytest.raises(ConfigError, match="only a card band"):
        attach(tmp_path / "model", tmp_path / "model", None, card_band=(np.zeros(2000), ["a"] * 2000, 0.0005))
    served = attach(tmp_path / "model", tmp_path / "cascade", _fit_report(saved.model_version))
    photos = np.linspace(0.0, 0.9, 2000)

    banded = attach(
        tmp_path / "cascade", tmp_path / "cascade", None, card_band=(photos, ["a"] * 2000, 0.0005)
    )

    before = TextCascade.from_json(served.text_cascade or {})
    after = TextCascade.from_json(banded.text_cascade or {})
    assert after.policy == dataclasses.replace(before.policy, card_from=after.policy.card_from)
    assert after.policy.card_from == pytest.approx(0.9, abs=1e-6)
    assert banded.serving_version != served.serving_version
    assert load_checkpoint(tmp_path / "cascade")[1] == banded


def test_routes_measured_over_an_attached_cascade_read_as_its_verifier_does(
    tmp_path: Path, tiny_model: TinyModelFactory
) -> None:
    from model.cascade_fit import served_verifier

    networks, card = tiny_model()
    saved = save_checkpoint(tmp_path / "model", networks, card)
    assert served_verifier(tmp_path / "model") == VerifierConfig()  # nothing attached yet: the default

    report = _fit_report(saved.model_version)
    report["verifier"] = {**vars(VerifierConfig(languages="jpn"))}
    attach(tmp_path / "model", tmp_path / "cascade", report)

    assert served_verifier(tmp_path / "cascade") == VerifierConfig(languages="jpn")


def test_the_rules_floor_keeps_the_threshold_names_a_new_version_and_only_lowers_scores(
    tmp_path: Path, tiny_model: TinyModelFactory
) -> None:
    cascade = _cascade(calibration={"target_fpr": 0.001}, measured={"eval/target": {"rate": 0.02}})
    floored = with_rules_floor(cascade, 1)

    assert floored.policy == dataclasses.replace(cascade.policy, min_confident=1)
    assert floored.policy.threshold == cascade.policy.threshold  # kept: the floor only lowers scores
    assert floored.calibration["rules_floor"] == {"min_confident": 1, "threshold_kept": 0.18}
    assert floored.measured == {} and floored.version != cascade.version
    assert TextCascade.from_json(json.loads(json.dumps(floored.to_json()))) == floored
    rng = np.random.default_rng(7)
    rows = [
        {
            "read_characters": int(n),
            "read_boxes": int(n) // 3,
            "read_area": 0.01 * int(n),
            "lines": min(int(n), 4),
            "largest_text_height": 0.1,
            "ground_emptiness": 0.5,
            "confident_characters": int(c),
        }
        for n, c in zip(rng.integers(0, 40, 200), rng.integers(0, 3, 200), strict=True)
    ]
    scores = rng.uniform(0.3, 1.0, 200)
    before = cascade.policy.cascade_scores(scores, rows)
    after = floored.policy.cascade_scores(scores, rows)
    assert np.all(after <= before) and np.any(after < before)
    with pytest.raises(ConfigError, match="floor"):
        with_rules_floor(cascade, -1)

    networks, card = tiny_model()
    saved = save_checkpoint(tmp_path / "model", networks, card)
    served = attach(tmp_path / "model", tmp_path / "cascade", _fit_report(saved.model_version))
    attached = attach(tmp_path / "cascade", tmp_path / "floored", None, rules_floor=2)
    assert TextCascade.from_json(attached.text_cascade or {}).policy == dataclasses.replace(
        TextCascade.from_json(served.text_cascade or {}).policy, min_confident=2
    )
