"""The cascade's decisions, one for the worker and for offline scoring: a verdict for every image.

`CascadeDecisions` turns a model score into a verdict, or says that the verifier must read the image
(model score >= the card's `send_from`; where the card has a plain-line gate, a picture that looks like
one line of text on a plain ground: `model.screen`; where it has the quadrant route, a picture one of whose
corners scores like a card: `model.quadrants`); the verifier's features then give the verdict
(`model.cascade.CascadePolicy`); where the card has a card band, a model score in it is a card without a
read, and where it has a sheet route, so is a picture whose best straightened sheet the model scores from
the route's bound up (`model.sheets`); where the sheet route reads sheets, a picture whose best sheet
scores in its reading band has that sheet read too (and read again by the second engine where the route
has a second reading of it and the first falls short); where it has a second reading, a page the first reading
leaves a product (outside the gate) is read again by the second engine (`model.verifier.second_read`).
Without a cascade every verdict is the model's own.
A read that failed keeps the model's own decision at its card's threshold, recorded as
`decided_by = "model_fallback"`.

Where the reads happen is the caller's: the worker's `worker.stages.verify.VerificationStage` (downloads
and OCR processes, off the event loop), `alocc score` in its own process.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from model.cascade import CascadePolicy, LayoutBand
from model.verifier.features import TextFeatures
from model.verifier.line_read import LineRead
from model.verifier.panel_read import PanelRead

if TYPE_CHECKING:
    from model.sheets import SheetRoute
    from model.verifier.second_read import SecondRead
    from model.verifier.text_verifier import SheetReading

MODEL = "model"
VERIFIER = "verifier"
MODEL_FALLBACK = "model_fallback"
# Why an image was sent to the verifier; the route also names the rule that decides it.
SCORE_ROUTE = "model_score"
PLAIN_LINE_ROUTE = "plain_line"
PARTS_ROUTE = "quadrants"  # decided by the main rule, like the score route
SHEET_READING = "sheet_reading"  # only the best sheet is read (`model.sheets.SheetRoute.read_from`)


@dataclass(frozen=True)
class Verdict:
    """The decision for one image, and what it rests on."""

    # the deciding score: the cascade's (0 below send_from), or the model's (alone, card band, fallback)
    score: float
    excluded: bool
    threshold: float
    decided_by: str  # MODEL | VERIFIER | MODEL_FALLBACK
    model_score: float
    features: dict[str, float] | None = None  # the verifier's features, when it read the image
    fallback_reason: str = ""


class CascadeDecisions:
    """Verdicts from model scores and, where the policy sends an image, the verifier's features."""

    def __init__(self, policy: CascadePolicy | None) -> None:
        """Decide with `policy`, or with the model alone when it is None."""
        self.policy = policy

    def screen(
        self,
        model_score: float,
        model_excluded: bool,
        model_threshold: float,
        look: npt.ArrayLike | None = None,
        *,
        part_score: float | None = None,
        sheet_score: float | None = None,
    ) -> Verdict | None:
        """The model's verdict, or None when the verifier must read the image.

        `look` is the image's plain-line look (`model.screen.plain_line_looks`), which a gated policy needs;
        `part_score` its largest part score (`model.quadrants`), which a policy with the quadrant route needs;
        `sheet_score` its best sheet's score (`model.sheets.best_sheet_scores`), which a policy with the sheet
        route needs. In the policy's card band the model's verdict is a card, scored by the model against
        `card_from`; where the sheet route makes it a card, by its best sheet's score against the route's
        bound.
        """
        if self.policy is None:
            return Verdict(model_score, model_excluded, model_threshold, MODEL, model_score)
        if self.in_card_band(model_score):  # the model's card band: no read
            assert self.policy.card_from is not None
            return Verdict(model_score, True, self.policy.card_from, MODEL, model_score)
        if sheet_score is not None and self.sheet_card(sheet_score):  # a sheet the model is sure of
            assert self.policy.sheets is not None
            return Verdict(sheet_score, True, self.policy.sheets.card_from, MODEL, model_score)
        if self.reads_page(model_score, look, part_score=part_score, sheet_score=sheet_score):
            return None
        if self.reads_sheet(model_score, sheet_score):
            return None
        return Verdict(0.0, False, self.policy.threshold, MODEL, model_score)

    def reads_page(
        self,
        model_score: float,
        look: npt.ArrayLike | None = None,
        *,
        part_score: float | None = None,
        sheet_score: float | None = None,
    ) -> bool:
        """Whether the verifier must read the picture as a page (the score, gate and quadrant routes)."""
        if self.policy is None:
            return False
        parts = None if part_score is None else [part_score]
        sheets = None if sheet_score is None else [sheet_score]
        return bool(self.policy.sends([model_score], _one_row(look), parts, sheets)[0])

    def reads_sheet(self, model_score: float, sheet_score: float | None) -> bool:
        """Whether the verifier must read the picture's best sheet (the sheet route's reading band)."""
        if self.policy is None:
            return False
        return bool(self.policy.sheet_reads([model_score], None if sheet_score is None else [sheet_score])[0])

    def in_card_band(self, model_score: float) -> bool:
        """Whether the policy's card band makes this model score a card without a read."""
        carded = None if self.policy is None else self.policy.model_cards([model_score])
        return carded is not None and bool(carded[0])

    def sheet_card(self, sheet_score: float | None) -> bool:
        """Whether the policy's sheet route makes a picture of this best sheet score a card without a read."""
        sheets = None if self.policy is None else self.policy.sheets
        return sheets is not None and sheet_score is not None and bool(sheets.cards([sheet_score])[0])

    def route(self, look: npt.ArrayLike | None, model_score: float | None = None) -> str:
        """The route of an image the verifier reads: the gate's where the gate passes its look; else the
        quadrant route's where the model's own score (when given) would not have sent it."""
        gate, looks = None if self.policy is None else self.policy.gate, _one_row(look)
        if gate is not None and looks is not None and gate.sends(looks)[0]:
            return PLAIN_LINE_ROUTE
        policy = self.policy
        if policy is not None and policy.parts_send_from is not None and model_score is not None:
            return PARTS_ROUTE if model_score < policy.send_from else SCORE_ROUTE
        return SCORE_ROUTE

    def line_read(self, look: npt.ArrayLike | None) -> LineRead | None:
        """How the verifier must also read an image it is sent: the gate's line reading on its route."""
        if self.route(look) != PLAIN_LINE_ROUTE:
            return None
        assert self.policy is not None and self.policy.gate is not None
        return self.policy.gate.line_read

    def panel_read(self, look: npt.ArrayLike | None, model_score: float) -> PanelRead | None:
        """How the verifier must also read an image it is sent: the panel reading on the score route."""
        if self.policy is None or self.policy.panel_read is None:
            return None
        return self.policy.panel_read if self.policy.score_routed([model_score], _one_row(look))[0] else None

    def layout_first(self, model_score: float, look: npt.ArrayLike | None = None) -> LayoutFirst | None:
        """Where the page's layout is found before it is read (the layout band, on the score route): what
        decides on it; None elsewhere."""
        band = None if self.policy is None else self.policy.layout_band
        if band is None:
            return None
        assert self.policy is not None
        # The score route's own test: no part or sheet score is needed to know it.
        routed = self.policy.score_routed([model_score], _one_row(look))[0]
        return LayoutFirst(band, model_score) if routed else None

    def verified(
        self,
        model_score: float,
        features: TextFeatures | None,
        look: npt.ArrayLike | None = None,
        *,
        sheet_score: float | None = None,
        sheet_features: TextFeatures | None = None,
        layout_features: TextFeatures | None = None,
        second_features: TextFeatures | None = None,
        second_sheet_features: TextFeatures | None = None,
    ) -> Verdict:
        """The cascade's verdict once the verifier read the image: as a page (`features`: the rule for its
        look decides), its best sheet (`sheet_features`, with the picture's `sheet_score`: a card from the
        sheet route's `read_characters` up; or, where the second engine read the sheet too,
        `second_sheet_features`, from its second reading's count up), or both (a card where either says so);
        where the page's layout
        was found first (`layout_features`, `layout_first`), a card where the layout band says so, whatever
        was read; where the second engine read the page too (`second_features`, `second_after`), a card where
        the first reading made it none and the second reading says so, scored 1 like the policy's other
        cards without a rule score. The record's features are the page's, the sheet's prefixed `sheet_`,
        the layout's prefixed `layout_`, the second reading's prefixed `second_` and the sheet's second
        reading's prefixed `sheet_second_`."""
        assert self.policy is not None
        recorded: dict[str, float] = {}
        if features is not None:
            recorded.update({name: float(value) for name, value in features.as_dict().items()})
        extras = (
            ("sheet_", sheet_features),
            ("layout_", layout_features),
            ("second_", second_features),
            ("sheet_second_", second_sheet_features),
        )
        for prefix, extra in extras:
            if extra is not None:
                recorded.update({f"{prefix}{name}": float(value) for name, value in extra.as_dict().items()})
        first = None if layout_features is None else self.layout_first(model_score, look)
        if first is not None and layout_features is not None and first.card(layout_features):
            # Excluded on its layout: the band's rule score, against where the band begins.
            band_score = first.score(layout_features)
            return Verdict(band_score, True, first.band.cards_from, VERIFIER, model_score, recorded)
        sheets = self.policy.sheets
        sheet_read = sheet_features is not None or second_sheet_features is not None
        if sheet_read and sheets is not None and sheets.read_from is not None:
            assert sheet_score is not None, "a sheet reading needs the picture's best sheet score"
            by_first = sheet_features is not None and bool(
                sheets.read_cards([sheet_score], [sheet_features.read_characters])[0]
            )
            by_second = second_sheet_features is not None and bool(
                sheets.second_cards([sheet_score], [second_sheet_features.read_characters])[0]
            )
            if by_first or by_second:
                # Excluded by the sheet reading: its sheet's score, against where the reading that made it a
                # card begins (the second engine's own band may start lower).
                begins = sheets.read_from if by_first else sheets.second_start
                return Verdict(sheet_score, True, begins, VERIFIER, model_score, recorded)
        if features is None:
            return Verdict(0.0, False, self.policy.threshold, VERIFIER, model_score, recorded)
        score = float(self.policy.read_scores([model_score], [features.as_dict()], _one_row(look))[0])
        if score < self.policy.threshold and self._second_card(second_features, look):
            return Verdict(1.0, True, self.policy.threshold, VERIFIER, model_score, recorded)
        return Verdict(
            score, score >= self.policy.threshold, self.policy.threshold, VERIFIER, model_score, recorded
        )

    def verdict(
        self,
        model_score: float,
        readings: Readings,
        look: npt.ArrayLike | None = None,
        *,
        sheet_score: float | None = None,
    ) -> Verdict:
        """`verified` on what `read_for_verdict` read."""
        return self.verified(
            model_score,
            readings.page,
            look,
            sheet_score=sheet_score,
            sheet_features=readings.sheet,
            layout_features=readings.layout,
            second_features=readings.second,
            second_sheet_features=readings.second_sheet,
        )

    def _second_card(self, second_features: TextFeatures | None, look: npt.ArrayLike | None) -> bool:
        """Whether the second reading (where the page had one) makes a page outside the gate a card."""
        second = None if self.policy is None else self.policy.second_read
        if second is None or second_features is None or self.route(look) == PLAIN_LINE_ROUTE:
            return False
        return second.card(second_features)

    def second_after(
        self, model_score: float, look: npt.ArrayLike | None = None, *, sheet_score: float | None = None
    ) -> SecondAfter | None:
        """Where the page may be read again by the second engine (a policy with a second reading, a page
        outside the gate): what decides whether it is, once the first readings are in; None elsewhere."""
        second = None if self.policy is None else self.policy.second_read
        if second is None or self.route(look) == PLAIN_LINE_ROUTE:
            return None
        return SecondAfter(self, second, model_score, look, sheet_score)

    def sheet_second(self, model_score: float, sheet_score: float | None) -> SheetSecond | None:
        """Where the picture's best sheet is read and the route has a second reading of it: what decides
        whether the second engine reads it too, once the first reading is in; None elsewhere."""
        route = None if self.policy is None else self.policy.sheets
        if route is None or route.second_read is None or not self.reads_sheet(model_score, sheet_score):
            return None
        return SheetSecond(route, alone=route.second_alone(float(sheet_score or 0.0)))

    def shape_card(
        self, model_score: float, features: TextFeatures | None, look: npt.ArrayLike | None
    ) -> bool:
        """Whether the gate's shape rule, and not the gate's rule, makes this read picture a card (a line of
        glyphs read as nothing, `CascadePolicy.gate_shape_rule`). Such cards are counted apart
        (`alocc_verifier_reads_total{result="shape_card"}`): products cut out on a white ground with
        lettering-like marks are the false positives this rule can add."""
        policy = self.policy
        if policy is None or policy.gate_shape_rule is None or policy.gate_rule is None or features is None:
            return False
        row = features.as_dict()
        if self.route(look) != PLAIN_LINE_ROUTE or not policy.unread_glyph_lines([row])[0]:
            return False
        by_gate = float(policy.gate_rule.score([model_score], [row])[0])
        by_shape = float(policy.gate_shape_rule.score([model_score], [row])[0])
        return by_shape >= policy.threshold > by_gate

    def unconfident(
        self, model_score: float, features: TextFeatures | None, look: npt.ArrayLike | None
    ) -> bool:
        """Whether the rules' floor (`CascadePolicy.min_confident`), and not the rule, keeps this read picture
        from being a card: its rule alone would make it one, but it read too few characters confidently.
        Such readings are counted apart (`alocc_verifier_reads_total{result="unconfident"}`): cards in fonts
        the verifier reads without confidence are the misses the floor can add."""
        policy = self.policy
        if policy is None or not policy.min_confident or features is None:
            return False
        if self.route(look) == PLAIN_LINE_ROUTE:
            return False  # the gate's rules have no floor
        row, looks = features.as_dict(), _one_row(look)
        if not policy.without_confident_text([row])[0]:
            return False
        unfloored = dataclasses.replace(policy, min_confident=0)
        return bool(unfloored.read_scores([model_score], [row], looks)[0] >= policy.threshold)

    @staticmethod
    def fallback(model_score: float, model_excluded: bool, model_threshold: float, reason: str) -> Verdict:
        """The model's own decision, when the verifier could not read an image it was sent."""
        return Verdict(
            model_score, model_excluded, model_threshold, MODEL_FALLBACK, model_score, fallback_reason=reason
        )


