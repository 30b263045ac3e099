"""`iter_image_files`: recursive, sorted, by extension, skipping hidden entries."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.data.folder import iter_image_files


def test_recursive_sorted_and_filtered(tmp_path: Path) -> None:
    for rel in ["b/2.PNG", "a/1.jpg", "a/z/3.jpeg", "c.webp", "notes.txt", ".hidden/4.jpg", "a/.5.jpg"]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    got = [p.relative_to(tmp_path).as_posix() for p in iter_image_files(tmp_path)]
    assert got == ["a/1.jpg", "a/z/3.jpeg", "b/2.PNG", "c.webp"]


def test_missing_root_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        list(iter_image_files(tmp_path / "nope"))
