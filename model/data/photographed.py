"""A photographed notice: a printed card in a scene, as a shop's phone camera takes it.

Some shops upload a photo of a notice pinned up or held in front of the camera instead of the notice
itself; the team's measurements found such pictures missed by every method (62-73%). `photograph` puts a
rendered card into a photograph: at 45-80% of the scene's short side, tilted in perspective (each corner
moved by up to 12% of the card's size), lit unevenly, then the whole picture blurred and grained a
little, as a camera would.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from model.data.drawing import PhotoProvider

_SCENES = ((640, 480), (480, 640), (640, 640))


def _perspective_coefficients(
    output: list[tuple[float, float]], source: list[tuple[float, float]]
) -> tuple[float, ...]:
    """PIL's PERSPECTIVE coefficients that map each `output` corner back to its `source` corner."""
    rows = []
    for (x, y), (u, v) in zip(output, source, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    target = np.array([coordinate for corner in source for coordinate in corner], dtype=np.float64)
    return tuple(float(c) for c in np.linalg.solve(np.array(rows, dtype=np.float64), target))


def _uneven_light(card: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Brightness falling off across the card in a random direction, and a slight colour cast."""
    w, h = card.size
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w]
    ramp = (np.cos(angle) * xx / max(w, 1) + np.sin(angle) * yy / max(h, 1)).astype(np.float32)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    light = rng.uniform(0.55, 0.85) + ramp * rng.uniform(0.15, 0.4)
    cast = rng.uniform(0.92, 1.05, 3).astype(np.float32)
    pixels = np.asarray(card.convert("RGB"), dtype=np.float32) * light[..., None] * cast
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def photograph(
    card: Image.Image, rng: np.random.Generator, photos: PhotoProvider | None, long_side: int
) -> Image.Image:
    """The card photographed in a scene (a crop of `photos`; grey without), long side `long_side`."""
    width, height = _SCENES[int(rng.integers(0, len(_SCENES)))]
    scene = (
        photos(rng, (width, height)).convert("RGB") if photos else Image.new("RGB", (width, height), "gray")
    )
    scale = rng.uniform(0.45, 0.8) * min(width, height) / max(card.size)
    card_w, card_h = max(8, round(card.width * scale)), max(8, round(card.height * scale))
    card = _uneven_light(card.resize((card_w, card_h), Image.Resampling.LANCZOS), rng)
    left, top = rng.uniform(0, width - card_w), rng.uniform(0, height - card_h)
    jitter = rng.uniform(-0.12, 0.12, (4, 2)) * np.array([card_w, card_h])
    square = [(0.0, 0.0), (card_w, 0.0), (card_w, card_h), (0.0, card_h)]
    placed = [(left + x + dx, top + y + dy) for (x, y), (dx, dy) in zip(square, jitter, strict=True)]
    coefficients = _perspective_coefficients(placed, square)
    warped = card.transform(
        (width, height), Image.Transform.PERSPECTIVE, coefficients, Image.Resampling.BICUBIC
    )
    mask = Image.new("L", card.size, 255).transform(
        (width, height), Image.Transform.PERSPECTIVE, coefficients, Image.Resampling.BICUBIC
    )
    scene.paste(warped, (0, 0), mask)
    scene = scene.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    grain = rng.normal(0, rng.uniform(1.5, 5.0), (height, width, 1)).astype(np.float32)
    scene = Image.fromarray(np.clip(np.asarray(scene, dtype=np.float32) + grain, 0, 255).astype(np.uint8))
    factor = long_side / max(width, height)
    return scene.resize((round(width * factor), round(height * factor)), Image.Resampling.LANCZOS)