@dataclass(frozen=True)
class LayoutFirst:
    """A picture whose page layout is found before it is read: the layout band, and the picture's model
    score it weighs. `card(features)` says whether the read can be skipped."""

    band: LayoutBand
    model_score: float

    def score(self, layout_features: TextFeatures) -> float:
        """The band's rule score of the picture."""
        return float(self.band.rule.score([self.model_score], [layout_features.as_dict()])[0])

    def card(self, layout_features: TextFeatures) -> bool:
        """Whether the picture is a card on its layout alone (then it is not read)."""
        return bool(self.band.cards([self.model_score], [layout_features.as_dict()])[0])


@dataclass(frozen=True)
class SecondAfter:
    """A page the second engine reads where the first readings leave it a product: the decisions, the
    second reading, and what the verdict takes besides the readings."""

    decisions: CascadeDecisions
    read: SecondRead
    model_score: float
    look: npt.ArrayLike | None
    sheet_score: float | None

    def wanted(self, first: Readings) -> bool:
        """Whether the page is read again: it was read, the second reading takes it (boxes found,
        `SecondRead.reads_after`), and the first readings' verdict is no card."""
        if not self.read.reads_after(first.page):
            return False
        first = dataclasses.replace(first, second=None)  # the first readings' verdict alone
        return not self.decisions.verdict(
            self.model_score, first, self.look, sheet_score=self.sheet_score
        ).excluded


