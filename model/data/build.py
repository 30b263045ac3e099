"""Build a reproducible dataset of image files on disk.

Layout (all JPEG; `manifest.json` records every file with its kind and source):

    train/target/      TRAIN-family cards                       (the one class the model learns)
    train/negatives/   photos, product shots, printed words of TRAIN-role photo files
                       (optional outlier exposure for the discriminator)
    train/structured/  text-free pictures with a regular rhythm (sets of items in rows, slats)
                       of TRAIN-role photo files (extra negatives for one ensemble member)
    val/target/        more TRAIN-family cards                  (checkpoint selection)
    val/other/         non-cards from VAL-role files (training sources, files training never saw)
    calib/other/       non-cards from CALIB-role files + calibration-only sources (thresholds)
    eval/target/       HELD-OUT-family cards: unseen fonts, layouts and phrases
    eval/other/        non-cards from EVAL-only sources, words in HELD-OUT fonts
    check/target/      CHECK-family cards: fonts and layouts in neither TRAIN nor HELD-OUT, photos of
                       VAL-role files (unseen designs to judge recipes on without looking at eval/; with
                       val/other as the photos and calib/other for the threshold)
    check/one-line/    one short line of large text on a plain ground, in CHECK fonts: the design the
                       team's measurements found hardest for both the model and word-counting OCR
    train/one-line/    the same design in TRAIN fonts and words: the cascade's fit set for it (the
                       model never trains on it; see model/cascade_fit.py)
    check/photographed/ CHECK-family cards photographed in a scene: tilted, unevenly lit, blurred
                       (model/data/photographed.py); measured only
    train/photographed/ TRAIN-family cards photographed in scenes of TRAIN-role photos: the sheet route's
                       fit set (model/sheets.py; the model never trains on it)

Every image is a pure function of (seed, split, index), so the same seed gives the same files
whatever the number of worker processes.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
from PIL import Image

from model.data import cards, layouts, photographed, photos, phrases, samples, splits
from model.data.dataset_errors import DatasetLayoutError
from model.data.fonts import FAMILY_FONTS, Family
from model.data.splits import Role

# 2: smooth negatives, cards-2; 3: cards-3; 4/5: cards-4/5; 6: train/structured; 7: check/target;
# 8: check/one-line and train/one-line (every file of version 7 is drawn exactly as before);
# 9: check/photographed (every file of version 8 is drawn exactly as before); 10: train/photographed (every
# file of version 9 is drawn exactly as before); 11: calib/other holds 6,000 files instead of 2,000 (the first
# 2,000 are version 10's, byte for byte): at the cascade's alphas a bound on 2,000 is one or two files' scores
DATASET_VERSION = "alocc-data-11"


class Scale(StrEnum):
    """Dataset size presets."""

    SMALL = "small"
    DEFAULT = "default"


@dataclass(frozen=True)
class SplitPlan:
    """How to fill one output folder."""

    folder: str  # e.g. "train/target"
    target: bool  # cards (True) or non-card pictures (False)
    family: Family  # card family, or the font family of printed words
    role: Role  # photo files the folder draws from (card photos included)
    mix: tuple[float, float, float] = (0.55, 0.28, 0.17)  # photo / product / printed
    # Shares of smooth, text-free pictures (wide defocused scenes, skies) and of text-free pictures
    # with a regular rhythm (sets of items in rows, slats); training negatives only. Both come
    # from one roll, so shares of 0 leave every other draw of the folder exactly as before.
    soft_share: float = 0.0
    structured_share: float = 0.0
    layout: str | None = None  # cards of this one layout only (a family's or a named-only one)
    photographed: bool = False  # cards photographed in a scene of the role's photos


# New folders go at the end: an item's random stream is keyed by its folder's index in PLANS.
PLANS: tuple[SplitPlan, ...] = (
    SplitPlan("train/target", True, Family.TRAIN, Role.TRAIN),
    SplitPlan("train/negatives", False, Family.TRAIN, Role.TRAIN, soft_share=0.2),
    SplitPlan("val/target", True, Family.TRAIN, Role.TRAIN),
    SplitPlan("val/other", False, Family.TRAIN, Role.VAL),
    SplitPlan("calib/other", False, Family.TRAIN, Role.CALIB),
    SplitPlan("eval/target", True, Family.HELDOUT, Role.EVAL),
    SplitPlan("eval/other", False, Family.HELDOUT, Role.EVAL, mix=(0.45, 0.35, 0.2)),
    SplitPlan("train/structured", False, Family.TRAIN, Role.TRAIN, structured_share=1.0),
    SplitPlan("check/target", True, Family.CHECK, Role.VAL),
    SplitPlan("check/one-line", True, Family.CHECK, Role.VAL, layout="one_line"),
    SplitPlan("train/one-line", True, Family.TRAIN, Role.TRAIN, layout="one_line"),
    SplitPlan("check/photographed", True, Family.CHECK, Role.VAL, photographed=True),
    SplitPlan("train/photographed", True, Family.TRAIN, Role.TRAIN, photographed=True),
)

COUNTS: dict[Scale, dict[str, int]] = {
    Scale.DEFAULT: {
        "train/target": 4000,
        "train/negatives": 3000,
        "val/target": 500,
        "val/other": 500,
        "calib/other": 6000,
        "eval/target": 1000,
        "eval/other": 1000,
        "train/structured": 600,
        "check/target": 500,
        "check/one-line": 300,
        "train/one-line": 300,
        "check/photographed": 300,
        "train/photographed": 400,
    },
    Scale.SMALL: {
        "train/target": 24,
        "train/negatives": 16,
        "val/target": 8,
        "val/other": 8,
        "calib/other": 16,
        "eval/target": 16,
        "eval/other": 16,
        "train/structured": 8,
        "check/target": 8,
        "check/one-line": 8,
        "train/one-line": 8,
        "check/photographed": 8,
        "train/photographed": 8,
    },
}

LONG_SIDE = 256


def item_rng(seed: int, folder: str, index: int) -> np.random.Generator:
    """The generator of one output image: fixed by the build seed, its folder and its index."""
    folder_id = PLANS.index(next(p for p in PLANS if p.folder == folder))
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(folder_id, index)))


@functools.cache
def _card_generator(family: Family, role: Role) -> cards.CardGenerator:
    # Card photos come from the same role's scene files, so eval photos never appear in training.
    scene_files = [f for _, f in splits.role_files(role).files(photos.PhotoKind.SCENE)]
    return cards.CardGenerator(family, photos.crop_provider(scene_files), size=LONG_SIDE)


@functools.cache
def _role_files(role: Role) -> splits.RoleFiles:
    return splits.role_files(role)


def _jpeg_quality(rng: np.random.Generator) -> int:
    # The same quality spread for cards and photos so compression gives nothing away.
    return int(rng.integers(70, 96))


def render_item(seed: int, folder: str, index: int) -> tuple[Image.Image, dict[str, object]]:
    """Render image `index` of `folder`; returns the image and its manifest record."""
    plan = next(p for p in PLANS if p.folder == folder)
    rng = item_rng(seed, folder, index)
    if plan.target:
        generator = _card_generator(plan.family, plan.role)
        image, info = generator.render(rng, layout=plan.layout)
        record: dict[str, object] = {"kind": "card", "source": f"cards-{plan.family.value}", **info.as_dict()}
        if plan.photographed:
            image = photographed.photograph(image, rng, generator.photos, LONG_SIDE)
            record.update(photographed=True, width=image.width, height=image.height)
        stem = f"card-{info.layout}-{index:05d}"
    else:
        roll = rng.random() if plan.soft_share + plan.structured_share > 0 else 1.0
        if roll < plan.soft_share:
            sample = samples.soft_scene(rng, _role_files(plan.role), LONG_SIDE)
        elif roll < plan.soft_share + plan.structured_share:
            sample = samples.structured_scene(rng, _role_files(plan.role), LONG_SIDE)
        else:
            sample = samples.other(rng, _role_files(plan.role), plan.family, LONG_SIDE, plan.mix)
        image = sample.image
        record = {"kind": sample.kind.value, "source": sample.source, "photo": sample.file}
        if sample.word:
            record.update(word=sample.word, text_area=round(sample.text_area, 4))
        if sample.arrangement:
            record.update(arrangement=sample.arrangement)
        stem = f"{sample.kind.value}-{sample.source}-{index:05d}"
    record.update(file=f"{folder}/{stem}.jpg", quality=_jpeg_quality(rng))
    return image, record


def _write_chunk(args: tuple[Path, int, str, list[int]]) -> list[dict[str, object]]:
    out, seed, folder, indices = args
    records = []
    for index in indices:
        image, record = render_item(seed, folder, index)
        image.save(out / str(record["file"]), "JPEG", quality=int(record["quality"]))  # type: ignore[call-overload]
        records.append(record)
    return records


def _write_chunks(
    chunks: list[tuple[Path, int, str, list[int]]], workers: int | None
) -> list[dict[str, object]]:
    """Render and write every chunk, in `workers` processes (default: up to 2, the cores this project plans
    for); the records in chunk order, whatever the number of processes."""
    n_workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    records: list[dict[str, object]] = []
    if n_workers <= 1:
        for chunk in chunks:
            records.extend(_write_chunk(chunk))
    else:
        with ProcessPoolExecutor(max_workers=n_workers) as pool:
            for chunk_records in pool.map(_write_chunk, chunks):
                records.extend(chunk_records)
    return records


def _folder_chunks(
    out: Path, seed: int, folder: str, indices: range, size: int
) -> Iterator[tuple[Path, int, str, list[int]]]:
    """The `indices` of one folder (a step-1 range), `size` at a time."""
    for start in range(indices.start, indices.stop, size):
        yield out, seed, folder, list(range(start, min(start + size, indices.stop)))


def _chunks(
    counts: dict[str, int], out: Path, seed: int, size: int
) -> Iterator[tuple[Path, int, str, list[int]]]:
    for plan in PLANS:
        yield from _folder_chunks(out, seed, plan.folder, range(counts[plan.folder]), size)


def _check_sources(plan: SplitPlan) -> None:
    """Fail early, in this process, if the fonts or photo packages a folder draws from are missing."""
    _role_files(plan.role)
    if plan.target:
        _card_generator(plan.family, plan.role)


INCOMPLETE_MARKER = ".build-incomplete"


def _prepare(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise DatasetLayoutError(f"{out} is not empty; pass overwrite=True (--overwrite) to replace it")
        # Only ever delete what a build wrote: a finished build (manifest) or an interrupted one (marker).
        if not ((out / "manifest.json").is_file() or (out / INCOMPLETE_MARKER).is_file()):
            raise DatasetLayoutError(f"{out} is not empty and holds no dataset build; refusing to delete it")
        for top in sorted({plan.folder.split("/")[0] for plan in PLANS}):
            shutil.rmtree(out / top, ignore_errors=True)
        (out / "manifest.json").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / INCOMPLETE_MARKER).write_text("a dataset build started here and has not finished\n")
    for plan in PLANS:
        (out / plan.folder).mkdir(parents=True, exist_ok=True)


def _summary(records: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    per_folder: dict[str, dict[str, object]] = {}
    for plan in PLANS:
        rows = [r for r in records if str(r["file"]).startswith(plan.folder + "/")]
        per_folder[plan.folder] = {
            "count": len(rows),
            "by_kind": dict(sorted(Counter(str(r["kind"]) for r in rows).items())),
            "by_source": dict(sorted(Counter(str(r["source"]) for r in rows).items())),
        }
    return per_folder


def build(
    out: str | Path,
    *,
    seed: int = 0,
    scale: Scale | str = Scale.DEFAULT,
    workers: int | None = None,
    overwrite: bool = False,
) -> dict[str, object]:
    """Write the dataset and its manifest into `out`.

    Args:
        out: output folder (created; must be empty unless `overwrite`).
        seed: build seed; the same seed gives the same images.
        scale: "default" (about 12,000 images) or "small" (about 100, for tests and demos).
        workers: processes to render with (default: up to 2, the cores this project plans for).
        overwrite: replace an earlier build in `out`.

    Returns:
        The manifest (also written to `out/manifest.json`).

    Raises:
        DatasetLayoutError: when `out` holds something other than an earlier build.
        FontsMissing, PhotoSourceMissing: when packages are missing (the message says which).
    """
    out = Path(out)
    scale = Scale(scale)
    counts = COUNTS[scale]
    for plan in PLANS:
        _check_sources(plan)
    _prepare(out, overwrite)
    started = time.monotonic()
    records = _write_chunks(list(_chunks(counts, out, seed, 25)), workers)
    manifest = {
        "version": DATASET_VERSION,
        "generator": cards.GENERATOR_VERSION,
        "seed": seed,
        "scale": scale.value,
        "long_side": LONG_SIDE,
        "seconds": round(time.monotonic() - started, 1),
        "splits": _summary(records),
        "families": {
            fam.value: {
                "fonts": [s.name for s in FAMILY_FONTS[fam]],
                "font_packages": sorted({s.package for s in FAMILY_FONTS[fam]}),
                "layouts": sorted(layouts.LAYOUTS[fam]),
                "printed_words": list(phrases.PRINTED_WORDS[fam]),
            }
            for fam in Family
        },
        "photo_roles": {
            role.value: {
                name: [photos.photo_id(photos.source(name), p) for p in files]
                for name, files in _role_files(role).by_source.items()
            }
            for role in Role
        },
        "photo_sources": {
            name: {"install": photos.source(name).install, "licence": photos.source(name).licence}
            for name in photos.ALL_SOURCES
        },
        "files": sorted(records, key=lambda r: str(r["file"])),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1))
    (out / INCOMPLETE_MARKER).unlink()
    return manifest


def draw(
    out: str | Path,
    folder: str,
    count: int,
    *,
    start: int | None = None,
    seed: int = 0,
    workers: int | None = None,
) -> dict[str, object]:
    """Write `count` more files of one dataset folder into `out/<folder>`, drawn exactly as `build` draws
    that folder's files, from index `start` on (default: just past the default build's own files, so
    that no file is one the dataset holds).

    A fresh sample of the folder's sources and roles: a second draw of `calib/other` checks a cascade's
    false-positive rate on photos its calibration never used, from the sources it did use (`alocc score`
    on the folder), or gives a larger calibration sample.

    Returns:
        The draw's record (also written to `out/draw-<folder>.json`, e.g. `draw-calib-other.json`):
        dataset version, seed, folder, first index, and one manifest record per file.

    Raises:
        DatasetLayoutError: `folder` is not a dataset folder, `count` is not positive, or `out/<folder>`
            already holds files.
        FontsMissing, PhotoSourceMissing: when packages are missing (the message says which).
    """
    plan = next((p for p in PLANS if p.folder == folder), None)
    if plan is None:
        raise DatasetLayoutError(f"{folder!r} is not a dataset folder ({', '.join(p.folder for p in PLANS)})")
    if count < 1:
        raise DatasetLayoutError("a draw needs at least one file")
    first = COUNTS[Scale.DEFAULT][folder] if start is None else start
    if first < 0:
        raise DatasetLayoutError("the first index of a draw cannot be negative")
    out = Path(out)
    target = out / folder
    if target.exists() and any(target.iterdir()):
        raise DatasetLayoutError(f"{target} already holds files; draw into another folder")
    _check_sources(plan)
    target.mkdir(parents=True, exist_ok=True)
    records = _write_chunks(list(_folder_chunks(out, seed, folder, range(first, first + count), 25)), workers)
    record: dict[str, object] = {
        "version": DATASET_VERSION,
        "generator": cards.GENERATOR_VERSION,
        "seed": seed,
        "folder": folder,
        "start": first,
        "count": count,
        "files": records,
    }
    (out / f"draw-{folder.replace('/', '-')}.json").write_text(json.dumps(record, indent=1) + "\n")
    return record
