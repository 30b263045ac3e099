"""`alocc cascade sheets`: what the sheet route (`model.sheets`) would catch, measured before serving it.

The route decides without a read: a picture whose best straightened sheet one discriminator member scores at
or above `card_from` is a card. Three measurements, in the order the choice must be made:

1. **The bound, on calibration photos.** Every calibration photo (`calib/other`) is searched for sheets as
   the worker searches them, and its best sheet scored. `card_from` is the conformal bound at `--alpha` on
   those scores, raised, as the model's card band is (`model.cascade_card.with_card_band`), by the largest
   amount one calibration source's best photo has stood above all the others' (in logits): photos hold
   sheets too (book covers, screens, frames, signs), and a source of them the calibration never saw must
   still fall under it.
2. **The fit family.** `train/photographed` (TRAIN-family cards photographed in TRAIN-role scenes, which
   the model never trained on) caught at that bound; and each calibration source left out in turn, the
   bound set on the others, how many of its photos reach it.
3. **The report, on the evaluation families**: the share of every evaluation folder and family the route
   alone makes cards (missed cards are what it does not catch; on `eval/other`, the photos and products it
   would flag). What the served cascade does with the route is `alocc cascade evaluate`'s, once attached.

Best sheet scores are cached per model version, member and search in `--out`
(`sheet-scores-<version>-member<k>-<search digest>.jsonl`; about 8 ms a picture on two cores).
Writes `cascade-sheets.json` and prints the tables.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from model.cascade_card import check_calibration_photos, raised_bound
from model.cascade_fit import CALIB, JsonLinesCache, family_rates, load_eval_folders, photo_source
from model.errors import ConfigError
from model.sheets import SheetRoute, SheetSearch

if TYPE_CHECKING:
    from model.cascade import TextCascade

# The member that scores the sheets: the default ensemble's second, as for the quadrant route's corners. On
# the training family, at the served search and alpha 0.0005, it caught 60.8% of `train/photographed` at its
# bound; the whole ensemble 56.2%, member 0 (the 64-pixel one) 14.5%, member 2 28.5%; and one member costs a
# third of the ensemble's passes.
DEFAULT_SHEET_MEMBER = 1
FIT_FOLDER = "train/photographed"
DEFAULT_ALPHAS = (0.0005, 0.001)
_BATCH = 32


def _opencv_version() -> str:
    import cv2

    return str(cv2.__version__)


def search_digest(search: SheetSearch) -> str:
    """Eight hex digits naming a search and the OpenCV release that runs it (the cache's key)."""
    named = {"search": search.to_json(), "opencv": _opencv_version()}
    return hashlib.sha256(json.dumps(named, sort_keys=True).encode()).hexdigest()[:8]


class SheetScores:
    """The best sheet score of dataset files for one model, member and search, cached."""

    def __init__(
        self,
        data: Path,
        out: Path,
        model_dir: str | None,
        member: int | None = DEFAULT_SHEET_MEMBER,
        search: SheetSearch | None = None,
    ) -> None:
        """Sheets scored by the ensemble's `member` (`Scorer.member_d_x`), or the whole ensemble."""
        from model.scoring import Scorer  # imports torch

        self.data = data
        self.member = member
        self.search = search or SheetSearch()
        self.scorer = Scorer.load(model_dir, device="cpu")
        by = "" if member is None else f"-member{member}"
        self._cache = JsonLinesCache(
            out / f"sheet-scores-{self.scorer.model_version}{by}-{search_digest(self.search)}.jsonl"
        )

    def get(self, keys: Sequence[str]) -> npt.NDArray[np.float64]:
        """The best sheet score of each file (0 where it holds no sheet)."""
        from tqdm import tqdm

        progress = tqdm(desc=f"sheets ({self.scorer.model_version})", unit="img", file=sys.stderr)
        records = self._cache.get_many(keys, lambda part: self._score(part, progress), chunk=_BATCH)
        progress.close()
        return np.array([record["sheet"] for record in records], dtype=np.float64)

    def _score(self, keys: list[str], progress: Any) -> list[dict[str, float]]:
        import torch

        from model.decode import QUADRANTS, decode_with_parts
        from model.sheets import best_sheet_scores

        # The worker's path: each picture decoded with its corners and sheets, the sheets scored as a batch.
        size = self.scorer.input_size
        decoded = [
            decode_with_parts((self.data / key).read_bytes(), size, sheets=self.search)[1 + QUADRANTS :]
            for key in keys
        ]
        sheets = torch.from_numpy(np.stack(decoded)).permute(0, 1, 4, 2, 3).contiguous()
        best = best_sheet_scores(self.scorer, sheets, self.member)
        progress.update(len(keys))
        return [{"sheet": float(value)} for value in best]


def left_out_flags(scores: npt.ArrayLike, sources: Sequence[str], alpha: float) -> dict[str, int]:
    """Per calibration source: how many of its photos reach the bound set on the other sources alone."""
    from model.calibrate import conformal_threshold  # imports torch

    values = np.asarray(scores, dtype=np.float32).ravel()
    names = np.asarray(list(sources))
    flags = {}
    for name in sorted(set(names.tolist())):
        inside = names == name
        bound = conformal_threshold(values[~inside], alpha, allow_max=True).threshold
        flags[name] = int(np.sum(values[inside] >= bound))
    return flags


def highest_photos(scores: npt.ArrayLike, keys: Sequence[str], count: int = 3) -> list[dict[str, Any]]:
    """The `count` calibration photos whose best sheets score highest, highest first, with their sources.
    At the route's alpha the bound is one or two of them and its source margin is their source's lead, so
    a search that lifts one photo's sheet moves the bound for every card (docs/CASCADE.md, "What else was
    measured for the route"): the report names them, so that a person comparing searches sees it."""
    values = np.asarray(scores, dtype=np.float64).ravel()
    order = np.argsort(-values, kind="stable")[:count]
    return [{"key": keys[i], "source": photo_source(keys[i]), "sheet": float(values[i])} for i in order]


def with_sheet_route(
    cascade: TextCascade,
    calibration_scores: npt.ArrayLike,
    sources: Sequence[str],
    alpha: float,
    *,
    member: int | None = DEFAULT_SHEET_MEMBER,
    search: SheetSearch | None = None,
) -> TextCascade:
    """The cascade with the sheet route at `alpha` (`model.cascade_card.raised_bound` on the calibration
    photos' best sheet scores). Its false-positive bound adds to the cascade's (a union bound, recorded on
    the card); the evaluation the card recorded no longer describes its decisions, so it is dropped.

    Raises:
        ConfigError: the photos are not the ones the cascade was calibrated on, or the cascade has no
            quadrant route (the sheets are decoded after its corners).
    """
    import dataclasses

    scores = np.asarray(calibration_scores, dtype=np.float64).ravel()
    check_calibration_photos(cascade, len(scores))
    if cascade.policy.parts_send_from is None:
        raise ConfigError("the sheet route needs a cascade with the quadrant route (attach --quadrants)")
    bound = raised_bound(scores, sources, alpha)
    route = SheetRoute(card_from=bound["card_from"], member=member, search=search or SheetSearch())
    before = cascade.calibration.get("card_band", {}).get("false_positive_bound")
    prior = float(before if before is not None else cascade.calibration.get("target_fpr", 0.0))
    calibration = {
        **cascade.calibration,
        "sheet_route": {
            "target_fpr": alpha,
            "calibration_photos": len(scores),
            **bound,
            "opencv": _opencv_version(),
            # Everything before it and the route together (a union bound).
            "false_positive_bound": prior + alpha,
        },
    }
    policy = dataclasses.replace(cascade.policy, sheets=route)
    return dataclasses.replace(cascade, policy=policy, calibration=calibration, measured={})


def measure(
    data: Path, out: Path, model_dir: str | None, alphas: Sequence[float], member: int | None
) -> dict[str, Any]:
    """The three measurements of the module docstring, at each alpha."""
    from model.cascade_fit import Measurements
    from model.verifier.engines import VerifierConfig

    sheets = SheetScores(data, out, model_dir, member)
    measured = Measurements(data, out, VerifierConfig(), model_dir)
    calib = measured.files(CALIB)
    fit = measured.files(FIT_FOLDER)
    if not calib or not fit:
        raise ConfigError(
            f"{data} lacks {CALIB} or {FIT_FOLDER}: build it with `alocc data build` (alocc-data-10 or later)"
        )
    sources = [photo_source(key) for key in calib]
    calib_scores, fit_scores = sheets.get(calib), sheets.get(fit)
    folders = load_eval_folders(measured, 1.1, None, None)  # model scores and kinds; nothing read
    folder_scores = [sheets.get(measured.files(folder.folder)) for folder in folders]
    rows = []
    for alpha in alphas:
        bound = raised_bound(calib_scores, sources, alpha)
        route = SheetRoute(card_from=bound["card_from"], member=member)
        rows.append(
            {
                "alpha": alpha,
                **bound,
                "fit_caught": float(np.mean(route.cards(fit_scores))),
                "fit_caught_at_conformal_bound": float(np.mean(fit_scores >= bound["conformal_bound"])),
                "left_out_flags": left_out_flags(calib_scores, sources, alpha),
                "route_alone": family_rates(folders, [route.cards(scores) for scores in folder_scores]),
            }
        )
    return {
        "model_version": sheets.scorer.model_version,
        "member": member,
        "search": sheets.search.to_json(),
        "opencv": _opencv_version(),
        "calibration_photos": len(calib),
        "fit_folder": FIT_FOLDER,
        "fit_cards": len(fit),
        "highest_calibration_photos": highest_photos(calib_scores, calib),
        "rows": rows,
    }


def format_tables(report: dict[str, Any]) -> str:
    """The bound and the fit family per alpha, then each evaluation family's share made a card."""
    lines = [
        f"sheet route over {report['model_version']} (member {report['member']}, OpenCV "
        f"{report['opencv']}), bounded on {report['calibration_photos']} calibration photos",
        "| alpha | conformal bound | source margin (logits) | card_from | train/photographed caught "
        "| (at the bare bound) | calibration photos reaching a bound set without their source |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["rows"]:
        left_out = ", ".join(f"{name} {count}" for name, count in row["left_out_flags"].items() if count)
        lines.append(
            f"| {row['alpha']} | {row['conformal_bound']:.5f} | {row['source_margin_logits']:.2f} | "
            f"{row['card_from']:.5f} | {row['fit_caught']:.1%} | "
            f"{row['fit_caught_at_conformal_bound']:.1%} | {left_out or 'none'} |"
        )
    highest = report.get("highest_calibration_photos", [])
    if highest:
        lines.append(
            "calibration photos with the highest best sheets (the bound is one or two of them): "
            + ", ".join(f"{photo['key']} {photo['sheet']:.5f}" for photo in highest)
        )
    alphas = [row["alpha"] for row in report["rows"]]
    lines += [
        "",
        "| folder / family | images | the route alone makes cards of: "
        + " | ".join(f"alpha {alpha}" for alpha in alphas)
        + " |",
        "| --- | --- | " + " | ".join("---" for _ in alphas) + " |",
    ]
    first = report["rows"][0]["route_alone"]
    for folder, result in first.items():
        for family in ["all", *result["families"]]:
            cells = []
            for row in report["rows"]:
                counts = row["route_alone"][folder]
                counts = counts if family == "all" else counts["families"][family]
                share = 1.0 - counts["rate"] if result["measure"] == "missed" else counts["rate"]
                cells.append(f"{share:.1%}")
            images = result["images"] if family == "all" else result["families"][family]["images"]
            lines.append(f"| {folder} / {family} | {images} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def register(subcommands: Any) -> None:
    """Attach `alocc cascade sheets` to the root parser's subparsers."""
    from model.model_commands import add_cascade_measurement

    parser = add_cascade_measurement(
        subcommands,
        action="sheets",
        action_help="measure the sheet route (notices photographed in a scene) before serving it",
        description=__doc__,
        out_help="folder for caches and the JSON report",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        nargs="+",
        default=list(DEFAULT_ALPHAS),
        help="the route's target false-positive rates on calibration photos (default %(default)s)",
    )
    parser.add_argument(
        "--member",
        type=int,
        default=DEFAULT_SHEET_MEMBER,
        help="the ensemble member that scores the sheets (default %(default)s; -1: the whole ensemble)",
    )
    parser.set_defaults(handler=run_sheets)


def run_sheets(args: argparse.Namespace) -> int:
    """`alocc cascade sheets`."""
    member = None if args.member < 0 else args.member
    report = measure(args.data, args.out, args.model, args.alpha, member)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cascade-sheets.json").write_text(json.dumps(report, indent=1) + "\n")
    print(format_tables(report))
    return 0