@dataclass(frozen=True)
class SheetSecond:
    """A best sheet the second engine reads where the sheet reading falls short of a card (the route, whose
    `second_read` reads it: `SheetRoute.second_wanted`), or alone, where it scores under the reading band in
    the second engine's own (`alone`: Tesseract does not read it)."""

    route: SheetRoute
    alone: bool = False

    def wanted(self, first: TextFeatures | None) -> bool:
        """Whether the sheet is read by the second engine, given what the first reading read in it (None:
        not read by the first)."""
        return self.alone or (first is not None and self.route.second_wanted(first.read_characters))

    def reading(self, sheet: SheetReading) -> SheetReading:
        """The same sheet, read by the second engine."""
        return dataclasses.replace(sheet, second=self.route.second_read)


class Reader(Protocol):
    """Image bytes in, the verifier's features out (`TextVerifier`, or the worker's `OcrProcessReader`)."""

    def features(
        self, data: bytes, *, line_read: LineRead | None = None, panel_read: PanelRead | None = None
    ) -> TextFeatures:
        """Read one image (with the line or the panel reading too, where given); raises on any failure."""
        ...

    def sheet_features(self, data: bytes, sheet: SheetReading) -> TextFeatures:
        """Read a picture's sheet (`TextVerifier.sheet_features`); raises on any failure."""
        ...

    def layout_features(self, data: bytes) -> TextFeatures:
        """Find a page's words without reading them (`TextVerifier.layout_features`); raises on any
        failure."""
        ...

    def second_features(self, data: bytes, second: SecondRead) -> TextFeatures:
        """Read a page with the second engine (`TextVerifier.second_features`); raises on any failure."""
        ...


