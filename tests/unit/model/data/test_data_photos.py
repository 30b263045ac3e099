"""Photo sources, crops, product shots and printed words."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from model.data import photos, products, splits
from model.data.dataset_errors import PhotoSourceMissing
from model.data.fonts import Family, resolve_family
from model.data.phrases import PRINTED_WORDS


def test_every_source_is_installed_and_nonempty() -> None:
    for name in photos.ALL_SOURCES:
        src = photos.source(name)
        assert src.files, name
        assert all(p.is_file() for p in src.files)


def test_skimage_source_uses_only_files_shipped_in_the_wheel() -> None:
    src = photos.source("skimage")
    assert all(p.parent.name == "data" and p.parent.parent.name == "skimage" for p in src.files)
    # Text images shipped by scikit-image must not be used as non-text negatives.
    assert not {"text.png", "page.png"} & {p.name for p in src.files}


def test_unknown_source_raises() -> None:
    with pytest.raises(PhotoSourceMissing):
        photos.source("no-such-source")


def test_cutouts_have_alpha() -> None:
    src = photos.source("tuxpaint-goods")
    img = photos.load(src.files[0])
    assert img.mode == "RGBA"


def test_random_crop_size_and_determinism() -> None:
    photo = photos.load(photos.source("skimage").files[0]).convert("RGB")
    a = photos.random_crop(photo, np.random.default_rng(3), (160, 90))
    b = photos.random_crop(photo, np.random.default_rng(3), (160, 90))
    assert a.size == (160, 90)
    assert a.tobytes() == b.tobytes()


def test_role_sources_respect_the_split_rules() -> None:
    train = splits.role_files(splits.Role.TRAIN)
    val = splits.role_files(splits.Role.VAL)
    calib = splits.role_files(splits.Role.CALIB)
    evaluation = splits.role_files(splits.Role.EVAL)
    eval_sources = set(evaluation.sources())
    for other in (train, val, calib):
        assert not set(other.sources()) & eval_sources
    # Training sources are shared by file only, never the same file in two roles.
    files = [{p for _, p in role.files()} for role in (train, val, calib, evaluation)]
    for i in range(len(files)):
        for j in range(i + 1, len(files)):
            assert not files[i] & files[j]
    assert set(val.sources()) <= set(splits.TRAIN_SOURCES)
    assert set(calib.sources()) >= set(splits.CALIB_ONLY_SOURCES)


def test_product_shot_is_light_around_the_object() -> None:
    rng = np.random.default_rng(0)
    obj = photos.load(photos.source("tuxpaint-goods").files[0])
    img, _box, mask = products.product_shot(obj, rng, (256, 192))
    assert img.size == (256, 192)
    assert mask.size == img.size
    background = np.asarray(img.convert("L"))[np.asarray(mask) == 0]
    assert np.median(background) > 150


def test_printed_word_is_small_and_stays_on_the_object() -> None:
    fonts = resolve_family(Family.TRAIN)
    for seed in range(5):
        rng = np.random.default_rng(seed)
        base, box, mask = products.tshirt(rng, (256, 256))
        out, word, area = products.printed_word(
            base, box, rng, fonts=fonts, words=PRINTED_WORDS[Family.TRAIN], mask=mask
        )
        assert word in PRINTED_WORDS[Family.TRAIN]
        assert 0.0 < area <= 0.1
        changed = np.any(np.asarray(out) != np.asarray(base), axis=2)
        assert changed.any()
        assert not (changed & (np.asarray(mask) == 0)).any()


def test_crop_provider_returns_rgb_of_requested_size() -> None:
    provide = photos.crop_provider(photos.source("tuxpaint-food").files)
    img = provide(np.random.default_rng(1), (64, 48))
    assert isinstance(img, Image.Image)
    assert img.mode == "RGB"
    assert img.size == (64, 48)
