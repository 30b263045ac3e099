"""Which photo sources (and which of their files) each dataset split may use.

Rules (see the findings on photo-source leakage):
- eval photos come from sources used nowhere else: not in training, validation or calibration,
  and not inside TRAIN-family cards;
- calibration photos come from sources disjoint from the eval sources; they may share a source
  with training but never a file (each training source's files are divided between the train,
  val and calib roles by a fixed hash of the file name);
- val photos are files of the training sources that training never sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from model.data import photos


class Role(StrEnum):
    """What a photo file may be used for."""

    TRAIN = "train"
    VAL = "val"
    CALIB = "calib"
    EVAL = "eval"


TRAIN_SOURCES: tuple[str, ...] = ("skimage", "mate-nature", "opencv-samples", "tuxpaint-nature")
CALIB_ONLY_SOURCES: tuple[str, ...] = ("lomiri-16.04", "tuxpaint-food")
EVAL_SOURCES: tuple[str, ...] = ("kde-plasma", "lomiri-20.04", "sklearn", "matplotlib", "tuxpaint-goods")

VAL_FRACTION = 0.15
CALIB_FRACTION = 0.15


@dataclass(frozen=True)
class RoleFiles:
    """The files of one role, grouped by source and by kind."""

    role: Role
    by_source: dict[str, tuple[Path, ...]]

    def files(self, kind: photos.PhotoKind | None = None) -> list[tuple[str, Path]]:
        """(source, file) pairs of the role, optionally only scenes or only cut-outs."""
        out: list[tuple[str, Path]] = []
        for name, files in sorted(self.by_source.items()):
            if kind is not None and photos.source(name).kind is not kind:
                continue
            out.extend((name, f) for f in files)
        return out

    def sources(self) -> list[str]:
        """Names of the sources with at least one file in this role."""
        return sorted(name for name, files in self.by_source.items() if files)


def _divide(files: tuple[Path, ...]) -> dict[Role, tuple[Path, ...]]:
    """Split one training source's files into train / val / calib by a fixed hash order."""
    ordered = sorted(files, key=photos.stable_fraction)
    n = len(ordered)
    n_val = max(1, round(n * VAL_FRACTION)) if n >= 3 else 0
    n_calib = max(1, round(n * CALIB_FRACTION)) if n >= 3 else 0
    return {
        Role.VAL: tuple(sorted(ordered[:n_val])),
        Role.CALIB: tuple(sorted(ordered[n_val : n_val + n_calib])),
        Role.TRAIN: tuple(sorted(ordered[n_val + n_calib :])),
    }


def role_files(role: Role) -> RoleFiles:
    """The photo files a role may use.

    Raises:
        PhotoSourceMissing: when a source the role needs is not installed.
    """
    by_source: dict[str, tuple[Path, ...]] = {}
    if role is Role.EVAL:
        for name in EVAL_SOURCES:
            by_source[name] = photos.source(name).files
        return RoleFiles(role, by_source)
    for name in TRAIN_SOURCES:
        by_source[name] = _divide(photos.source(name).files)[role]
    if role is Role.CALIB:
        for name in CALIB_ONLY_SOURCES:
            by_source[name] = photos.source(name).files
    return RoleFiles(role, by_source)
