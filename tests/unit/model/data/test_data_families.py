"""The TRAIN, HELD-OUT and CHECK card families share no font or layout; TRAIN and HELD-OUT no phrase."""

from __future__ import annotations

import itertools

import pytest

from model.data import fonts, layouts, phrases
from model.data.fonts import Family, Script

_PAIRS = list(itertools.combinations(list(Family), 2))


@pytest.mark.parametrize(("one", "other"), _PAIRS)
def test_font_files_and_packages_are_disjoint(one: Family, other: Family) -> None:
    a, b = fonts.FAMILY_FONTS[one], fonts.FAMILY_FONTS[other]
    assert not {f.name for f in a} & {f.name for f in b}
    assert not {f.relpath for f in a} & {f.relpath for f in b}
    # Not even the same package (so no sibling weights of one typeface on both sides).
    assert not {f.package for f in a} & {f.package for f in b}


@pytest.mark.parametrize("family", list(Family))
def test_each_family_has_japanese_and_latin_fonts(family: Family) -> None:
    scripts = [f.spec.script for f in fonts.resolve_family(family)]
    assert scripts.count(Script.JAPANESE) >= 5
    assert scripts.count(Script.LATIN) >= 5


@pytest.mark.parametrize(("one", "other"), _PAIRS)
def test_layouts_are_disjoint(one: Family, other: Family) -> None:
    a, b = layouts.LAYOUTS[one], layouts.LAYOUTS[other]
    assert not set(a) & set(b)
    assert not set(a.values()) & set(b.values())
    assert len(a) >= 4
    assert len(b) >= 4


@pytest.mark.parametrize("family", list(Family))
def test_each_family_has_its_own_vertical_japanese_and_photo_card(family: Family) -> None:
    # Vertical Japanese notices and cards with a product photo are real shop concepts, so both
    # families cover them, each with its own implementation (disjointness is checked above).
    names = set(layouts.LAYOUTS[family])
    assert names & layouts.JAPANESE_ONLY
    photo_layouts = {
        Family.TRAIN: {"photo_banner", "photo_side"},
        Family.HELDOUT: {"split_photo"},
        Family.CHECK: {"caption_strip"},
    }
    assert photo_layouts[family] <= names


def test_vertical_japanese_layouts_are_japanese_only() -> None:
    assert {"vertical_ja", "boxed_vertical", "column_notice"} <= layouts.JAPANESE_ONLY
    every = set().union(*(set(v) for v in layouts.LAYOUTS.values()))
    assert every >= layouts.JAPANESE_ONLY


def test_phrases_are_disjoint_across_families_and_languages() -> None:
    train = set().union(*(bank.all_strings() for bank in phrases.BANKS[Family.TRAIN].values()))
    held = set().union(*(bank.all_strings() for bank in phrases.BANKS[Family.HELDOUT].values()))
    assert train & held == set()
    assert len(train) > 100
    assert len(held) > 100
    assert not set(phrases.PRINTED_WORDS[Family.TRAIN]) & set(phrases.PRINTED_WORDS[Family.HELDOUT])


def test_check_cards_reuse_the_training_words_never_the_held_out_ones() -> None:
    # CHECK steers recipe choices, so nothing of HELD-OUT may leak into it.
    held = set().union(*(bank.all_strings() for bank in phrases.BANKS[Family.HELDOUT].values()))
    check = set().union(*(bank.all_strings() for bank in phrases.BANKS[Family.CHECK].values()))
    assert check and not check & held
    assert phrases.BANKS[Family.CHECK] == phrases.BANKS[Family.TRAIN]


@pytest.mark.parametrize("family", list(Family))
def test_every_japanese_phrase_is_covered_by_some_font_of_its_family(family: Family) -> None:
    # A phrase no font covers would be drawn as tofu boxes.
    ja_fonts = [f for f in fonts.resolve_family(family) if f.spec.script is Script.JAPANESE]
    bank = phrases.BANKS[family]["ja"]
    for text in bank.all_strings():
        assert any(f.covers(text) for f in ja_fonts), text


def test_missing_fonts_name_the_packages(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(fonts, "FONT_ROOTS", (tmp_path,))
    fonts.resolve_family.cache_clear()
    try:
        with pytest.raises(fonts.FontsMissing) as info:
            fonts.resolve_family(Family.HELDOUT)
        assert "fonts-morisawa-bizud-gothic" in str(info.value)
        assert "apt-get install" in str(info.value)
    finally:
        fonts.resolve_family.cache_clear()
