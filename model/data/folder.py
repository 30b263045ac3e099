"""Read datasets from folders of image files.

The one function the model code reads image folders through. Its output is sorted and does not
depend on the file system's listing order, so epochs and evaluations are reproducible.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
)


def iter_image_files(root: str | Path) -> Iterator[Path]:
    """Yield every image file below `root`, recursively, in sorted path order.

    Files are recognised by extension (case-insensitive); hidden files and folders (names starting
    with ".") are skipped.

    Raises:
        FileNotFoundError: when `root` is not an existing folder.
    """
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"image folder not found: {base}")
    found = [
        path
        for path in base.rglob("*")
        if path.suffix.lower() in IMAGE_EXTENSIONS
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(base).parts)
    ]
    yield from sorted(found, key=lambda p: p.relative_to(base).as_posix())
