"""Real photographs from installed packages, grouped by SOURCE so splits can be made by source.

Sources (nothing is downloaded at run time; each comes with a package installed by name):

| source | what | package |
| --- | --- | --- |
| `skimage` | photographs inside the scikit-image wheel (not pooch-fetched) | pip scikit-image |
| `sklearn` | `china.jpg`, `flower.jpg` | pip scikit-learn |
| `matplotlib` | `grace_hopper.jpg` | pip matplotlib |
| `mate-nature` | MATE's nature photographs | apt mate-backgrounds |
| `opencv-samples` | OpenCV sample photographs (objects, fruit, buildings, animals) | apt opencv-doc |
| `lomiri-16.04` | Ubuntu Touch 16.04 wallpaper photographs | apt lomiri-wallpapers-16.04 |
| `lomiri-20.04` | Ubuntu Touch 20.04 wallpaper photographs | apt lomiri-wallpapers-20.04 |
| `kde-plasma` | Plasma 5 wallpapers that are photographs | apt plasma-workspace-wallpapers |
| `tuxpaint-nature` | cut-out photos (RGBA) of animals and plants | apt tuxpaint-stamps-default |
| `tuxpaint-food` | cut-out photos (RGBA) of food | apt tuxpaint-stamps-default |
| `tuxpaint-goods` | cut-out photos (RGBA): clothes, household, tools, music | apt tuxpaint-stamps-default |
|  | instruments, sports gear, vehicles | |

Scene sources give crops; cut-out sources give objects with an alpha mask for product shots.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
from PIL import Image

from model.data.dataset_errors import PhotoSourceMissing

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})
MAX_SIDE = 1600  # decoded photos are kept at most this large: crops are downscaled anyway


class PhotoKind(StrEnum):
    """Scene photographs (crop anywhere) or cut-out objects (RGBA, placed on backgrounds)."""

    SCENE = "scene"
    CUTOUT = "cutout"


@dataclass(frozen=True)
class PhotoSource:
    """A named group of photographs that come from one package and one origin.

    Attributes:
        name: stable identifier used in splits, file names and manifests.
        kind: scene or cut-out.
        install: how to install the package that ships the files.
        licence: the licence the package states for these files.
        files: the installed files, sorted.
    """

    name: str
    kind: PhotoKind
    install: str
    licence: str
    files: tuple[Path, ...]


def _module_dir(module: str) -> Path | None:
    try:
        mod = __import__(module)
    except ImportError:
        return None
    return Path(mod.__file__).parent if mod.__file__ else None


_SKIMAGE_PHOTOS = (
    "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png",
    "coffee.png", "coins.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png",
    "moon.png", "motorcycle_left.png", "motorcycle_right.png", "retina.jpg", "rocket.jpg",
)  # fmt: skip
_LOMIRI_1604 = (
    "Bridge_by_Sander_Klootwijk.jpg", "Dragonfly_by_Bolly.jpg", "Picture_0B_by_freespace.jpg",
    "Picture_1A_by_freespace.jpg", "Wine_by_Jakkub_Mede.jpg", "aitzgorri_by_Aitzol_Berasategi.jpg",
    "free_by_Peter_Nerlich.jpg", "friends_by_Aitzol_Berasategi.jpg", "life_by_Aitzol_Berasategi.jpg",
    "picosdeeuropa_by_Aitzol_Berasategi.jpg", "seeding_by_Clements_Engelhardt.jpg",
    "sunset_by_Aitzol_Berasategi.jpg",
)  # fmt: skip
_OPENCV_PHOTOS = (
    "aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "basketball1.png", "board.jpg",
    "box_in_scene.png", "building.jpg", "butterfly.jpg", "chicky_512.png", "ela_original.jpg", "fruits.jpg",
    "home.jpg", "leuvenA.jpg", "messi5.jpg", "orange.jpg", "rubberwhale1.png", "smarties.png",
    "squirrel_cls.jpg", "stuff.jpg",
)  # fmt: skip
_LOMIRI_2004 = ("Infinite-Sea_by_Aury88.jpg", "Kleiber_by_Lukas_Baubkus.jpg")
# Plasma wallpapers that are photographs (the others are vector renderings).
_KDE_PHOTOS = (
    "BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey",
    "Kite", "OneStandsOut", "Path", "Volna", "summer_1am",
)  # fmt: skip
_TUX_ROOT = Path("/usr/share/tuxpaint/stamps")
_TUX_GROUPS: dict[str, tuple[str, ...]] = {
    "tuxpaint-nature": ("animals", "plants"),
    "tuxpaint-food": ("food",),
    "tuxpaint-goods": ("clothes", "household", "hobbies", "sports", "medical", "vehicles"),
}


def _existing(paths: Sequence[Path]) -> tuple[Path, ...]:
    return tuple(sorted(p for p in paths if p.is_file()))


def _kde_files(root: Path) -> list[Path]:
    out = []
    for name in _KDE_PHOTOS:
        images = sorted((root / name / "contents" / "images").glob("*"))
        images = [p for p in images if p.suffix.lower() in IMAGE_SUFFIXES]
        if not images:
            continue

        # Prefer the largest rendition not above 2560 px wide: decoding 5K files costs time for nothing.
        def width(p: Path) -> int:
            stem = p.stem.split("x")[0]
            return int(stem) if stem.isdigit() else 0

        fitting = [p for p in images if width(p) <= 2560] or images
        out.append(max(fitting, key=width))
    return out


def _tux_files(groups: Sequence[str]) -> list[Path]:
    out: list[Path] = []
    for group in groups:
        for p in sorted((_TUX_ROOT / group).rglob("*.png")):
            rel = p.relative_to(_TUX_ROOT).as_posix()
            # Cartoon folders and mirrored/back variants are drawings or duplicates, not photos.
            if "cartoon" in rel or p.stem.endswith(("_mirror", "_back")) or "thumb" in p.stem:
                continue
            out.append(p)
    return out


def _specs() -> dict[str, tuple[PhotoKind, str, str, Callable[[], list[Path]]]]:
    sk = _module_dir("skimage")
    sl = _module_dir("sklearn")
    mp = _module_dir("matplotlib")
    bg = Path("/usr/share/backgrounds")
    return {
        "skimage": (
            PhotoKind.SCENE, "pip install scikit-image", "CC0 / public domain (scikit-image data README)",
            lambda: [sk / "data" / n for n in _SKIMAGE_PHOTOS] if sk else [],
        ),
        "sklearn": (
            PhotoKind.SCENE, "pip install scikit-learn", "CC-BY-2.0 (scikit-learn images README)",
            lambda: [sl / "datasets" / "images" / n for n in ("china.jpg", "flower.jpg")] if sl else [],
        ),
        "matplotlib": (
            PhotoKind.SCENE, "pip install matplotlib", "public domain (US Navy photograph)",
            lambda: [mp / "mpl-data" / "sample_data" / "grace_hopper.jpg"] if mp else [],
        ),
        "mate-nature": (
            PhotoKind.SCENE, "apt-get install mate-backgrounds", "GPL-2+ (Debian copyright)",
            lambda: sorted((bg / "mate/nature").glob("*.jpg")),
        ),
        "opencv-samples": (
            PhotoKind.SCENE, "apt-get install opencv-doc", "BSD-3-Clause (Debian copyright, data/*)",
            lambda: [Path("/usr/share/doc/opencv-doc/examples/data") / n for n in _OPENCV_PHOTOS],
        ),
        "lomiri-16.04": (
            PhotoKind.SCENE, "apt-get install lomiri-wallpapers-16.04", "CC-BY-SA-3.0 (Debian copyright)",
            lambda: [bg / n for n in _LOMIRI_1604],
        ),
        "lomiri-20.04": (
            PhotoKind.SCENE, "apt-get install lomiri-wallpapers-20.04", "CC-BY-SA-3.0 (Debian copyright)",
            lambda: [bg / n for n in _LOMIRI_2004],
        ),
        "kde-plasma": (
            PhotoKind.SCENE, "apt-get install plasma-workspace-wallpapers", "GPL-2+ (Debian copyright)",
            lambda: _kde_files(Path("/usr/share/wallpapers")),
        ),
        **{
            name: (
                PhotoKind.CUTOUT, "apt-get install tuxpaint-stamps-default", "GPL-2 (Debian copyright)",
                functools.partial(_tux_files, groups),
            )
            for name, groups in _TUX_GROUPS.items()
        },
    }  # fmt: skip


ALL_SOURCES: tuple[str, ...] = (
    "skimage", "sklearn", "matplotlib", "mate-nature", "opencv-samples", "lomiri-16.04", "lomiri-20.04",
    "kde-plasma", "tuxpaint-nature", "tuxpaint-food", "tuxpaint-goods",
)  # fmt: skip


def _is_photographic(path: Path) -> bool:
    """Whether a cut-out looks like a photograph rather than a flat drawing.

    Drawings use few distinct colours inside the object; photographs use thousands.
    """
    with Image.open(path) as im:
        im.thumbnail((160, 160))
        rgba = np.asarray(im.convert("RGBA"))
    opaque = rgba[..., 3] > 128
    if opaque.sum() < 200:
        return False
    colours = np.unique(rgba[opaque][:, :3] // 8, axis=0)
    return len(colours) >= 150


def photo_id(src: PhotoSource, path: Path) -> str:
    """A short stable name of one photo: its path below the folder that holds all of its source."""
    root = Path(os.path.commonpath([str(p.parent) for p in src.files]))
    return path.relative_to(root).as_posix()


@functools.cache
def source(name: str) -> PhotoSource:
    """The installed photo source `name`.

    Raises:
        PhotoSourceMissing: when the source is unknown or its package is not installed.
    """
    specs = _specs()
    if name not in specs:
        raise PhotoSourceMissing(f"unknown photo source {name!r}; known: {', '.join(ALL_SOURCES)}")
    kind, install, licence, lister = specs[name]
    files = _existing(lister())
    if kind is PhotoKind.CUTOUT:
        files = tuple(p for p in files if _is_photographic(p))
    if not files:
        raise PhotoSourceMissing(f"photo source {name!r} has no files installed; run: {install}")
    return PhotoSource(name, kind, install, licence, files)


def available_sources() -> list[str]:
    """Names of the sources whose packages are installed."""
    out = []
    for name in ALL_SOURCES:
        try:
            source(name)
        except PhotoSourceMissing:
            continue
        out.append(name)
    return out


def stable_fraction(path: Path) -> float:
    """A number in [0, 1) fixed by a file's name; used to split a source's files between roles."""
    digest = hashlib.sha256(path.name.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@functools.lru_cache(maxsize=64)
def load(path: Path) -> Image.Image:
    """Decode a photo (RGB for scenes, RGBA for cut-outs), at most `MAX_SIDE` on the long side."""
    with Image.open(path) as im:
        if im.format == "JPEG":
            im.draft("RGB", (MAX_SIDE, MAX_SIDE))  # decode big JPEGs at reduced scale
        has_alpha = im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info)
        out = im.convert("RGBA" if has_alpha else "RGB")
    out.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    return out


def random_crop(
    photo: Image.Image, rng: np.random.Generator, out_size: tuple[int, int], min_scale: float = 0.12
) -> Image.Image:
    """A random crop of `photo` with the aspect of `out_size`, resized to `out_size`.

    The crop covers between `min_scale` and all of the largest window of that aspect, so one
    photograph yields many different patches (close-ups and wide views).
    """
    w, h = photo.size
    ow, oh = out_size
    aspect = ow / oh
    max_w = min(w, h * aspect)
    scale = float(np.sqrt(rng.uniform(min_scale, 1.0)))
    cw = max(8.0, max_w * scale)
    ch = cw / aspect
    x = rng.uniform(0, max(w - cw, 0))
    y = rng.uniform(0, max(h - ch, 0))
    crop = photo.crop((int(x), int(y), int(x + cw), int(y + ch)))
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return crop.resize(out_size, Image.Resampling.LANCZOS)


def crop_provider(files: Sequence[Path]) -> Callable[[np.random.Generator, tuple[int, int]], Image.Image]:
    """A `PhotoProvider` over `files`: random RGB crops of the requested size."""
    chosen = tuple(files)

    def provide(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
        photo = load(chosen[int(rng.integers(0, len(chosen)))])
        if photo.mode == "RGBA":  # cut-outs: flatten onto a plain light background first
            base = Image.new("RGB", photo.size, (245, 245, 245))
            base.paste(photo, (0, 0), photo)
            photo = base
        return random_crop(photo, rng, size, min_scale=0.3).convert("RGB")

    return provide
