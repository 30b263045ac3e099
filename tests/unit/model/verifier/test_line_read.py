"""The line reading: cut out what is drawn, read it as one line, map the boxes back onto the picture."""

from __future__ import annotations

import numpy as np
import pytest
from ocr_samples import JAPANESE_FONT, engine_reads, one_line_card, png
from PIL import Image, ImageDraw

from model.screen import PlainLineGate
from model.verifier import ReadBox, TextVerifier, VerifierConfig
from model.verifier.line_read import DrawingShape, LineRead, drawing_shape, line_boxes, line_extent


class _WholeCutOut:
    """An engine that reads one box over the whole image it is given, and remembers what it was given."""

    def __init__(self) -> None:
        self.seen: list[tuple[tuple[int, int], int | None]] = []

    def read(self, image: Image.Image, page_segmentation: int | None = None) -> list[ReadBox]:
        self.seen.append((image.size, page_segmentation))
        return [ReadBox(0, 0, image.width, image.height, confidence=90, characters=4)]


def test_the_extent_is_what_is_drawn_and_none_on_a_blank_ground() -> None:
    gray = np.full((100, 200), 240, dtype=np.uint8)
    assert line_extent(gray) is None
    gray[40:60, 50:150] = 20
    left, top, right, bottom = line_extent(gray) or (0, 0, 0, 0)
    assert (left, right) == pytest.approx((49, 150), abs=1)
    assert (top, bottom) == pytest.approx((39, 60), abs=1)


def test_the_cut_out_is_scaled_to_the_text_height_and_boxes_come_back_in_picture_coordinates() -> None:
    image = Image.new("RGB", (400, 300), (240, 240, 240))
    ImageDraw.Draw(image).rectangle([100, 140, 299, 159], fill=(20, 20, 20))  # a 20-pixel high "line"
    engine = _WholeCutOut()

    (box,) = line_boxes(engine, image, LineRead(page_segmentation=13, text_height=32))

    ((_, cut_height), psm) = engine.seen[0]
    assert psm == 13
    assert cut_height == 64  # the drawing, 32 pixels high, fills half the cut-out
    # The box of the whole cut-out, mapped back: the line with its margin of half its height.
    assert box.top == pytest.approx(140 - 10, abs=1.5)
    assert box.top + box.height == pytest.approx(160 + 10, abs=1.5)
    assert box.left == pytest.approx(100 - 10, abs=1.5)
    assert box.left + box.width == pytest.approx(300 + 10, abs=1.5)
    assert line_boxes(engine, Image.new("RGB", (400, 300), (240, 240, 240)), LineRead()) == []


def test_line_read_records_round_trip_and_a_gate_without_one_writes_no_field() -> None:
    gate = PlainLineGate(0.8, 0.3, line_read=LineRead(13, 40))
    assert PlainLineGate.from_json(gate.to_json()) == gate
    assert "line_read" not in PlainLineGate(0.8, 0.3).to_json()  # earlier cards' versions stay
    with pytest.raises(ValueError, match="text_height"):
        LineRead(13, 4)


@pytest.mark.skipif(not engine_reads(JAPANESE_FONT), reason="tesserocr or its models or fonts missing")
def test_the_line_reading_reads_a_one_line_card_that_the_page_reading_misses() -> None:
    card = png(one_line_card())
    verifier = TextVerifier(VerifierConfig())

    page = verifier.features(card)
    both = verifier.features(card, line_read=LineRead())

    assert page.read_characters == 0  # Tesseract's sparse-text reading finds no block in so much ground
    assert both.read_characters >= 3
    assert both.lines == 1
    assert 0.05 < both.largest_text_height < 0.2  # in the picture's coordinates, not the cut-out's
    assert both.ground_emptiness > 0.9
    assert both.drawing_glyphs >= 4 and page.drawing_glyphs == 0  # the shape comes with the line reading


def test_a_line_of_text_is_many_glyphs_and_a_cut_out_product_is_one_shape() -> None:
    line = drawing_shape(np.asarray(one_line_card().convert("L")))
    product = Image.new("L", (512, 512), 245)
    ImageDraw.Draw(product).ellipse([150, 180, 360, 330], fill=90)  # one solid shape on a flat ground
    ImageDraw.Draw(product).rectangle([240, 120, 270, 185], fill=60)  # its handle, touching it
    shape = drawing_shape(np.asarray(product))

    assert line.glyphs >= 4 and line.marks >= line.glyphs  # 送料無料: four glyphs, some in several marks
    assert 2.5 < line.aspect < 6
    assert (shape.marks, shape.glyphs) == (1, 1)
    assert drawing_shape(np.full((64, 64), 200, dtype=np.uint8)) == DrawingShape(0, 0, 0.0)


class _CountingEngine(_WholeCutOut):
    """Reads nothing, and counts the readings it was asked for."""

    def read(self, image: Image.Image, page_segmentation: int | None = None) -> list[ReadBox]:
        self.seen.append((image.size, page_segmentation))
        return []


def test_a_drawing_without_the_glyphs_asked_for_is_read_as_a_page_only() -> None:
    product = Image.new("RGB", (512, 512), (245, 245, 245))
    ImageDraw.Draw(product).ellipse([150, 180, 360, 330], fill=(90, 60, 40))
    engine = _CountingEngine()
    verifier = TextVerifier(engine=engine)  # type: ignore[arg-type]

    verifier.features(product, line_read=LineRead(min_glyphs=2))
    assert [psm for _, psm in engine.seen] == [None]  # the page only: one shape is not a line of glyphs
    verifier.features(one_line_card(), line_read=LineRead(min_glyphs=2))
    assert [psm for _, psm in engine.seen] == [None, None, 13]
    assert LineRead.from_json(LineRead(min_glyphs=2).to_json()) == LineRead(min_glyphs=2)
    assert "min_glyphs" not in LineRead().to_json()  # earlier cards' versions stay


def test_with_skip_page_a_drawing_without_the_glyphs_is_not_read_at_all() -> None:
    product = Image.new("RGB", (512, 512), (245, 245, 245))
    ImageDraw.Draw(product).ellipse([150, 180, 360, 330], fill=(90, 60, 40))
    engine = _CountingEngine()
    verifier = TextVerifier(engine=engine)  # type: ignore[arg-type]
    skipping = LineRead(min_glyphs=2, skip_page=True)

    features = verifier.features(product, line_read=skipping)
    assert engine.seen == []  # one shape: neither the page nor the line is read
    assert (features.read_characters, features.drawing_glyphs) == (0, 1) and features.ground_emptiness > 0.5
    verifier.features(one_line_card(), line_read=skipping)
    assert [psm for _, psm in engine.seen] == [None, 13]  # a line of glyphs: the page and the line
    assert LineRead.from_json(skipping.to_json()) == skipping
    assert "skip_page" not in LineRead(min_glyphs=2).to_json()  # earlier cards' versions stay
    with pytest.raises(ValueError, match="skip_page needs min_glyphs"):
        LineRead(skip_page=True)


def test_unread_features_are_what_the_verifier_gives_a_line_it_reads_nothing_in() -> None:
    from model.verifier.text_verifier import unread_features

    card = png(one_line_card())
    config = VerifierConfig(engine="tesseract", side=512)
    read_as_nothing = TextVerifier(config, engine=_CountingEngine()).features(
        card, line_read=LineRead(min_glyphs=2, skip_page=True)
    )

    unread = unread_features(card, config.side)

    assert unread == read_as_nothing  # the whole ground, the drawing's shape, nothing read
    assert unread.read_characters == 0 and unread.drawing_glyphs >= 4 and unread.ground_emptiness < 1.0