@dataclass(frozen=True)
class Readings:
    """What the verifier made of one picture, as `CascadeDecisions.verified` takes it: the page's features,
    its sheet's, its layout's, the second engine's of the page and of the sheet (each None where not
    read)."""

    page: TextFeatures | None = None
    sheet: TextFeatures | None = None
    layout: TextFeatures | None = None
    second: TextFeatures | None = None
    second_sheet: TextFeatures | None = None


def read_for_verdict(
    reader: Reader,
    data: bytes,
    *,
    page: bool,
    line_read: LineRead | None = None,
    panel_read: PanelRead | None = None,
    sheet: SheetReading | None = None,
    layout_first: LayoutFirst | None = None,
    second_after: SecondAfter | None = None,
    sheet_second: SheetSecond | None = None,
) -> Readings:
    """Read one picture as its decision needs, the same in the worker and offline: its layout first where
    `layout_first` (and nothing more where that makes it a card), then the page where `page` (with the
    line or panel reading), the sheet where `sheet` (and again with `sheet_second`'s engine where the
    first reading falls short of a card, `CascadeDecisions.sheet_second`), and the page with the second
    engine where `second_after` wants it once those are in. Raises on any failure (the caller falls
    back)."""
    layout = None if layout_first is None else reader.layout_features(data)
    if layout_first is not None and layout is not None and layout_first.card(layout):
        return Readings(layout=layout)
    features = reader.features(data, line_read=line_read, panel_read=panel_read) if page else None
    alone = sheet_second is not None and sheet_second.alone  # the second engine's own band: no first read
    sheet_features = None if sheet is None or alone else reader.sheet_features(data, sheet)
    second_sheet = None
    if sheet is not None and sheet_second is not None and sheet_second.wanted(sheet_features):
        # The sheet's second reading: where the first one falls short of a card, or alone.
        second_sheet = reader.sheet_features(data, sheet_second.reading(sheet))
    first = Readings(features, sheet_features, layout, second_sheet=second_sheet)
    if second_after is None or not second_after.wanted(first):
        return first
    return dataclasses.replace(first, second=reader.second_features(data, second_after.read))


def _one_row(look: npt.ArrayLike | None) -> npt.NDArray[np.float64] | None:
    """One image's look as the `(1, 2)` rows the policy takes; None stays None."""
    return None if look is None else np.asarray(look, dtype=np.float64).reshape(1, -1)


def describe_failure(error: BaseException) -> str:
    """A short reason for the record: the error's class and its first words (never recognised text)."""
    return f"{type(error).__name__}: {str(error)[:200]}"
