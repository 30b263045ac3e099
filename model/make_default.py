"""Train, calibrate and install the default model from a recipe (`make model`).

    python -m model.make_default --data data/v7 --install

The recipe (`model/recipes/default.json`) holds the training options, with folder paths relative to
the dataset root written by `alocc data build`, optional ensemble members, and the calibration
target. Steps:
1. train on `train/target` (+ `train/negatives`), selecting the epoch on `val/`. With `members`
   (a list of option overrides, one per member), train one model per member in separate
   processes, at most one per CPU core, and assemble their discriminators into one checkpoint
   (`model.ensemble`);
2. calibrate every mode on `calib/other` with the conformal rule at the recipe's FP rate, and make
   the mode with the lowest FN rate on `val/target` the default;
3. with `--install`, copy `weights.safetensors` and `card.json` into `model/default/`.
The held-out `eval/` folders are never touched here; measure with `alocc evaluate`.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from model.calibrate import calibrate_checkpoint
from model.checkpoint import CARD_FILE, WEIGHTS_FILE
from model.ensemble import assemble
from model.errors import DataError
from model.scoring import default_model_dir
from model.train import TrainConfig, train

log = logging.getLogger(__name__)

DEFAULT_RECIPE = Path(__file__).parent / "recipes" / "default.json"
_FOLDER_FIELDS = ("data", "negatives", "extra_negatives", "val_target", "val_other")
_SECTIONS = {"train", "members", "calibrate", "about"}


def load_recipe(path: Path) -> dict[str, Any]:
    """Read a recipe: {"train": {...TrainConfig fields...}, "members": [{...}, ...], "calibrate": {...}}."""
    recipe = json.loads(path.read_text(encoding="utf-8"))
    if set(recipe) - _SECTIONS:
        raise ValueError(f"unknown recipe sections in {path}: {sorted(set(recipe) - _SECTIONS)}")
    return recipe


def _train_config(data_root: Path, options: dict[str, Any], out: Path, device: str) -> TrainConfig:
    options = dict(options)
    for key in _FOLDER_FIELDS:
        if options.get(key):
            options[key] = str(data_root / options[key])
    return TrainConfig(**options, out=str(out), device=device)


def _train_in_child(config: TrainConfig) -> Path:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return train(config)


def _train_members(configs: list[TrainConfig]) -> list[Path]:
    """Train the members in parallel processes, at most one per CPU core (`threads` 1 in the recipe).

    Members beyond the number of cores wait for a free process, in recipe order: on two cores the
    default recipe's first member (the only one that trains R, the longest) has one core, and the
    discriminator-only members take turns on the other.
    """
    # spawn, not fork: a forked child would inherit this process's torch thread pool state.
    context = multiprocessing.get_context("spawn")
    workers = min(len(configs), os.cpu_count() or 1)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return list(pool.map(_train_in_child, configs))


def make_default(
    data_root: Path,
    out: Path,
    recipe_path: Path = DEFAULT_RECIPE,
    *,
    install: bool = False,
    device: str = "auto",
) -> dict[str, Any]:
    """Run the recipe; returns the calibration report (per mode)."""
    if not (data_root / "manifest.json").is_file():
        raise DataError(f"{data_root} is not a built dataset; run `alocc data build --out {data_root}` first")
    recipe = load_recipe(recipe_path)
    started = time.monotonic()
    members = recipe.get("members")
    if members:
        configs = [
            _train_config(data_root, {**recipe["train"], **overrides}, out / f"member-{i}", device)
            for i, overrides in enumerate(members)
        ]
        best = out / "ensemble"
        assemble(_train_members(configs), best)
    else:
        config = _train_config(data_root, recipe["train"], out, device)
        best = train(config)
    cache_dir = recipe["train"].get("cache_dir")
    trained = time.monotonic()
    calibration = recipe["calibrate"]
    report = calibrate_checkpoint(
        best,
        data_root / calibration["other"],
        target_fpr=calibration["target_fpr"],
        gate_fpr=calibration.get("gate_fpr", 0.1),
        target_dir=data_root / calibration["target"],
        default_mode=calibration.get("default_mode", "auto"),
        device=device,
        cache_dir=cache_dir,
    )
    log.info("trained in %.0f s, calibrated in %.0f s", trained - started, time.monotonic() - trained)
    if install:
        destination = default_model_dir()
        destination.mkdir(parents=True, exist_ok=True)
        for name in (WEIGHTS_FILE, CARD_FILE):
            shutil.copy2(best / name, destination / name)
        log.info("installed %s into %s", best, destination)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m model.make_default", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="dataset root written by `alocc data build`")
    parser.add_argument("--out", type=Path, default=Path("runs/default"), help="training output directory")
    parser.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE)
    parser.add_argument("--install", action="store_true", help="copy the result into model/default/")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    report = make_default(args.data, args.out, args.recipe, install=args.install, device=args.device)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
