"""The verifier in child processes: reads, per-image errors, and a child that dies or hangs."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator

import pytest
from ocr_samples import LATIN_FONT, engine_reads, one_line_card, photographed_notice, png, sheet_reading
from PIL import Image, ImageDraw, ImageFont

from model.decode import DEFAULT_LIMITS
from model.verifier import VerifierConfig, VerifierUnavailable, ocr_processes
from model.verifier.line_read import LineRead
from model.verifier.ocr_processes import OcrProcess, OcrProcessReader
from model.verifier.panel_read import PanelRead

pytestmark = pytest.mark.skipif(
    not engine_reads(LATIN_FONT), reason="tesserocr or its language models missing"
)


def _card() -> bytes:
    card = Image.new("RGB", (320, 200), (250, 248, 240))
    font = ImageFont.truetype(LATIN_FONT, 36)
    ImageDraw.Draw(card).text((20, 75), "CLOSED TODAY", font=font, fill=(20, 20, 20))
    return png(card)


@pytest.fixture
def reader() -> Iterator[OcrProcessReader]:
    instance = OcrProcessReader(VerifierConfig(timeout_s=1.0), DEFAULT_LIMITS)
    yield instance
    instance.close()


def test_a_child_reads_images_and_answers_a_bad_one_with_its_reason(reader: OcrProcessReader) -> None:
    assert reader.check().startswith("tesserocr ")

    features = reader.features(_card())
    with pytest.raises(VerifierUnavailable, match="UnsupportedImageFormat"):
        reader.features(b"not an image")

    assert features.read_characters >= 8 and features.lines == 1
    assert len(reader.pids()) == 1  # the same child answered both


def test_a_child_reads_the_line_too_when_asked(reader: OcrProcessReader) -> None:
    card = png(one_line_card())

    page = reader.features(card)
    both = reader.features(card, line_read=LineRead())
    again = reader.features(card)  # the line reading was asked for one image only

    assert page.read_characters == 0 and again.read_characters == 0
    assert both.read_characters >= 3


def test_a_child_reads_a_panel_with_its_ground_flattened_when_asked(reader: OcrProcessReader) -> None:
    coupon = Image.new("RGB", (512, 512), (244, 242, 236))
    draw = ImageDraw.Draw(coupon)
    draw.rounded_rectangle((60, 90, 452, 422), 24, fill=(170, 150, 40))
    draw.text((256, 256), "SALE", font=ImageFont.truetype(LATIN_FONT, 72), fill=(40, 30, 10), anchor="mm")

    page = reader.features(png(coupon))
    panel = reader.features(png(coupon), panel_read=PanelRead(2))

    assert page.read_characters == 0
    assert panel.confident_characters >= 3


@pytest.mark.parametrize(
    "line_read", [None, LineRead(), LineRead(13, 40, min_glyphs=2), LineRead(min_glyphs=2, skip_page=True)]
)
@pytest.mark.parametrize("panel_read", [None, PanelRead(0), PanelRead(7)])
def test_the_reading_crosses_the_pipe_whole(line_read: LineRead | None, panel_read: PanelRead | None) -> None:
    packed = ocr_processes.pack_reading(line_read, panel_read)
    assert ocr_processes.unpack_reading(packed) == (line_read, panel_read, ocr_processes.READ_PAGE)


def test_a_sheet_reading_crosses_the_pipe_after_the_fixed_part() -> None:
    from model.sheets import SheetSearch
    from model.verifier.text_verifier import SheetReading

    sheet = SheetReading(SheetSearch(closings=(0, 3)), 96, 2)
    packed = ocr_processes.pack_reading(None, None, sheet)
    fixed = ocr_processes._READING.size
    assert ocr_processes.unpack_reading(packed[:fixed]) == (None, None, ocr_processes.READ_SHEET)
    assert ocr_processes.unpack_sheet(packed[fixed + ocr_processes._HEADER.size :]) == sheet


def test_a_layout_request_crosses_the_pipe_and_reads_no_sheet_with_it() -> None:
    from model.sheets import SheetSearch
    from model.verifier.text_verifier import SheetReading

    packed = ocr_processes.pack_reading(None, None, layout=True)
    assert ocr_processes.unpack_reading(packed) == (None, None, ocr_processes.READ_LAYOUT)
    with pytest.raises(ValueError, match="one of"):
        ocr_processes.pack_reading(None, None, SheetReading(SheetSearch(), 96, 0), layout=True)


def test_a_second_reading_crosses_the_pipe_and_reads_nothing_else_with_it() -> None:
    from model.verifier.second_read import SecondRead

    second = SecondRead(10, engine_version="engine 1")
    packed = ocr_processes.pack_reading(None, None, second=second)
    fixed = ocr_processes._READING.size
    assert ocr_processes.unpack_reading(packed[:fixed]) == (None, None, ocr_processes.READ_SECOND)
    spec = packed[fixed + ocr_processes._HEADER.size :]
    assert SecondRead.from_json(json.loads(spec)) == second
    with pytest.raises(ValueError, match="one of"):
        ocr_processes.pack_reading(None, None, layout=True, second=second)


def test_a_child_reads_a_page_with_the_second_engine_and_names_it(reader: OcrProcessReader) -> None:
    from model.verifier.second_read import SecondRead

    second = SecondRead(10)
    assert reader.check_second(second).startswith("rapidocr 3.")

    read = reader.second_features(_card(), second)
    first = reader.features(_card())  # the same child reads with its first engine still

    assert read.read_characters >= 8 and first.read_characters >= 8
    assert len(reader.pids()) == 1


def test_a_child_started_with_the_second_reading_has_its_engine_loaded_before_the_first_read() -> None:
    from model.verifier.second_read import SecondRead

    second = SecondRead(10)
    child = OcrProcess(VerifierConfig(timeout_s=1.0), DEFAULT_LIMITS, second)
    try:
        assert child.second_engine_version.startswith("rapidocr 3.")
        # Loaded already: the first second reading fits in the main engine's short timeout.
        assert child.features(_card(), second=second).read_characters >= 8
        assert child.last_engine == child.second_engine_version
    finally:
        child.close()
    plain = OcrProcess(VerifierConfig(), DEFAULT_LIMITS)
    plain.close()
    assert plain.second_engine_version == ""  # started without it: loaded on first use


def test_children_started_ahead_are_taken_by_the_first_reads(reader: OcrProcessReader) -> None:
    reader.warm(1)
    warmed = reader.pids()

    features = reader.features(_card())

    assert len(warmed) == 1 and reader.pids() == warmed  # the read took the child started ahead
    assert features.read_characters >= 8


def test_a_child_finds_a_cards_words_without_reading_them(reader: OcrProcessReader) -> None:
    found = reader.layout_features(_card())
    read = reader.features(_card())
    # The two words are found where they are read; their characters are not recognised (one per word).
    assert found.read_boxes == found.read_characters == read.read_boxes == 2
    assert found.lines == read.lines == 1
    assert found.largest_text_height == pytest.approx(read.largest_text_height, abs=0.05)
    with pytest.raises(VerifierUnavailable, match="UnsupportedImageFormat"):
        reader.layout_features(b"not an image")
    assert len(reader.pids()) == 1


def test_a_child_reads_a_photographed_notices_sheet(reader: OcrProcessReader) -> None:
    data = png(photographed_notice())
    features = reader.sheet_features(data, sheet_reading(data))
    assert features.read_characters >= 6
    # The sheet alone was read: its text covers more of what was read than of the whole picture.
    assert features.read_area > reader.features(data).read_area


def test_a_child_reads_a_sheet_with_the_second_engine_where_asked(reader: OcrProcessReader) -> None:
    import dataclasses

    from model.verifier.second_read import SecondRead

    data = png(photographed_notice())
    sheet = sheet_reading(data)
    by_second = reader.sheet_features(data, dataclasses.replace(sheet, second=SecondRead(10)))
    # PP-OCR reads the notice's words as lines (one box per line), Tesseract as words.
    assert by_second.read_characters >= 8 and by_second.read_boxes <= 2
    assert by_second != reader.sheet_features(data, sheet)


def test_a_read_from_a_child_that_died_fails_with_the_reason() -> None:
    child = OcrProcess(VerifierConfig(timeout_s=1.0), DEFAULT_LIMITS)
    try:
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while child.alive:
            assert time.monotonic() < deadline, "the killed child did not die"
            time.sleep(0.01)
        with pytest.raises(VerifierUnavailable, match="died"):
            child.features(_card())
    finally:
        child.close()


def test_a_killed_child_is_replaced_and_never_answers_for_the_next_read(reader: OcrProcessReader) -> None:
    reader.features(_card())
    (first,) = reader.pids()

    os.kill(first, signal.SIGKILL)
    # The reader notices during the read (it fails: "died") or before it (a new child reads it), depending
    # on whether the child is gone yet; either way the dead one answers nothing and a new one takes over.
    try:
        features = reader.features(_card())
    except VerifierUnavailable as exc:
        assert "died" in str(exc)
        features = reader.features(_card())

    assert features.read_characters >= 8
    assert reader.pids() and first not in reader.pids()


def test_a_child_that_hangs_is_killed_after_the_timeout(
    reader: OcrProcessReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ocr_processes, "_MARGIN_S", 0.5)
    reader.features(_card())
    (child,) = reader.pids()
    os.kill(child, signal.SIGSTOP)  # a hang: alive, silent

    with pytest.raises(VerifierUnavailable, match="did not answer"):
        reader.features(_card())

    assert child not in reader.pids()
    assert reader.features(_card()).read_characters >= 8
