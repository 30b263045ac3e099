"""Marketplace-style product pictures: the likeliest false positives of a text-card detector.

- `product_shot`: an object (a cut-out photo, or a soft-masked region of a scene photo) on a
  white or light studio background with a soft shadow, as shops photograph their goods.
- `tshirt`: a plain T-shirt with fabric texture and folds, the canvas for printed words.
- `printed_word`: a SMALL word or logo printed on a product (a T-shirt slogan, a bottle label),
  perspective-warped and shaded by the surface underneath: a photo that contains text but is not
  an announcement card.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from model.data import drawing
from model.data.drawing import RGB
from model.data.fonts import ResolvedFont

Box = tuple[int, int, int, int]


def studio_background(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A white, grey, warm or softly lit light background."""
    roll = rng.random()
    if roll < 0.45:
        v = int(rng.integers(242, 256))
        return Image.new("RGB", size, (v, v, v))
    if roll < 0.65:
        v = int(rng.integers(215, 245))
        return Image.new("RGB", size, (v, v, v))
    if roll < 0.8:
        return Image.new("RGB", size, drawing.light_color(rng))
    # sweep: lighter at the top, as with a paper backdrop under a softbox
    w, h = size
    top = np.array(drawing.light_color(rng), np.float32)
    bottom = top * rng.uniform(0.8, 0.95)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    arr = np.broadcast_to(top * (1 - t) + bottom * t, (h, w, 3))
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")


