"""One sample of each non-card kind, drawn from the photo files of one split role.

Kinds of "other" (non-announcement) pictures:
- `photo`: a random crop of a scene photograph (any scale, any of the card aspect ratios);
- `product`: an object on a light studio background (a cut-out photo, or a soft-masked region of
  a scene photo);
- `printed`: a product or T-shirt with a small printed word or logo.

`soft_scene` (training negatives only) adds the smooth end of the photo range: wide, often
defocused views of a scene and sky-like colour gradients, the kind of picture a wallpaper or a
landscape upload is and which carries no text.

`structured_scene` (training negatives only) adds the other end: text-free pictures with a regular
rhythm (sets of items in rows, fences and slats; see `model.data.structured`), which a detector of
rows of text ranks highest among real photographs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from model.data import drawing, photos, products, structured
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
    arrangement: str = ""  # "item_set" or "slats" for the structured training negatives


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


def _sky(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    # A vertical two-colour gradient (sky to horizon, or dusk) with faint grain, text-free.
    w, h = size
    top = np.array(drawing.hsv(rng.uniform(0.5, 0.7), rng.uniform(0.2, 0.8), rng.uniform(0.5, 1.0)))
    low_hue = rng.uniform(0.0, 0.15) if rng.random() < 0.4 else rng.uniform(0.45, 0.65)
    low = np.array(drawing.hsv(low_hue, rng.uniform(0.1, 0.6), rng.uniform(0.6, 1.0)))
    t = np.linspace(0.0, 1.0, h, dtype=np.float32) ** rng.uniform(0.5, 2.0)
    arr = top[None, None, :] * (1 - t[:, None, None]) + low[None, None, :] * t[:, None, None]
    arr = np.broadcast_to(arr, (h, w, 3)) + rng.normal(0.0, rng.uniform(0.5, 4.0), (h, w, 3))
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")


def soft_scene(rng: np.random.Generator, files: RoleFiles, long_side: int) -> OtherSample:
    """A smooth, text-free picture: a wide (often defocused) view of a scene photo, or a sky.

    Wallpaper-like photographs (wide landscapes, soft focus, large smooth areas) are the non-card
    pictures a model trained on detailed crops most often mistakes for plain card backgrounds;
    these negatives cover that end of the range from the role's own files.
    """
    size = output_size(rng, long_side)
    if rng.random() < 0.25:
        sky = _sky(rng, size)
        return OtherSample(sky, OtherKind.PHOTO, "synthetic-sky", "")
    name, path = _pick(rng, files.files(photos.PhotoKind.SCENE))
    img = photos.random_crop(photos.load(path), rng, size, min_scale=0.6).convert("RGB")
    if rng.random() < 0.6:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(1.0, 6.0)))
    return OtherSample(img, OtherKind.PHOTO, name, photos.photo_id(photos.source(name), path))


def structured_scene(rng: np.random.Generator, files: RoleFiles, long_side: int) -> OtherSample:
    """A text-free picture with a regular rhythm: a set of items in a grid, or a slatted surface."""
    size = output_size(rng, long_side)
    name, path = _pick(rng, files.files(photos.PhotoKind.SCENE))
    scene = photos.load(path)
    file = photos.photo_id(photos.source(name), path)
    if rng.random() < 0.55:
        objects = [_object(rng, files)[0] for _ in range(1 if rng.random() < 0.6 else 3)]
        image = structured.item_set(rng, size, objects, scene)
        return OtherSample(image, OtherKind.PRODUCT, name, file, arrangement="item_set")
    image = structured.slats(rng, size, scene)
    return OtherSample(image, OtherKind.PHOTO, name, file, arrangement="slats")
