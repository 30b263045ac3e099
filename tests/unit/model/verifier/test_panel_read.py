"""The panel reading: text on a panel of another tone, lost to the global threshold, read on a flat ground."""

from __future__ import annotations

import numpy as np
import pytest
from ocr_samples import JAPANESE_FONT, LATIN_FONT, engine_reads
from PIL import Image, ImageDraw, ImageFont

from model.cascade_card import panel_bound
from model.verifier import TextVerifier, VerifierConfig
from model.verifier.features import TextFeatures
from model.verifier.panel_read import PanelRead, flatten_ground


def _coupon(panel: tuple[int, int, int]) -> Image.Image:
    """Dark text on a coloured ticket over a light ground: Tesseract's page reading reads nothing here."""
    card = Image.new("RGB", (512, 512), (244, 242, 236))
    draw = ImageDraw.Draw(card)
    draw.rounded_rectangle((60, 90, 452, 422), 24, fill=panel)
    ink = (40, 30, 10)
    draw.text((256, 190), "SALE", font=ImageFont.truetype(LATIN_FONT, 72), fill=ink, anchor="mm")
    draw.text(
        (256, 300), "店休日のお知らせ", font=ImageFont.truetype(JAPANESE_FONT, 40), fill=ink, anchor="mm"
    )
    return card


@pytest.mark.skipif(not engine_reads(LATIN_FONT, JAPANESE_FONT), reason="tesserocr or the fonts are missing")
@pytest.mark.parametrize("panel", [(170, 150, 40), (120, 200, 140), (150, 150, 150)])
def test_text_on_a_panel_is_lost_to_the_page_reading_and_read_with_the_ground_flattened(
    panel: tuple[int, int, int],
) -> None:
    verifier = TextVerifier(VerifierConfig())
    coupon = _coupon(panel)

    page = verifier.features(coupon)
    read = verifier.features(coupon, panel_read=PanelRead(6))

    assert page.read_characters == 0
    assert read.confident_characters >= 6
    assert read == verifier.flattened_features(coupon)
    # Asked for more confident characters than it reads, the page's reading stands.
    assert verifier.features(coupon, panel_read=PanelRead(100)) == page


def test_the_flattened_ground_is_even_and_keeps_the_strokes() -> None:
    coupon = _coupon((170, 150, 40))
    flat = flatten_ground(coupon)
    assert flat.mode == "L" and flat.size == coupon.size
    levels = np.asarray(flat, dtype=np.int64)
    before = np.asarray(coupon.convert("L"), dtype=np.int64)
    ground, inside_panel = (20, 20), (250, 100)  # (row, column): the light ground, the panel between lines
    assert abs(before[ground] - before[inside_panel]) > 80  # a mid-tone panel on a light ground
    assert abs(levels[ground] - levels[inside_panel]) < 20  # its tone is gone
    assert levels.min() < 120  # the strokes are not


def _features(characters: int, confident: int) -> TextFeatures:
    return TextFeatures(characters, characters, characters, 0.1, 1, 0.1, 0.5, confident)


def test_the_flattened_reading_counts_only_where_the_page_read_nothing_and_it_reads_enough() -> None:
    panel = PanelRead(min_confident=6)
    nothing, something = _features(0, 0), _features(3, 3)
    assert panel.better(nothing, _features(20, 6)) == _features(20, 6)
    assert panel.better(nothing, _features(20, 5)) == nothing
    assert panel.better(something, _features(40, 40)) == something
    assert panel.better(nothing.as_dict(), _features(20, 9).as_dict()) == _features(20, 9).as_dict()
    assert PanelRead.from_json(panel.to_json()) == panel
    with pytest.raises(ValueError, match="min_confident"):
        PanelRead(-1)


def test_the_bound_lets_through_at_most_the_share_of_photos() -> None:
    # 200 photos read flattened: 190 read no confident character, ten read 1-10.
    photos = [0] * 190 + list(range(1, 11))
    assert panel_bound(photos, share=0.01) == 9  # 2 photos (9, 10) of 200 reach it
    assert panel_bound(photos, share=0.0) == 11  # none reaches it
    assert panel_bound([], share=0.01) == 1
