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

`alocc cascade attach --layout-alpha A --data D` attaches it to the card's cascade and prints, for the
training side, the share of `train/target` cards the score route sends that the band decides.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from model.cascade import LAYOUT_RULE_INPUTS, CascadeRule, LayoutBand, TextCascade, fit_rule, rule_inputs
from model.cascade_card import check_calibration_photos, raised_bound, with_union_bound
from model.errors import ConfigError

if TYPE_CHECKING:
    from model.cascade_fit import Measurements

# The folders the band's rule is fitted on (as the main rule), and the training cards it is measured on.
FIT_CARDS, FIT_OTHER, TRAIN_CARDS = "val/target", "val/other", "train/target"


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
    cascade: TextCascade, measured: Measurements, calibration: list[str], sources: list[str], alpha: float
) -> TextCascade:
    """The cascade with the layout band at `alpha`, fitted and bounded on `measured`'s dataset
    (`calibration`: its calibration photos' keys, `sources` theirs); the step is recorded on the card with
    the share of training cards the score route sends that the band decides.

    Raises:
        ConfigError: the photos are not the ones the cascade was calibrated on, or the engine has no layout
            analysis.
    """
    check_calibration_photos(cascade, len(calibration))
    rule, cards, other = fit_layout_rule(measured)
    scores = rule.score(measured.scores(calibration), measured.layout(calibration))
    bound = raised_bound(scores, sources, alpha)
    band = LayoutBand(rule, min(1.0, bound["card_from"]))
    policy = dataclasses.replace(cascade.policy, layout_band=band)
    record = {
        "calibration_photos": len(calibration),
        **bound,
        "rule_fitted_on": {"cards": cards, "other": other, "folders": [FIT_CARDS, FIT_OTHER]},
        "train_cards_decided": train_cards_decided(dataclasses.replace(cascade, policy=policy), measured),
    }
    return with_union_bound(
        cascade, policy, "layout_band", after=_last_step(cascade), alpha=alpha, record=record
    )


def train_cards_decided(cascade: TextCascade, measured: Measurements) -> dict[str, float]:
    """Of the `train/target` cards the score route sends, the share the layout band decides without a
    read (the training side's measure of what the band saves)."""
    keys = measured.files(TRAIN_CARDS)
    if not keys:
        return {"sent": 0, "decided": 0.0}
    scores = measured.scores(keys)
    policy = cascade.policy
    looks = measured.looks(keys) if policy.gate is not None else None
    routed = [key for key, sent in zip(keys, policy.score_routed(scores, looks), strict=True) if sent]
    if not routed:
        return {"sent": 0, "decided": 0.0}
    index = {key: i for i, key in enumerate(keys)}
    rows = [index[key] for key in routed]
    layouts: list[dict[str, Any] | None] = [None] * len(keys)
    for key, found in zip(routed, measured.layout(routed), strict=True):
        layouts[index[key]] = found
    decided = policy.layout_cards(scores, layouts, looks)[rows]
    return {"sent": len(routed), "decided": float(np.mean(decided))}


def _last_step(cascade: TextCascade) -> str:
    """The calibration step whose union bound the band's adds to: the one recording the largest."""
    steps = {
        name: float(step["false_positive_bound"])
        for name, step in cascade.calibration.items()
        if isinstance(step, dict) and "false_positive_bound" in step and name != "layout_band"
    }
    return max(steps, key=lambda name: steps[name]) if steps else ""
