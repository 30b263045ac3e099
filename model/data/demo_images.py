"""A handful of demo images (some cards, some photos) for trying the worker end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.data import cards, photos, samples, splits
from model.data.fonts import Family


def write_demo_images(out_dir: str | Path, n_cards: int, n_photos: int, seed: int) -> list[Path]:
    """Write `n_cards` announcement cards and `n_photos` product/photo pictures as JPEG files.

    Cards are of the HELD-OUT family and photos of the evaluation-only sources, so a demo shows
    the model pictures it was not trained on. File names start with `card-` or the photo kind
    (`photo-`, `product-`, `printed-`).

    Args:
        out_dir: folder to write into (created).
        n_cards: number of cards.
        n_photos: number of non-card pictures.
        seed: the same seed writes the same images.

    Returns:
        The written paths, cards first.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = np.random.SeedSequence(seed)
    card_seeds, photo_seeds = root.spawn(2)
    written: list[Path] = []
    files = splits.role_files(splits.Role.EVAL)
    scenes = [path for _, path in files.files(photos.PhotoKind.SCENE)]
    generator = cards.CardGenerator(Family.HELDOUT, photos.crop_provider(scenes))
    for i, child in enumerate(card_seeds.spawn(n_cards)):
        image, info = generator.render(np.random.default_rng(child))
        path = out / f"card-{info.layout}-{i:03d}.jpg"
        image.save(path, "JPEG", quality=90)
        written.append(path)
    for i, child in enumerate(photo_seeds.spawn(n_photos)):
        sample = samples.other(np.random.default_rng(child), files, Family.HELDOUT, 256, (0.4, 0.4, 0.2))
        path = out / f"{sample.kind.value}-{sample.source}-{i:03d}.jpg"
        sample.image.save(path, "JPEG", quality=90)
        written.append(path)
    return written
