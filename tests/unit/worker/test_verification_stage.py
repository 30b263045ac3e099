"""The verifier stage: download, read on its threads, and fail per image (the worker then falls back)."""

from __future__ import annotations

import io

import pytest
from fakes import FakeFetcher
from ocr_samples import JAPANESE_FONT, LATIN_FONT, engine_reads, one_line_card, png
from PIL import Image

from model.cascade_decisions import describe_failure
from model.decode import DEFAULT_LIMITS
from model.errors import UnsupportedImageFormat
from model.verifier import ReadBox, TextVerifier, VerifierConfig, VerifierUnavailable
from model.verifier.line_read import LineRead
from model.verifier.ocr_processes import OcrProcessReader
from worker.failures import HttpError
from worker.stages.verify import VerificationStage


class StubEngine:
    """Reads one confident 12-character box in the middle of every image; 'crash' mode fails."""

    name = "stub"

    def __init__(self) -> None:
        self.crash = False

    def version(self) -> str:
        return "stub 1"

    def read(self, image: Image.Image, page_segmentation: int | None = None) -> list[ReadBox]:
        del page_segmentation
        if self.crash:
            raise VerifierUnavailable("stub engine crashed")
        width, height = image.size
        return [ReadBox(width * 0.25, height * 0.4, width * 0.5, height * 0.2, 95.0, 12)]


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (200, 100), (240, 240, 240)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_read_downloads_the_image_and_returns_its_features_and_failures_raise_per_image() -> None:
    engine = StubEngine()
    fetcher = FakeFetcher({"card": _png(), "junk": b"not an image"})
    stage = VerificationStage(fetcher, TextVerifier(engine=engine), workers=2)
    try:
        reading = stage.submit("fake://card").result(timeout=10)
        assert reading.read.page.read_characters == 12 and reading.read.page.lines == 1
        assert reading.seconds >= 0

        with pytest.raises(HttpError):
            stage.submit("fake://gone").result(timeout=10)
        with pytest.raises(UnsupportedImageFormat):
            stage.submit("fake://junk").result(timeout=10)
        engine.crash = True
        with pytest.raises(VerifierUnavailable) as crashed:
            stage.submit("fake://card").result(timeout=10)
        assert describe_failure(crashed.value) == "VerifierUnavailable: stub engine crashed"
    finally:
        stage.close()


@pytest.mark.skipif(not engine_reads(JAPANESE_FONT), reason="tesserocr or its language models missing")
def test_the_gates_pictures_are_read_as_lines_through_the_ocr_processes() -> None:
    """Stage, reader, pipe and child together: the line reading and its glyph rule arrive whole."""
    # One large glyph: the line reading reads it, but one glyph-sized mark is not a line to read.
    letter = one_line_card("W", font=LATIN_FONT, size=120)
    payloads = {"card": png(one_line_card()), "letter": png(letter)}
    reader = OcrProcessReader(VerifierConfig(timeout_s=5.0), DEFAULT_LIMITS)
    stage = VerificationStage(FakeFetcher(payloads), reader, workers=1)
    gate_reading = LineRead(min_glyphs=2)
    try:
        page = stage.submit("fake://card").result(timeout=60).read.page
        line = stage.submit("fake://card", line_read=gate_reading).result(timeout=60).read.page
        skipped = stage.submit("fake://letter", line_read=gate_reading).result(timeout=60).read.page
        every_line = stage.submit("fake://letter", line_read=LineRead()).result(timeout=60).read.page
    finally:
        stage.close()
        reader.close()

    assert (page.read_characters, page.drawing_glyphs) == (0, 0)  # the page reading alone: nothing
    assert line.read_characters >= 3 and line.drawing_glyphs >= 4
    # The rule crosses the pipe with the reading: the letter's line is read only when no glyphs are asked.
    assert (skipped.read_characters, skipped.drawing_glyphs) == (0, 1)
    assert every_line.read_characters == 1


@pytest.mark.skipif(not engine_reads(LATIN_FONT), reason="tesserocr or its language models missing")
def test_a_pictures_sheet_is_found_again_and_read_through_the_ocr_processes() -> None:
    """The sheet reading: the stage names the slot, the child decodes and finds the sheet again."""
    from ocr_samples import photographed_notice

    from model.sheets import SheetSearch

    reader = OcrProcessReader(VerifierConfig(timeout_s=5.0), DEFAULT_LIMITS)
    payloads = {"notice": png(photographed_notice())}
    stage = VerificationStage(FakeFetcher(payloads), reader, workers=1, sheets=SheetSearch(), input_size=96)
    plain = VerificationStage(FakeFetcher(payloads), reader, workers=1)
    try:
        alone = stage.submit("fake://notice", page=False, sheet_slot=0).result(timeout=60).read
        both = stage.submit("fake://notice", sheet_slot=0).result(timeout=60).read
        with pytest.raises(ValueError, match="no sheets"):
            plain.submit("fake://notice", sheet_slot=0)
        with pytest.raises(ValueError, match="nothing to read"):
            stage.submit("fake://notice", page=False)
    finally:
        stage.close()
        plain.close()
        reader.close()

    assert alone.page is None and alone.sheet is not None and alone.sheet.read_characters >= 6
    assert both.page is not None and both.sheet == alone.sheet


class LayoutStubEngine(StubEngine):
    """The stub that also finds `words` words without reading them, and counts its reads."""

    def __init__(self, words: int) -> None:
        super().__init__()
        self.words = words
        self.reads = 0

    def read(self, image: Image.Image, page_segmentation: int | None = None) -> list[ReadBox]:
        self.reads += 1
        return super().read(image, page_segmentation)

    def layout(self, image: Image.Image) -> list[ReadBox]:
        return [ReadBox(10.0 * i, 10.0, 8.0, 8.0, 100.0, 1) for i in range(self.words)]


def test_a_card_on_its_layout_is_not_read_and_a_picture_the_band_does_not_decide_is() -> None:
    from model.cascade import LAYOUT_RULE_INPUTS, CascadeRule, LayoutBand
    from model.cascade_decisions import LayoutFirst

    size = len(LAYOUT_RULE_INPUTS)
    weights = tuple(5.0 if name == "log_read_boxes" else 0.0 for name in LAYOUT_RULE_INPUTS)
    band = LayoutBand(CascadeRule(weights, -5.0, (0.0,) * size, (1.0,) * size, LAYOUT_RULE_INPUTS), 0.9)
    for words, read in ((20, False), (0, True)):
        engine = LayoutStubEngine(words)
        stage = VerificationStage(FakeFetcher({"card": _png()}), TextVerifier(engine=engine), workers=1)
        try:
            reading = (
                stage.submit("fake://card", layout_first=LayoutFirst(band, 0.99)).result(timeout=10).read
            )
        finally:
            stage.close()
        assert reading.layout is not None and reading.layout.read_boxes == words
        assert (reading.page is not None, engine.reads) == (read, int(read))
