"""The cascade's decision: the ALOCC model screens every image, the text verifier decides the uncertain ones.

- model score < `send_from`: a product, decided by the model alone (most uploads; about 2 ms each);
- model score >= `send_from`: the verifier reads the image, and a small logistic rule on the model score and
  the verifier's features gives the cascade score; the image is a card when it reaches `threshold`;
- where the policy has a plain-line gate (`model.screen`), an image that looks like one line of text on a
  plain ground is read too, whatever the model scored: the model scores such cards like products. What
  the gate passes is decided by a rule of its own (`gate_rule`, fitted on one-line cards against the
  training pictures the gate also passes): the two kinds of picture differ, and one rule for both would
  weigh an empty ground for every image;
- where the policy has a card band (`card_from`, above `send_from`), an image the model scores at least that
  high is a card without a read: the model is as sure as a conformal bound on the calibration photos allows
  (`model.cascade_card.with_card_band`), and a read there could only take a card out of the exclusions.
  Its false-positive bound adds to the cascade's (a union bound); it saves the read of most cards;
- where the policy has a panel reading (`panel_read`), an image the model's score sends and whose page
  reading read nothing is read again with its ground flattened (`model.verifier.panel_read`): a card's text
  on a panel of another tone is lost to Tesseract's global threshold;
- where the policy has a sheet route (`sheets`), a picture holding a sheet (a notice photographed in a
  scene: `model.sheets`) that the model, shown the sheet straightened, scores at least `sheets.card_from` is
  a card without a read, like the card band (its bound on the calibration photos adds to the union bound);
- where the policy has a second reading (`second_read`), a page the main or corner rule decided is no card is
  read again by a second engine (`model.verifier.second_read`), and is a card where that reading reads
  enough characters (its bound on the calibration photos adds to the union bound too).

The cascade score of an image the verifier never saw is 0, so one number ranks every image, and the
project's conformal rule (`model.calibrate.conformal_threshold`) sets `threshold` on calibration photos
exactly as it sets the model's own threshold: the false-positive bound holds for the cascade as a whole.

The share of uploads sent to the verifier is what `send_from` costs; `model.cascade_fit` measures the
curve of that share against recall and false positives and picks the point.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from model.screen import PlainLineGate
from model.sheets import SheetRoute
from model.verifier.engines import VerifierConfig
from model.verifier.panel_read import PanelRead
from model.verifier.second_read import SecondRead

# What every rule weighs, in order. Counts enter as log1p (a card reads tens of characters, a T-shirt a
# few); the model score as its logit, so the rule can weigh it against the text. Cards fitted before the
# main rule weighed confident characters (`ocr-5698fe08` and older) weigh exactly these.
BASE_RULE_INPUTS = (
    "model_logit",
    "log_read_characters",
    "log_read_boxes",
    "read_area",
    "log_lines",
    "largest_text_height",
    "ground_emptiness",
)
# The main rule also weighs the characters read with high confidence: the calibration photos that score
# highest read short runs of symbols at middling confidence, and the threshold is set among them.
RULE_INPUTS = (*BASE_RULE_INPUTS, "log_confident_characters")
# The gate's rule also sees the drawing's shape (measured where the line is read: the gate's pictures), so
# a line of glyphs that no reading makes sense of is told apart from a product on a flat ground.
GATE_RULE_INPUTS = (*BASE_RULE_INPUTS, "log_drawing_marks", "log_drawing_glyphs", "drawing_aspect")
# Where the gate's line reading reads nothing in a line of glyphs (a font Tesseract cannot read: brush,
# pixel), the gate's shape rule (`CascadePolicy.gate_shape_rule`) weighs the drawing alone: what is left of
# the gate's inputs when nothing was read.
SHAPE_RULE_INPUTS = (
    "model_logit",
    "ground_emptiness",
    "log_drawing_marks",
    "log_drawing_glyphs",
    "drawing_aspect",
)
# The layout band's rule (`LayoutBand`) weighs the words the layout analysis finds (counted as boxes; each
# word one "character", so a character count would repeat the box count) and where they lie; nothing is
# recognised, so no confidence either.
LAYOUT_RULE_INPUTS = (
    "model_logit",
    "log_read_boxes",
    "read_area",
    "log_lines",
    "largest_text_height",
    "ground_emptiness",
)
# Each input but the model's logit: the feature it comes from, and whether it enters as log1p.
_FEATURE_INPUTS: dict[str, tuple[str, bool]] = {
    "log_read_characters": ("read_characters", True),
    "log_read_boxes": ("read_boxes", True),
    "read_area": ("read_area", False),
    "log_lines": ("lines", True),
    "largest_text_height": ("largest_text_height", False),
    "ground_emptiness": ("ground_emptiness", False),
    "log_confident_characters": ("confident_characters", True),
    "log_drawing_marks": ("drawing_marks", True),
    "log_drawing_glyphs": ("drawing_glyphs", True),
    "drawing_aspect": ("drawing_aspect", False),
}
_LOGIT_EPS = 1e-6


def rule_inputs(
    model_scores: npt.ArrayLike, features: Sequence[Mapping[str, Any]], names: Sequence[str] = RULE_INPUTS
) -> npt.NDArray[np.float64]:
    """The (N, len(names)) inputs of a rule for N images: model scores and verifier features."""
    scores = np.clip(np.asarray(model_scores, dtype=np.float64), _LOGIT_EPS, 1 - _LOGIT_EPS)
    if len(features) != len(scores):
        raise ValueError(f"{len(scores)} scores but {len(features)} feature rows")
    if not len(scores):
        return np.zeros((0, len(names)))
    columns = []
    for name in names:
        if name == "model_logit":
            columns.append(np.log(scores / (1 - scores)))
            continue
        feature, log = _FEATURE_INPUTS[name]
        values = np.array([float(row[feature]) for row in features])
        columns.append(np.log1p(values) if log else values)
    return np.stack(columns, axis=1)


@dataclass(frozen=True)
class CascadeRule:
    """Logistic regression on standardised rule inputs."""

    weights: tuple[float, ...]
    bias: float
    means: tuple[float, ...]
    scales: tuple[float, ...]
    inputs: tuple[str, ...] = RULE_INPUTS  # what each weight weighs (`rule_inputs` names)

    def __post_init__(self) -> None:
        unknown = [name for name in self.inputs if name != "model_logit" and name not in _FEATURE_INPUTS]
        if unknown:
            raise ValueError(f"the rule weighs inputs this code does not know: {unknown}")
        if not len(self.weights) == len(self.means) == len(self.scales) == len(self.inputs):
            raise ValueError("a rule needs one weight, mean and scale per input")

    def score(
        self, model_scores: npt.ArrayLike, features: Sequence[Mapping[str, Any]]
    ) -> npt.NDArray[np.float64]:
        """P(card) for each image, from its model score and verifier features."""
        return self.probability(rule_inputs(model_scores, features, self.inputs))

    def probability(self, inputs: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """P(card) for each row of `rule_inputs(..., self.inputs)`."""
        standard = (inputs - np.array(self.means)) / np.array(self.scales)
        logits = standard @ np.array(self.weights) + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready record (the card stores it)."""
        return {
            "inputs": list(self.inputs),
            # Floats always: the cascade's version is a digest of this JSON, and 0 and 0.0 print differently.
            "weights": [float(w) for w in self.weights],
            "bias": float(self.bias),
            "means": [float(m) for m in self.means],
            "scales": [float(s) for s in self.scales],
        }

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> CascadeRule:
        """Read what `to_json` wrote; refuses a rule over inputs this code does not compute."""
        return cls(
            weights=tuple(float(w) for w in record["weights"]),
            bias=float(record["bias"]),
            means=tuple(float(m) for m in record["means"]),
            scales=tuple(float(s) for s in record["scales"]),
            inputs=tuple(str(name) for name in record["inputs"]),
        )


