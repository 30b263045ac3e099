"""What the OCR tests draw, and whether the served engine can read it here (shared by model and worker tests).

Importable as `ocr_samples`: pytest puts this folder on the path for its conftest.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from model.decode import decode_sheet_picture
from model.sheets import SheetSearch, find_sheets
from model.verifier import VerifierConfig, VerifierUnavailable, make_engine
from model.verifier.text_verifier import SheetReading

LATIN_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
JAPANESE_FONT = "/usr/share/fonts/opentype/ipaexfont-gothic/ipaexg.ttf"
GROUND = (250, 248, 240)
INK = (20, 20, 20)


def engine_reads(*fonts: str) -> bool:
    """Whether the default engine (tesserocr with its language models) runs here and `fonts` are installed."""
    try:
        make_engine(VerifierConfig())
    except VerifierUnavailable:
        return False
    return all(os.path.isfile(font) for font in fonts)


def one_line_card(text: str = "送料無料", *, font: str = JAPANESE_FONT, size: int = 56) -> Image.Image:
    """`text` centred on a flat 512 px ground. The default is a card Tesseract's page reading (psm 11)
    reads nothing in, and its line reading reads."""
    card = Image.new("RGB", (512, 512), GROUND)
    ImageDraw.Draw(card).text((256, 256), text, font=ImageFont.truetype(font, size), fill=INK, anchor="mm")
    return card


def png(image: Image.Image) -> bytes:
    """The image as PNG bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# A notice on a gravel-like scene, drawn flat and then tilted a little (the picture is 480 x 360).
SHEET = (90, 60, 390, 300)


def photographed_notice() -> Image.Image:
    """The notice pasted, a little tilted, on the scene (shared with the OCR process tests)."""
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


def sheet_reading(data: bytes, search: SheetSearch | None = None) -> SheetReading:
    """The reading of the notice's sheet (the largest: slot 0), checked to be there."""
    search = search or SheetSearch()
    picture = decode_sheet_picture(data, 96, search)
    assert find_sheets(picture, search), "the notice's sheet is found"
    return SheetReading(search=search, input_size=96, slot=0)
