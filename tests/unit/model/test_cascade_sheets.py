"""The sheet route on the card: its bound on calibration photos, its union bound, and the left-out check."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from model.calibrate import left_out_flags
from model.cascade import BASE_RULE_INPUTS, CascadePolicy, CascadeRule, TextCascade
from model.cascade_card import raised_bound
from model.cascade_sheets import (
    highest_photos,
    reading_bound,
    with_sheet_reading,
    with_sheet_route,
)
from model.errors import ConfigError
from model.sheets import SheetSearch
from model.verifier.engines import VerifierConfig

_RULE = CascadeRule(
    weights=(1.0,) * 7, bias=-1.0, means=(0.0,) * 7, scales=(1.0,) * 7, inputs=BASE_RULE_INPUTS
)


def _sigmoid(logit: float) -> float:
    return float(1 / (1 + np.exp(-logit)))


def _cascade(parts_send_from: float | None = 0.6) -> TextCascade:
    return TextCascade(
        base_model_version="alocc-strided-20261127-2ba47864",
        verifier=VerifierConfig(),
        engine_version="tesseract 5.3.0",
        policy=CascadePolicy(send_from=0.3, rule=_RULE, threshold=0.18, parts_send_from=parts_send_from),
        calibration={
            "target_fpr": 0.001,
            "calibration_photos": 2000,
            "card_band": {"false_positive_bound": 0.0015},
        },
        measured={"eval/target": {"measure": "missed", "rate": 0.02}},
    )


def test_the_bound_sits_above_the_calibration_sheets_raised_by_the_source_that_stood_out() -> None:
    # Most photos hold no sheet (0); source "b"'s best sheet scores logit 3, "a"'s logit 1: a 2-logit lead.
    photos = np.r_[np.zeros(1500), np.full(499, _sigmoid(1.0)), _sigmoid(3.0)]
    sources = ["a"] * 750 + ["b"] * 750 + ["a"] * 499 + ["b"]

    bound = raised_bound(photos, sources, 0.0005)

    assert bound["conformal_bound"] == pytest.approx(_sigmoid(3.0), abs=1e-6)  # 2,000 photos: their top
    assert bound["source_margin_logits"] == pytest.approx(2.0, abs=1e-4)
    assert bound["card_from"] == pytest.approx(_sigmoid(5.0), abs=1e-5)
    # Left out, "b"'s top photo reaches the bound the others set; "a"'s photos stay under "b"'s.
    assert left_out_flags(photos, sources, 0.0005) == {"a": 0, "b": 1}
    assert left_out_flags(photos, ["a"] * len(photos), 0.0005) == {}  # nothing to leave one out against


def test_the_route_goes_on_the_card_with_its_search_member_and_union_bound() -> None:
    cascade = _cascade()
    photos = np.r_[np.zeros(1999), 0.97]
    routed = with_sheet_route(cascade, photos, ["a"] * 2000, 0.0005, member=1, search=SheetSearch(slots=4))

    route = routed.policy.sheets
    assert route is not None and route.member == 1 and route.search.slots == 4
    assert route.card_from == pytest.approx(0.97, abs=1e-6)  # one source: no margin
    record = routed.calibration["sheet_route"]
    assert record["false_positive_bound"] == pytest.approx(0.002)  # cascade, card band and route together
    assert record["calibration_photos"] == 2000 and record["opencv"]
    assert routed.measured == {}  # the earlier evaluation no longer describes these decisions
    assert routed.version != cascade.version
    assert TextCascade.from_json(json.loads(json.dumps(routed.to_json()))) == routed
    # Only the decision-relevant part names the version: the same route over the same cascade, same version.
    assert dataclasses.replace(routed, calibration={}).version == routed.version


def test_the_route_refuses_other_photos_and_a_cascade_without_the_quadrant_route() -> None:
    photos = np.zeros(2000)
    with pytest.raises(ConfigError, match="calibrated on 2000 photos"):
        with_sheet_route(_cascade(), photos[:100], ["a"] * 100, 0.0005)
    with pytest.raises(ConfigError, match="quadrant route"):
        with_sheet_route(_cascade(parts_send_from=None), photos, ["a"] * 2000, 0.0005)


def test_the_report_names_the_calibration_photos_that_set_the_bound() -> None:
    keys = [
        "calib/other/photo-skimage-00001.jpg",
        "calib/other/photo-lomiri-16.04-00002.jpg",
        "calib/other/product-tuxpaint-food-00003.jpg",
        "calib/other/photo-lomiri-16.04-00004.jpg",
    ]
    highest = highest_photos([0.2, 0.99, 0.5, 0.97], keys, count=2)
    assert highest == [
        {"key": keys[1], "source": "lomiri-16.04", "sheet": 0.99},
        {"key": keys[3], "source": "lomiri-16.04", "sheet": 0.97},
    ]


def test_the_reading_band_and_its_characters_bound_raised_by_the_source_that_stood_out() -> None:
    # 4,000 photos, 40 with a best sheet (0.90-0.98): a 1% share reads the 39 above the lowest. Read, source
    # "a"'s sheets show 0-2 characters, "b"'s one T-shirt 9: the conformal bound at alpha 0.0005 is the
    # second highest count (2), and "b", left out, reaches the bound "a" sets alone: raised above it.
    scores = np.r_[np.zeros(3960), np.linspace(0.90, 0.98, 40)]
    characters = np.r_[np.full(3960, -1.0), np.tile([0.0, 1.0, 2.0, 1.0], 10)]
    characters[-1] = 9.0
    sources = ["a"] * 3999 + ["b"]

    bound = reading_bound(scores, characters, sources, 0.99, share=0.01, alpha=0.0005)

    assert bound["read_from"] == pytest.approx(0.90, abs=1e-6) and bound["read_from"] > 0.90
    assert bound["calibration_read"] == 39
    assert bound["conformal_read_characters"] == 3
    assert (bound["read_characters"], bound["raised_by_source"]) == (10, "b")
    assert bound["calibration_flagged"] == 0
    with pytest.raises(ConfigError, match="larger share"):
        reading_bound(scores, characters, sources, 0.9, share=0.01, alpha=0.0005)
    unread = np.where(scores > 0, -1.0, characters)
    with pytest.raises(ConfigError, match="no reading"):
        reading_bound(scores, unread, sources, 0.99, share=0.01, alpha=0.0005)


def test_the_reading_goes_on_the_card_under_the_route_with_its_union_bound() -> None:
    photos = np.r_[np.zeros(1980), np.linspace(0.90, 0.97, 20)]
    characters = np.r_[np.full(1980, -1.0), np.zeros(19), 4.0]
    routed = with_sheet_route(_cascade(), photos, ["a"] * 2000, 0.0005, member=1)
    read = with_sheet_reading(routed, photos, characters, ["a"] * 2000, share=0.01, alpha=0.0005)

    route = read.policy.sheets
    assert route is not None and route.card_from == routed.policy.sheets.card_from  # type: ignore[union-attr]
    # One source, 2,000 photos: the bound is the top count (4), so a card from 5 characters.
    assert route.read_from == pytest.approx(0.90, abs=1e-6) and route.read_characters == 5
    assert read.calibration["sheet_reading"]["false_positive_bound"] == pytest.approx(0.0025)
    assert read.version != routed.version and read.measured == {}
    assert TextCascade.from_json(json.loads(json.dumps(read.to_json()))) == read
    with pytest.raises(ConfigError, match="sheet route"):
        with_sheet_reading(_cascade(), photos, characters, ["a"] * 2000, share=0.01, alpha=0.0005)
    # The route set again (make cascade re-attaches it) has no reading, and no record of one.
    again = with_sheet_route(read, photos, ["a"] * 2000, 0.0005, member=1)
    assert again.policy.sheets is not None and again.policy.sheets.read_from is None
    assert "sheet_reading" not in again.calibration and again.version == routed.version