def fit_rule(
    inputs: npt.NDArray[np.float64],
    labels: npt.ArrayLike,
    *,
    c: float = 1.0,
    names: Sequence[str] = RULE_INPUTS,
) -> CascadeRule:
    """Fit the rule on `rule_inputs(..., names)`: cards (label True) against everything else, classes
    weighted equally."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(labels, dtype=bool)
    if y.all() or not y.any():
        raise ValueError("fitting needs both cards and other images")
    means = inputs.mean(axis=0)
    scales = inputs.std(axis=0)
    scales[scales < 1e-9] = 1.0
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
    model.fit((inputs - means) / scales, y)
    return CascadeRule(
        weights=tuple(_kept(w) for w in model.coef_[0]),
        bias=_kept(model.intercept_[0]),
        means=tuple(_kept(m) for m in means),
        scales=tuple(_kept(s) for s in scales),
        inputs=tuple(names),
    )


def _kept(value: float) -> float:
    """A fitted number as the card keeps it: 8 significant digits. The model's scores differ in their last
    bits between machines and batchings, which moved a refit rule's numbers by about 1e-10 and so the
    cascade's version; rounded, a refit on the same data gives the same card and the same version."""
    return float(f"{float(value):.8g}")


@dataclass(frozen=True)
class LayoutBand:
    """Cards decided on the page's layout, before any word is read: a picture the score route sends whose
    rule on the model's score and the words Tesseract's layout analysis finds
    (`TextVerifier.layout_features`: no recognition, a tenth of a card's read) reaches `cards_from` is a card
    without a read. `cards_from` is a conformal bound on the calibration photos' rule scores, raised above
    any one source's lead (`model.cascade_layout`); its false-positive bound adds to the cascade's. Below it
    the page is read and the main rule decides, as without the band. A card is full of words, and each word
    read costs a recognition: most of what the score route reads are cards, and most of its cost."""

    rule: CascadeRule
    cards_from: float
    # And only where at least this share of the ground is empty (`TextFeatures.ground_emptiness`): a card's
    # words stand on a plain ground; a texture's "words" fill it, and look like lines of text to the layout
    # analysis. Set to keep most of the band's training cards (`model.cascade_layout`); 0: no floor.
    min_emptiness: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.cards_from <= 1.0:
            raise ValueError(f"the layout band's bound must lie in (0, 1], got {self.cards_from}")
        if not 0.0 <= self.min_emptiness < 1.0:
            raise ValueError(f"the layout band's emptiness floor must lie in [0, 1): {self.min_emptiness}")
        if "model_logit" not in self.rule.inputs:
            raise ValueError("the layout band's rule weighs the model's score")

    def cards(
        self, model_scores: npt.ArrayLike, features: Sequence[Mapping[str, Any]]
    ) -> npt.NDArray[np.bool_]:
        """Which pictures are cards on their layout features (the rule from `cards_from`, on a ground at
        least `min_emptiness` empty)."""
        banded = np.asarray(self.rule.score(model_scores, features) >= self.cards_from, dtype=bool)
        empty = np.array([float(row["ground_emptiness"]) for row in features]) >= self.min_emptiness
        return banded & empty

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready record (the card stores it); the emptiness floor only where set."""
        record: dict[str, Any] = {"rule": self.rule.to_json(), "cards_from": float(self.cards_from)}
        if self.min_emptiness:
            record["min_emptiness"] = float(self.min_emptiness)
        return record

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> LayoutBand:
        """Read what `to_json` wrote."""
        return cls(
            CascadeRule.from_json(record["rule"]),
            float(record["cards_from"]),
            float(record.get("min_emptiness", 0.0)),
        )


@dataclass(frozen=True)
class CascadePolicy:
    """Where the verifier is asked, how its answer is weighed, and where a card begins."""

    send_from: float  # model score at or above which the verifier reads the image
    rule: CascadeRule
    threshold: float  # cascade score at or above which the image is a card
    gate: PlainLineGate | None = None  # also read what looks like one line on a plain ground
    gate_rule: CascadeRule | None = None  # decides the images the gate passes, whatever their score
    # Also read where the largest part score (`model.quadrants`) reaches this; the main rule decides them.
    parts_send_from: float | None = None
    # The ensemble member that scores the parts (`Scorer.member_d_x`); None: the whole ensemble.
    parts_member: int | None = None
    # Decides the images only the quadrant route sends (their whole score under `send_from`); None: `rule`.
    parts_rule: CascadeRule | None = None
    # Model score at or above which an image is a card without a read (the band where the model is sure:
    # a conformal bound on the calibration photos, `model.cascade_card.with_card_band`); None: every image
    # from `send_from` up is read.
    card_from: float | None = None
    # The score route's images that the page reading reads nothing in are read again with their ground
    # flattened (`model.verifier.panel_read`); None: the page reading alone.
    panel_read: PanelRead | None = None
    # Pictures whose best straightened sheet the model scores from `sheets.card_from` up are cards without a
    # read (`model.sheets`); the sheets are decoded after the quadrant route's corners, so it needs the route.
    sheets: SheetRoute | None = None
    # The score route's pictures whose layout (words found, none read) makes them cards are not read
    # (`LayoutBand`); None: every one is read.
    layout_band: LayoutBand | None = None
    # Decides, with `gate_rule`, the gate's pictures whose line has glyphs (`LineRead.min_glyphs`) and in
    # which nothing was read: the higher of the two scores. Fitted on the gate's training cards with their
    # reading taken away, so a line in a font the verifier cannot read is weighed on its shape; None:
    # `gate_rule` alone.
    gate_shape_rule: CascadeRule | None = None
    # The main and parts rules' floor: a reading with fewer characters read confidently
    # (`TextFeatures.confident_characters`, boxes read at `CONFIDENT_READ` or more) is no evidence of text,
    # and scores 0 whatever else it read. Fine textures (bark, fabric, wallpaper) are read as runs of
    # symbols at middling confidence, and a source of them that calibration never saw passes a threshold
    # set on calibration photos; a card's words come back confident. The gate's pictures are exempt: their
    # own rules weigh the line's shape. 0: no floor.
    min_confident: int = 0
    # Pages the main or parts rule decided are no card are read again by a second engine, and are cards
    # where it reads enough characters (`model.verifier.second_read`); None: the first reading decides.
    second_read: SecondRead | None = None

    def __post_init__(self) -> None:
        if self.min_confident < 0:
            raise ValueError("the rules' floor is a count of confident characters (0: none)")
        if (self.gate is None) != (self.gate_rule is None):
            raise ValueError("a plain-line gate needs its own rule, and a gate rule needs its gate")
        if self.gate_shape_rule is not None and (self.gate is None or self.gate.line_read is None):
            raise ValueError("a gate shape rule needs a plain-line gate that reads the line (its glyphs)")
        if self.parts_send_from is not None and not math.isfinite(self.parts_send_from):
            raise ValueError("the quadrant route's bound must be finite")
        if self.parts_member is not None and (self.parts_send_from is None or self.parts_member < 0):
            raise ValueError("a parts member needs a quadrant route, and is a member's index")
        if self.parts_rule is not None and self.parts_send_from is None:
            raise ValueError("a parts rule needs a quadrant route")
        band = self.card_from
        if band is not None and not (math.isfinite(band) and band > self.send_from):
            raise ValueError("the model's card band must start above send_from (and be finite)")
        if self.sheets is not None and self.parts_send_from is None:
            raise ValueError("a sheet route needs the quadrant route: sheets are decoded after the corners")

    def sends(
        self,
        model_scores: npt.ArrayLike,
        looks: npt.ArrayLike | None = None,
        part_scores: npt.ArrayLike | None = None,
        sheet_scores: npt.ArrayLike | None = None,
    ) -> npt.NDArray[np.bool_]:
        """Which images the verifier must read; `looks` (`model.screen.plain_line_looks`) where gated, the
        largest part scores (`model.quadrants.largest_part_scores`) where the policy has the quadrant route,
        the best sheet scores (`model.sheets.best_sheet_scores`) where it has the sheet route. An image in
        the model's card band (`card_from`) or that the sheet route makes a card is never read: the model
        decides it.

        Raises:
            ValueError: the policy has a gate and `looks` is missing, a quadrant route and `part_scores` is
                missing, or a sheet route and `sheet_scores` is missing (the decision would silently differ
                from the one the policy was calibrated for).
        """
        sent = np.asarray(model_scores, dtype=np.float64) >= self.send_from
        if self.parts_send_from is not None:
            if part_scores is None:
                raise ValueError("this cascade has a quadrant route: pass the images' largest part scores")
            sent |= np.asarray(part_scores, dtype=np.float64).reshape(sent.shape) >= self.parts_send_from
        gated = self._gated(looks)
        if gated is not None:
            sent |= gated
        if self.sheets is not None and sheet_scores is None:
            raise ValueError("this cascade has a sheet route: pass the images' best sheet scores")
        carded = self.model_cards(model_scores, sheet_scores)
        return sent if carded is None else sent & ~carded

    def parts_matter(
        self, model_scores: npt.ArrayLike, looks: npt.ArrayLike | None = None
    ) -> npt.NDArray[np.bool_]:
        """Which images' part scores can change a decision: those the whole score does not send (nor the card
        band decide) and the gate does not pass. Elsewhere the route, the rule and the verdict are the same
        whatever the corners score, so the first stage need not score them."""
        scores = np.asarray(model_scores, dtype=np.float64)
        matter = scores < self.send_from
        gated = self._gated(looks)
        return matter if gated is None else matter & ~gated

    def score_routed(
        self, model_scores: npt.ArrayLike, looks: npt.ArrayLike | None = None
    ) -> npt.NDArray[np.bool_]:
        """Which images the whole model score sends on its own route: at or above `send_from`, not in the
        card band, not passed by the gate (whose route and rule come first)."""
        scores = np.asarray(model_scores, dtype=np.float64)
        routed = scores >= self.send_from
        gated = self._gated(looks)
        if gated is not None:
            routed &= ~gated
        carded = self.model_cards(scores)
        return routed if carded is None else routed & ~carded

    def model_cards(
        self, model_scores: npt.ArrayLike, sheet_scores: npt.ArrayLike | None = None
    ) -> npt.NDArray[np.bool_] | None:
        """Which images the model alone makes cards: its score in the card band, or (where `sheet_scores`
        are given and the policy has a sheet route) its best sheet's score from `sheets.card_from` up; None
        where neither can."""
        scores = np.asarray(model_scores, dtype=np.float64)
        carded = None if self.card_from is None else scores >= self.card_from
        if self.sheets is not None and sheet_scores is not None:
            sheeted = self.sheets.cards(np.asarray(sheet_scores, dtype=np.float64).reshape(scores.shape))
            carded = sheeted if carded is None else carded | sheeted
        return carded

    def sheet_reads(
        self, model_scores: npt.ArrayLike, sheet_scores: npt.ArrayLike | None
    ) -> npt.NDArray[np.bool_]:
        """Which pictures have their best sheet read (the sheet route's reading band, and the second engine's
        own band below it where the route has one: `model.sheets.SheetRoute.any_reads`): none in the model's
        card band; none without the sheet reading. A
        picture may be read both ways: as a page where `sends` says so, and its sheet."""
        scores = np.asarray(model_scores, dtype=np.float64)
        if self.sheets is None or self.sheets.read_from is None:
            return np.zeros(scores.shape, dtype=bool)
        if sheet_scores is None:
            raise ValueError("this cascade reads sheets: pass the images' best sheet scores")
        reads = self.sheets.any_reads(np.asarray(sheet_scores, dtype=np.float64).reshape(scores.shape))
        carded = self.model_cards(scores)
        return reads if carded is None else reads & ~carded

    def _gated(self, looks: npt.ArrayLike | None) -> npt.NDArray[np.bool_] | None:
        """Which images the gate passes; None for a policy without a gate."""
        if self.gate is None:
            return None
        if looks is None:
            raise ValueError("this cascade has a plain-line gate: pass the images' looks")
        return self.gate.sends(looks)

    def cascade_scores(
        self,
        model_scores: npt.ArrayLike,
        features: Sequence[Mapping[str, Any] | None],
        looks: npt.ArrayLike | None = None,
        part_scores: npt.ArrayLike | None = None,
        sheet_scores: npt.ArrayLike | None = None,
        *,
        sheet_characters: npt.ArrayLike | None = None,
        layout_features: Sequence[Mapping[str, Any] | None] | None = None,
        second_features: Sequence[Mapping[str, Any] | None] | None = None,
        sheet_second_characters: npt.ArrayLike | None = None,
    ) -> npt.NDArray[np.float64]:
        """The cascade score per image: 0 where not sent; the rule's probability where read; 1 in the model's
        card band (`card_from`), where the sheet route makes a card and where its sheet reading does (the
        characters read in each picture's best sheet, `sheet_characters`, any value where `sheet_reads` is
        false; and where the route reads the sheet again, the characters the second engine read in it,
        `sheet_second_characters`, any value where it did not), where the layout band does
        (`layout_features` of the pictures the score route sends; None elsewhere), and where the second
        reading does (`second_features` of the pictures `second_reads` names; None elsewhere), a card
        whatever the threshold.

        `features[i]` may be None where the image was not sent. A sent image without features (the verifier
        failed) scores 0 here; a caller that serves decisions falls back to the model's own threshold.
        """
        scores = np.asarray(model_scores, dtype=np.float64)
        out = np.zeros(len(scores))
        sent = [
            int(i)
            for i in np.flatnonzero(self.sends(scores, looks, part_scores, sheet_scores))
            if features[int(i)] is not None
        ]
        if sent:
            rows = [row for row in (features[i] for i in sent) if row is not None]
            sent_looks = (
                None if looks is None else np.asarray(looks, dtype=np.float64).reshape(len(scores), -1)[sent]
            )
            out[sent] = self.read_scores(scores[sent], rows, sent_looks)
        carded = self.model_cards(scores, sheet_scores)
        if carded is not None:
            out[carded] = 1.0
        read = self.sheet_reads(scores, sheet_scores)
        if read.any():
            if sheet_characters is None or self.sheets is None:
                raise ValueError("this cascade reads sheets: pass the characters read in the best sheets")
            best = np.asarray(sheet_scores, dtype=np.float64).reshape(scores.shape)
            out[read & self.sheets.read_cards(best, sheet_characters)] = 1.0
            if self.sheets.second_read is not None:
                if sheet_second_characters is None:
                    raise ValueError("this cascade reads sheets twice: pass the second engine's characters")
                out[read & self.sheets.second_cards(best, sheet_second_characters)] = 1.0
        out[self.layout_cards(scores, layout_features, looks)] = 1.0
        second = self.second_read
        if second is not None:
            if second_features is None:
                raise ValueError("this cascade reads pages twice: pass the second reading's features")
            page_read = np.zeros(len(scores), dtype=bool)
            page_read[sent] = True
            for i in np.flatnonzero(self.second_reads(scores, out, looks, page_read, features)):
                row = second_features[int(i)]
                if row is not None and second.card(row):
                    out[int(i)] = 1.0
        return out

    def second_engines(self) -> tuple[SecondRead, ...]:
        """The second engine's readings the policy makes: of pages (`second_read`) and of the sheet route's
        best sheets (`SheetRoute.second_read`), where it has them; the worker loads and checks their
        engine."""
        sheet = None if self.sheets is None else self.sheets.second_read
        return tuple(read for read in (self.second_read, sheet) if read is not None)

    def second_reads(
        self,
        model_scores: npt.ArrayLike,
        cascade_scores: npt.ArrayLike,
        looks: npt.ArrayLike | None,
        page_read: npt.ArrayLike,
        features: Sequence[Mapping[str, Any] | None],
    ) -> npt.NDArray[np.bool_]:
        """Which pictures the second engine reads (none without a second reading): those whose page was read
        (`page_read`, its first reading's `features`), outside the gate (its rules weigh the line's shape),
        that the first reading left under the threshold (`cascade_scores`), where the second reading takes
        them (`SecondRead.reads_after`: boxes found)."""
        scores = np.asarray(model_scores, dtype=np.float64)
        second = self.second_read
        if second is None:
            return np.zeros(scores.shape, dtype=bool)
        taken = np.array([second.reads_after(row) for row in features], dtype=bool).reshape(scores.shape)
        wanted = np.asarray(page_read, dtype=bool) & (np.asarray(cascade_scores) < self.threshold) & taken
        gated = self._gated(looks)
        return wanted if gated is None else wanted & ~gated

    def layout_cards(
        self,
        model_scores: npt.ArrayLike,
        layout_features: Sequence[Mapping[str, Any] | None] | None,
        looks: npt.ArrayLike | None = None,
    ) -> npt.NDArray[np.bool_]:
        """Which pictures the layout band makes cards: among those the score route sends
        (`score_routed`), those whose layout features (None where not found) reach its bound."""
        scores = np.asarray(model_scores, dtype=np.float64)
        carded = np.zeros(scores.shape, dtype=bool)
        band = self.layout_band
        if band is None:
            return carded
        if layout_features is None:
            raise ValueError("this cascade has a layout band: pass the layout features of what it sends")
        routed = self.score_routed(scores, looks)
        found = [int(i) for i in np.flatnonzero(routed) if layout_features[int(i)] is not None]
        if found:
            rows = [row for row in (layout_features[i] for i in found) if row is not None]
            carded[found] = band.cards(scores[found], rows)
        return carded

    def read_scores(
        self,
        model_scores: npt.ArrayLike,
        features: Sequence[Mapping[str, Any]],
        looks: npt.ArrayLike | None = None,
    ) -> npt.NDArray[np.float64]:
        """The cascade score of images the verifier read: `gate_rule` where the gate passes the image's
        look (the higher of it and `gate_shape_rule` where a line of glyphs read nothing), `parts_rule`
        where only the quadrant route sent it (its whole score under `send_from`), `rule` elsewhere; 0 for
        the last two where fewer characters than `min_confident` were read confidently. A gated policy
        needs `looks` (see `sends`)."""
        scores = np.asarray(model_scores, dtype=np.float64)
        out = self.rule.score(scores, features)
        parts_only = scores < self.send_from
        if self.parts_rule is not None and parts_only.any():
            out[parts_only] = self.parts_rule.score(
                scores[parts_only], [features[int(i)] for i in np.flatnonzero(parts_only)]
            )
        if self.min_confident > 0:
            # The gate's pictures are exempt: their rows are scored again below, by the gate's own rules.
            out[self.without_confident_text(features)] = 0.0
        gated = self._gated(looks)
        if gated is not None and self.gate_rule is not None and gated.any():
            out[gated] = self.gate_rule.score(
                scores[gated], [features[int(i)] for i in np.flatnonzero(gated)]
            )
            if self.gate_shape_rule is not None:
                shaped = gated & self.unread_glyph_lines(features)
                if shaped.any():
                    rows = [features[int(i)] for i in np.flatnonzero(shaped)]
                    out[shaped] = np.maximum(out[shaped], self.gate_shape_rule.score(scores[shaped], rows))
        return out

    def without_confident_text(self, features: Sequence[Mapping[str, Any]]) -> npt.NDArray[np.bool_]:
        """Which rows read fewer confident characters than the rules' floor (`min_confident`): where the
        main and parts rules score 0 (none without a floor)."""
        return np.array(
            [float(row.get("confident_characters", 0)) < self.min_confident for row in features], dtype=bool
        )

    def unread_glyph_lines(self, features: Sequence[Mapping[str, Any]]) -> npt.NDArray[np.bool_]:
        """Which rows drew a line of glyphs (at least the gate's line reading's `min_glyphs`) and read
        nothing: where `gate_shape_rule` weighs in. The policy must have a gate that reads the line."""
        assert self.gate is not None and self.gate.line_read is not None
        least = self.gate.line_read.min_glyphs
        return np.array(
            [
                float(row.get("drawing_glyphs", 0)) >= least and float(row.get("read_characters", 0)) == 0
                for row in features
            ],
            dtype=bool,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready record (the card stores it); a policy without a gate or a quadrant route writes no
        field for it, so the versions of cards written before they existed stay as they were."""
        record: dict[str, Any] = {
            "send_from": float(self.send_from),
            "threshold": float(self.threshold),
            "rule": self.rule.to_json(),
        }
        if self.gate is not None and self.gate_rule is not None:
            record["plain_line_gate"] = {**self.gate.to_json(), "rule": self.gate_rule.to_json()}
            if self.gate_shape_rule is not None:
                record["plain_line_gate"]["shape_rule"] = self.gate_shape_rule.to_json()
        if self.parts_send_from is not None:
            record["parts_send_from"] = float(self.parts_send_from)
        if self.parts_member is not None:
            record["parts_member"] = int(self.parts_member)
        if self.parts_rule is not None:
            record["parts_rule"] = self.parts_rule.to_json()
        if self.card_from is not None:
            record["card_from"] = float(self.card_from)
        if self.panel_read is not None:
            record["panel_read"] = self.panel_read.to_json()
        if self.sheets is not None:
            record["sheets"] = self.sheets.to_json()
        if self.layout_band is not None:
            record["layout_band"] = self.layout_band.to_json()
        if self.min_confident:
            record["min_confident"] = int(self.min_confident)
        if self.second_read is not None:
            record["second_read"] = self.second_read.to_json()
        return record

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> CascadePolicy:
        """Read what `to_json` wrote."""
        threshold = float(record["threshold"])
        if not math.isfinite(threshold):
            raise ValueError("the cascade threshold must be finite")
        gate = record.get("plain_line_gate")
        return cls(
            float(record["send_from"]),
            CascadeRule.from_json(record["rule"]),
            threshold,
            PlainLineGate.from_json(gate) if gate is not None else None,
            CascadeRule.from_json(gate["rule"]) if gate is not None else None,
            float(record["parts_send_from"]) if record.get("parts_send_from") is not None else None,
            int(record["parts_member"]) if record.get("parts_member") is not None else None,
            CascadeRule.from_json(record["parts_rule"]) if record.get("parts_rule") is not None else None,
            float(record["card_from"]) if record.get("card_from") is not None else None,
            PanelRead.from_json(record["panel_read"]) if record.get("panel_read") is not None else None,
            SheetRoute.from_json(record["sheets"]) if record.get("sheets") is not None else None,
            LayoutBand.from_json(record["layout_band"]) if record.get("layout_band") is not None else None,
            CascadeRule.from_json(gate["shape_rule"]) if gate is not None and "shape_rule" in gate else None,
            int(record.get("min_confident", 0)),
            SecondRead.from_json(record["second_read"]) if record.get("second_read") is not None else None,
        )


