"""The layout band: cards the score route sends are decided on their layout, before a word is read.

Most of what the score route sends are cards (its share of calibration photos is 0.25%), and a card costs
more to read than anything else: it is full of words, and Tesseract runs a recognition per word (about
120 ms of one core per card on the development machine, against 10-15 ms for its layout analysis alone,
which finds the words without reading them). The main rule's verdict on such a picture rests mostly on
the model's score and on how much text there is and where, which the layout already shows.

So `LayoutBand` (`model.cascade`) is a logistic rule on the model's logit and the layout's features
(`model.cascade.LAYOUT_RULE_INPUTS`: words found, the area they cover, lines, the tallest word, the empty
ground), fitted as the main rule is (`val/target` against `val/other`), with a bound set as the card band's
(`model.cascade_card.raised_bound`): the conformal bound at `alpha` on the 6,000 calibration photos' rule
scores (their layouts found, whether or not the score route would send them: a bound on all of them bounds
those it sends), raised by the largest lead one photo source has over all the others. A picture the score
route sends is a card from that bound up, without a read; below it, the page is read and the main rule
decides, as without the band. The band only adds cards, so its alpha adds to the cascade's false-positive
bound (a union bound, recorded on the card).

The layout cannot tell a texture's rows from a line of Japanese (both are found as one or two "words" a
line), but the ground can: a card's words stand on a plain ground, a texture fills it. So the band decides
only on grounds at least as empty as those of most of its training cards (`emptiness_floor`, kept share
`keep`). A floor only removes cards from the band: its bound holds as calibrated.

`alocc cascade attach --layout-alpha A --data D` attaches it to the card's cascade and prints, for the
training side, the share of `train/target` cards the score route sends that the band decides.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from model.cascade import LAYOUT_RULE_INPUTS, CascadeRule, LayoutBand, TextCascade, fit_rule, rule_inputs
from model.cascade_card import check_calibration_photos, last_bound_step, raised_bound, with_union_bound
from model.errors import ConfigError

if TYPE_CHECKING:
    from model.cascade_fit import Measurements

# The folders the band's rule is fitted on (as the main rule), and the training cards it is measured on.
FIT_CARDS, FIT_OTHER, TRAIN_CARDS = "val/target", "val/other", "train/target"
# The share of the band's training cards whose ground the emptiness floor keeps (`emptiness_floor`).
DEFAULT_KEEP = 0.95


def fit_layout_rule(measured: Measurements) -> tuple[CascadeRule, int, int]:
    """The band's rule, fitted on the layouts of `val/target` (cards) against `val/other`; with the counts
    of each.

    Raises:
        ConfigError: the dataset lacks either folder.
    """
    cards, other = measured.files(FIT_CARDS), measured.files(FIT_OTHER)
    if not cards or not other:
        raise ConfigError(
            f"{measured.data} lacks {FIT_CARDS} or {FIT_OTHER}: build it with `alocc data build`"
        )
    keys = cards + other
    inputs = rule_inputs(measured.scores(keys), measured.layout(keys), LAYOUT_RULE_INPUTS)
    labels = [True] * len(cards) + [False] * len(other)
    return fit_rule(inputs, labels, names=LAYOUT_RULE_INPUTS), len(cards), len(other)


def with_layout_band(
    cascade: TextCascade,
    measured: Measurements,
    calibration: list[str],
    sources: list[str],
    alpha: float,
    *,
    keep: float = DEFAULT_KEEP,
) -> TextCascade:
    """The cascade with the layout band at `alpha`, fitted and bounded on `measured`'s dataset
    (`calibration`: its calibration photos' keys, `sources` theirs), on grounds at least as empty as those
    of the share `keep` of the band's training cards (`emptiness_floor`; 1: no floor). The step is recorded
    on the card with the share of training cards the score route sends that the band decides.

    Raises:
        ConfigError: the photos are not the ones the cascade was calibrated on, or the engine has no layout
            analysis.
    """
    check_calibration_photos(cascade, len(calibration))
    rule, cards, other = fit_layout_rule(measured)
    scores = rule.score(measured.scores(calibration), measured.layout(calibration))
    bound = raised_bound(scores, sources, alpha)
    band = LayoutBand(rule, min(1.0, bound["card_from"]))
    unfloored = dataclasses.replace(cascade, policy=dataclasses.replace(cascade.policy, layout_band=band))
    emptiness = _band_training_emptiness(unfloored, measured)
    band = dataclasses.replace(band, min_emptiness=emptiness_floor(emptiness, keep))
    policy = dataclasses.replace(cascade.policy, layout_band=band)
    record = {
        "calibration_photos": len(calibration),
        **bound,
        "rule_fitted_on": {"cards": cards, "other": other, "folders": [FIT_CARDS, FIT_OTHER]},
        "emptiness_floor": {
            "keep": keep,
            "band_train_cards": len(emptiness),
            "min_emptiness": band.min_emptiness,
        },
        "train_cards_decided": train_cards_decided(dataclasses.replace(cascade, policy=policy), measured),
    }
    return with_union_bound(
        cascade,
        policy,
        "layout_band",
        after=last_bound_step(cascade, excluding="layout_band"),
        alpha=alpha,
        record=record,
    )


def emptiness_floor(emptiness: Sequence[float], keep: float) -> float:
    """The ground emptiness that the share `keep` of the band's training cards reach (0 where there are none
    or `keep` is 1): the floor under which a picture is read whatever its layout."""
    if not len(emptiness) or keep >= 1.0:
        return 0.0
    return float(np.quantile(np.asarray(emptiness, dtype=np.float64), 1.0 - keep))


def _band_training_emptiness(cascade: TextCascade, measured: Measurements) -> list[float]:
    """The ground emptiness of each training card the score route sends that the band decides."""
    found, carded = _routed_training_layouts(cascade, measured)
    return [float(row["ground_emptiness"]) for row, card in zip(found, carded, strict=True) if card]


def train_cards_decided(cascade: TextCascade, measured: Measurements) -> dict[str, float]:
    """Of the `train/target` cards the score route sends, the share the layout band decides without a
    read (the training side's measure of what the band saves)."""
    found, carded = _routed_training_layouts(cascade, measured)
    return {"sent": len(found), "decided": float(np.mean(carded)) if len(found) else 0.0}


def _routed_training_layouts(
    cascade: TextCascade, measured: Measurements
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """The layouts of the `train/target` cards the score route sends, and which of them the band decides."""
    keys = measured.files(TRAIN_CARDS)
    policy = cascade.policy
    band = policy.layout_band
    assert band is not None
    scores = measured.scores(keys)
    looks = measured.looks(keys) if policy.gate is not None else None
    routed = [i for i, sent in enumerate(policy.score_routed(scores, looks)) if sent]
    found = measured.layout([keys[i] for i in routed])
    carded = band.cards(scores[routed], found) if routed else np.zeros(0, dtype=bool)
    return found, np.asarray(carded, dtype=bool)
