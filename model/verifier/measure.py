"""`alocc verifier measure`: read dataset folders with an OCR engine and say how well its features separate.

For each folder it reads up to N images (an even spread over the sorted file list, so every design and
photo source is represented), records the features of each image (never its text) to a JSON-lines file,
and prints, per feature, the AUROC of cards against every other folder, with the mean and 95th-percentile
milliseconds per image. Choosing an engine, and later fitting the cascade's rule, read these files.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from model.data.folder import iter_image_files
from model.metrics import auroc
from model.verifier.engines import VerifierConfig
from model.verifier.features import TextFeatures
from model.verifier.text_verifier import TextVerifier


def spread(files: list[Path], count: int) -> list[Path]:
    """`count` files spread evenly over the sorted list (all of them when there are fewer)."""
    if len(files) <= count:
        return files
    picks = np.linspace(0, len(files) - 1, count).round().astype(int)
    return [files[index] for index in picks]


def read_folders(
    data: Path, folders: list[str], per_folder: int, verifier: TextVerifier
) -> list[dict[str, Any]]:
    """One row per image: folder, file name, milliseconds, and the features by name."""
    rows = []
    for folder in folders:
        files = spread(sorted(iter_image_files(data / folder)), per_folder)
        for path in tqdm(files, desc=f"{verifier.config.engine} {folder}", unit="img", file=sys.stderr):
            started = time.perf_counter()
            features = verifier.features(path.read_bytes())
            milliseconds = (time.perf_counter() - started) * 1000
            rows.append(
                {"folder": folder, "file": path.name, "ms": round(milliseconds, 1), **features.as_dict()}
            )
    return rows


def separation(rows: list[dict[str, Any]], target_folders: set[str]) -> dict[str, float]:
    """AUROC of each feature, cards (rows from `target_folders`) against the rest."""
    labels = np.array([row["folder"] in target_folders for row in rows])
    if labels.all() or not labels.any():
        return {}
    return {
        name: auroc(labels, np.array([float(row[name]) for row in rows])) for name in TextFeatures.names()
    }


def summary(rows: list[dict[str, Any]], target_folders: set[str], version: str) -> dict[str, Any]:
    """What `measure` prints: the engine, cost and separation, per folder and overall."""
    milliseconds = [row["ms"] for row in rows]
    by_folder: dict[str, dict[str, float]] = {}
    for folder in dict.fromkeys(row["folder"] for row in rows):
        mine = [row for row in rows if row["folder"] == folder]
        by_folder[folder] = {
            "images": len(mine),
            "read_any": float(np.mean([row["read_characters"] > 0 for row in mine])),
            "median_read_characters": float(np.median([row["read_characters"] for row in mine])),
            "median_read_area": float(np.median([row["read_area"] for row in mine])),
        }
    return {
        "engine": version,
        "images": len(rows),
        "mean_ms": round(statistics.fmean(milliseconds), 1),
        "p95_ms": round(float(np.percentile(milliseconds, 95)), 1),
        "auroc": {name: round(value, 4) for name, value in separation(rows, target_folders).items()},
        "folders": by_folder,
    }


def register(subcommands: Any) -> None:
    """Attach `alocc verifier measure` to the root parser's subparsers."""
    from model.model_commands import add_grouped_command

    measure = add_grouped_command(
        subcommands,
        group="verifier",
        group_help="the OCR text verifier of the cascade",
        action="measure",
        action_help="read dataset folders with an OCR engine; per-feature AUROC and cost",
        description=__doc__,
    )
    measure.add_argument("--data", type=Path, required=True, help="a dataset built by `alocc data build`")
    measure.add_argument(
        "--folders",
        nargs="+",
        default=["train/target", "train/negatives", "train/structured"],
        help="folders to read (default: the training families only)",
    )
    measure.add_argument("--target", nargs="+", default=["train/target"], help="the folders that hold cards")
    measure.add_argument("--per-folder", type=int, default=200, help="images read per folder")
    measure.add_argument(
        "--engine", choices=["tesserocr", "tesseract", "rapidocr", "ppocr"], default="tesserocr"
    )
    measure.add_argument("--side", type=int, default=VerifierConfig.side, help="long side the engine reads")
    measure.add_argument("--psm", type=int, default=VerifierConfig.page_segmentation, help="tesseract --psm")
    measure.add_argument("--out", type=Path, help="write the per-image features here (JSON lines)")
    measure.set_defaults(handler=run_measure)


def run_measure(args: argparse.Namespace) -> int:
    """`alocc verifier measure`."""
    config = VerifierConfig(engine=args.engine, side=args.side, page_segmentation=args.psm)
    verifier = TextVerifier(config)
    rows = read_folders(args.data, args.folders, args.per_folder, verifier)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))
    report = {"config": vars(config), **summary(rows, set(args.target), verifier.engine.version())}
    print(json.dumps(report, indent=2))
    return 0