def card_cascade(record: Mapping[str, Any] | None, model_version: str) -> TextCascade | None:
    """The text cascade a model card records (`ModelCard.text_cascade`), checked against the loaded model.

    Raises:
        ValueError: the record is unreadable or edited by hand, or was fitted over other weights.
    """
    if record is None:
        return None
    try:
        cascade = TextCascade.from_json(record)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"the model card's text cascade is unreadable: {exc!r}") from exc
    if cascade.base_model_version != model_version:
        raise ValueError(
            f"the card's text cascade was fitted over {cascade.base_model_version}, "
            f"not over the loaded model {model_version}"
        )
    return cascade


@dataclass(frozen=True)
class TextCascade:
    """The cascade as a model card records it (`ModelCard.text_cascade`), so that one version names it whole.

    The version is the ALOCC model's version plus a digest of everything that changes a decision: the
    verifier's engine, its version and configuration, the rule and both thresholds. Replay and promotion
    work with that version; a worker that serves the model without its verifier writes under the base
    model's version instead, so the two never share score records.
    """

    base_model_version: str
    verifier: VerifierConfig
    engine_version: str
    policy: CascadePolicy
    calibration: dict[str, Any] = field(default_factory=dict)  # how the thresholds and the share were set
    measured: dict[str, Any] = field(default_factory=dict)  # the chosen point's evaluation, for the card

    @property
    def version(self) -> str:
        """`<base model version>-ocr-<first 8 hex of the decision-relevant content's sha256>`."""
        decisive = {
            "base_model_version": self.base_model_version,
            "verifier": dataclasses.asdict(self.verifier),
            "engine_version": self.engine_version,
            "policy": self.policy.to_json(),
        }
        digest = hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()
        return f"{self.base_model_version}-ocr-{digest[:8]}"

    def to_json(self) -> dict[str, Any]:
        """The card's record (with the version, so readers of the card need not recompute it)."""
        return {
            "version": self.version,
            "base_model_version": self.base_model_version,
            "verifier": dataclasses.asdict(self.verifier),
            "engine_version": self.engine_version,
            "policy": self.policy.to_json(),
            "calibration": self.calibration,
            "measured": self.measured,
        }

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> TextCascade:
        """Read what `to_json` wrote; refuses a record whose content does not match its version."""
        cascade = cls(
            base_model_version=str(record["base_model_version"]),
            verifier=VerifierConfig(**record["verifier"]),
            engine_version=str(record["engine_version"]),
            policy=CascadePolicy.from_json(record["policy"]),
            calibration=dict(record.get("calibration", {})),
            measured=dict(record.get("measured", {})),
        )
        if record.get("version") != cascade.version:
            raise ValueError(
                f"the cascade record says version {record.get('version')!r} but its content is "
                f"{cascade.version!r}: it was edited by hand"
            )
        return cascade
