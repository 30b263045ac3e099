"""Contact sheets of a built dataset: a few samples of every folder, labelled, in one PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from model.data.build import PLANS
from model.data.folder import iter_image_files


def contact_sheet(
    root: str | Path, out: str | Path, *, per_folder: int = 12, thumb: int = 128, seed: int = 0
) -> Path:
    """Write a PNG with `per_folder` random thumbnails of each dataset folder, one row block each.

    Args:
        root: a dataset built by `model.data.build.build`.
        out: PNG path to write.
        per_folder: thumbnails per folder.
        thumb: thumbnail cell size in pixels.
        seed: which samples are shown.

    Returns:
        The path written.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    cols = min(per_folder, 12)
    rows_per = -(-per_folder // cols)
    label_h = 18
    folders = [p.folder for p in PLANS if (root / p.folder).is_dir()]
    sheet = Image.new("RGB", (cols * thumb, len(folders) * (rows_per * thumb + label_h)), (90, 90, 90))
    draw = ImageDraw.Draw(sheet)
    y = 0
    for folder in folders:
        files = list(iter_image_files(root / folder))
        draw.text((4, y + 3), f"{folder}  ({len(files)} files)", fill=(255, 255, 255))
        y += label_h
        picks: list[int] = (
            [int(k) for k in rng.choice(len(files), size=min(per_folder, len(files)), replace=False)]
            if files
            else []
        )
        for i, idx in enumerate(sorted(picks)):
            with Image.open(files[idx]) as raw:
                im = raw.convert("RGB")
            im.thumbnail((thumb - 4, thumb - 4))
            x0 = (i % cols) * thumb + (thumb - im.width) // 2
            y0 = y + (i // cols) * thumb + (thumb - im.height) // 2
            sheet.paste(im, (x0, y0))
        y += rows_per * thumb
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
