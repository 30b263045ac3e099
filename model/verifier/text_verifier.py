"""`TextVerifier`: image bytes (or a decoded image) in, `TextFeatures` out, through one OCR engine."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from model.decode import ImageLimits, decode_for_reading, decode_sheet_picture
from model.verifier.engines import OcrEngine, VerifierConfig, VerifierUnavailable, make_engine
from model.verifier.features import TextFeatures, features_from_boxes
from model.verifier.line_read import DrawingShape, LineRead, drawing_shape, line_boxes
from model.verifier.panel_read import PanelRead, flatten_ground

if TYPE_CHECKING:
    from model.sheets import SheetSearch
    from model.verifier.second_read import SecondRead


@dataclass(frozen=True)
class SheetReading:
    """Which sheet of a picture to read: the sheet route's search (`model.sheets.SheetSearch`) run on the
    picture decoded for the model's input of `input_size`, and the slot of its best sheet; read by the second
    reading's engine where `second` is given (the sheet's second reading, `SheetRoute.second_read`)."""

    search: SheetSearch
    input_size: int
    slot: int
    second: SecondRead | None = None


class TextVerifier:
    """Reads images with the configured engine; one instance per process (engines are not thread-safe)."""

    def __init__(self, config: VerifierConfig | None = None, *, engine: OcrEngine | None = None) -> None:
        """Start the engine the config names (or use `engine`, for tests).

        Raises:
            VerifierUnavailable: the engine or its language models are not installed.
        """
        self.config = config or VerifierConfig()
        self.engine = engine or make_engine(self.config)
        # The second reading's verifiers, by configuration, started on first use (`second_features`).
        self._second: dict[VerifierConfig, TextVerifier] = {}

    def features(
        self,
        source: bytes | Image.Image,
        *,
        limits: ImageLimits | None = None,
        line_read: LineRead | None = None,
        panel_read: PanelRead | None = None,
    ) -> TextFeatures:
        """The features of one image; with `line_read`, of the better of two readings (the page's, and the
        line's: `model.verifier.line_read`, where the drawing has the glyphs it asks for), the one that read
        more characters (the page's on a tie), and the drawing's shape; nothing read at all where the line
        reading skips a drawing with fewer glyphs (`LineRead.skip_page`). With `panel_read` (and no
        `line_read`), where the page reading read nothing, the page is read again with its ground flattened
        (`model.verifier.panel_read`), and `PanelRead.better` says which reading counts.

        Raises:
            ImageError: the bytes are not an acceptable image (as in `model.decode`).
            VerifierUnavailable: the engine failed on this image (timeout, crash).
        """
        image = decode_for_reading(source, self.config.side, limits=limits)
        gray = np.asarray(image.convert("L"), dtype=np.uint8)
        if line_read is None:
            page = features_from_boxes(self.engine.read(image), gray)
            if panel_read is None or not panel_read.wanted(page):
                return page
            return panel_read.better(page, features_from_boxes(self.engine.read(flatten_ground(image)), gray))
        shape = drawing_shape(gray)
        if line_read.skips(shape):
            page = features_from_boxes([], gray)  # nothing read: the shape and the ground decide
        else:
            page = features_from_boxes(self.engine.read(image), gray)
        best = page
        if shape.glyphs >= line_read.min_glyphs:
            line = features_from_boxes(line_boxes(self.engine, image, line_read), gray)
            best = line if line.read_characters > page.read_characters else page
        return _with_shape(best, shape)

    def second_features(
        self, source: bytes | Image.Image, second: SecondRead, *, limits: ImageLimits | None = None
    ) -> TextFeatures:
        """The features of the page as the second engine reads it (`model.verifier.second_read`).

        Raises:
            ImageError: the bytes are not an acceptable image (as in `model.decode`).
            VerifierUnavailable: the second engine is not installed, or failed on this image.
        """
        return self.second_verifier(second).features(source, limits=limits)

    def second_verifier(self, second: SecondRead) -> TextVerifier:
        """The verifier of the second reading's engine (started on first use, then kept).

        Raises:
            VerifierUnavailable: the second engine is not installed.
        """
        config = second.config(self.config.timeout_s)
        verifier = self._second.get(config)
        if verifier is None:
            verifier = self._second[config] = TextVerifier(config)
        return verifier

    def flattened_features(
        self, source: bytes | Image.Image, *, limits: ImageLimits | None = None
    ) -> TextFeatures:
        """The features of the page read with its ground flattened alone (`model.verifier.panel_read`), for
        measuring what `panel_read` would give.

        Raises:
            ImageError: the bytes are not an acceptable image (as in `model.decode`).
            VerifierUnavailable: the engine failed on this image (timeout, crash).
        """
        image = decode_for_reading(source, self.config.side, limits=limits)
        gray = np.asarray(image.convert("L"), dtype=np.uint8)
        return features_from_boxes(self.engine.read(flatten_ground(image)), gray)

    def layout_features(
        self, source: bytes | Image.Image, *, limits: ImageLimits | None = None
    ) -> TextFeatures:
        """The features of the words the engine's layout analysis finds on the page, none recognised
        (`model.cascade.LayoutBand`): each word counts as one character read with full confidence, so the
        counts are of words found, and the areas, heights and ground are measured as for a reading.

        Raises:
            ImageError: the bytes are not an acceptable image (as in `model.decode`).
            VerifierUnavailable: the engine has no layout analysis, or failed on this image.
        """
        layout = getattr(self.engine, "layout", None)
        if layout is None:
            raise VerifierUnavailable(f"the {self.engine.name} engine has no layout analysis")
        image = decode_for_reading(source, self.config.side, limits=limits)
        gray = np.asarray(image.convert("L"), dtype=np.uint8)
        return features_from_boxes(layout(image), gray)

    def sheet_features(
        self, source: bytes | Image.Image, sheet: SheetReading, *, limits: ImageLimits | None = None
    ) -> TextFeatures:
        """The features of a picture's sheet, flattened to the verifier's side and read as a page
        (`model.sheets.sheet_to_read`; the sheet reading of the sheet route).

        Raises:
            ImageError: the bytes are not an acceptable image (as in `model.decode`).
            VerifierUnavailable: the engine failed on this image, or the picture holds no sheet in that slot
                (the decode that found it must have differed).
        """
        from model.sheets import sheet_to_read

        if sheet.second is not None:
            reading = dataclasses.replace(sheet, second=None)
            return self.second_verifier(sheet.second).sheet_features(source, reading, limits=limits)
        picture = decode_sheet_picture(source, sheet.input_size, sheet.search, limits=limits)
        flat = sheet_to_read(picture, sheet.slot, sheet.search, self.config.side)
        if flat is None:
            raise VerifierUnavailable(f"no sheet in slot {sheet.slot} of this picture")
        gray = np.asarray(flat.convert("L"), dtype=np.uint8)
        return features_from_boxes(self.engine.read(flat), gray)


def unread_features(
    source: bytes | Image.Image, side: int, *, limits: ImageLimits | None = None
) -> TextFeatures:
    """The features the verifier gives a picture read with the gate's line reading in which nothing was read:
    no boxes, the whole ground, and the drawing's shape. No engine runs: what a card in a font the verifier
    cannot read looks like to it, for fitting the gate's shape rule (`CascadePolicy.gate_shape_rule`).

    Raises:
        ImageError: the bytes are not an acceptable image (as in `model.decode`).
    """
    image = decode_for_reading(source, side, limits=limits)
    gray = np.asarray(image.convert("L"), dtype=np.uint8)
    return _with_shape(features_from_boxes([], gray), drawing_shape(gray))


def _with_shape(features: TextFeatures, shape: DrawingShape) -> TextFeatures:
    """`features` with the drawing's shape (`model.verifier.line_read.drawing_shape`) recorded."""
    return dataclasses.replace(
        features, drawing_marks=shape.marks, drawing_glyphs=shape.glyphs, drawing_aspect=shape.aspect
    )
