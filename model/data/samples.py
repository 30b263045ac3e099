"""One sample of each non-card kind, drawn from the photo files of one split role.

Kinds of "other" (non-announcement) pictures:
- `photo`: a random crop of a scene photograph (any scale, any of the card aspect ratios);
- `product`: an object on a light studio background (a cut-out photo, or a soft-masked region of
  a scene photo);
- `printed`: a product or T-shirt with a small printed word or logo.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
from PIL import Image

from model.data import photos, products
from model.data.fonts import Family, resolve_family
from model.data.phrases import PRINTED_WORDS
from model.data.splits import RoleFiles

ASPECTS: tuple[tuple[int, int], ...] = ((1, 1), (1, 1), (4, 3), (3, 4), (16, 9))


class OtherKind(StrEnum):
    """Kinds of non-card picture."""

    PHOTO = "photo"
    PRODUCT = "product"
    PRINTED = "printed"


@dataclass(frozen=True)
class OtherSample:
    """A generated non-card picture and where it came from."""

    image: Image.Image
    kind: OtherKind
    source: str
    file: str
    word: str = ""
    text_area: float = 0.0


def output_size(rng: np.random.Generator, long_side: int) -> tuple[int, int]:
    """A (width, height) with the long side `long_side` and a random card-like aspect ratio."""
    aw, ah = ASPECTS[int(rng.integers(0, len(ASPECTS)))]
    if aw >= ah:
        return long_side, round(long_side * ah / aw)
    return round(long_side * aw / ah), long_side


def _pick(rng: np.random.Generator, pairs: Sequence[tuple[str, Path]]) -> tuple[str, Path]:
    # Uniform over files, not over sources: a source of one photograph must not supply a fifth
    # of a split's crops.
    return pairs[int(rng.integers(0, len(pairs)))]


def scene_crop(rng: np.random.Generator, files: RoleFiles, long_side: int) -> OtherSample:
    """A random crop of a scene photograph of the role."""
    name, path = _pick(rng, files.files(photos.PhotoKind.SCENE))
    img = photos.random_crop(photos.load(path), rng, output_size(rng, long_side)).convert("RGB")
    return OtherSample(img, OtherKind.PHOTO, name, photos.photo_id(photos.source(name), path))


def _object(rng: np.random.Generator, files: RoleFiles) -> tuple[Image.Image, str, str]:
    cutouts = files.files(photos.PhotoKind.CUTOUT)
    if cutouts and rng.random() < 0.7:
        name, path = _pick(rng, cutouts)
        return photos.load(path), name, photos.photo_id(photos.source(name), path)
    name, path = _pick(rng, files.files(photos.PhotoKind.SCENE))
    return (
        products.object_from_scene(photos.load(path), rng),
        name,
        photos.photo_id(photos.source(name), path),
    )


def product(rng: np.random.Generator, files: RoleFiles, long_side: int) -> OtherSample:
    """An object of the role's photos on a light studio background."""
    obj, name, fname = _object(rng, files)
    img, _, _ = products.product_shot(obj, rng, output_size(rng, long_side))
    return OtherSample(img, OtherKind.PRODUCT, name, fname)


def printed(rng: np.random.Generator, files: RoleFiles, family: Family, long_side: int) -> OtherSample:
    """A T-shirt or product of the role's photos with a small printed word in `family`'s fonts."""
    size = output_size(rng, long_side)
    fonts = resolve_family(family)
    words = PRINTED_WORDS[family]
    for _ in range(3):
        if rng.random() < 0.5:
            base, box, mask = products.tshirt(rng, size)
            name, fname = "synthetic-tshirt", ""
        else:
            obj, name, fname = _object(rng, files)
            base, box, mask = products.product_shot(obj, rng, size)
        img, word, area = products.printed_word(base, box, rng, fonts=fonts, words=words, mask=mask)
        if area >= 0.004:  # the word must actually be visible on the object
            return OtherSample(img, OtherKind.PRINTED, name, fname, word, area)
    return OtherSample(img, OtherKind.PRINTED, name, fname, word, area)


def other(
    rng: np.random.Generator,
    files: RoleFiles,
    family: Family,
    long_side: int,
    mix: tuple[float, float, float],
) -> OtherSample:
    """One non-card sample; `mix` gives the probabilities of photo, product and printed."""
    roll = rng.random() * sum(mix)
    if roll < mix[0]:
        return scene_crop(rng, files, long_side)
    if roll < mix[0] + mix[1]:
        return product(rng, files, long_side)
    return printed(rng, files, family, long_side)
