"""The plain-line look and gate (`model.screen`): one line on a plain ground, against photos and textures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cascade_samples import characters_rule

from model.cascade import BASE_RULE_INPUTS, CascadePolicy, CascadeRule
from model.screen import LOOK_NAMES, PlainLineGate, plain_line_looks

S = 32


def _one_line(ground: int = 230, ink: int = 20) -> np.ndarray:
    image = np.full((3, S, S), ground, dtype=np.uint8)
    image[:, 14:18, 6:26:2] = ink  # one line of strokes
    return image


def _photo(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (3, S, S), dtype=np.uint8)


def test_a_one_line_card_is_flat_with_few_busy_rows_and_a_photo_is_not() -> None:
    looks = plain_line_looks(np.stack([_one_line(), _photo(0)]))

    assert looks.shape == (2, len(LOOK_NAMES))
    (card_flat, card_rows), (photo_flat, photo_rows) = looks
    assert card_flat > 0.8 and card_rows == pytest.approx(5 / S)  # the 4 stroke rows and the edge above
    assert photo_flat < 0.1 and photo_rows == 1.0


def test_tensors_and_single_images_give_the_same_looks_as_arrays() -> None:
    batch = np.stack([_one_line(), _photo(1)])
    assert np.array_equal(plain_line_looks(torch.from_numpy(batch)), plain_line_looks(batch))
    assert np.array_equal(plain_line_looks(batch[0]), plain_line_looks(batch)[:1])
    with pytest.raises(ValueError, match=r"\(N, 3, S, S\)"):
        plain_line_looks(np.zeros((2, 1, S, S), dtype=np.uint8))


def test_the_gate_fits_on_one_line_cards_and_sends_them_but_not_photos_or_blank_pictures() -> None:
    cards = plain_line_looks(
        np.stack([_one_line(ground, ink) for ground, ink in ((230, 20), (30, 240), (200, 90))])
    )
    gate = PlainLineGate.fit(cards, recall=1.0)

    blank = plain_line_looks(np.full((1, 3, S, S), 128, dtype=np.uint8))
    others = np.concatenate([plain_line_looks(np.stack([_photo(2), _photo(3)])), blank])
    assert gate.sends(cards).all()
    assert not gate.sends(others).any()
    assert PlainLineGate.from_json(gate.to_json()) == gate
    with pytest.raises(ValueError, match="finite"):
        PlainLineGate.from_json({"flat_from": float("nan"), "rows_to": 0.2})
    with pytest.raises(ValueError, match="one-line cards"):
        PlainLineGate.fit(np.zeros((0, 2)))


def test_a_gated_policy_reads_what_the_gate_sends_needs_the_looks_and_keeps_old_cards_json() -> None:
    rule = characters_rule()
    plain = CascadePolicy(send_from=0.5, rule=rule, threshold=0.5)
    # The gate's own rule: a card when the ground is empty (standardised at 0.5: emptiness 0.99 gives p = 1).
    gate_rule = CascadeRule(
        weights=(0, 0, 0, 0, 0, 0, 50.0),
        bias=0.0,
        means=(0.0,) * 6 + (0.5,),
        scales=(1.0,) * 7,
        inputs=BASE_RULE_INPUTS,
    )
    gated = CascadePolicy(0.5, rule, 0.5, gate=PlainLineGate(0.8, 0.3), gate_rule=gate_rule)
    scores = np.array([0.1, 0.1, 0.9])
    looks = plain_line_looks(np.stack([_one_line(), _photo(4), _photo(5)]))
    read = {"read_characters": 8, "read_boxes": 2, "read_area": 0.05, "lines": 1, "largest_text_height": 0.2}
    features = [
        {**read, "ground_emptiness": 0.99},
        {**read, "ground_emptiness": 0.2},
        {**read, "ground_emptiness": 0.2},
    ]

    assert plain.sends(scores).tolist() == [False, False, True]
    assert gated.sends(scores, looks).tolist() == [True, False, True]
    assert (gated.cascade_scores(scores, features, looks) >= 0.5).tolist() == [True, False, True]
    # The look picks the rule, not the score: the gate's weighs the ground, the model's the characters read.
    by_gate, by_model = gated.read_scores([0.1, 0.1], [features[1], features[1]], looks[:2])
    assert by_gate < 0.01 and by_model > 0.99
    with pytest.raises(ValueError, match="own rule"):
        CascadePolicy(0.5, rule, 0.5, gate=PlainLineGate(0.8, 0.3))
    with pytest.raises(ValueError, match="looks"):
        gated.sends(scores)
    assert "plain_line_gate" not in plain.to_json()  # the versions of earlier cards do not change
    assert CascadePolicy.from_json(gated.to_json()) == gated
