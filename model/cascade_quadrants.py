"""`alocc cascade quadrants`: what the quadrant route (`model.quadrants`) reaches, measured before serving.

Two measurements, in the order the choice must be made:

1. **The choice, on the training family** (`--held-out-model`, `--held-out-layouts`): a discriminator
   trained without some of the training layouts (see `docs/CASCADE.md` for its command) stands in for a
   model meeting designs it never learned. The served recipe's main rule is refitted on its scores
   (`val/target` of the layouts it learned against `val/other`) and calibrated on `calib/other`; at the
   served card's reading share, each split of that share between the whole picture's score and the
   largest part score is measured on the training cards of the layouts it never learned: how many are
   sent, how many caught, and how many calibration photos are flagged when each source is left out in
   turn. The whole-picture share with the most caught is the route's `--whole-share`.
2. **The report, on the evaluation families**: the served card's cascade (its gate, rules and reading
   share) with the route at `--whole-share`, its threshold recalibrated on `calib/other` at each
   `--alpha`, per evaluation family, beside the served cascade as it is.

Nothing served changes: the worker does not compute part scores yet. Part scores are cached per model
version in `--out` (`quadrant-scores-<version>.jsonl`; about 15 ms per picture with the default model on
two cores); verifier features come from the fit's caches (`alocc cascade fit`), read where missing.
Writes `cascade-quadrants.json` and prints both tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from model.cascade import RULE_INPUTS, CascadePolicy, CascadeRule, TextCascade, fit_rule, rule_inputs
from model.cascade_fit import (
    CALIB,
    JsonLinesCache,
    Measurements,
    _sent_features,
    family_rates,
    fit_rule_on,
    load_eval_folders,
    photo_source,
)
from model.errors import ConfigError
from model.quadrants import route_bounds

# The whole picture's share of the reading budget, chosen on the training family's simulation (the most
# held-out-layout cards caught; `docs/CASCADE.md`): the model's own score sends only the calibration photos
# it is surest of, the parts send the rest.
DEFAULT_WHOLE_SHARE = 0.0025
# The member that scores the corners: the default ensemble's second, a 96-pixel discriminator trained with
# structured negatives, the recipe of the discriminator the simulation trained without three layouts. One
# member costs a third of the ensemble's passes (the route's four passes per picture are its cost on a CPU).
DEFAULT_PARTS_MEMBER = 1
SIMULATED_WHOLE_SHARES = (0.0025, 0.005, 0.01)
_BATCH = 64
# Names how the corners are decoded (`model.decode.decode_quadrants`), so that cached part scores of an
# earlier decode are not mixed with new ones: "boxes" resamples the four corner boxes alone.
CORNERS_DECODE = "boxes"


class PartScores:
    """The whole-picture score and the largest part score of dataset files for one model, cached."""

    def __init__(self, data: Path, out: Path, model_dir: str | None, member: int | None = None) -> None:
        """Parts scored by the whole ensemble, or by its `member` (`Scorer.member_d_x`)."""
        from model.scoring import Scorer  # imports torch

        self.data = data
        self.member = member
        self.scorer = Scorer.load(model_dir, device="cpu")
        by = "" if member is None else f"-member{member}"
        self._cache = JsonLinesCache(
            out / f"quadrant-scores-{self.scorer.model_version}{by}-{CORNERS_DECODE}.jsonl"
        )

    def get(self, keys: Sequence[str]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """`(whole, largest part)` scores of each file."""
        from tqdm import tqdm

        progress = tqdm(desc=f"parts ({self.scorer.model_version})", unit="img", file=sys.stderr)
        records = self._cache.get_many(keys, lambda part: self._score(part, progress), chunk=_BATCH)
        progress.close()
        return np.array([r["whole"] for r in records]), np.array([r["parts"] for r in records])

    def _score(self, keys: list[str], progress: Any) -> list[dict[str, float]]:
        import torch

        from model.decode import decode_with_parts
        from model.preprocess import normalise
        from model.quadrants import largest_part_scores, split_parts
        from model.scoring import ScoreMode

        # The worker's path: each picture decoded whole and in parts, the parts scored as one batch.
        decoded = [decode_with_parts((self.data / key).read_bytes(), self.scorer.input_size) for key in keys]
        whole, parts = split_parts(torch.from_numpy(np.stack(decoded)).permute(0, 1, 4, 2, 3).contiguous())
        assert parts is not None
        scores = self.scorer.score(normalise(whole), ScoreMode.D_X).scores
        largest = largest_part_scores(self.scorer, parts, self.member)
        progress.update(len(keys))
        return [{"whole": float(w), "parts": float(p)} for w, p in zip(scores, largest, strict=True)]


def _layout(key: str) -> str:
    """`card-photo_side-00012.jpg` -> `photo_side`."""
    return key.rsplit("/", 1)[-1].split("-")[1]


def simulate_held_out(
    measured: Measurements,
    parts: PartScores,
    held_out: Sequence[str],
    share: float,
    *,
    alphas: Sequence[float],
    whole_shares: Sequence[float] = SIMULATED_WHOLE_SHARES,
) -> list[dict[str, Any]]:
    """Per alpha, one row per split of `share`: the whole score alone first, then each of `whole_shares`
    with the main rule deciding every image read, then the first of `whole_shares` with a text-only rule
    (`fit_text_rule`) deciding the images only the parts sent."""
    val_cards = measured.files("val/target")
    seen = [key for key in val_cards if _layout(key) not in held_out]
    unseen_val = [key for key in val_cards if _layout(key) in held_out]
    unseen = [key for key in measured.files("train/target") if _layout(key) in held_out]
    other, calib = measured.files("val/other"), measured.files(CALIB)
    if not unseen or not seen:
        raise ConfigError(f"no training cards of the layouts {list(held_out)}, or none of the others")
    keys = [*seen, *unseen_val, *unseen, *other, *calib]
    whole, largest = parts.get(keys)
    score = dict(zip(keys, whole, strict=True))
    part = dict(zip(keys, largest, strict=True))
    features = dict(zip(keys, measured.features(keys), strict=True))

    def inputs(group: Sequence[str]) -> npt.NDArray[np.float64]:
        return rule_inputs([score[k] for k in group], [features[k] for k in group], RULE_INPUTS)

    labels = np.r_[np.ones(len(seen)), np.zeros(len(other))].astype(bool)
    rule = fit_rule(np.vstack([inputs(seen), inputs(other)]), labels, names=RULE_INPUTS)
    text_rule = fit_text_rule(measured, seen, other)
    calib_whole = np.array([score[k] for k in calib])
    calib_parts = np.array([part[k] for k in calib])
    splits = [(share, None), *((w, None) for w in whole_shares), (whole_shares[0], text_rule)]
    rows = []
    for alpha in alphas:
        for whole_share, parts_rule in splits:
            send_from, parts_from = route_bounds(calib_whole, calib_parts, share, whole_share)
            policy = CascadePolicy(send_from, rule, 1.0, parts_send_from=parts_from, parts_rule=parts_rule)

            def cascade(group: Sequence[str], policy: CascadePolicy = policy) -> Any:
                scores = np.array([score[k] for k in group])
                rows_of = [features[k] for k in group]
                return policy.cascade_scores(scores, rows_of, part_scores=[part[k] for k in group]), (
                    policy.sends(scores, part_scores=[part[k] for k in group])
                )

            route = "whole picture only" if whole_share == share else f"whole {whole_share:g} + parts"
            rows.append(
                {
                    "route": route + (", text-only rule for the parts' pictures" if parts_rule else ""),
                    "alpha": alpha,
                    "whole_share": whole_share,
                    **_simulated_row(cascade, calib, unseen, unseen_val, alpha),
                }
            )
    return rows


def _simulated_row(
    cascade: Any, calib: list[str], unseen: list[str], unseen_val: list[str], alpha: float
) -> dict[str, Any]:
    """Calibrate `cascade` (keys -> cascade scores, sent) on `calib` at `alpha` and measure it."""
    from model.calibrate import conformal_threshold, left_out_flags  # imports torch

    calib_scores, calib_sent = cascade(calib)
    threshold = conformal_threshold(calib_scores.astype(np.float32), alpha).threshold
    left_out = left_out_flags(calib_scores, [photo_source(key) for key in calib], alpha)
    caught, sent = cascade(unseen)
    return {
        "calib_sent": float(calib_sent.mean()),
        "threshold": float(threshold),
        "unseen_cards": len(unseen),
        "unseen_sent": float(sent.mean()),
        "unseen_caught": float(np.mean(caught >= threshold)),
        "unseen_caught_of_sent": float(np.mean(caught[sent] >= threshold)) if sent.any() else 0.0,
        "unseen_val_caught": float(np.mean(cascade(unseen_val)[0] >= threshold)) if unseen_val else None,
        "calib_flags_source_left_out": sum(left_out.values()),
    }


def fit_text_rule(measured: Measurements, cards: list[str], other: list[str]) -> CascadeRule:
    """The main rule's inputs and data without the model's score: for the pictures only the quadrant route
    sends, whose whole-picture score says little (it is why the whole score did not send them)."""
    return fit_rule_on(measured, cards, other, with_model=False)


def served_with_route(
    measured: Measurements,
    parts: PartScores,
    policy: CascadePolicy,
    whole_share: float,
    *,
    alphas: Sequence[float],
    parts_rule: CascadeRule | None = None,
) -> list[dict[str, Any]]:
    """Per evaluation family: the served cascade as it is, then with the route (and `parts_rule` deciding
    what only the parts send) at each of `alphas`."""
    from model.calibrate import conformal_threshold  # imports torch

    folders = load_eval_folders(measured, 0.0, None, policy.gate)
    calib = measured.files(CALIB)
    calib_scores, calib_looks = measured.scores(calib), measured.looks(calib)
    calib_features = _sent_features(measured, calib, calib_scores, 0.0, gate=policy.gate, looks=calib_looks)
    calib_gated = policy.sends(np.full(len(calib), -1.0), calib_looks)  # the gate's photos alone
    share = float(policy.sends(calib_scores, calib_looks).mean())
    calib_parts = parts.get(calib)[1]
    send_from, parts_from = route_bounds(calib_scores, calib_parts, share, whole_share, calib_gated)
    routed = dataclasses.replace(
        policy,
        send_from=send_from,
        parts_send_from=parts_from,
        parts_member=parts.member,
        parts_rule=parts_rule,
    )

    def decide(
        keys: Sequence[str], scores: np.ndarray, features: Sequence[Any], looks: np.ndarray, route: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        active = routed if route else policy
        part_scores = parts.get(keys)[1] if route else None
        return (
            active.cascade_scores(scores, features, looks, part_scores),
            active.sends(scores, looks, part_scores),
        )

    def rates(route: bool, threshold: float) -> dict[str, Any]:
        decided = [decide(measured.files(f.folder), f.scores, f.features, f.looks, route) for f in folders]
        return family_rates(folders, [out >= threshold for out, _ in decided], [sent for _, sent in decided])

    rows = [
        {"route": "served", "alpha": None, "threshold": policy.threshold, **rates(False, policy.threshold)}
    ]
    calib_route = decide(calib, calib_scores, calib_features, calib_looks, True)[0]
    for alpha in alphas:
        threshold = float(conformal_threshold(calib_route.astype(np.float32), alpha).threshold)
        rows.append(
            {
                "route": f"whole {whole_share:g} + parts",
                "alpha": alpha,
                "send_from": send_from,
                "parts_send_from": parts_from,
                "threshold": threshold,
                **rates(True, threshold),
            }
        )
    return rows


def format_tables(report: dict[str, Any]) -> str:
    """The simulation's table (when measured) and the evaluation's."""
    lines = []
    if report.get("held_out"):
        lines += [
            f"Training family, layouts {', '.join(report['held_out_layouts'])} never learned "
            f"({report['held_out_model']}), reading share {report['share']:.4f}:",
            "| route | alpha | calib read | threshold | unseen cards sent | caught | of sent "
            "| unseen val caught | calib flags, source left out |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for row in report["held_out"]:
            val = row["unseen_val_caught"]
            lines.append(
                f"| {row['route']} | {row['alpha']:g} | {row['calib_sent']:.2%} | {row['threshold']:.3f} "
                f"| {row['unseen_sent']:.1%} "
                f"| {row['unseen_caught']:.1%} | {row['unseen_caught_of_sent']:.1%} "
                f"| {'-' if val is None else f'{val:.1%}'} | {row['calib_flags_source_left_out']} |"
            )
        lines.append("")
    columns = [
        ("eval/target", None, "eval/target missed"),
        ("check/target", None, "check/target missed"),
        ("check/target", "card:caption_strip", "caption strip"),
        ("check/one-line", None, "one-line"),
        ("check/photographed", None, "photographed"),
        ("eval/other", None, "eval/other flagged"),
        ("eval/other", "photo", "photos"),
        ("eval/other", "printed", "printed words"),
    ]
    lines += [
        f"Evaluation families, {report['model_version']}:",
        "| route | alpha | threshold | "
        + " | ".join(name for _, _, name in columns)
        + " | eval/other read |",
        "| --- " * (len(columns) + 4) + "|",
    ]
    for row in report["evaluation"]:
        cells = [
            row[folder]["rate"]
            if family is None
            else row[folder]["families"].get(family, {}).get("rate", float("nan"))
            for folder, family, _ in columns
        ]
        alpha = "card" if row["alpha"] is None else f"{row['alpha']:g}"
        lines.append(
            f"| {row['route']} | {alpha} | {row['threshold']:.4f} | "
            + " | ".join(f"{cell:.1%}" for cell in cells)
            + f" | {row['eval/other']['verifier_share']:.1%} |"
        )
    return "\n".join(lines)


def register(subcommands: Any) -> None:
    """Attach `alocc cascade quadrants` to the root parser's subparsers."""
    from model.model_commands import add_cascade_measurement

    parser = add_cascade_measurement(
        subcommands,
        action="quadrants",
        action_help="measure the quadrant route: chosen on held-out training layouts, reported per family",
        description=__doc__,
        out_help="folder of the fit's caches; JSON goes here",
    )
    parser.add_argument("--held-out-model", help="a discriminator trained without --held-out-layouts")
    parser.add_argument("--held-out-layouts", nargs="+", default=[], help="the layouts it never learned")
    parser.add_argument(
        "--whole-share",
        type=float,
        default=DEFAULT_WHOLE_SHARE,
        help="share of calibration photos the whole picture's score sends (default %(default)s)",
    )
    parser.add_argument(
        "--alpha", type=float, nargs="+", default=[0.003, 0.001], help="target false-positive rates"
    )
    parser.add_argument(
        "--parts-rule",
        choices=["text", "main"],
        default="text",
        help="what decides the pictures only the corners send: a rule on the verifier's features alone "
        "(text), or the main rule, which also weighs the whole picture's score (default %(default)s)",
    )
    parser.add_argument(
        "--parts-member",
        type=int,
        default=DEFAULT_PARTS_MEMBER,
        help="the ensemble member that scores the corners; -1: the whole ensemble (default %(default)s)",
    )
    parser.set_defaults(handler=run_quadrants)


