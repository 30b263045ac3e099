"""Text-free pictures with regular structure: sets of items in rows, and slatted surfaces.

A text card is, at 64 px, a regular pattern: rows or columns of similar marks on a plain ground.
Real photographs with the same rhythm are the non-card pictures a detector trained on cards and
ordinary photos ranks highest: a wooden fence, a tray of coins laid out in a grid, a row of boats
on a shore, the tiles of a roof. Marketplaces carry many of them (a set of coins or buttons, a
shelf of jars, flooring samples). These two generators draw that end of the photo range from a
role's own files, for the training negatives only:

- `item_set`: several items (cut-out photos, or round or box-like regions of scene photos) laid
  out in a jittered grid on a studio backdrop, a dark cloth or a blurred scene;
- `slats`: a scene crop cut into parallel planks or strips (vertical or horizontal) with gaps
  between them, each strip shifted and shaded a little, as fences, shutters, decking and shelf
  boards look.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from model.data import drawing, photos, products


def _backdrop(rng: np.random.Generator, size: tuple[int, int], scene: Image.Image) -> Image.Image:
    """A studio backdrop, a dark cloth, or a blurred view of `scene`, the ground a set is laid on."""
    roll = rng.random()
    if roll < 0.45:
        return products.studio_background(size, rng)
    if roll < 0.7:
        ground = Image.new("RGB", size, drawing.dark_color(rng))
        grain = rng.normal(0.0, rng.uniform(1.0, 5.0), (size[1], size[0], 1))
        arr = np.asarray(ground, np.float32) + grain
        return Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")
    crop = photos.random_crop(scene, rng, size, min_scale=0.3).convert("RGB")
    return crop.filter(ImageFilter.GaussianBlur(rng.uniform(2.0, 8.0)))


def _fit(obj: Image.Image, cell: tuple[float, float], fill: float) -> Image.Image:
    """`obj` (RGBA, trimmed to its alpha) scaled to fill `fill` of a cell, aspect kept."""
    bbox = obj.getchannel("A").getbbox()
    if bbox:
        obj = obj.crop(bbox)
    scale = fill * min(cell[0] / obj.width, cell[1] / obj.height)
    return obj.resize(
        (max(2, int(obj.width * scale)), max(2, int(obj.height * scale))), Image.Resampling.LANCZOS
    )


def item_set(
    rng: np.random.Generator,
    size: tuple[int, int],
    objects: list[Image.Image],
    scene: Image.Image,
) -> Image.Image:
    """Items laid out in a jittered grid: coins on a tray, jars on a shelf, a set of plates.

    Args:
        rng: the random generator.
        size: output (width, height).
        objects: RGBA items to lay out; items are drawn from them with repetition, so one object
            gives a set of identical items and several give a mixed set.
        scene: a scene photo for a blurred backdrop.
    """
    w, h = size
    cols = int(rng.integers(2, 7))
    rows = int(rng.integers(1, 6)) if cols > 2 else int(rng.integers(2, 6))
    margin = rng.uniform(0.02, 0.12)
    cell = (w * (1 - 2 * margin) / cols, h * (1 - 2 * margin) / rows)
    fill = rng.uniform(0.6, 0.95)
    canvas = _backdrop(rng, size, scene)
    shadowed = rng.random() < 0.6
    for r in range(rows):
        for c in range(cols):
            obj = objects[int(rng.integers(0, len(objects)))].convert("RGBA")
            obj = obj.rotate(float(rng.uniform(-12, 12)), expand=True, resample=Image.Resampling.BICUBIC)
            item = _fit(obj, cell, fill * rng.uniform(0.85, 1.0))
            rgb = ImageEnhance.Brightness(item.convert("RGB")).enhance(float(rng.uniform(0.85, 1.15)))
            cx = w * margin + (c + 0.5) * cell[0] + rng.normal(0.0, 0.04) * cell[0]
            cy = h * margin + (r + 0.5) * cell[1] + rng.normal(0.0, 0.04) * cell[1]
            pos = (int(cx - item.width / 2), int(cy - item.height / 2))
            alpha = item.getchannel("A")
            if shadowed:
                products.drop_shadow(canvas, alpha, pos, rng)
            canvas.paste(rgb, pos, alpha)
    if rng.random() < 0.25:  # many such photos are greyscale (coins, archive shots)
        canvas = ImageOps.grayscale(canvas).convert("RGB")
    return canvas


def slats(rng: np.random.Generator, size: tuple[int, int], scene: Image.Image) -> Image.Image:
    """A scene crop cut into parallel strips with gaps: a fence, shutters, decking, shelf boards.

    Args:
        rng: the random generator.
        size: output (width, height).
        scene: the photo the strips are cut from (its texture becomes the planks' surface).
    """
    vertical = rng.random() < 0.6
    # Work as if the strips were vertical; transpose at the end for horizontal ones.
    w, h = size if vertical else (size[1], size[0])
    surface = photos.random_crop(scene, rng, (w, h), min_scale=0.2).convert("RGB")
    if rng.random() < 0.5:  # planks run along the grain: stretch the texture along the strips
        surface = surface.resize((w, max(2, h // 3))).resize((w, h), Image.Resampling.BICUBIC)
    gap_color = drawing.dark_color(rng) if rng.random() < 0.7 else drawing.light_color(rng)
    n = int(rng.integers(3, 13))
    pitch = w / n
    gap = pitch * rng.uniform(0.04, 0.3)
    surf = np.asarray(surface, np.float32)
    out = np.full((h, w, 3), gap_color, np.float32)  # the gaps; planks are painted over it
    for i in range(n):
        x0 = int(i * pitch + gap / 2)
        x1 = int((i + 1) * pitch - gap / 2)
        if x1 <= x0:
            continue
        shift = int(rng.integers(-h // 10, h // 10 + 1))
        strip = np.roll(surf[:, x0:x1], shift, axis=0) * rng.uniform(0.75, 1.2)
        # a rounded edge shade across each plank
        across = np.linspace(-1.0, 1.0, x1 - x0, dtype=np.float32)
        strip *= (1.0 - rng.uniform(0.0, 0.25) * across**2)[None, :, None]
        top = int(rng.uniform(0.0, 0.15) * h) if rng.random() < 0.4 else 0
        out[top:, x0:x1] = strip[top:]
    img = Image.fromarray(out.clip(0, 255).astype(np.uint8), "RGB")
    if not vertical:
        img = img.transpose(Image.Transpose.TRANSPOSE)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    return img
