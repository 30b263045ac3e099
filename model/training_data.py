"""Image folders for training and calibration: listing, fingerprints, a decoded cache, augmentation.

A folder is decoded once, through `preprocess_uint8` at the model's input size, into a
`(N, 3, S, S)` uint8 tensor and cached as safetensors keyed by the folder fingerprint, so later
epochs and later runs cost no decoding. Augmentation works on those uint8 tensors per batch.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torchvision.transforms import v2

from model.errors import DataError, ImageError
from model.preprocess import NORMALISATION, ImageLimits, preprocess_uint8

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"})
# Bump when preprocessing changes, so stale caches are not reused.
_CACHE_VERSION = hashlib.sha256(json.dumps(NORMALISATION, sort_keys=True).encode()).hexdigest()[:8]


def list_images(folder: str | Path) -> list[Path]:
    """All image files under `folder` (recursive), sorted for reproducibility."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root} is not a directory")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def fingerprint(paths: Sequence[Path], root: str | Path) -> str:
    """sha256 over the relative names and byte sizes of `paths` (cheap, detects changed sets)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{path.relative_to(root).as_posix()}\t{path.stat().st_size}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class FolderImages:
    """A decoded image folder.

    Attributes:
        images: (N, 3, S, S) uint8.
        names: Relative paths of the decoded images, aligned with `images`.
        skipped: (relative path, reason) for files that failed preprocessing.
        fingerprint: `fingerprint()` of the folder's listed files.
    """

    images: torch.Tensor
    names: list[str]
    skipped: list[tuple[str, str]]
    fingerprint: str


def default_cache_dir() -> Path:
    """`$ALOCC_CACHE_DIR`, else `$XDG_CACHE_HOME/alocc`, else `~/.cache/alocc`."""
    explicit = os.environ.get("ALOCC_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "alocc"


def _decode(path: Path, size: int, limits: ImageLimits) -> torch.Tensor | str:
    try:
        return preprocess_uint8(path.read_bytes(), size, limits=limits)
    except ImageError as exc:
        return f"{type(exc).__name__}: {exc}"


def load_folder(
    folder: str | Path,
    size: int,
    *,
    cache_dir: str | Path | None = None,
    limits: ImageLimits | None = None,
    max_images: int | None = None,
    workers: int = 2,
) -> FolderImages:
    """Decode every image under `folder` at `size`, using and filling the cache.

    Args:
        folder: Root of the image folder (searched recursively).
        size: Model input size.
        cache_dir: Where decoded tensors are cached; `default_cache_dir()` when None.
        limits: Preprocessing limits.
        max_images: Keep only the first N files of the sorted listing (for quick runs).
        workers: Decoding threads (Pillow releases the GIL while decoding).

    Raises:
        DataError: the folder holds no decodable image.
    """
    root = Path(folder)
    paths = list_images(root)
    if max_images is not None:
        paths = paths[:max_images]
    if not paths:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
    fp = fingerprint(paths, root)
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_file = cache_root / f"{fp[:24]}-{size}-{_CACHE_VERSION}.safetensors"
    if cache_file.is_file():
        cached = load_file(str(cache_file))
        meta = json.loads(cache_file.with_suffix(".json").read_text(encoding="utf-8"))
        return FolderImages(cached["images"], meta["names"], [tuple(s) for s in meta["skipped"]], fp)

    limits = limits or ImageLimits()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(lambda p: _decode(p, size, limits), paths))
    tensors, names, skipped = [], [], []
    for path, result in zip(paths, results, strict=True):
        name = path.relative_to(root).as_posix()
        if isinstance(result, str):
            skipped.append((name, result))
        else:
            tensors.append(result)
            names.append(name)
    if skipped:
        log.warning("skipped %d of %d files under %s (first: %s)", len(skipped), len(paths), root, skipped[0])
    if not tensors:
        raise DataError(f"none of the {len(paths)} files under {root} could be decoded")
    images = torch.stack(tensors)  # (N, 3, S, S) uint8
    cache_root.mkdir(parents=True, exist_ok=True)
    save_file({"images": images}, str(cache_file))
    cache_file.with_suffix(".json").write_text(
        json.dumps({"names": names, "skipped": skipped}), encoding="utf-8"
    )
    return FolderImages(images, names, [(a, b) for a, b in skipped], fp)


class _JpegReencode(torch.nn.Module):
    """Re-encode a (3, H, W) uint8 image as JPEG at a random quality, through Pillow.

    Uploads are re-compressed JPEGs; training on blocking artefacts keeps them from being a cue.
    """

    def __init__(self, quality: tuple[int, int]) -> None:
        super().__init__()
        self.quality = quality

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        quality = int(torch.randint(self.quality[0], self.quality[1] + 1, ()).item())
        buffer = io.BytesIO()
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, "JPEG", quality=quality)
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
        return torch.from_numpy(decoded.copy()).permute(2, 0, 1)


class Augmenter:
    """Random per-image augmentation of uint8 batches.

    Text cards get crops that keep most of the card, colour and greyscale jitter, blur and JPEG
    re-encoding, but no flips (mirrored text is not what uploads contain). Photos also get
    horizontal flips and wider crops.
    """

    def __init__(self, size: int, *, kind: str, strength: float = 1.0) -> None:
        if kind not in ("text", "photo"):
            raise ValueError(f"kind must be 'text' or 'photo', got {kind!r}")
        crop_scale = (0.7, 1.0) if kind == "text" else (0.35, 1.0)
        steps: list[torch.nn.Module] = [v2.RandomResizedCrop(size, scale=crop_scale, antialias=True)]
        if kind == "photo":
            steps.append(v2.RandomHorizontalFlip())
        s = strength
        steps += [
            v2.RandomApply([v2.ColorJitter(0.4 * s, 0.4 * s, 0.5 * s, min(0.5, 0.15 * s))], p=0.8),
            v2.RandomGrayscale(p=0.2),
            v2.RandomApply([v2.GaussianBlur(3, sigma=(0.1, 1.2))], p=0.25),
            v2.RandomApply([_JpegReencode((30, 95))], p=0.4),
        ]
        self._transform = v2.Compose(steps)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) uint8 -> augmented (B, 3, S, S) uint8."""
        return torch.stack([self._transform(image) for image in batch])