def run_quadrants(args: argparse.Namespace) -> int:
    """`alocc cascade quadrants`."""
    from model.scoring import Scorer  # imports torch

    if bool(args.held_out_model) != bool(args.held_out_layouts):
        raise ConfigError("--held-out-model and --held-out-layouts go together")
    card = Scorer.load(args.model, device="cpu").card
    if card.text_cascade is None:
        raise ConfigError("this checkpoint's card has no text cascade: `alocc cascade attach` first")
    cascade = TextCascade.from_json(card.text_cascade)
    if cascade.policy.parts_send_from is not None or cascade.policy.card_from is not None:
        raise ConfigError(
            "this card's cascade has a quadrant route or a card band already: measure the route over the "
            "fitted cascade (`alocc cascade attach --fit ...` without --quadrants or --card-alpha first)"
        )
    policy = cascade.policy
    measured = Measurements(args.data, args.out, cascade.verifier, args.model)
    calib = measured.files(CALIB)
    share = float(policy.sends(measured.scores(calib), measured.looks(calib)).mean())
    gated = float(policy.sends(np.full(len(calib), -1.0), measured.looks(calib)).mean())
    report: dict[str, Any] = {
        "model_version": card.model_version,
        # The cascade the route was measured over: `alocc cascade attach --quadrants` checks it.
        "cascade_version": cascade.version,
        "whole_share": args.whole_share,
    }
    if args.held_out_model:
        held_out_parts = PartScores(args.data, args.out, args.held_out_model)
        report.update(
            held_out_model=held_out_parts.scorer.model_version,
            held_out_layouts=list(args.held_out_layouts),
            # The served score route's share: what the model's score reads beside the gate.
            share=share - gated,
            held_out=simulate_held_out(
                measured, held_out_parts, args.held_out_layouts, share - gated, alphas=args.alpha
            ),
        )
    member = None if args.parts_member < 0 else args.parts_member
    parts = PartScores(args.data, args.out, args.model, member)
    parts_rule = (
        fit_text_rule(measured, measured.files("val/target"), measured.files("val/other"))
        if args.parts_rule == "text"
        else None
    )
    report["parts_member"] = member
    report["parts_rule"] = None if parts_rule is None else parts_rule.to_json()
    report["evaluation"] = served_with_route(
        measured, parts, policy, args.whole_share, alphas=args.alpha, parts_rule=parts_rule
    )
    (args.out / "cascade-quadrants.json").write_text(json.dumps(report, indent=1) + "\n")
    print(format_tables(report))
    return 0
