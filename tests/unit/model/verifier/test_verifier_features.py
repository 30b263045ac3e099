"""The verifier's features from engine boxes, and the Tesseract engine on drawn images."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from model.errors import UnsupportedImageFormat
from model.verifier import ReadBox, TextFeatures, TextVerifier, VerifierConfig, features_from_boxes
from model.verifier.features import CONFIDENT_READ, READ_CONFIDENCE

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


def _box(
    left: float, top: float, width: float, height: float, *, confidence: float = 90, characters: int = 4
) -> ReadBox:
    return ReadBox(left, top, width, height, confidence, characters)


def test_features_count_only_confident_boxes_with_characters() -> None:
    gray = np.full((100, 200), 255, dtype=np.uint8)
    boxes = [
        _box(10, 10, 50, 20),  # line 1
        _box(70, 12, 40, 18, characters=3),  # line 1
        _box(10, 50, 80, 30, characters=6),  # line 2, tallest
        _box(100, 60, 30, 10, confidence=30),  # not read: low confidence
        _box(150, 80, 10, 10, characters=0),  # not read: nothing recognised
    ]

    features = features_from_boxes(boxes, gray)

    assert features.boxes == 5
    assert features.read_boxes == 3
    assert features.read_characters == 13
    assert features.lines == 2
    assert features.largest_text_height == pytest.approx(0.3)
    assert features.read_area == pytest.approx((50 * 20 + 40 * 18 + 80 * 30) / (100 * 200))
    assert features.ground_emptiness == pytest.approx(1.0)  # a flat white ground


def test_confident_characters_count_only_boxes_read_at_high_confidence() -> None:
    gray = np.full((100, 200), 255, dtype=np.uint8)
    boxes = [
        _box(10, 10, 50, 20, confidence=96, characters=5),  # a card's word
        _box(70, 10, 20, 20, confidence=75, characters=2),  # a texture read as "ーー": read, not confident
        _box(10, 50, 20, 20, confidence=40, characters=3),  # not read at all
    ]

    features = features_from_boxes(boxes, gray)

    assert (features.read_characters, features.confident_characters) == (7, 5)
    assert CONFIDENT_READ > READ_CONFIDENCE


def test_emptiness_is_low_on_a_busy_picture_and_high_on_a_plain_ground() -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (120, 120), dtype=np.uint8)
    flat = np.full((120, 120), 200, dtype=np.uint8)

    assert features_from_boxes([], noise).ground_emptiness < 0.1
    assert features_from_boxes([], flat).ground_emptiness == pytest.approx(1.0)
    assert features_from_boxes([], flat).read_characters == 0


def test_feature_names_follow_the_dataclass() -> None:
    features = features_from_boxes([], np.zeros((4, 4), dtype=np.uint8))
    assert list(features.as_dict()) == TextFeatures.names()


needs_tesseract = pytest.mark.skipif(
    shutil.which("tesseract") is None, reason="tesseract-ocr is not installed"
)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@needs_tesseract
def test_tesseract_reads_a_one_line_card_and_nothing_on_a_blank_ground() -> None:
    card = Image.new("RGB", (320, 200), (250, 248, 240))
    ImageDraw.Draw(card).text((20, 75), "CLOSED TODAY", font=ImageFont.truetype(FONT, 36), fill=(20, 20, 20))
    verifier = TextVerifier(VerifierConfig(engine="tesseract"))

    read = verifier.features(_png(card))
    blank = verifier.features(_png(Image.new("RGB", (320, 200), (250, 248, 240))))

    assert read.read_characters >= 8
    assert read.lines == 1
    assert 0.1 < read.largest_text_height < 0.4
    assert read.ground_emptiness > 0.9
    assert blank.read_characters == 0
    assert verifier.engine.version().startswith("tesseract 5")


@needs_tesseract
def test_the_verifier_refuses_bad_bytes_with_the_decoders_errors() -> None:
    with pytest.raises(UnsupportedImageFormat):
        TextVerifier(VerifierConfig(engine="tesseract")).features(b"not an image")
