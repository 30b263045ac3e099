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

from collections.abc import Sequence

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


def _wood_color(rng: np.random.Generator) -> tuple[float, float, float]:
    """A board's base colour: brown wood, weathered grey, or painted."""
    roll = rng.random()
    if roll < 0.5:  # oak, pine, walnut: orange-brown hues
        rgb = drawing.hsv(rng.uniform(0.05, 0.11), rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.9))
    elif roll < 0.8:  # weathered boards, outdoor decking: grey with a little warmth
        rgb = drawing.hsv(rng.uniform(0.05, 0.15), rng.uniform(0.0, 0.15), rng.uniform(0.35, 0.85))
    else:  # painted shutters, shelves, fences
        rgb = drawing.hsv(rng.random(), rng.uniform(0.1, 0.6), rng.uniform(0.5, 1.0))
    return (float(rgb[0]), float(rgb[1]), float(rgb[2]))


def _grain(rng: np.random.Generator, length: int, across: int) -> np.ndarray:
    """A (across, length) field of wood grain in about [-1, 1]: streaks along the board, a few knots.

    Grain is noise that changes slowly along the board and quickly across it, which is what makes
    boards read as lines at 64 px; knots are dark rings where the streaks bend.
    """
    coarse = rng.normal(0.0, 1.0, (max(2, across // 2), max(2, length // int(rng.integers(12, 40)))))
    field = np.asarray(
        Image.fromarray(coarse.astype(np.float32), "F").resize((length, across), Image.Resampling.BICUBIC)
    )
    field = field + 0.35 * rng.normal(0.0, 1.0, (across, 1)).astype(np.float32)  # fine streaks
    for _ in range(int(rng.poisson(0.6))):
        cx, cy = rng.uniform(0, length), rng.uniform(0, across)
        r = rng.uniform(0.15, 0.45) * across
        yy, xx = np.mgrid[0:across, 0:length].astype(np.float32)
        d = np.sqrt(((xx - cx) / 2.5) ** 2 + (yy - cy) ** 2) / r
        field -= 1.5 * np.exp(-(d**2)) * (1.0 + 0.5 * np.cos(d * 9.0))
    return np.clip(field / 2.0, -1.0, 1.0)


def planks(
    rng: np.random.Generator, size: tuple[int, int], objects: Sequence[Image.Image] = ()
) -> Image.Image:
    """Wooden boards with grain and seams: decking, a fence, a table top, shelf boards.

    Boards mostly run across the picture, as lines of text do; `slats` cuts its strips from photo
    texture, while these carry wood grain, knots, staggered end joints and nails, the surfaces
    the detector ranked highest among real photographs. With `objects`, items stand on the boards
    (products photographed on a wooden table are common on a marketplace).

    Args:
        rng: the random generator.
        size: output (width, height).
        objects: RGBA cut-outs to place on the boards (none: bare boards).
    """
    horizontal = rng.random() < 0.65
    # Work with boards running along x; transpose at the end for vertical ones.
    w, h = size if horizontal else (size[1], size[0])
    n = int(rng.integers(3, 15))
    edges = np.cumsum(rng.uniform(0.8, 1.2, n))
    edges = np.concatenate([[0.0], edges / edges[-1] * h]).astype(int)
    base = np.array(_wood_color(rng), np.float32)
    contrast = rng.uniform(0.08, 0.35)
    seam = np.array(drawing.dark_color(rng), np.float32) * rng.uniform(0.3, 1.0)
    seam_px = max(1, int(h / n * rng.uniform(0.02, 0.12)))
    out = np.empty((h, w, 3), np.float32)
    for i in range(n):
        y0, y1 = int(edges[i]), int(edges[i + 1])
        if y1 <= y0:
            continue
        tone = base * rng.uniform(0.8, 1.15)
        grain = _grain(rng, w, y1 - y0)
        board = tone[None, None, :] * (1.0 + contrast * grain[:, :, None])
        across = np.linspace(-1.0, 1.0, y1 - y0, dtype=np.float32)
        board *= (1.0 - rng.uniform(0.0, 0.2) * across**2)[:, None, None]
        out[y0:y1] = board
        out[y0 : y0 + seam_px] = seam
        if rng.random() < 0.5:  # an end joint, staggered from board to board
            x = int(rng.uniform(0.15, 0.85) * w)
            out[y0:y1, x : x + seam_px] = seam
        if rng.random() < 0.3:  # nail heads near the joists
            cy = (y0 + y1) // 2
            for nail in np.arange(rng.uniform(0.05, 0.2) * w, w, rng.uniform(0.25, 0.5) * w):
                out[cy - 1 : cy + 2, int(nail) - 1 : int(nail) + 2] = seam
    light = np.linspace(rng.uniform(0.7, 1.1), rng.uniform(0.7, 1.1), w, dtype=np.float32)
    out *= light[None, :, None]
    img = Image.fromarray(out.clip(0, 255).astype(np.uint8), "RGB")
    if not horizontal:
        img = img.transpose(Image.Transpose.TRANSPOSE)
    if rng.random() < 0.3:  # decking or a table seen at an angle: the far end narrower
        sw, sh = img.size
        squeeze = rng.uniform(0.1, 0.35) * sw
        img = img.transform(
            img.size,
            Image.Transform.QUAD,
            (squeeze, 0, 0, sh, sw, sh, sw - squeeze, 0),
            Image.Resampling.BICUBIC,
        )
    for obj in objects:
        _place_on(img, obj, rng)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    return img


def _place_on(canvas: Image.Image, obj: Image.Image, rng: np.random.Generator) -> None:
    """Paste one cut-out onto `canvas` in place, with a shadow, at a random spot and size."""
    w, h = canvas.size
    share = rng.uniform(0.25, 0.6)
    item = _fit(obj.convert("RGBA"), (w * share, h * share), 1.0)
    pos = (int(rng.uniform(0, w - item.width)), int(rng.uniform(0, h - item.height)))
    alpha = item.getchannel("A")
    products.drop_shadow(canvas, alpha, pos, rng)
    canvas.paste(item.convert("RGB"), pos, alpha)
