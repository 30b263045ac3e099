"""Drawing helpers for cards: colours, backgrounds, frames, icons and fitted text.

All randomness comes from a caller's `numpy.random.Generator`, so a card is a pure function of its
seed. Coordinates are in pixels of the render canvas (cards are drawn large, then downscaled).
"""

from __future__ import annotations

import colorsys
import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

RGB = tuple[int, int, int]
PhotoProvider = Callable[[np.random.Generator, tuple[int, int]], Image.Image]
"""Returns a real photograph crop of the requested (width, height)."""


@functools.lru_cache(maxsize=512)
def font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    """A cached FreeType font of `path` at `size` pixels."""
    return ImageFont.truetype(str(path), size=max(4, int(size)))


def luminance(color: RGB) -> float:
    """Relative luminance in [0, 1] (Rec. 709 weights on gamma-encoded values, good enough here)."""
    r, g, b = color
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255.0


def hsv(h: float, s: float, v: float) -> RGB:
    """An RGB colour from hue, saturation and value in [0, 1]."""
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return (round(r * 255), round(g * 255), round(b * 255))


def light_color(rng: np.random.Generator) -> RGB:
    """A light background colour: white, off-white, cream or pastel."""
    kind = rng.random()
    if kind < 0.35:
        return (255, 255, 255)
    if kind < 0.7:
        return hsv(rng.random(), rng.uniform(0.02, 0.12), rng.uniform(0.93, 1.0))
    return hsv(rng.random(), rng.uniform(0.12, 0.35), rng.uniform(0.88, 1.0))


def dark_color(rng: np.random.Generator) -> RGB:
    """A dark background colour: black, navy, deep green, burgundy, charcoal."""
    return hsv(rng.random(), rng.uniform(0.0, 0.8), rng.uniform(0.08, 0.35))


def accent_color(rng: np.random.Generator) -> RGB:
    """A saturated accent colour for titles, bands and icons."""
    return hsv(rng.random(), rng.uniform(0.55, 0.95), rng.uniform(0.55, 0.95))


def text_color_for(bg: RGB, rng: np.random.Generator) -> RGB:
    """A readable text colour on `bg`: dark on light backgrounds, light on dark ones."""
    if luminance(bg) > 0.55:
        return hsv(rng.random(), rng.uniform(0.0, 0.6), rng.uniform(0.0, 0.3))
    return hsv(rng.random(), rng.uniform(0.0, 0.15), rng.uniform(0.9, 1.0))


def mean_color(image: Image.Image) -> RGB:
    """The mean colour of an RGB image."""
    arr = np.asarray(image.convert("RGB").resize((16, 16)), dtype=np.float32)
    r, g, b = arr.reshape(-1, 3).mean(axis=0)
    return (int(r), int(g), int(b))


def _gradient(size: tuple[int, int], c0: RGB, c1: RGB, rng: np.random.Generator) -> Image.Image:
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if rng.random() < 0.7:
        angle = rng.uniform(0, np.pi)
        t = xx * np.cos(angle) + yy * np.sin(angle)
    else:  # radial
        cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
        t = np.hypot(xx - cx, yy - cy)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    a = np.array(c0, np.float32)
    b = np.array(c1, np.float32)
    arr = a[None, None, :] * (1 - t[..., None]) + b[None, None, :] * t[..., None]
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")


def _paper(size: tuple[int, int], base: RGB, rng: np.random.Generator) -> Image.Image:
    """Paper / fabric-like texture: multi-scale smooth noise plus fine grain and faint fibres."""
    w, h = size
    field = np.zeros((h, w), np.float32)
    for cells, amp in ((4, 10.0), (16, 6.0), (64, 3.0)):
        small = rng.normal(0, 1, (cells, cells)).astype(np.float32)
        img = Image.fromarray(((small - small.min()) / (np.ptp(small) + 1e-6) * 255).astype(np.uint8))
        field += (np.asarray(img.resize((w, h), Image.Resampling.BICUBIC), np.float32) / 255 - 0.5) * amp
    field += rng.normal(0, rng.uniform(1.0, 5.0), (h, w)).astype(np.float32)
    arr = np.array(base, np.float32)[None, None, :] + field[..., None]
    out = Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(out)
    for _ in range(int(rng.integers(0, 60))):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        dx, dy = rng.normal(0, 12, 2)
        shade = int(rng.integers(-25, 10))
        c = tuple(int(np.clip(v + shade, 0, 255)) for v in base)
        draw.line([(x, y), (x + dx, y + dy)], fill=c, width=1)
    return out


