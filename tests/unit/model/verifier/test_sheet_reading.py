"""The sheet reading: a notice photographed in a scene is found again, flattened, and read."""

from __future__ import annotations

import numpy as np
import pytest
from ocr_samples import INK, LATIN_FONT, engine_reads, png
from PIL import Image, ImageDraw, ImageFont

from model.decode import decode_sheet_picture
from model.sheets import SheetSearch, find_sheets
from model.verifier import ReadBox, TextVerifier, VerifierUnavailable
from model.verifier.text_verifier import SheetReading

# A notice on a gravel-like scene, drawn flat and then tilted a little (the picture is 480 x 360).
SHEET = (90, 60, 390, 300)


def _photographed_notice() -> Image.Image:
    rng = np.random.default_rng(3)
    blocks = rng.integers(40, 200, (36, 48, 1), dtype=np.uint8).repeat(3, axis=2)
    scene = Image.fromarray(blocks).resize((480, 360), Image.Resampling.NEAREST)
    notice = Image.new("RGB", (SHEET[2] - SHEET[0], SHEET[3] - SHEET[1]), (240, 236, 226))
    draw = ImageDraw.Draw(notice)
    font = ImageFont.truetype(LATIN_FONT, 44) if engine_reads(LATIN_FONT) else ImageFont.load_default(44)
    for row, word in enumerate(("CLOSED", "TODAY")):
        draw.text((150, 70 + 90 * row), word, font=font, fill=INK, anchor="mm")
    scene.paste(notice.rotate(4, expand=False, fillcolor=(240, 236, 226)), SHEET[:2])
    return scene


class _SizeEngine:
    """Reads one box over the whole image, and keeps the sizes it was given."""

    name = "size"

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []

    def read(self, image: Image.Image, page_segmentation: int | None = None) -> list[ReadBox]:
        self.sizes.append(image.size)
        return [ReadBox(0, 0, image.width, image.height, 95.0, 6)]


def _reading(data: bytes, search: SheetSearch) -> SheetReading:
    picture = decode_sheet_picture(data, 96, search)
    assert find_sheets(picture, search), "the notice's sheet is found"
    return SheetReading(search=search, input_size=96, slot=0)


def test_the_sheet_is_read_flattened_at_the_verifiers_side() -> None:
    data, search = png(_photographed_notice()), SheetSearch()
    engine = _SizeEngine()
    features = TextVerifier(engine=engine).sheet_features(data, _reading(data, search))  # type: ignore[arg-type]
    assert len(engine.sizes) == 1 and max(engine.sizes[0]) == 512  # the sheet alone, at the reader's side
    width, height = engine.sizes[0]
    assert 1.1 < width / height < 1.5  # its own proportions (300 x 240), not the picture's
    assert features.read_characters == 6
    with pytest.raises(VerifierUnavailable, match="no sheet"):
        TextVerifier(engine=engine).sheet_features(  # type: ignore[arg-type]
            data, SheetReading(search=search, input_size=96, slot=search.slots)
        )


@pytest.mark.skipif(not engine_reads(LATIN_FONT), reason="needs Tesseract with eng and jpn, and DejaVu fonts")
def test_tesseract_reads_the_flattened_notice() -> None:
    data = png(_photographed_notice())
    features = TextVerifier().sheet_features(data, _reading(data, SheetSearch()))
    assert features.read_characters >= 6  # "CLOSED" or "TODAY" at least
