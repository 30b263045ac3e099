"""Demo images for the worker demo."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from model.data.demo_images import write_demo_images


def test_writes_cards_then_photos(tmp_path: Path) -> None:
    paths = write_demo_images(tmp_path, 2, 3, seed=1)
    assert len(paths) == 5
    assert all(p.name.startswith("card-") for p in paths[:2])
    assert not any(p.name.startswith("card-") for p in paths[2:])
    for p in paths:
        with Image.open(p) as im:
            assert im.mode == "RGB"
    again = write_demo_images(tmp_path / "again", 2, 3, seed=1)
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]