def _pattern(size: tuple[int, int], base: RGB, rng: np.random.Generator) -> Image.Image:
    """Dots, stripes or a check, faint enough to stay behind text."""
    w, h = size
    out = Image.new("RGB", size, base)
    draw = ImageDraw.Draw(out)
    shift = int(rng.integers(10, 28)) * (-1 if luminance(base) > 0.5 else 1)
    ink = tuple(int(np.clip(v + shift, 0, 255)) for v in base)
    step = int(rng.integers(18, 60))
    kind = rng.integers(0, 3)
    if kind == 0:
        r = max(2, step // int(rng.integers(4, 9)))
        for y in range(0, h + step, step):
            for x in range((y // step % 2) * step // 2, w + step, step):
                draw.ellipse([x - r, y - r, x + r, y + r], fill=ink)
    elif kind == 1:
        width = max(2, step // 3)
        for x in range(-h, w + h, step):
            draw.line([(x, 0), (x + h, h)], fill=ink, width=width)
    else:
        for y in range(0, h, step):
            for x in range((y // step % 2) * step, w, 2 * step):
                draw.rectangle([x, y, x + step, y + step], fill=ink)
    return out


def background(
    size: tuple[int, int], rng: np.random.Generator, photos: PhotoProvider | None, *, darker: float = 0.0
) -> tuple[Image.Image, RGB, str]:
    """Draw a card background.

    Args:
        size: (width, height).
        rng: the card's random generator.
        photos: source of photo backgrounds, or None.
        darker: share of the flat light backgrounds drawn dark instead (light text on a dark card).
            0 draws exactly what earlier versions drew, with the same random numbers.

    Returns:
        The background image, the colour text will mostly sit on, and the style name.
    """
    roll = rng.random()
    if photos is not None and roll < 0.12:
        photo = photos(rng, size).convert("RGB")
        if rng.random() < 0.5:
            photo = photo.filter(ImageFilter.GaussianBlur(rng.uniform(2, 8)))
        return photo, mean_color(photo), "photo"
    if roll < 0.45:
        if darker and rng.random() < darker:
            c = dark_color(rng)
            return Image.new("RGB", size, c), c, "flat_dark"
        c = light_color(rng)
        return Image.new("RGB", size, c), c, "flat_light"
    if roll < 0.57:
        c = dark_color(rng)
        return Image.new("RGB", size, c), c, "flat_dark"
    if roll < 0.72:
        c0 = light_color(rng) if rng.random() < 0.7 else accent_color(rng)
        c1 = light_color(rng) if rng.random() < 0.5 else accent_color(rng)
        img = _gradient(size, c0, c1, rng)
        return img, mean_color(img), "gradient"
    if roll < 0.87:
        base = light_color(rng) if rng.random() < 0.8 else dark_color(rng)
        img = _paper(size, base, rng)
        return img, base, "paper"
    base = light_color(rng) if rng.random() < 0.75 else dark_color(rng)
    return _pattern(size, base, rng), base, "pattern"


def panel(canvas: Image.Image, box: tuple[int, int, int, int], color: RGB, alpha: int, radius: int) -> None:
    """Composite a translucent rounded panel onto `canvas` in place (text sits on it)."""
    layer = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).rounded_rectangle(box, radius=radius, fill=(*color, alpha))
    canvas.paste(Image.alpha_composite(canvas.convert("RGBA"), layer).convert("RGB"))


def frame(draw: ImageDraw.ImageDraw, size: tuple[int, int], color: RGB, rng: np.random.Generator) -> str:
    """Draw a border or frame in place; returns its style name ("none" when skipped)."""
    w, h = size
    roll = rng.random()
    m = int(min(w, h) * rng.uniform(0.025, 0.06))
    lw = int(rng.integers(2, 9))
    if roll < 0.35:
        return "none"
    if roll < 0.55:
        draw.rectangle([m, m, w - m, h - m], outline=color, width=lw)
        return "single"
    if roll < 0.7:
        draw.rectangle([m, m, w - m, h - m], outline=color, width=lw)
        g = m + lw + int(rng.integers(4, 12))
        draw.rectangle([g, g, w - g, h - g], outline=color, width=max(1, lw // 2))
        return "double"
    if roll < 0.85:
        draw.rounded_rectangle([m, m, w - m, h - m], radius=int(min(w, h) * 0.06), outline=color, width=lw)
        return "rounded"
    dash = int(rng.integers(10, 30))
    for x in range(m, w - m, dash * 2):
        draw.line([(x, m), (min(x + dash, w - m), m)], fill=color, width=lw)
        draw.line([(x, h - m), (min(x + dash, w - m), h - m)], fill=color, width=lw)
    for y in range(m, h - m, dash * 2):
        draw.line([(m, y), (m, min(y + dash, h - m))], fill=color, width=lw)
        draw.line([(w - m, y), (w - m, min(y + dash, h - m))], fill=color, width=lw)
    return "dashed"


def icon(draw: ImageDraw.ImageDraw, center: tuple[float, float], r: float, color: RGB, kind: int) -> None:
    """Draw a simple pictogram (warning, truck, calendar, star, heart, clock, box) in place."""
    cx, cy = center
    lw = max(2, int(r / 8))
    k = kind % 7
    if k == 0:  # warning triangle with "!"
        draw.polygon([(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)], outline=color, width=lw)
        draw.line([(cx, cy - r * 0.4), (cx, cy + r * 0.3)], fill=color, width=lw)
        draw.ellipse([cx - lw, cy + r * 0.5 - lw, cx + lw, cy + r * 0.5 + lw], fill=color)
    elif k == 1:  # delivery truck
        draw.rectangle([cx - r, cy - r * 0.5, cx + r * 0.2, cy + r * 0.4], fill=color)
        draw.polygon(
            [
                (cx + r * 0.25, cy - r * 0.2),
                (cx + r * 0.7, cy - r * 0.2),
                (cx + r, cy + r * 0.1),
                (cx + r, cy + r * 0.4),
                (cx + r * 0.25, cy + r * 0.4),
            ],
            fill=color,
        )
        for wx in (cx - r * 0.6, cx + r * 0.6):
            draw.ellipse([wx - r * 0.22, cy + r * 0.3, wx + r * 0.22, cy + r * 0.74], fill=color)
    elif k == 2:  # calendar
        draw.rectangle([cx - r, cy - r * 0.8, cx + r, cy + r], outline=color, width=lw)
        draw.rectangle([cx - r, cy - r * 0.8, cx + r, cy - r * 0.4], fill=color)
        for i in range(3):
            for j in range(3):
                x = cx - r * 0.6 + i * r * 0.6
                y = cy - r * 0.1 + j * r * 0.35
                draw.rectangle([x - r * 0.1, y - r * 0.08, x + r * 0.1, y + r * 0.08], fill=color)
    elif k == 3:  # star
        pts = []
        for i in range(10):
            a = -np.pi / 2 + i * np.pi / 5
            rr = r if i % 2 == 0 else r * 0.45
            pts.append((cx + rr * np.cos(a), cy + rr * np.sin(a)))
        draw.polygon(pts, fill=color)
    elif k == 4:  # heart
        draw.ellipse([cx - r, cy - r * 0.7, cx, cy + r * 0.2], fill=color)
        draw.ellipse([cx, cy - r * 0.7, cx + r, cy + r * 0.2], fill=color)
        draw.polygon([(cx - r * 0.97, cy - r * 0.1), (cx + r * 0.97, cy - r * 0.1), (cx, cy + r)], fill=color)
    elif k == 5:  # clock
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=color, width=lw)
        draw.line([(cx, cy), (cx, cy - r * 0.7)], fill=color, width=lw)
        draw.line([(cx, cy), (cx + r * 0.5, cy + r * 0.1)], fill=color, width=lw)
    else:  # parcel box
        draw.rectangle([cx - r, cy - r * 0.7, cx + r, cy + r * 0.8], outline=color, width=lw)
        draw.line([(cx - r, cy - r * 0.2), (cx + r, cy - r * 0.2)], fill=color, width=lw)
        draw.line([(cx, cy - r * 0.7), (cx, cy + r * 0.8)], fill=color, width=lw)


def fit_font(path: Path, text: str, max_w: float, max_h: float, start: int) -> ImageFont.FreeTypeFont:
    """The largest font of `path` not above `start` px whose rendering of `text` fits the box."""
    lo, hi = 6, max(7, int(start))
    best = font(path, lo)
    while lo <= hi:
        mid = (lo + hi) // 2
        f = font(path, mid)
        left, top, right, bottom = f.getbbox(text)
        if right - left <= max_w and bottom - top <= max_h:
            best, lo = f, mid + 1
        else:
            hi = mid - 1
    return best


def text_width(f: ImageFont.FreeTypeFont, text: str) -> float:
    """Advance width of `text` in `f`."""
    return float(f.getlength(text))


def wrap(text: str, f: ImageFont.FreeTypeFont, max_w: float) -> list[str]:
    """Wrap `text` to lines no wider than `max_w`: by words for Latin, by characters otherwise."""
    if text_width(f, text) <= max_w:
        return [text]
    by_words = " " in text and all(ord(c) < 0x2E80 for c in text)
    units = text.split(" ") if by_words else list(text)
    sep = " " if by_words else ""
    lines: list[str] = []
    cur = ""
    for unit in units:
        cand = f"{cur}{sep}{unit}" if cur else unit
        if text_width(f, cand) <= max_w or not cur:
            cur = cand
        else:
            lines.append(cur)
            cur = unit
    if cur:
        lines.append(cur)
    return lines
