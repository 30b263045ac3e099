"""Card rendering: deterministic, right size and mode, every layout drawable, ink on the card."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from model.data.cards import ASPECTS, CardGenerator
from model.data.dataset_errors import UnknownLayout
from model.data.fonts import Family
from model.data.layouts import LAYOUTS


def _fake_photos(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr, "RGB")


@pytest.mark.parametrize("family", list(Family))
def test_same_seed_same_card_different_seed_different_card(family: Family) -> None:
    gen = CardGenerator(family, _fake_photos)
    a, info_a = gen.render(123)
    b, info_b = gen.render(123)
    c, _ = gen.render(124)
    assert info_a == info_b
    assert a.tobytes() == b.tobytes()
    assert a.size != c.size or a.tobytes() != c.tobytes()


@pytest.mark.parametrize("family", list(Family))
def test_size_mode_and_aspect(family: Family) -> None:
    gen = CardGenerator(family, size=200)
    ratios = {round(w / h, 2) for w, h in ASPECTS}
    for seed in range(6):
        img, info = gen.render(seed)
        assert img.mode == "RGB"
        assert max(img.size) == 200
        assert (info.width, info.height) == img.size
        assert round(img.width / img.height, 2) in ratios or abs(img.width / img.height - 16 / 9) < 0.02


@pytest.mark.parametrize(
    ("family", "layout"), [(fam, name) for fam in Family for name in sorted(LAYOUTS[fam])]
)
def test_every_layout_draws_text(family: Family, layout: str) -> None:
    # Flat "photos" so that every strong edge in the card comes from drawn text and lines.
    gen = CardGenerator(family, lambda rng, size: Image.new("RGB", size, (120, 130, 140)))
    img, info = gen.render(7, layout=layout)
    assert info.layout == layout
    assert info.family == family.value
    # Text leaves many strong edges; a blank background would not.
    gray = np.asarray(img.convert("L"), np.float32)
    edges = np.abs(np.diff(gray, axis=1)) > 30
    assert edges.mean() > 0.01


def test_unknown_layout_is_refused() -> None:
    with pytest.raises(UnknownLayout):
        CardGenerator(Family.TRAIN).render(0, layout="vertical_ja")  # a held-out layout


def test_cards_use_only_their_family_fonts() -> None:
    train_names = {f.spec.name for f in CardGenerator(Family.TRAIN).fonts}
    gen = CardGenerator(Family.HELDOUT)
    for seed in range(20):
        _, info = gen.render(seed)
        assert info.title_font not in train_names
        assert info.body_font not in train_names


def test_darker_backgrounds_change_nothing_when_off_and_darken_light_ones_when_on() -> None:
    import numpy as np

    from model.data import drawing

    def draw(darker: float) -> list[str]:
        rng = np.random.default_rng(11)
        return [drawing.background((32, 32), rng, None, darker=darker)[2] for _ in range(200)]

    plain = draw(0.0)
    rng = np.random.default_rng(11)
    assert plain == [drawing.background((32, 32), rng, None)[2] for _ in range(200)]  # same draws
    all_dark = draw(1.0)
    assert "flat_light" in plain and "flat_light" not in all_dark
    assert all_dark.count("flat_dark") > plain.count("flat_dark")


def test_a_one_line_card_is_one_short_line_on_a_plain_ground() -> None:
    # Named-only: drawn in the CHECK family's fonts when a folder asks for it, never by the random draw.
    gen = CardGenerator(Family.CHECK, _fake_photos)
    for seed in range(8):
        img, info = gen.render(seed, layout="one_line")
        assert (info.layout, info.background, info.frame) == ("one_line", "plain", "none")
        gray = np.asarray(img.convert("L"), dtype=np.int16)
        ground = int(np.median(gray))
        ink = np.abs(gray - ground) > 40
        assert 0.005 < ink.mean() < 0.25, seed  # text is there, and the rest is empty
        rows = np.flatnonzero(ink.any(axis=1))
        # One line: the ink sits in one band no taller than a quarter of the card (plus blur / JPEG slack).
        assert rows[-1] - rows[0] <= img.height * 0.27, seed
    assert "one_line" not in {name for family in LAYOUTS.values() for name in family}


def test_a_photographed_card_is_a_scene_of_the_asked_size_with_the_card_in_it() -> None:
    from model.data.photographed import photograph

    def night(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
        return Image.new("RGB", size, (0, 0, 0))

    white_card = Image.new("RGB", (200, 150), (255, 255, 255))
    a = photograph(white_card, np.random.default_rng(7), night, 256)
    b = photograph(white_card, np.random.default_rng(7), night, 256)

    assert max(a.size) == 256 and a.mode == "RGB"
    assert a.tobytes() == b.tobytes()  # same generator, same picture
    lit = np.asarray(a.convert("L")) > 100  # the card, dimmed by the uneven light, on a black scene
    assert 0.1 < lit.mean() < 0.7
