"""The sheet's second reading: a best sheet the sheet reading leaves short of a card, read again by the second
engine (its decisions, its calibration, what crosses the OCR child's pipe)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pytest

from model.cascade import BASE_RULE_INPUTS, CascadePolicy, CascadeRule, TextCascade
from model.cascade_decisions import VERIFIER, CascadeDecisions, read_for_verdict
from model.cascade_sheets import with_sheet_reading, with_sheet_route, with_sheet_second_read
from model.errors import ConfigError
from model.sheets import SheetRoute, SheetSearch
from model.verifier.engines import VerifierConfig
from model.verifier.features import TextFeatures
from model.verifier.ocr_processes import pack_reading, unpack_reading, unpack_sheet
from model.verifier.second_read import SecondRead
from model.verifier.text_verifier import SheetReading

_RULE = CascadeRule(
    weights=(1.0,) * 7, bias=-1.0, means=(0.0,) * 7, scales=(1.0,) * 7, inputs=BASE_RULE_INPUTS
)
_SECOND = SecondRead(10, engine_version="pp 1")
_READING = SheetRoute(card_from=0.99, member=1, read_from=0.9, read_characters=7)
_TWICE = dataclasses.replace(_READING, second_read=_SECOND)


def _sheet(characters: int) -> TextFeatures:
    return TextFeatures(3, 2, characters, 0.05, 1, 0.08, 0.4, 0)


class _SheetReader:
    """A reader whose first engine reads `first` in a sheet and whose second engine reads `second` there
    (recording which engine each sheet reading asked for)."""

    def __init__(self, first: TextFeatures, second: TextFeatures) -> None:
        self.first, self.second = first, second
        self.engines: list[SecondRead | None] = []

    def sheet_features(self, data: bytes, sheet: SheetReading) -> TextFeatures:
        self.engines.append(sheet.second)
        return self.first if sheet.second is None else self.second


def test_the_route_reads_again_only_the_sheets_the_first_reading_leaves_short_and_keeps_older_json() -> None:
    assert _TWICE.second_wanted(6) and not _TWICE.second_wanted(7)
    assert not _READING.second_wanted(0)  # no second reading on the route
    scores = [0.5, 0.95, 0.95, 0.995]  # below the band, in it twice, over the route's bound
    assert _TWICE.second_cards(scores, [40, 12, 9, 40]).tolist() == [False, True, False, False]
    assert not _READING.second_cards(scores, [40] * 4).any()
    assert "second_read" not in _READING.to_json()  # earlier cards keep their versions
    assert SheetRoute.from_json(json.loads(json.dumps(_TWICE.to_json()))) == _TWICE
    with pytest.raises(ValueError, match="read_from"):
        SheetRoute(card_from=0.99, second_read=_SECOND)


def test_the_sheets_second_reading_makes_cards_where_the_first_falls_short() -> None:
    policy = CascadePolicy(0.5, _RULE, 0.5, parts_send_from=0.8, sheets=_TWICE)
    assert policy.second_engines() == (_SECOND,)
    decisions = CascadeDecisions(policy)
    assert decisions.sheet_second(0.1, 0.95) is not None
    assert decisions.sheet_second(0.1, 0.5) is None and decisions.sheet_second(0.1, 0.995) is None
    assert CascadeDecisions(dataclasses.replace(policy, sheets=_READING)).sheet_second(0.1, 0.95) is None

    # Short in the first reading, read by the second engine: a card from its count up.
    reader = _SheetReader(_sheet(3), _sheet(12))
    sheet = SheetReading(SheetSearch(), 96, 0)
    readings = read_for_verdict(
        reader, b"", page=False, sheet=sheet, sheet_second=decisions.sheet_second(0.1, 0.95)
    )
    assert reader.engines == [None, _SECOND] and readings.second_sheet == _sheet(12)
    card = decisions.verdict(0.1, readings, sheet_score=0.95)
    assert (card.excluded, card.decided_by, card.score, card.threshold) == (True, VERIFIER, 0.95, 0.9)
    assert card.features is not None and card.features["sheet_second_read_characters"] == 12
    assert card.features["sheet_read_characters"] == 3
    short = decisions.verified(
        0.1, None, sheet_score=0.95, sheet_features=_sheet(3), second_sheet_features=_sheet(9)
    )
    assert not short.excluded and short.score < short.threshold
    # A card by the first reading already: the second engine does not read it.
    legible = _SheetReader(_sheet(8), _sheet(0))
    again = read_for_verdict(
        legible, b"", page=False, sheet=sheet, sheet_second=decisions.sheet_second(0.1, 0.95)
    )
    assert legible.engines == [None] and again.second_sheet is None
    assert decisions.verdict(0.1, again, sheet_score=0.95).excluded

    # Offline evaluation: the same decisions from counts.
    model_scores, parts, sheet_scores = np.array([0.1, 0.1, 0.1]), [0.0] * 3, [0.95, 0.95, 0.95]
    silent = [None] * 3
    flagged = policy.cascade_scores(
        model_scores,
        silent,
        None,
        parts,
        sheet_scores,
        sheet_characters=[3, 3, 8],
        sheet_second_characters=[12, 9, 0],
    )
    assert (flagged >= policy.threshold).tolist() == [True, False, True]
    with pytest.raises(ValueError, match="second engine"):
        policy.cascade_scores(model_scores, silent, None, parts, sheet_scores, sheet_characters=[3, 3, 8])


def test_a_sheet_read_by_the_second_engine_crosses_the_pipe_with_its_engine() -> None:
    sheet = SheetReading(SheetSearch(slots=3), 96, 2, _SECOND)
    packed = pack_reading(None, sheet=sheet)
    fixed = 12  # struct ">HHHHHH"
    assert unpack_reading(packed[:fixed])[2] == 1  # READ_SHEET
    assert unpack_sheet(packed[fixed + 4 :]) == sheet
    plain = dataclasses.replace(sheet, second=None)
    assert unpack_sheet(pack_reading(None, sheet=plain)[fixed + 4 :]) == plain
    assert b"second" not in pack_reading(None, sheet=plain)


def _cascade() -> TextCascade:
    return TextCascade(
        base_model_version="alocc-strided-20261127-2ba47864",
        verifier=VerifierConfig(),
        engine_version="tesseract 5.3.0",
        policy=CascadePolicy(send_from=0.3, rule=_RULE, threshold=0.18, parts_send_from=0.6),
        calibration={"target_fpr": 0.001, "calibration_photos": 2000},
    )


def test_the_second_readings_count_is_set_on_the_calibration_photos_it_reads() -> None:
    photos = np.r_[np.zeros(1980), np.linspace(0.90, 0.97, 20)]
    first = np.r_[np.full(1980, -1.0), np.zeros(18), 9.0, 4.0]
    second = np.r_[np.full(1980, -1.0), np.zeros(17), 6.0, 30.0, 3.0]
    sources: list[Any] = ["a"] * 2000
    routed = with_sheet_route(_cascade(), photos, sources, 0.0005, member=1)
    read = with_sheet_reading(routed, photos, first, sources, share=0.01, alpha=0.0005)
    assert read.policy.sheets is not None and read.policy.sheets.read_characters == 10

    twice = with_sheet_second_read(read, photos, first, second, sources, alpha=0.0005, engine_version="pp 1")

    route = twice.policy.sheets
    assert route is not None and route.second_read is not None
    # Every photo in the band read short (all 20) is read again; one source: a card from the top count + 1.
    assert route.second_read.min_characters == 31 and route.second_read.engine_version == "pp 1"
    record = twice.calibration["sheet_second_read"]
    assert (record["calibration_read"], record["calibration_flagged"]) == (19, 0)
    before = read.calibration["sheet_reading"]["false_positive_bound"]
    assert record["false_positive_bound"] == pytest.approx(before + 0.0005)
    assert twice.version != read.version and twice.measured == {}
    assert TextCascade.from_json(json.loads(json.dumps(twice.to_json()))) == twice
    again = with_sheet_second_read(twice, photos, first, second, sources, alpha=0.0005, engine_version="pp 1")
    assert again.calibration["sheet_second_read"]["false_positive_bound"] == pytest.approx(before + 0.0005)
    with pytest.raises(ConfigError, match="sheet reading"):
        with_sheet_second_read(routed, photos, first, second, sources, alpha=0.0005, engine_version="pp 1")
    unread = np.where(photos > 0, -1.0, second)
    with pytest.raises(ConfigError, match="no second reading"):
        with_sheet_second_read(read, photos, first, unread, sources, alpha=0.0005, engine_version="pp 1")


def test_the_second_engine_alone_reads_the_sheets_of_its_own_band_under_the_reading() -> None:
    low = dataclasses.replace(_TWICE, second_from=0.8)
    scores = [
        0.75,
        0.85,
        0.95,
        0.995,
    ]  # under both bands, the second engine's own, the reading's, the route's
    assert low.second_reads(scores).tolist() == [False, True, True, False]
    assert low.any_reads(scores).tolist() == [False, True, True, False]
    assert low.reads(scores).tolist() == [False, False, True, False]  # Tesseract reads the upper band only
    assert low.second_alone(0.85) and not low.second_alone(0.95) and not _TWICE.second_alone(0.85)
    assert low.second_cards(scores, [40, 12, 12, 40]).tolist() == [False, True, True, False]
    assert SheetRoute.from_json(json.loads(json.dumps(low.to_json()))) == low
    assert "second_from" not in _TWICE.to_json()
    with pytest.raises(ValueError, match="between 0 and"):
        dataclasses.replace(_TWICE, second_from=0.95)
    with pytest.raises(ValueError, match="second reading"):
        dataclasses.replace(_READING, second_from=0.8)

    policy = CascadePolicy(0.5, _RULE, 0.5, parts_send_from=0.8, sheets=low)
    assert policy.sheet_reads([0.1, 0.1], [0.85, 0.75]).tolist() == [True, False]
    decisions = CascadeDecisions(policy)
    alone = decisions.sheet_second(0.1, 0.85)
    assert alone is not None and alone.alone
    reader = _SheetReader(_sheet(30), _sheet(12))
    sheet = SheetReading(SheetSearch(), 96, 0)
    readings = read_for_verdict(reader, b"", page=False, sheet=sheet, sheet_second=alone)
    assert reader.engines == [_SECOND] and readings.sheet is None  # Tesseract does not read it
    card = decisions.verdict(0.1, readings, sheet_score=0.85)
    assert card.excluded and card.score >= card.threshold
    faint = read_for_verdict(
        _SheetReader(_sheet(30), _sheet(4)), b"", page=False, sheet=sheet, sheet_second=alone
    )
    assert not decisions.verdict(0.1, faint, sheet_score=0.85).excluded
    flagged = policy.cascade_scores(
        [0.1, 0.1],
        [None, None],
        None,
        [0.0, 0.0],
        [0.85, 0.85],
        sheet_characters=[30, 30],  # what Tesseract would read: not asked in this band
        sheet_second_characters=[12, 4],
    )
    assert (flagged >= policy.threshold).tolist() == [True, False]


def test_a_share_gives_the_second_engine_its_own_band_calibrated_with_the_rest() -> None:
    photos = np.r_[np.zeros(1960), np.linspace(0.80, 0.89, 20), np.linspace(0.90, 0.97, 20)]
    first = np.r_[np.full(1960, -1.0), np.zeros(20), np.zeros(18), 9.0, 4.0]
    second = np.r_[np.full(1960, -1.0), np.zeros(19), 14.0, np.zeros(17), 6.0, 30.0, 3.0]
    sources: list[Any] = ["a"] * 2000
    routed = with_sheet_route(_cascade(), photos, sources, 0.0005, member=1)
    read = with_sheet_reading(routed, photos, first, sources, share=0.01, alpha=0.0005)

    low = with_sheet_second_read(
        read, photos, first, second, sources, alpha=0.0005, engine_version="pp 1", share=0.02
    )

    route = low.policy.sheets
    assert route is not None and route.second_read is not None and route.second_from is not None
    assert route.second_from == pytest.approx(0.80, abs=1e-6) and route.second_from < route.read_from  # type: ignore[operator]
    record = low.calibration["sheet_second_read"]
    # Both bands start just above their bounds (float32): 0.81-0.90 read alone, 0.904-0.97 read short.
    assert record["calibration_read_alone"] == 20
    assert record["calibration_read"] == 20 + 19 and route.second_read.min_characters == 31
    with pytest.raises(ConfigError, match="larger share"):
        with_sheet_second_read(
            read, photos, first, second, sources, alpha=0.0005, engine_version="pp", share=0.005
        )