def object_from_scene(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Cut a region of a scene photo into an RGBA object with a soft rounded or oval mask."""
    w, h = photo.size
    side = min(w, h) * rng.uniform(0.3, 0.8)
    aspect = rng.uniform(0.6, 1.6)
    cw, ch = min(w, side * aspect), min(h, side / aspect)
    x, y = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
    region = photo.convert("RGB").crop((int(x), int(y), int(x + cw), int(y + ch)))
    mask = Image.new("L", region.size, 0)
    draw = ImageDraw.Draw(mask)
    if rng.random() < 0.5:
        draw.ellipse([0, 0, region.width - 1, region.height - 1], fill=255)
    else:  # a box-like item: a print, a framed picture, a packaged good
        draw.rounded_rectangle(
            [0, 0, region.width - 1, region.height - 1],
            radius=int(min(region.size) * rng.uniform(0.0, 0.15)),
            fill=255,
        )
    mask = mask.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.5)))
    obj = region.convert("RGBA")
    obj.putalpha(mask)
    return obj


def drop_shadow(
    canvas: Image.Image, alpha: Image.Image, pos: tuple[int, int], rng: np.random.Generator
) -> None:
    """Soft drop shadow of an object's alpha, composited onto `canvas` in place."""
    strength = rng.uniform(0.15, 0.45)
    blur = max(2.0, min(alpha.size) * rng.uniform(0.03, 0.08))
    dx = int(alpha.width * rng.uniform(-0.04, 0.06))
    dy = int(alpha.height * rng.uniform(0.02, 0.08))
    pad = int(blur * 3)
    shadow = Image.new("L", (alpha.width + 2 * pad, alpha.height + 2 * pad), 0)
    shadow.paste(alpha.point(lambda v: int(v * strength)), (pad, pad))
    shadow = shadow.filter(ImageFilter.GaussianBlur(blur))
    dark = Image.new("RGB", shadow.size, (20, 20, 25))
    canvas.paste(dark, (pos[0] - pad + dx, pos[1] - pad + dy), shadow)


def product_shot(
    obj: Image.Image, rng: np.random.Generator, size: tuple[int, int]
) -> tuple[Image.Image, Box, Image.Image]:
    """Place an object on a light studio background with a soft shadow.

    Args:
        obj: RGBA cut-out (RGB images are used whole, as a box-like item).
        rng: the random generator.
        size: output (width, height).

    Returns:
        The RGB picture, the object's bounding box in it, and the object's mask ("L", picture size).
    """
    w, h = size
    canvas = studio_background(size, rng)
    obj = obj.convert("RGBA")
    bbox = obj.getchannel("A").getbbox()
    if bbox:
        obj = obj.crop(bbox)
    fill = rng.uniform(0.45, 0.9)
    scale = fill * min(w / obj.width, h / obj.height)
    obj = obj.resize(
        (max(1, int(obj.width * scale)), max(1, int(obj.height * scale))), Image.Resampling.LANCZOS
    )
    if rng.random() < 0.5:
        obj = ImageOps.mirror(obj)
    x = int((w - obj.width) / 2 + rng.uniform(-0.1, 0.1) * w)
    y = int((h - obj.height) / 2 + rng.uniform(-0.08, 0.1) * h)
    x = int(np.clip(x, 0, max(w - obj.width, 0)))
    y = int(np.clip(y, 0, max(h - obj.height, 0)))
    alpha = obj.getchannel("A")
    drop_shadow(canvas, alpha, (x, y), rng)
    canvas.paste(obj.convert("RGB"), (x, y), alpha)
    mask = Image.new("L", size, 0)
    mask.paste(alpha, (x, y))
    return canvas, (x, y, x + obj.width, y + obj.height), mask


def _fabric(size: tuple[int, int], color: RGB, rng: np.random.Generator) -> Image.Image:
    """Knit-like texture with broad folds: fine grain, weave lines and low-frequency shading."""
    w, h = size
    grain = rng.normal(0, rng.uniform(2, 6), (h, w)).astype(np.float32)
    rows = np.sin(np.arange(h, dtype=np.float32) * rng.uniform(1.5, 3.0))[:, None] * rng.uniform(0.5, 2.5)
    small = rng.normal(0, 1, (5, 5)).astype(np.float32)
    folds_img = Image.fromarray(((small - small.min()) / (np.ptp(small) + 1e-6) * 255).astype(np.uint8))
    folds = np.asarray(folds_img.resize((w, h), Image.Resampling.BICUBIC), np.float32) / 255.0
    shade = 1.0 + (folds - 0.5) * rng.uniform(0.15, 0.4)
    arr = np.array(color, np.float32)[None, None, :] * shade[..., None] + (grain + rows)[..., None]
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")


def tshirt(rng: np.random.Generator, size: tuple[int, int]) -> tuple[Image.Image, Box, Image.Image]:
    """A plain T-shirt laid flat or on a light backdrop.

    Returns:
        The RGB picture, the chest box where a print would go, and the shirt's mask.
    """
    w, h = size
    roll = rng.random()
    if roll < 0.3:
        v = int(rng.integers(235, 256))
        color: RGB = (v, v, v)
    elif roll < 0.5:
        color = drawing.dark_color(rng)
    else:
        color = drawing.hsv(rng.random(), rng.uniform(0.2, 0.8), rng.uniform(0.35, 0.95))
    sw, sh = int(w * rng.uniform(0.7, 0.92)), int(h * rng.uniform(0.7, 0.92))
    # Silhouette in unit coordinates: body, sleeves, neckline.
    pts = [(0.32, 0.0), (0.42, 0.04), (0.58, 0.04), (0.68, 0.0), (1.0, 0.17), (0.9, 0.37), (0.78, 0.31),
           (0.78, 1.0), (0.22, 1.0), (0.22, 0.31), (0.1, 0.37), (0.0, 0.17)]  # fmt: skip
    mask = Image.new("L", (sw, sh), 0)
    ImageDraw.Draw(mask).polygon([(px * sw, py * sh) for px, py in pts], fill=255)
    ImageDraw.Draw(mask).ellipse([0.4 * sw, -0.06 * sh, 0.6 * sw, 0.08 * sh], fill=0)  # neck opening
    mask = mask.filter(ImageFilter.GaussianBlur(1.2))
    shirt = _fabric((sw, sh), color, rng).convert("RGBA")
    shirt.putalpha(mask)
    canvas, (x0, y0, x1, y1), shirt_mask = product_shot(shirt, rng, size)
    bw, bh = x1 - x0, y1 - y0
    # The chest: the middle of the body below the neckline, where prints go.
    chest = (int(x0 + 0.33 * bw), int(y0 + 0.2 * bh), int(x0 + 0.67 * bw), int(y0 + 0.5 * bh))
    return canvas, chest, shirt_mask


def _perspective_coeffs(
    src: Sequence[tuple[float, float]], dst: Sequence[tuple[float, float]]
) -> list[float]:
    """Coefficients for PIL's PERSPECTIVE transform mapping output quad `dst` to input quad `src`."""
    rows = []
    rhs = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs.extend([u, v])
    sol = np.linalg.solve(np.array(rows, np.float64), np.array(rhs, np.float64))
    return [float(c) for c in sol]


def printed_word(
    base: Image.Image,
    region: Box,
    rng: np.random.Generator,
    *,
    fonts: Sequence[ResolvedFont],
    words: Sequence[str],
    mask: Image.Image | None = None,
    max_area: float = 0.08,
) -> tuple[Image.Image, str, float]:
    """Print a small word or logo onto a product picture.

    The word is sized to cover 1-`max_area` of the picture, warped by a mild perspective and
    multiplied by the surface shading, so it reads as ink on the object, not as a card. With a
    `mask` (the object's silhouette) the ink stays on the object.

    Returns:
        The new picture, the printed word, and the fraction of the picture its box covers.
    """
    out = base.convert("RGB")
    w, h = out.size
    word = str(words[int(rng.integers(0, len(words)))])
    usable = [f for f in fonts if f.covers(word)] or list(fonts)
    spec = usable[int(rng.integers(0, len(usable)))]
    target_area = rng.uniform(0.01, max_area) * w * h
    f = drawing.font(spec.path, 100)
    left, top, right, bottom = f.getbbox(word)
    ratio = (right - left) / max(bottom - top, 1)
    text_h = float(np.sqrt(target_area / max(ratio, 0.2)))
    text_w = text_h * ratio
    rx0, ry0, rx1, ry1 = region
    text_w = min(text_w, (rx1 - rx0) * 1.2, w * 0.6)
    text_h = text_w / max(ratio, 0.2)
    size = max(6, int(100 * text_h / max(bottom - top, 1)))
    f = drawing.font(spec.path, size)
    left, top, right, bottom = f.getbbox(word)
    pad = int(size * 0.3)
    layer = Image.new("L", (int(right - left) + 2 * pad, int(bottom - top) + 2 * pad), 0)
    ldraw = ImageDraw.Draw(layer)
    ldraw.text((pad - left, pad - top), word, font=f, fill=255)
    if rng.random() < 0.25:  # a simple logo: the word inside a ring or under a bar
        lw = max(1, size // 12)
        ldraw.rectangle([lw, lw, layer.width - lw, layer.height - lw], outline=255, width=lw)
    lw_, lh_ = layer.size
    jitter = 0.12 * min(lw_, lh_)
    src = [(0, 0), (lw_, 0), (lw_, lh_), (0, lh_)]
    dst = [(px + rng.uniform(-jitter, jitter), py + rng.uniform(-jitter, jitter)) for px, py in src]
    angle = np.deg2rad(rng.uniform(-12, 12))
    c, s = np.cos(angle), np.sin(angle)
    dst = [(px * c - py * s, px * s + py * c) for px, py in dst]
    min_x, min_y = min(p[0] for p in dst), min(p[1] for p in dst)
    dst = [(px - min_x, py - min_y) for px, py in dst]
    out_w = int(max(p[0] for p in dst)) + 1
    out_h = int(max(p[1] for p in dst)) + 1
    warped = layer.transform(
        (out_w, out_h), Image.Transform.PERSPECTIVE, _perspective_coeffs(src, dst), Image.Resampling.BICUBIC
    )
    cx = (rx0 + rx1) / 2 + rng.uniform(-0.15, 0.15) * (rx1 - rx0)
    cy = (ry0 + ry1) / 2 + rng.uniform(-0.15, 0.15) * (ry1 - ry0)
    px, py = int(cx - out_w / 2), int(cy - out_h / 2)
    px = int(np.clip(px, 0, max(w - out_w, 0)))
    py = int(np.clip(py, 0, max(h - out_h, 0)))
    patch = out.crop((px, py, px + out_w, py + out_h))
    surface = np.asarray(patch, np.float32)
    lum = surface.mean(axis=2, keepdims=True)
    shading = lum / max(float(lum.mean()), 1.0)
    bg_lum = float(lum.mean()) / 255.0
    ink_roll = rng.random()
    if ink_roll < 0.4:
        ink = np.array((15, 15, 15) if bg_lum > 0.45 else (240, 240, 240), np.float32)
    else:
        ink = np.array(drawing.accent_color(rng), np.float32)
    inked = (ink[None, None, :] * shading).clip(0, 255)
    opacity = rng.uniform(0.75, 0.97)
    alpha = np.asarray(warped, np.float32)[..., None] / 255.0 * opacity
    alpha = alpha[: surface.shape[0], : surface.shape[1]]
    if mask is not None:
        on_object = np.asarray(mask.crop((px, py, px + out_w, py + out_h)), np.float32)[..., None] / 255.0
        alpha = alpha * on_object[: alpha.shape[0], : alpha.shape[1]]
    mixed = surface * (1 - alpha) + inked[: alpha.shape[0], : alpha.shape[1]] * alpha
    out.paste(Image.fromarray(mixed.astype(np.uint8), "RGB"), (px, py))
    covered = float((alpha[..., 0] > 0.25).sum()) / (w * h)
    return out, word, covered
