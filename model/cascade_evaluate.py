"""`alocc cascade evaluate`: the model alone, the verifier alone and the served cascade, side by side.

For the checkpoint's own text cascade (its card's `text_cascade`), on every evaluation folder of a dataset
built by `alocc data build` (`eval/target`, `check/target`, `check/one-line`, `eval/other` with its
photos, products and products carrying printed words), per family:

- **model only**: the model's score at its card's threshold (what the worker does without the verifier);
- **verifier only**: the verifier reads every image; a rule on its features alone (the cascade's rule
  refitted without the model's score, on the same training images) at a conformal threshold on the same
  calibration photos and target false-positive rate as the cascade;
- **cascade**: the card's policy, as the worker serves it, with the share of images the verifier reads.

Nothing here is chosen or tuned: the model's and the cascade's thresholds come from the card, the
verifier-only rule is fitted on training folders and calibrated on `calib/other`. The verifier-only
column needs the verifier's features of every evaluation and calibration image, so a first run reads a
few thousand images (about 0.3 s each on one core); reads are cached beside the fit's.

Writes `cascade-evaluation.json` and `cascade-band.png` (the model's score distributions with the
uncertain band the verifier reads) into `--out`, and prints the table; with `--record`, also writes the
cascade's rates into the card's `measured` (what `alocc cascade attach` leaves empty after a card band).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model.cascade import CascadePolicy, TextCascade
from model.cascade_fit import (
    CALIB,
    TRAIN_CARDS,
    TRAIN_ONE_LINE,
    TRAIN_OTHER,
    EvalFolder,
    Measurements,
    family_rates,
    fit_rule_on,
    load_eval_folders,
    with_panel_reading,
)
from model.errors import ConfigError

_TIMED_READS = 30  # fresh reads timed for the cost per image


def verifier_only_policy(measured: Measurements, per_folder: int, alpha: float) -> CascadePolicy:
    """A rule on the verifier's features alone, fitted like the cascade's and calibrated on all photos."""
    from model.calibrate import conformal_threshold  # imports torch

    train_cards = measured.files(TRAIN_CARDS, per_folder) + measured.files(TRAIN_ONE_LINE, per_folder)
    train_other = [key for folder in TRAIN_OTHER for key in measured.files(folder, per_folder)]
    rule = fit_rule_on(measured, train_cards, train_other, with_model=False)
    calib = measured.files(CALIB)
    scores = rule.score(np.full(len(calib), 0.5), measured.features(calib))
    return CascadePolicy(0.0, rule, conformal_threshold(scores.astype(np.float32), alpha).threshold)


def verifier_only_flags(policy: CascadePolicy, folder: EvalFolder) -> np.ndarray:
    """The verifier-only decision of every image of a folder (all of them read)."""
    rows = [row for row in folder.features if row is not None]
    assert len(rows) == len(folder.scores), "the verifier-only column needs every image read"
    return policy.rule.score(np.full(len(rows), 0.5), rows) >= policy.threshold


def time_reads(measured: Measurements, keys: Sequence[str]) -> float:
    """Mean milliseconds of a fresh verifier read (decode included) over `keys`."""
    verifier = measured.verifier()
    started = time.perf_counter()
    for key in keys:
        verifier.features((measured.data / key).read_bytes())
    return (time.perf_counter() - started) * 1000 / max(1, len(keys))


def _layouts(
    measured: Measurements, policy: CascadePolicy, folder: EvalFolder
) -> list[dict[str, Any] | None]:
    """The layout features of the folder's pictures the score route sends, where the policy has a layout
    band (found now where not cached); None for the others, and for every picture without a band."""
    keys = measured.files(folder.folder)
    if policy.layout_band is None:
        return [None] * len(keys)
    sent = policy.score_routed(folder.scores, folder.looks)
    routed = [key for key, send in zip(keys, sent, strict=True) if send]
    found = dict(zip(routed, measured.layout(routed), strict=True))
    return [found.get(key) for key in keys]


def _second_readings(
    measured: Measurements,
    policy: CascadePolicy,
    folder: EvalFolder,
    *,
    first_scores: np.ndarray,
    parts: np.ndarray | None,
    sheets: np.ndarray | None,
) -> list[dict[str, Any] | None] | None:
    """The second reading's features of the folder's pictures the policy reads again (`first_scores`: the
    cascade's scores without the second reading; read now where not cached); None for the others; None for
    the whole folder where the policy has no second reading."""
    second = policy.second_read
    if second is None:
        return None
    keys = measured.files(folder.folder)
    page_read = policy.sends(folder.scores, folder.looks, parts, sheets) & np.array(
        [row is not None for row in folder.features], dtype=bool
    )
    wanted = [
        keys[int(i)]
        for i in np.flatnonzero(
            policy.second_reads(folder.scores, first_scores, folder.looks, page_read, folder.features)
        )
    ]
    found = dict(zip(wanted, measured.second(wanted, second), strict=True))
    return [found.get(key) for key in keys]


def evaluate_cascade(
    measured: Measurements,
    cascade: TextCascade,
    model_threshold: float,
    *,
    per_folder: int,
    alpha: float,
    part_scores: Callable[[list[str]], np.ndarray] | None = None,
    sheet_scores: Callable[[list[str]], np.ndarray] | None = None,
    sheet_characters: Callable[[list[str], np.ndarray], np.ndarray] | None = None,
    sheet_second_characters: Callable[[list[str], np.ndarray], np.ndarray] | None = None,
) -> dict[str, Any]:
    """The three columns for every evaluation folder and family; see the module docstring. A cascade with
    the quadrant route needs `part_scores` (keys -> their largest part scores, `model.quadrants`), one with
    the sheet route `sheet_scores` (keys -> their best sheet scores, `model.sheets`), one that reads sheets
    `sheet_characters` (keys and their best sheet scores -> the characters read in those sheets,
    `model.cascade_sheets.SheetReadings`), one that reads them twice `sheet_second_characters` (the same, as
    the second engine reads them)."""
    # send_from 0: the verifier reads every image; the page reading alone for the verifier-only column,
    # and as the policy reads them (the gate's images with its line reading too) for the cascade.
    pages = load_eval_folders(measured, 0.0, None, None)
    policy = cascade.policy
    folders = load_eval_folders(measured, 0.0, None, policy.gate) if policy.gate is not None else pages
    folders = [with_panel_reading(measured, policy, folder) for folder in folders]
    alone = verifier_only_policy(measured, per_folder, alpha)
    if policy.parts_send_from is not None and part_scores is None:
        raise ConfigError("this cascade has a quadrant route: evaluating it needs the part scores")
    parts = [None if part_scores is None else part_scores(measured.files(f.folder)) for f in folders]
    if policy.sheets is not None and sheet_scores is None:
        raise ConfigError("this cascade has a sheet route: evaluating it needs the sheet scores")
    sheets = [None if sheet_scores is None else sheet_scores(measured.files(f.folder)) for f in folders]
    reads_sheets = policy.sheets is not None and policy.sheets.read_from is not None
    if reads_sheets and sheet_characters is None:
        raise ConfigError("this cascade reads sheets: evaluating it needs the characters read in them")
    characters = [
        None if sheet_characters is None or q is None else sheet_characters(measured.files(f.folder), q)
        for f, q in zip(folders, sheets, strict=True)
    ]
    twice = reads_sheets and policy.sheets is not None and policy.sheets.second_read is not None
    if twice and sheet_second_characters is None:
        raise ConfigError("this cascade reads sheets twice: evaluating it needs the second engine's reads")
    second_characters = [
        None
        if sheet_second_characters is None or q is None
        else sheet_second_characters(measured.files(f.folder), q)
        for f, q in zip(folders, sheets, strict=True)
    ]
    layouts = [_layouts(measured, policy, f) for f in folders]
    inputs = list(zip(folders, parts, sheets, characters, second_characters, layouts, strict=True))

    def scored(serving: CascadePolicy, row: tuple[Any, ...], second: Any = None) -> np.ndarray:
        """`serving`'s cascade scores of one folder's `inputs` row (with the second reading's features)."""
        f, p, s, c, c2, layout = row
        return serving.cascade_scores(
            f.scores,
            f.features,
            f.looks,
            p,
            s,
            sheet_characters=c,
            layout_features=layout,
            second_features=second,
            sheet_second_characters=c2,
        )

    # The first readings alone decide what the second engine reads.
    first = dataclasses.replace(policy, second_read=None)
    seconds = [
        _second_readings(
            measured, policy, row[0], first_scores=scored(first, row), parts=row[1], sheets=row[2]
        )
        for row in inputs
    ]
    columns = {
        "model_only": family_rates(folders, [f.scores >= model_threshold for f in folders]),
        "verifier_only": family_rates(pages, [verifier_only_flags(alone, f) for f in pages]),
        "cascade": family_rates(
            folders,
            [
                scored(policy, row, second) >= policy.threshold
                for row, second in zip(inputs, seconds, strict=True)
            ],
            [
                policy.sends(f.scores, f.looks, p, s) | policy.sheet_reads(f.scores, s)
                for f, p, s in zip(folders, parts, sheets, strict=True)
            ],
        ),
    }
    sample = [key for key in measured.files(folders[-1].folder, _TIMED_READS)]
    report: dict[str, Any] = {
        "cascade_version": cascade.version,
        "model_threshold": model_threshold,
        "send_from": policy.send_from,
        "parts_send_from": policy.parts_send_from,
        "sheet_card_from": None if policy.sheets is None else policy.sheets.card_from,
        "sheet_read_from": None if policy.sheets is None else policy.sheets.read_from,
        "cascade_threshold": policy.threshold,
        "verifier_only_threshold": alone.threshold,
        "alpha": alpha,
        "read_ms": time_reads(measured, sample),
        "columns": columns,
        "model_scores": {f.folder: {"scores": f.scores.tolist(), "kinds": f.kinds} for f in folders},
    }
    if policy.second_read is not None:
        # The share of each folder read again by the second engine.
        report["second_read"] = {
            f.folder: sum(row is not None for row in second or []) / max(1, len(f.scores))
            for f, second in zip(folders, seconds, strict=True)
        }
    if policy.layout_band is not None:
        # The share of each folder the layout band made cards of without a read.
        report["layout_decided"] = {
            f.folder: float(policy.layout_cards(f.scores, layout, f.looks).mean())
            for f, layout in zip(folders, layouts, strict=True)
        }
    if part_scores is not None:
        report["part_scores"] = {
            f.folder: [float(v) for v in p] for f, p in zip(folders, parts, strict=True) if p is not None
        }
    if sheet_scores is not None:
        report["sheet_scores"] = {
            f.folder: [float(v) for v in q] for f, q in zip(folders, sheets, strict=True) if q is not None
        }
    return report


def format_table(report: dict[str, Any]) -> str:
    """Per family: missed (cards) or flagged (others) by each column, and the verifier's share."""
    columns = report["columns"]
    parts_from = report.get("parts_send_from")
    route = "" if parts_from is None else f" (and from a part score of {parts_from:.4f})"
    sheet_from = report.get("sheet_card_from")
    if sheet_from is not None:
        route += f"; cards from a sheet score of {sheet_from:.5f}"
    read_from = report.get("sheet_read_from")
    if read_from is not None:
        route += f" (sheets read from {read_from:.5f})"
    decided = report.get("layout_decided")
    if decided:
        shares = ", ".join(f"{folder} {share:.1%}" for folder, share in decided.items())
        route += f"; cards on their layout, unread: {shares}"
    again = report.get("second_read")
    if again:
        shares = ", ".join(f"{folder} {share:.1%}" for folder, share in again.items())
        route += f"; read again by the second engine: {shares}"
    lines = [
        f"{report['cascade_version']}: model threshold {report['model_threshold']:.4f}, verifier reads from "
        f"{report['send_from']:.4f}{route}, cascade threshold {report['cascade_threshold']:.4f}; "
        f"a read costs {report['read_ms']:.0f} ms",
        "| folder / family | images | measure | model only | verifier only | cascade | cascade, 95% interval "
        "| verifier share |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for folder, result in columns["cascade"].items():
        measure = result["measure"]
        for family, counts in [("all", result), *result["families"].items()]:
            cells = [columns[name][folder] for name in ("model_only", "verifier_only")]
            rates = [cell["rate"] if family == "all" else cell["families"][family]["rate"] for cell in cells]
            share = (
                result["verifier_share"] if family == "all" else counts.get("verifier_share", float("nan"))
            )
            low, high = counts.get("interval95", (float("nan"), float("nan")))
            lines.append(
                f"| {folder} / {family} | {counts['images']} | {measure} | {rates[0]:.1%} | {rates[1]:.1%} | "
                f"{counts['rate']:.1%} | {100 * low:.1f}-{100 * high:.1f}% | {share:.1%} |"
            )
    return "\n".join(lines)


def plot_band(report: dict[str, Any], path: Path) -> None:
    """The model's score distribution per folder, with the band the verifier reads and the threshold; where
    the cascade has the quadrant route, beside it the largest part score's, with the band the corners send;
    where it has the sheet route, the best sheet score's, in logits (its bound lies within 0.003 of 1), with
    the band the route makes cards of."""
    import matplotlib

    matplotlib.use("Agg")  # headless
    import matplotlib.pyplot as plt

    groups = report["model_scores"]
    parts: dict[str, list[float]] = report.get("part_scores") or {}
    sheets: dict[str, list[float]] = report.get("sheet_scores") or {}
    columns = [("scores", "model score", report["send_from"], "the verifier reads")]
    if parts:
        columns.append(("parts", "largest part score", report["parts_send_from"], "the corners send"))
    if sheets:
        bound = float(_logits(np.array([report["sheet_card_from"]]))[0])
        columns.append(("sheets", "best sheet score (logit)", bound, "the sheet route makes cards"))
    figure, axes = plt.subplots(
        len(groups), len(columns), figsize=(8 * len(columns), 2.2 * len(groups)), sharex="col", squeeze=False
    )
    for row, (folder, data) in enumerate(groups.items()):
        kinds = np.array(data["kinds"])
        for column, (name, label, band_from, band_label) in enumerate(columns):
            axis = axes[row, column]
            if name == "sheets":
                values, bins = _logits(np.array(sheets[folder])), np.linspace(-12.0, 12.0, 49)
            else:
                values = np.array(data["scores"] if name == "scores" else parts[folder])
                bins = np.linspace(0.0, 1.0, 51)
            for kind in sorted(set(kinds)):
                axis.hist(values[kinds == kind], bins=bins, histtype="step", label=kind, linewidth=1.2)
            axis.axvspan(band_from, bins[-1], color="tab:orange", alpha=0.12, label=band_label)
            if name == "scores":
                axis.axvline(
                    report["model_threshold"], color="black", linestyle="--", label="model threshold"
                )
            axis.set_yscale("log")
            axis.set_ylabel("images")
            axis.set_title(f"{folder}: {label}", fontsize=9)
            axis.legend(fontsize=6, ncol=3, loc="upper center")
            if row == len(groups) - 1:
                axis.set_xlabel(label)
    figure.suptitle("Where the model sends images to the text verifier", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _logits(values: np.ndarray) -> np.ndarray:
    """Scores as logits, clipped to +-12 (a sheet-less picture scores 0)."""
    clipped = np.clip(values.astype(np.float64), 1e-6, 1 - 1e-6)
    return np.clip(np.log(clipped) - np.log1p(-clipped), -12.0, 12.0)


def register(subcommands: Any) -> None:
    """Attach `alocc cascade evaluate` to the root parser's subparsers."""
    from model.model_commands import add_cascade_measurement

    parser = add_cascade_measurement(
        subcommands,
        action="evaluate",
        action_help="model only, verifier only and the served cascade per evaluation family",
        description=__doc__,
        out_help="folder for caches, JSON and the plot",
    )
    parser.add_argument("--per-folder", type=int, default=200, help="training images per folder (rule fit)")
    parser.add_argument(
        "--record",
        action="store_true",
        help="also record the cascade's rates on the checkpoint's card (`measured`; its version stays)",
    )
    parser.set_defaults(handler=run_evaluate)


def record_on_card(model_dir: Path, report: dict[str, Any]) -> None:
    """Write the cascade column of `report` into the card's `measured`, which names no decision: the
    checkpoint serves the same version, now with its own evaluation."""
    from model.checkpoint import read_card, write_card

    card = read_card(model_dir)
    if card.text_cascade is None:
        raise ConfigError("this checkpoint's card has no text cascade")
    cascade = TextCascade.from_json(card.text_cascade)
    if cascade.version != report["cascade_version"]:
        raise ConfigError(f"the evaluation is of {report['cascade_version']}, not of {cascade.version}")
    measured = dataclasses.replace(cascade, measured=report["columns"]["cascade"])
    write_card(model_dir, dataclasses.replace(card, text_cascade=measured.to_json()))


def run_evaluate(args: argparse.Namespace) -> int:
    """`alocc cascade evaluate`."""
    from model.scoring import Scorer  # imports torch

    scorer = Scorer.load(args.model, device="cpu")
    if scorer.card.text_cascade is None:
        raise ConfigError("this checkpoint's card has no text cascade: `alocc cascade attach` first")
    cascade = TextCascade.from_json(scorer.card.text_cascade)
    args.out.mkdir(parents=True, exist_ok=True)
    measured = Measurements(args.data, args.out, cascade.verifier, args.model)
    alpha = float(cascade.calibration.get("target_fpr", 0.003))
    part_scores = None
    if cascade.policy.parts_send_from is not None:
        from model.cascade_quadrants import PartScores

        parts = PartScores(args.data, args.out, args.model, cascade.policy.parts_member)
        part_scores = lambda keys: parts.get(keys)[1]  # noqa: E731 - the largest part score alone
    sheet_scores = sheet_characters = sheet_second_characters = None
    if cascade.policy.sheets is not None:
        from model.cascade_sheets import SheetScores

        route = cascade.policy.sheets
        sheet_scorer = SheetScores(args.data, args.out, args.model, route.member, route.search)
        sheet_scores = sheet_scorer.get
        if route.read_from is not None:
            from model.cascade_sheets import SheetReadings

            sheet_characters = SheetReadings(sheet_scorer, measured).characters
            if route.second_read is not None:
                second = SheetReadings(sheet_scorer, measured, route.second_read)
                sheet_second_characters = second.characters
    report = evaluate_cascade(
        measured,
        cascade,
        scorer.threshold(),
        per_folder=args.per_folder,
        alpha=alpha,
        part_scores=part_scores,
        sheet_scores=sheet_scores,
        sheet_characters=sheet_characters,
        sheet_second_characters=sheet_second_characters,
    )
    plot_band(report, args.out / "cascade-band.png")
    (args.out / "cascade-evaluation.json").write_text(json.dumps(report, indent=1) + "\n")
    print(format_table(report))
    if args.record:
        from model.scoring import default_model_dir

        record_on_card(Path(args.model) if args.model else default_model_dir(), report)
    return 0
