"""The cascade's rule and policy (pure functions; the OCR engine is not involved)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model.calibrate import conformal_threshold
from model.cascade import GATE_RULE_INPUTS, RULE_INPUTS, CascadePolicy, CascadeRule, fit_rule, rule_inputs
from model.cascade_fit import JsonLinesCache, fit_rule_on


def _features(characters: int, area: float, emptiness: float) -> dict[str, float]:
    return {
        "read_characters": characters,
        "read_boxes": max(1, characters // 4) if characters else 0,
        "read_area": area,
        "lines": 2 if characters else 0,
        "largest_text_height": 0.1 if characters else 0.0,
        "ground_emptiness": emptiness,
        "confident_characters": characters,
    }


def _training_set(
    rng: np.random.Generator, n: int = 200
) -> tuple[np.ndarray, list[dict[str, float]], np.ndarray]:
    # Cards: much legible text on a plain ground, model scores spread; photos: little text, busy ground.
    card_scores = rng.uniform(0.2, 1.0, n)
    photo_scores = rng.uniform(0.0, 0.8, n)
    cards = [
        _features(int(rng.integers(10, 60)), rng.uniform(0.05, 0.3), rng.uniform(0.6, 1.0)) for _ in range(n)
    ]
    photos = [
        _features(int(rng.integers(0, 4)), rng.uniform(0.0, 0.02), rng.uniform(0.0, 0.5)) for _ in range(n)
    ]
    return np.concatenate([card_scores, photo_scores]), cards + photos, np.array([True] * n + [False] * n)


def test_rule_inputs_have_one_column_per_named_input_and_reject_mismatched_lengths() -> None:
    inputs = rule_inputs([0.5, 0.99], [_features(0, 0.0, 1.0), _features(20, 0.1, 0.9)])
    assert inputs.shape == (2, len(RULE_INPUTS))
    assert inputs[0, 0] == pytest.approx(0.0)  # logit(0.5)
    with pytest.raises(ValueError, match="2 scores but 1 feature rows"):
        rule_inputs([0.5, 0.6], [_features(0, 0.0, 1.0)])


def test_a_fitted_rule_separates_legible_text_from_photos_and_round_trips_through_json() -> None:
    scores, features, labels = _training_set(np.random.default_rng(0))
    rule = fit_rule(rule_inputs(scores, features), labels)

    probabilities = rule.probability(rule_inputs(scores, features))

    assert probabilities[labels].min() > probabilities[~labels].max()
    again = CascadeRule.from_json(rule.to_json())
    assert np.allclose(again.probability(rule_inputs(scores, features)), probabilities)
    with pytest.raises(ValueError, match="does not know"):
        CascadeRule.from_json({**rule.to_json(), "inputs": ["other"] * len(RULE_INPUTS)})
    with pytest.raises(ValueError, match="one weight"):
        CascadeRule.from_json({**rule.to_json(), "inputs": list(RULE_INPUTS[:3])})


def test_a_rule_over_the_drawings_shape_weighs_its_own_inputs() -> None:
    scores, features, labels = _training_set(np.random.default_rng(1))
    # Cards are lines of many glyphs; the rest one or two large shapes.
    shaped = [
        {**row, "drawing_marks": 12 if card else 2, "drawing_glyphs": 8 if card else 1, "drawing_aspect": 5.0}
        for row, card in zip(features, labels, strict=True)
    ]
    rule = fit_rule(rule_inputs(scores, shaped, GATE_RULE_INPUTS), labels, names=GATE_RULE_INPUTS)

    assert rule.inputs == GATE_RULE_INPUTS and len(rule.weights) == len(GATE_RULE_INPUTS)
    assert CascadeRule.from_json(rule.to_json()) == rule
    card = {**shaped[int(np.flatnonzero(labels)[0])], "read_characters": 0, "read_boxes": 0}
    assert rule.score([0.5], [card])[0] > rule.score([0.5], [{**card, "drawing_glyphs": 1}])[0]
    with pytest.raises(KeyError):
        rule.score([0.5], [features[0]])  # a page reading alone has no shape to weigh


def test_below_send_from_the_model_decides_and_the_verifier_is_not_needed() -> None:
    scores, features, labels = _training_set(np.random.default_rng(1))
    policy = CascadePolicy(send_from=0.5, rule=fit_rule(rule_inputs(scores, features), labels), threshold=0.5)
    sent = policy.sends(scores)
    only_sent = [row if s else None for row, s in zip(features, sent, strict=True)]

    cascade = policy.cascade_scores(scores, only_sent)

    assert np.all(cascade[~sent] == 0.0)
    assert np.allclose(cascade[sent], policy.cascade_scores(scores, features)[sent])
    # A sent image whose verifier failed scores 0 here (the worker falls back to the model's threshold).
    failed = list(only_sent)
    first_sent = int(np.flatnonzero(sent)[0])
    failed[first_sent] = None
    assert policy.cascade_scores(scores, failed)[first_sent] == 0.0


def test_the_conformal_threshold_on_cascade_scores_bounds_false_positives_on_new_photos() -> None:
    rng = np.random.default_rng(2)
    scores, features, labels = _training_set(rng)
    rule = fit_rule(rule_inputs(scores, features), labels)
    draft = CascadePolicy(0.3, rule, threshold=1.0)
    calib_scores, calib_features, calib_labels = _training_set(rng, n=1000)
    photos = ~calib_labels
    calib = draft.cascade_scores(
        calib_scores[photos], [f for f, p in zip(calib_features, photos, strict=True) if p]
    )

    threshold = conformal_threshold(calib.astype(np.float32), 0.01).threshold

    policy = CascadePolicy(0.3, rule, threshold)
    new_scores, new_features, new_labels = _training_set(rng, n=1000)
    flags = policy.cascade_scores(new_scores, new_features) >= policy.threshold
    assert flags[~new_labels].mean() <= 0.02
    # Cards the model scores below send_from never reach the verifier: the first stage bounds recall.
    sent_cards = policy.sends(new_scores)[new_labels]
    assert flags[new_labels].mean() == pytest.approx(sent_cards.mean(), abs=0.03)
    assert not flags[new_labels][~sent_cards].any()
    assert CascadePolicy.from_json(policy.to_json()) == policy


def test_the_fit_cache_keeps_each_chunk_as_soon_as_it_is_computed(tmp_path: Path) -> None:
    path = tmp_path / "features.jsonl"
    calls: list[list[str]] = []

    def compute(keys: list[str]) -> list[dict[str, Any]]:
        calls.append(keys)
        if "boom" in keys:
            raise RuntimeError("engine crashed")
        return [{"value": len(key)} for key in keys]

    cache = JsonLinesCache(path)
    with pytest.raises(RuntimeError):
        cache.get_many(["a", "bb", "ccc", "boom"], compute, chunk=2)

    again = JsonLinesCache(path)  # what an interrupted run left
    assert sorted(again.records) == ["a", "bb"]
    assert [r["value"] for r in again.get_many(["bb", "a", "ccc"], compute, chunk=2)] == [2, 1, 3]
    assert calls[-1] == ["ccc"]


class _Measured:
    """Model scores and verifier features by key, as `Measurements` serves them."""

    def __init__(self, scores: np.ndarray, features: list[dict[str, float]]) -> None:
        self._scores = {str(i): float(s) for i, s in enumerate(scores)}
        self._features = {str(i): f for i, f in enumerate(features)}

    def scores(self, keys: list[str]) -> np.ndarray:
        return np.array([self._scores[k] for k in keys])

    def features(self, keys: list[str], line_read: object = None) -> list[dict[str, float]]:
        assert line_read is None  # these fits read the page only
        return [self._features[k] for k in keys]


def test_a_rule_fitted_without_the_model_gives_its_score_no_weight() -> None:
    scores, features, labels = _training_set(np.random.default_rng(3))
    measured = _Measured(scores, features)
    cards = [str(i) for i in np.flatnonzero(labels)]
    other = [str(i) for i in np.flatnonzero(~labels)]

    with_model = fit_rule_on(measured, cards, other)  # type: ignore[arg-type]
    text_only = fit_rule_on(measured, cards, other, with_model=False)  # type: ignore[arg-type]

    assert with_model.weights[0] > 0 and text_only.weights[0] == 0.0
    row = rule_inputs([0.01, 0.99], [features[0], features[0]])
    assert text_only.probability(row)[0] == text_only.probability(row)[1]  # the score changes nothing
    assert with_model.probability(row)[0] < with_model.probability(row)[1]


def test_the_models_card_band_makes_cards_without_a_read_and_keeps_older_cards_json() -> None:
    scores, features, labels = _training_set(np.random.default_rng(2))
    rule = fit_rule(rule_inputs(scores, features), labels)
    plain = CascadePolicy(send_from=0.5, rule=rule, threshold=0.5)
    banded = CascadePolicy(send_from=0.5, rule=rule, threshold=0.5, card_from=0.9)
    model_scores = np.array([0.2, 0.6, 0.95])
    # The third image reads nothing: the rule would keep it a product; the band makes it a card unread.
    silent = [_features(0, 0.0, 0.2)] * 3

    assert plain.sends(model_scores).tolist() == [False, True, True]
    assert banded.sends(model_scores).tolist() == [False, True, False]
    assert plain.cascade_scores(model_scores, silent)[2] < plain.threshold
    flagged = banded.cascade_scores(model_scores, [None, silent[1], None]) >= banded.threshold
    assert flagged.tolist() == [False, False, True]
    # Not even the plain-line gate or the quadrant route reads an image in the band.
    routed = CascadePolicy(0.5, rule, 0.5, parts_send_from=0.1, card_from=0.9)
    assert routed.sends(model_scores, part_scores=[0.0, 0.0, 0.99]).tolist() == [False, True, False]

    assert "card_from" not in plain.to_json()  # the versions of earlier cards do not change
    assert CascadePolicy.from_json(banded.to_json()) == banded
    for bad in (0.5, 0.3, float("nan")):
        with pytest.raises(ValueError, match="card band"):
            CascadePolicy(send_from=0.5, rule=rule, threshold=0.5, card_from=bad)


def test_a_verdict_in_the_card_band_is_the_models_and_keeps_the_records_contract() -> None:
    from model.cascade_decisions import MODEL, CascadeDecisions

    scores, features, labels = _training_set(np.random.default_rng(3))
    policy = CascadePolicy(0.5, fit_rule(rule_inputs(scores, features), labels), 0.5, card_from=0.9)
    decisions = CascadeDecisions(policy)

    card = decisions.screen(0.97, model_excluded=False, model_threshold=0.99)
    product = decisions.screen(0.2, model_excluded=False, model_threshold=0.99)

    assert card is not None and product is not None
    assert (card.excluded, card.decided_by, card.score, card.threshold) == (True, MODEL, 0.97, 0.9)
    assert card.score >= card.threshold  # search relies on excluded == (score >= threshold)
    assert not product.excluded
    assert decisions.screen(0.6, model_excluded=False, model_threshold=0.99) is None  # read


def test_the_panel_reading_is_asked_for_on_the_score_route_only_and_keeps_older_cards_json() -> None:
    from model.cascade_decisions import CascadeDecisions
    from model.screen import PlainLineGate
    from model.verifier.panel_read import PanelRead

    scores, features, labels = _training_set(np.random.default_rng(4))
    rule = fit_rule(rule_inputs(scores, features), labels)
    plain = CascadePolicy(0.5, rule, 0.5, parts_send_from=0.6)
    panel = PanelRead(6)
    policy = CascadePolicy(
        0.5, rule, 0.5, gate=PlainLineGate(0.9, 0.2), gate_rule=rule, parts_send_from=0.6, panel_read=panel
    )
    decisions = CascadeDecisions(policy)
    busy, one_line = [0.1, 0.9], [0.95, 0.1]  # (flat_share, busy_rows): the gate passes the second

    assert decisions.panel_read(busy, 0.7) == panel  # sent by the whole picture's score
    assert decisions.panel_read(busy, 0.3) is None  # sent by a corner
    assert decisions.panel_read(one_line, 0.7) is None  # the gate's: read as a line instead
    assert CascadeDecisions(plain).panel_read(busy, 0.7) is None
    assert "panel_read" not in plain.to_json()  # the versions of earlier cards do not change
    assert CascadePolicy.from_json(policy.to_json()) == policy


def test_a_refit_on_scores_that_differ_in_their_last_bits_gives_the_same_rule() -> None:
    scores, features, labels = _training_set(np.random.default_rng(5))
    inputs = rule_inputs(scores, features)
    nudged = rule_inputs(np.nextafter(scores, 1.0), features)  # one ulp: another machine's batching

    assert not np.array_equal(inputs, nudged)
    assert fit_rule(nudged, labels) == fit_rule(inputs, labels)


def test_the_sheet_reading_reads_the_band_below_the_bound_and_flags_from_its_characters() -> None:
    from model.cascade_decisions import VERIFIER, CascadeDecisions
    from model.sheets import SheetRoute
    from model.verifier.features import TextFeatures

    scores, features, labels = _training_set(np.random.default_rng(7))
    rule = fit_rule(rule_inputs(scores, features), labels)
    route = SheetRoute(card_from=0.99, member=1, read_from=0.9, read_characters=5)
    policy = CascadePolicy(0.5, rule, 0.5, parts_send_from=0.8, sheets=route)
    model_scores = np.array([0.1, 0.1, 0.1, 0.1, 0.6])
    parts = [0.0] * 5
    sheet_scores = [
        0.5,
        0.95,
        0.95,
        0.995,
        0.95,
    ]  # below the band, in it twice, over the bound, in it and sent
    sheet_characters = [40, 12, 2, 0, 12]  # what reading each best sheet would find
    silent = [_features(0, 0.0, 0.2)] * 5

    assert policy.sends(model_scores, None, parts, sheet_scores).tolist() == [False] * 4 + [True]
    assert policy.sheet_reads(model_scores, sheet_scores).tolist() == [False, True, True, False, True]
    flagged = policy.cascade_scores(
        model_scores, silent, None, parts, sheet_scores, sheet_characters=sheet_characters
    )
    assert (flagged >= policy.threshold).tolist() == [False, True, False, True, True]
    with pytest.raises(ValueError, match="characters"):
        policy.cascade_scores(model_scores, silent, None, parts, sheet_scores)
    assert CascadePolicy.from_json(policy.to_json()) == policy

    decisions = CascadeDecisions(policy)
    assert decisions.screen(0.1, False, 0.97, part_score=0.0, sheet_score=0.95) is None  # its sheet is read
    assert decisions.reads_sheet(0.1, 0.95) and not decisions.reads_page(
        0.1, part_score=0.0, sheet_score=0.95
    )
    assert not decisions.reads_sheet(0.1, 0.5) and not decisions.reads_sheet(0.1, 0.995)
    legible = TextFeatures(4, 3, 12, 0.1, 2, 0.1, 0.8, 12)
    card = decisions.verified(0.1, None, sheet_score=0.95, sheet_features=legible)
    assert (card.excluded, card.decided_by, card.score, card.threshold) == (True, VERIFIER, 0.95, 0.9)
    assert card.score >= card.threshold  # search relies on excluded == (score >= threshold)
    assert card.features is not None and card.features["sheet_read_characters"] == 12
    scrawl = TextFeatures(4, 1, 2, 0.01, 1, 0.05, 0.3, 0)
    product = decisions.verified(0.1, None, sheet_score=0.95, sheet_features=scrawl)
    assert not product.excluded and product.score < product.threshold
    # Read both ways: the page's rule still decides where the sheet's reading does not flag.
    page = TextFeatures(20, 15, 45, 0.2, 4, 0.1, 0.9, 45)
    both = decisions.verified(0.6, page, sheet_score=0.95, sheet_features=scrawl)
    assert both.excluded and both.threshold == policy.threshold
    assert both.features is not None and {"read_characters", "sheet_read_characters"} <= set(both.features)

    for bad in (
        {"read_from": 0.9},
        {"read_from": 0.995, "read_characters": 3},
        {"read_from": 0.9, "read_characters": 0},
    ):
        with pytest.raises(ValueError):
            SheetRoute(card_from=0.99, **bad)  # type: ignore[arg-type]
    assert "read_from" not in SheetRoute(card_from=0.99).to_json()  # earlier cards keep their versions


def test_the_sheet_route_makes_cards_without_a_read_and_keeps_older_cards_json() -> None:
    from model.cascade_decisions import MODEL, CascadeDecisions
    from model.sheets import SheetRoute, SheetSearch

    scores, features, labels = _training_set(np.random.default_rng(6))
    rule = fit_rule(rule_inputs(scores, features), labels)
    plain = CascadePolicy(0.5, rule, 0.5, parts_send_from=0.8)
    route = SheetRoute(card_from=0.99, member=1, search=SheetSearch(slots=4))
    sheeted = CascadePolicy(0.5, rule, 0.5, parts_send_from=0.8, sheets=route)
    model_scores = np.array([0.1, 0.6, 0.1, 0.6])
    parts = [0.0, 0.0, 0.0, 0.0]
    sheet_scores = [0.2, 0.2, 0.995, 0.995]  # the last two hold a sheet the model is sure of
    silent = [_features(0, 0.0, 0.2)] * 4

    assert plain.sends(model_scores, part_scores=parts).tolist() == [False, True, False, True]
    assert sheeted.sends(model_scores, None, parts, sheet_scores).tolist() == [False, True, False, False]
    flagged = sheeted.cascade_scores(model_scores, silent, None, parts, sheet_scores) >= sheeted.threshold
    assert flagged.tolist() == [False, False, True, True]
    with pytest.raises(ValueError, match="sheet"):
        sheeted.sends(model_scores, part_scores=parts)  # would silently decide otherwise
    with pytest.raises(ValueError, match="quadrant route"):
        CascadePolicy(0.5, rule, 0.5, sheets=route)

    decisions = CascadeDecisions(sheeted)
    card = decisions.screen(0.1, False, 0.97, part_score=0.0, sheet_score=0.995)
    assert card is not None
    assert (card.excluded, card.decided_by, card.score, card.threshold, card.model_score) == (
        True,
        MODEL,
        0.995,
        0.99,
        0.1,
    )
    assert card.score >= card.threshold  # search relies on excluded == (score >= threshold)
    assert decisions.sheet_card(0.995) and not decisions.sheet_card(0.2) and not decisions.sheet_card(None)
    product = decisions.screen(0.1, False, 0.97, part_score=0.0, sheet_score=0.2)
    assert product is not None and not product.excluded
    assert decisions.screen(0.6, False, 0.97, part_score=0.0, sheet_score=0.2) is None  # read

    assert "sheets" not in plain.to_json()  # the versions of earlier cards do not change
    assert CascadePolicy.from_json(sheeted.to_json()) == sheeted
    for bad in (0.0, 1.0, float("nan")):
        with pytest.raises(ValueError):
            SheetRoute(card_from=bad)


def _layout_band(cards_from: float = 0.9) -> Any:
    from model.cascade import LAYOUT_RULE_INPUTS, LayoutBand

    scores, features, labels = _training_set(np.random.default_rng(5))
    rule = fit_rule(rule_inputs(scores, features, LAYOUT_RULE_INPUTS), labels, names=LAYOUT_RULE_INPUTS)
    return LayoutBand(rule, cards_from)


def test_the_layout_band_makes_cards_of_the_score_routes_pictures_only_and_keeps_older_cards_json() -> None:
    scores, features, labels = _training_set(np.random.default_rng(4))
    rule = fit_rule(rule_inputs(scores, features), labels)
    plain = CascadePolicy(0.5, rule, 0.99, parts_send_from=0.8)
    banded = CascadePolicy(0.5, rule, 0.99, parts_send_from=0.8, layout_band=_layout_band())
    model_scores = np.array([0.2, 0.95, 0.95])
    many_words, no_words = _features(40, 0.2, 0.8), _features(0, 0.0, 0.3)
    # The first picture only the corners send: the band never decides it, whatever its layout.
    layouts = [many_words, many_words, no_words]
    read = [_features(2, 0.01, 0.2)] * 3  # what reading them would say: not cards at this threshold

    assert banded.layout_cards(model_scores, layouts).tolist() == [False, True, False]
    flagged = banded.cascade_scores(model_scores, read, part_scores=[0.9, 0, 0], layout_features=layouts)
    assert (flagged >= banded.threshold).tolist() == [False, True, False]
    assert (plain.cascade_scores(model_scores, read, part_scores=[0.9, 0, 0]) >= 0.99).tolist() == [False] * 3
    with pytest.raises(ValueError, match="layout band"):
        banded.cascade_scores(model_scores, read, part_scores=[0.9, 0, 0])

    assert "layout_band" not in plain.to_json()  # the versions of earlier cards do not change
    assert CascadePolicy.from_json(banded.to_json()) == banded
    with pytest.raises(ValueError, match="bound"):
        _layout_band(0.0)
    # With an emptiness floor: the same layout on a filled ground (a texture's) is read, not carded.
    floored = dataclasses.replace(
        banded, layout_band=dataclasses.replace(banded.layout_band, min_emptiness=0.5)
    )
    filled = {**many_words, "ground_emptiness": 0.2}
    assert floored.layout_cards(model_scores, [None, many_words, filled]).tolist() == [False, True, False]
    assert CascadePolicy.from_json(floored.to_json()) == floored
    assert "min_emptiness" not in banded.to_json()["layout_band"]
    with pytest.raises(ValueError, match="emptiness floor"):
        dataclasses.replace(floored.layout_band, min_emptiness=1.0)


def test_a_card_on_its_layout_is_the_verifiers_unread_and_keeps_the_records_contract() -> None:
    from model.cascade_decisions import VERIFIER, CascadeDecisions
    from model.verifier.features import TextFeatures

    scores, features, labels = _training_set(np.random.default_rng(6))
    policy = CascadePolicy(
        0.5,
        fit_rule(rule_inputs(scores, features), labels),
        0.99,
        parts_send_from=0.8,
        layout_band=_layout_band(),
    )
    decisions = CascadeDecisions(policy)
    many_words = TextFeatures(**{**_features(40, 0.2, 0.8), "boxes": 10})

    first = decisions.layout_first(0.95)
    assert first is not None and first.card(many_words)
    assert decisions.layout_first(0.2) is None  # not sent: nothing to find
    card = decisions.verified(0.95, None, layout_features=many_words)
    assert (card.excluded, card.decided_by, card.threshold) == (True, VERIFIER, 0.9)
    assert card.score >= card.threshold  # search relies on excluded == (score >= threshold)
    assert card.features is not None and card.features["layout_read_boxes"] == 10
    assert "read_boxes" not in card.features  # nothing was read
    assert CascadeDecisions(CascadePolicy(0.5, policy.rule, 0.99)).layout_first(0.95) is None


def _glyphs_rule() -> CascadeRule:
    """A shape rule: P(card) = sigmoid(4 * log1p(glyphs) - 6) (means 0, scales 1)."""
    from model.cascade import SHAPE_RULE_INPUTS

    weights = tuple(4.0 if name == "log_drawing_glyphs" else 0.0 for name in SHAPE_RULE_INPUTS)
    size = len(SHAPE_RULE_INPUTS)
    return CascadeRule(weights, -6.0, (0.0,) * size, (1.0,) * size, SHAPE_RULE_INPUTS)


def test_the_gates_shape_rule_weighs_a_line_of_glyphs_read_as_nothing_and_keeps_older_cards_json() -> None:
    from model.screen import PlainLineGate
    from model.verifier.line_read import LineRead

    scores, features, labels = _training_set(np.random.default_rng(5))
    rule = fit_rule(rule_inputs(scores, features), labels)
    gate = PlainLineGate(0.5, 0.5, LineRead(min_glyphs=2, skip_page=True))
    served = CascadePolicy(0.9, rule, 0.6, gate=gate, gate_rule=rule)
    shaped = dataclasses.replace(served, gate_shape_rule=_glyphs_rule())
    gated, busy = [0.9, 0.1], [0.1, 0.9]  # looks: flat share, busy rows
    unread_line = {**_features(0, 0.0, 0.9), "drawing_marks": 12, "drawing_glyphs": 9, "drawing_aspect": 6.0}
    one_mark = {**unread_line, "drawing_glyphs": 1}
    read_line = {**unread_line, **_features(1, 0.01, 0.9)}
    rows = [unread_line, one_mark, read_line, unread_line]
    looks = np.array([gated, gated, gated, busy])
    model_scores = np.array([0.1, 0.1, 0.1, 0.95])

    before = served.read_scores(model_scores, rows, looks)
    after = shaped.read_scores(model_scores, rows, looks)
    # Only the gate's line of glyphs in which nothing was read is weighed on its shape (sigmoid(4 ln 10 - 6)).
    assert after[0] == pytest.approx(1 / (1 + np.exp(-(4 * np.log(10) - 6)))) and after[0] > before[0]
    assert after[1:].tolist() == before[1:].tolist()  # one glyph, something read, another route
    assert (shaped.cascade_scores(model_scores, rows, looks) >= 0.6).tolist()[0]
    # The verdict the worker and `alocc score` give it (`CascadeDecisions.verified`): a card, by the verifier.
    from model.cascade_decisions import VERIFIER, CascadeDecisions
    from model.verifier.features import TextFeatures

    read_as_nothing = TextFeatures(**{**unread_line, "boxes": 0, "read_boxes": 0})
    verdict = CascadeDecisions(shaped).verified(0.1, read_as_nothing, gated)
    assert (verdict.excluded, verdict.decided_by, verdict.threshold) == (True, VERIFIER, 0.6)
    assert verdict.score == pytest.approx(after[0])
    assert not CascadeDecisions(served).verified(0.1, read_as_nothing, gated).excluded
    # Counted apart where the shape rule alone makes the card; not on another route, nor without the rule.
    assert CascadeDecisions(shaped).shape_card(0.1, read_as_nothing, gated)
    assert not CascadeDecisions(shaped).shape_card(0.1, read_as_nothing, busy)
    assert not CascadeDecisions(served).shape_card(0.1, read_as_nothing, gated)
    assert not CascadeDecisions(shaped).shape_card(0.1, TextFeatures(**{**read_line, "boxes": 1}), gated)

    assert "shape_rule" not in served.to_json()["plain_line_gate"]  # the versions of earlier cards stay
    assert CascadePolicy.from_json(shaped.to_json()) == shaped
    with pytest.raises(ValueError, match="shape rule needs"):
        CascadePolicy(0.9, rule, 0.6, gate_shape_rule=_glyphs_rule())
    with pytest.raises(ValueError, match="shape rule needs"):
        CascadePolicy(
            0.9, rule, 0.6, gate=PlainLineGate(0.5, 0.5), gate_rule=rule, gate_shape_rule=_glyphs_rule()
        )


def test_the_rules_floor_takes_readings_without_confident_text_out_and_keeps_older_cards_json() -> None:
    from model.cascade_decisions import CascadeDecisions
    from model.screen import PlainLineGate
    from model.verifier.features import TextFeatures

    scores, features, labels = _training_set(np.random.default_rng(6))
    rule = fit_rule(rule_inputs(scores, features), labels)
    served = CascadePolicy(
        0.5, rule, 0.5, gate=PlainLineGate(0.5, 0.5), gate_rule=rule, parts_send_from=0.6, parts_rule=rule
    )
    floored = dataclasses.replace(served, min_confident=1)
    # A texture read as many characters, none of them confidently; the same reading with one confident.
    texture = {**_features(40, 0.2, 0.9), "confident_characters": 0}
    one_sure = {**texture, "confident_characters": 1}
    gated, busy = [0.9, 0.1], [0.1, 0.9]  # looks: flat share, busy rows
    rows = [texture, texture, one_sure, texture]
    looks = np.array([busy, busy, busy, gated])
    model_scores = np.array([0.9, 0.2, 0.9, 0.9])  # score route, parts only, score route, the gate's

    before = served.read_scores(model_scores, rows, looks)
    after = floored.read_scores(model_scores, rows, looks)
    assert (before >= 0.5).all()  # the rules alone make every one a card
    # The main and parts rules' readings without a confident character score 0; the gate's are its rule's.
    assert after.tolist() == [0.0, 0.0, before[2], before[3]]
    read_texture = TextFeatures(**{**texture, "boxes": 12})
    verdict = CascadeDecisions(floored).verified(0.9, read_texture, busy)
    assert not verdict.excluded and verdict.score == 0.0 and verdict.score < verdict.threshold
    # Counted apart where the floor alone keeps it a product; not without the floor, nor on the gate's route.
    assert CascadeDecisions(floored).unconfident(0.9, read_texture, busy)
    assert not CascadeDecisions(served).unconfident(0.9, read_texture, busy)
    assert not CascadeDecisions(floored).unconfident(0.9, read_texture, gated)
    assert not CascadeDecisions(floored).unconfident(0.9, TextFeatures(**{**one_sure, "boxes": 12}), busy)

    assert "min_confident" not in served.to_json()  # the versions of earlier cards do not change
    assert CascadePolicy.from_json(floored.to_json()) == floored
    with pytest.raises(ValueError, match="floor"):
        CascadePolicy(0.5, rule, 0.5, min_confident=-1)


class _SecondReader:
    """A reader whose first engine reads `page` and whose second engine reads `second` (counting reads)."""

    def __init__(self, page: Any, second: Any) -> None:
        self.page, self.second, self.second_reads = page, second, 0

    def features(self, data: bytes, **_: Any) -> Any:
        return self.page

    def second_features(self, data: bytes, second: Any) -> Any:
        self.second_reads += 1
        return self.second


def test_the_second_reading_reads_again_what_the_rules_leave_products_outside_the_gate() -> None:
    from model.cascade_decisions import VERIFIER, CascadeDecisions, read_for_verdict
    from model.screen import PlainLineGate
    from model.verifier.features import TextFeatures
    from model.verifier.second_read import SecondRead

    scores, features, labels = _training_set(np.random.default_rng(7))
    rule = fit_rule(rule_inputs(scores, features), labels)
    served = CascadePolicy(0.5, rule, 0.5, gate=PlainLineGate(0.5, 0.5), gate_rule=rule)
    second = SecondRead(10, engine_version="engine 1")
    twice = dataclasses.replace(served, second_read=second)
    gated, busy = [0.9, 0.1], [0.1, 0.9]  # looks: flat share, busy rows
    unread_caption = _features(0, 0.0, 0.3)  # Tesseract read nothing legible: the rules say product
    legible = _features(40, 0.2, 0.9)
    # Score route (caption), score route (legible card), the gate's caption, not sent at all.
    model_scores = np.array([0.9, 0.9, 0.1, 0.1])
    rows = [unread_caption, legible, unread_caption, None]
    looks = np.array([busy, busy, gated, busy])
    read = [True, True, True, False]

    first = served.cascade_scores(model_scores, rows, looks)
    assert (first >= 0.5).tolist() == [False, True, False, False]
    # Only the score route's product is read again; the gate's rules keep their own pictures.
    assert twice.second_reads(model_scores, first, looks, read, rows).tolist() == [True, False, False, False]
    # With a least count of boxes found, a page in which the first reading found none is not read again.
    boxed = dataclasses.replace(twice, second_read=dataclasses.replace(second, min_boxes=1))
    no_boxes, some = [{**unread_caption, "boxes": 0}, *rows[1:]], [{**unread_caption, "boxes": 5}, *rows[1:]]
    assert not boxed.second_reads(model_scores, first, looks, read, no_boxes)[0]
    assert boxed.second_reads(model_scores, first, looks, read, some)[0]
    assert CascadePolicy.from_json(boxed.to_json()) == boxed and "min_boxes" not in second.to_json()
    # With a bound on the ground, a page read on a plain ground (a product's label on a cut-out) is not.
    grounded = dataclasses.replace(twice, second_read=dataclasses.replace(second, max_ground=0.5))
    plain, busy_ground = [{**unread_caption, "ground_emptiness": 0.8}, *rows[1:]], rows
    assert not grounded.second_reads(model_scores, first, looks, read, plain)[0]
    assert grounded.second_reads(model_scores, first, looks, read, busy_ground)[0]
    assert CascadePolicy.from_json(grounded.to_json()) == grounded and "max_ground" not in second.to_json()
    many, few = _features(12, 0.1, 0.5), _features(9, 0.1, 0.5)
    for second_rows, flagged in (([many, None, None, None], True), ([few, None, None, None], False)):
        after = twice.cascade_scores(model_scores, rows, looks, second_features=second_rows)
        assert (after >= 0.5).tolist() == [flagged, True, False, False]
    with pytest.raises(ValueError, match="second reading"):
        twice.cascade_scores(model_scores, rows, looks)

    # The worker's and `alocc score`'s path: read again only where the first reading left a product.
    decisions = CascadeDecisions(twice)
    page = TextFeatures(**{**unread_caption, "boxes": 6})
    reader = _SecondReader(page, TextFeatures(**{**many, "boxes": 3}))
    after_first = decisions.second_after(0.9, busy)
    assert after_first is not None and decisions.second_after(0.1, gated) is None
    readings = read_for_verdict(reader, b"", page=True, second_after=after_first)
    assert reader.second_reads == 1 and readings.second is not None
    verdict = decisions.verified(0.9, readings.page, busy, second_features=readings.second)
    assert (verdict.excluded, verdict.decided_by, verdict.score) == (True, VERIFIER, 1.0)
    assert verdict.score >= verdict.threshold  # search relies on excluded == (score >= threshold)
    assert verdict.features is not None and verdict.features["second_read_characters"] == 12
    empty_page = _SecondReader(TextFeatures(**{**unread_caption, "boxes": 0}), reader.second)
    boxed_after = CascadeDecisions(boxed).second_after(0.9, busy)
    assert read_for_verdict(empty_page, b"", page=True, second_after=boxed_after).second is None
    assert empty_page.second_reads == 0  # no box found: not read again where the card asks for boxes
    legible_reader = _SecondReader(TextFeatures(**{**legible, "boxes": 10}), None)
    assert read_for_verdict(legible_reader, b"", page=True, second_after=after_first).second is None
    assert legible_reader.second_reads == 0  # a card already: not read again
    assert CascadeDecisions(served).second_after(0.9, busy) is None

    assert "second_read" not in served.to_json()  # the versions of earlier cards do not change
    assert CascadePolicy.from_json(twice.to_json()) == twice
    with pytest.raises(ValueError, match="at least one character"):
        SecondRead(0)
    with pytest.raises(ValueError, match="least boxes"):
        SecondRead(9, min_boxes=-1)
    with pytest.raises(ValueError, match="ground's bound"):
        SecondRead(9, max_ground=1.5)
    with pytest.raises(ValueError, match="confident count"):
        SecondRead(9, min_confident=0)


def test_the_second_readings_count_is_the_least_that_flags_at_most_the_photos_allowed() -> None:
    from model.cascade import TextCascade
    from model.cascade_second import SecondCounts, least_count, with_second_read
    from model.verifier.engines import VerifierConfig
    from model.verifier.second_read import SecondRead

    characters = [0, 0, 3, 7, 11, 4]
    counts = SecondCounts(tuple(characters))
    assert least_count(characters, 0) == 12
    assert least_count(characters, 1) == 8  # only the photo reading 11 reaches it
    assert least_count(characters, 2) == 5
    assert least_count([], 1) == 1
    rule = CascadeRule((1.0,), 0.0, (0.0,), (1.0,), ("model_logit",))
    cascade = TextCascade(
        "m", VerifierConfig(), "tess 5", CascadePolicy(0.5, rule, 0.5), {"target_fpr": 0.001}
    )
    second = with_second_read(cascade, counts, 999, engine_version="engine 1", max_photos=1)
    assert second.policy.second_read is not None and second.policy.second_read.min_characters == 8
    record = second.calibration["second_read"]
    assert (record["photos_read"], record["photos_flagged"]) == (6, 1)
    assert record["false_positive_bound"] == pytest.approx(0.001 + 2 / 1000)
    again = with_second_read(second, counts, 999, engine_version="engine 1", max_photos=1)
    # Attached again, the reading replaces its earlier bound instead of adding to it.
    assert again.calibration["second_read"]["false_positive_bound"] == pytest.approx(0.001 + 2 / 1000)
    assert second.version != cascade.version  # the second reading is part of what the version names
    # A training negative reading more than the calibration photos' tail raises the count above it.
    raised = with_second_read(
        cascade,
        counts,
        999,
        engine_version="engine 1",
        max_photos=1,
        negative_counts=SecondCounts((0, 9, 2)),
        max_ground=0.7,
    )
    assert raised.policy.second_read is not None and raised.policy.second_read.min_characters == 10
    assert raised.policy.second_read.max_ground == 0.7
    record = raised.calibration["second_read"]
    assert (
        record["calibrated_characters"],
        record["negatives_top_characters"],
        record["photos_flagged"],
    ) == (
        8,
        9,
        1,
    )
    below = with_second_read(
        cascade, counts, 999, engine_version="engine 1", max_photos=1, negative_counts=SecondCounts((3,))
    )
    assert below.policy.second_read is not None and below.policy.second_read.min_characters == 8
    # A confident count: raised above the negatives' confident reads; its calibration flags are bounded.
    sure = SecondCounts((0, 5, 3, 7, 11, 4), (0, 5, 0, 0, 0, 2))
    confident = with_second_read(
        cascade,
        sure,
        999,
        engine_version="engine 1",
        max_photos=1,
        negative_counts=SecondCounts((6, 2), (0, 3)),
        min_confident=2,
    )
    read = confident.policy.second_read
    assert read is not None and (read.min_characters, read.min_confident) == (8, 4)
    assert confident.calibration["second_read"]["photos_flagged"] == 2  # 11 characters; 5 read confidently
    assert read.card({"read_characters": 5, "confident_characters": 4})
    assert not read.card({"read_characters": 5, "confident_characters": 3})
    assert SecondRead.from_json(read.to_json()) == read and "min_confident" not in SecondRead(9).to_json()
    with pytest.raises(ValueError, match="confident"):
        SecondCounts((1, 2), (1,))
