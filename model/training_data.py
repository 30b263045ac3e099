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
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file

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


def _jpeg_reencode(image: torch.Tensor, quality: int) -> torch.Tensor:
    """Re-encode one (3, H, W) uint8 image as JPEG through Pillow and decode it again."""
    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, "JPEG", quality=quality)
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return torch.from_numpy(decoded.copy()).permute(2, 0, 1)


# ITU-R 601 luma weights, as Pillow's "L" conversion uses.
_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


class Augmenter:
    """Random per-image augmentation of uint8 batches, vectorised over the batch.

    Text cards get crops that keep most of the card, colour and greyscale jitter, optional inversion,
    blur and JPEG re-encoding, but no flips (mirrored text is not what uploads contain). Photos also get
    horizontal flips and wider crops. Everything except the JPEG step is one batched tensor
    operation, so augmentation costs a fraction of a training step on a small CPU.

    Optional geometric jitter (`max_rotation_deg`, `max_zoom_out`) tilts an image and shrinks it
    inside the frame, the edge pixels extended around it: a notice photographed at an angle, a note
    on a wall, text that fills less of the picture. Give both kinds the same jitter, so that a tilted
    frame or an extended edge is no cue for either class. Off by default: in the one run with it
    (docs/EXPERIMENTS.md, run N1) D still learned that content inside a flat surround means a card,
    and flagged smooth scene photos.

    `max_tilt_deg` tilts without a surround: the crop window is turned and shrunk until it lies
    inside the image, so the output is tilted content edge to edge (a notice photographed at an
    angle, cropped to the notice) and no pixel from outside the image is sampled.
    """

    def __init__(
        self,
        size: int,
        *,
        kind: str,
        strength: float = 1.0,
        p_invert: float = 0.0,
        max_rotation_deg: float = 0.0,
        max_zoom_out: float = 1.0,
        max_tilt_deg: float = 0.0,
        p_geometry: float = 0.5,
    ) -> None:
        if kind not in ("text", "photo"):
            raise ValueError(f"kind must be 'text' or 'photo', got {kind!r}")
        self.size = size
        self.flip = kind == "photo"
        self.min_area = 0.55 if kind == "text" else 0.3
        self.strength = strength
        # Stronger augmentation also turns more images grey: colour is the cheapest shortcut a
        # discriminator finds between a few photo sources and generated cards.
        self.p_colour, self.p_grey, self.p_blur, self.p_jpeg = 0.8, min(0.6, 0.2 * strength), 0.25, 0.3
        # Negative images (x -> 1 - x): light text on a dark card is as much a notice as dark on light.
        # Given to cards and photos alike, so that "looks inverted" is no cue for either class.
        self.p_invert = p_invert
        if max_rotation_deg < 0 or max_zoom_out < 1 or max_tilt_deg < 0:
            raise ValueError("max_rotation_deg and max_tilt_deg must be >= 0, max_zoom_out >= 1")
        if max_tilt_deg and (max_rotation_deg or max_zoom_out > 1):
            raise ValueError("max_tilt_deg (tilt inside the image) excludes max_rotation_deg/max_zoom_out")
        self.max_rotation = math.radians(max_rotation_deg)
        self.max_zoom_out = max_zoom_out
        self.p_geometry = p_geometry if (max_rotation_deg or max_zoom_out > 1) else 0.0
        self.max_tilt = math.radians(max_tilt_deg)
        self.p_tilt = p_geometry if max_tilt_deg else 0.0

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) uint8 -> augmented (B, 3, S, S) uint8."""
        x = batch.to(torch.float32) / 255.0
        x = self._crop(x)
        x = self._colour(x)
        if self.p_invert:
            invert = torch.rand(len(x)) < self.p_invert
            x[invert] = 1.0 - x[invert].clamp(0.0, 1.0)
        x = self._blur(x)
        out = (x.clamp_(0.0, 1.0) * 255.0).round_().to(torch.uint8)
        for i in torch.nonzero(torch.rand(len(out)) < self.p_jpeg).flatten().tolist():
            out[i] = _jpeg_reencode(out[i], int(torch.randint(30, 96, ()).item()))
        return out

    def _crop(self, x: torch.Tensor) -> torch.Tensor:
        """Random resized crop (and flip) as one batched affine resampling."""
        n = x.shape[0]
        grid = F.affine_grid(self._windows(n), [n, 3, self.size, self.size], align_corners=False)
        # Without geometric jitter the window stays inside the image and reflection only touches
        # the outermost half pixel; with it, extending the edge looks like the card's surroundings,
        # where a reflection would mirror the text into the margin.
        padding = "border" if self.p_geometry else "reflection"
        return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)

    def _windows(self, n: int) -> torch.Tensor:
        """(n, 2, 3) affine maps from output coordinates to the crop window in the image ([-1, 1])."""
        area = torch.empty(n).uniform_(self.min_area, 1.0)
        log_ratio = torch.empty(n).uniform_(math.log(3 / 4), math.log(4 / 3))
        width = (area * log_ratio.exp()).sqrt().clamp(max=1.0)  # fraction of the side
        height = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
        angle = torch.zeros(n)
        if self.p_geometry:
            tilted = torch.rand(n) < self.p_geometry
            angle = tilted * torch.empty(n).uniform_(-self.max_rotation, self.max_rotation)
            # The tilted images show the whole image (no crop), inside a window up to max_zoom_out
            # times wider: the image shrinks inside the output frame.
            zoom = torch.empty(n).uniform_(1.0, self.max_zoom_out)
            width, height = torch.where(tilted, zoom, width), torch.where(tilted, zoom, height)
        # Half-extents of the (turned) window along x and y, in the image's [-1, 1] coordinates.
        reach_x, reach_y = width, height
        if self.p_tilt:
            tilted = torch.rand(n) < self.p_tilt
            angle = tilted * torch.empty(n).uniform_(-self.max_tilt, self.max_tilt)
            c, s = angle.cos(), angle.sin().abs()
            # Shrink the turned window until its corners lie inside the image.
            fit = torch.minimum(1 / (width * c + height * s), 1 / (width * s + height * c)).clamp(max=1.0)
            width, height = width * fit, height * fit
            reach_x, reach_y = width * c + height * s, width * s + height * c
        centre_x = (torch.rand(n) * 2 - 1) * (1 - reach_x)
        centre_y = (torch.rand(n) * 2 - 1) * (1 - reach_y)
        sign = torch.where(torch.rand(n) < 0.5, -1.0, 1.0) if self.flip else torch.ones(n)
        cos, sin = angle.cos(), angle.sin()
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 0, 2] = width * sign * cos, -height * sin, centre_x
        theta[:, 1, 0], theta[:, 1, 1], theta[:, 1, 2] = width * sign * sin, height * cos, centre_y
        return theta

    def _colour(self, x: torch.Tensor) -> torch.Tensor:
        """Brightness, contrast, saturation and per-channel tint jitter, then random greyscale.

        Brightness b, contrast c (around the image's mean luma m) and saturation t (around each
        pixel's luma y) compose to one affine map per image, x -> b*c*t*x + b*c*(1-t)*y + b*(1-c)*m,
        so the whole jitter costs two reductions and one fused pass.
        """
        n, s = x.shape[0], self.strength
        apply = (torch.rand(n, 1, 1, 1) < self.p_colour).float()

        def factor(spread: float, channels: int = 1) -> torch.Tensor:
            jitter = torch.empty(n, channels, 1, 1).uniform_(1 - spread, 1 + spread)
            return 1 + apply * (jitter - 1)

        b, c, t, tint = factor(0.4 * s), factor(0.4 * s), factor(0.5 * s), factor(0.1 * s, channels=3)
        luma = (x * _LUMA).sum(1, keepdim=True)  # (n, 1, S, S)
        mean = luma.mean((2, 3), keepdim=True)
        x = tint * (b * c * t * x + b * c * (1 - t) * luma + b * (1 - c) * mean)
        to_grey = torch.rand(n) < self.p_grey
        if to_grey.any():
            x[to_grey] = (x[to_grey] * _LUMA).sum(1, keepdim=True).expand(-1, 3, -1, -1)
        return x

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        """3x3 Gaussian blur with a random sigma on a random subset, as one grouped convolution."""
        n = x.shape[0]
        sigma = torch.empty(n).uniform_(0.1, 1.2)
        taps = torch.exp(-torch.tensor([1.0, 0.0, 1.0]).view(1, 3) / (2 * sigma.view(n, 1) ** 2))  # (n, 3)
        taps = taps / taps.sum(1, keepdim=True)
        kernel = taps.view(n, 3, 1) * taps.view(n, 1, 3)  # (n, 3, 3), separable Gaussian
        identity = torch.zeros(3, 3)
        identity[1, 1] = 1.0
        keep = (torch.rand(n) >= self.p_blur).view(n, 1, 1)
        kernel = torch.where(keep, identity, kernel)
        weight = kernel.repeat_interleave(3, dim=0).unsqueeze(1)  # (n*3, 1, 3, 3)
        flat = F.pad(x.reshape(1, n * 3, *x.shape[2:]), (1, 1, 1, 1), mode="replicate")
        return F.conv2d(flat, weight, groups=n * 3).view_as(x)
