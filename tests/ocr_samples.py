"""What the OCR tests draw, and whether the served engine can read it here (shared by model and worker tests).

Importable as `ocr_samples`: pytest puts this folder on the path for its conftest.
"""

from __future__ import annotations

import io
import os

from PIL import Image, ImageDraw, ImageFont

from model.verifier import VerifierConfig, VerifierUnavailable, make_engine

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
