"""`alocc cascade attach`: put a fitted cascade on a checkpoint's card, so that one version names it whole.

`alocc cascade fit` measures the curve and chooses a point; this writes that point (the verifier's engine,
version and configuration, the rule, `send_from` and the threshold, how they were calibrated and what the
point measured) into `card.json` as `text_cascade`; with `--quadrants`, the quadrant route that
`alocc cascade quadrants` measured over that cascade (`model.quadrants`), at `--route-alpha`. The weights
are not touched: the checkpoint is the same ALOCC model, now served with its verifier under the cascade's
own version (`TextCascade.version`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.cascade import CascadePolicy, CascadeRule, TextCascade
from model.errors import ConfigError
from model.verifier.engines import VerifierConfig

if TYPE_CHECKING:  # model.checkpoint imports torch: not at `alocc --help` time
    from model.checkpoint import ModelCard


def cascade_from_fit(report: dict[str, Any], card: ModelCard) -> TextCascade:
    """The cascade of a fit report's chosen point, over the model `card` describes.

    Raises:
        ConfigError: the report was fitted over another model, or lacks what the card must record.
    """
    if report.get("model_version") != card.model_version:
        raise ConfigError(
            f"the cascade was fitted over {report.get('model_version')!r}, not over this checkpoint's "
            f"{card.model_version!r}: fit it again with --model"
        )
    if "engine_version" not in report:
        raise ConfigError(
            "the fit report does not record the OCR engine's version: run `alocc cascade fit` again"
        )
    chosen = next(point for point in report["curve"] if point["send_from"] == report["chosen_send_from"])
    return TextCascade(
        base_model_version=card.model_version,
        verifier=VerifierConfig(**report["verifier"]),
        engine_version=str(report["engine_version"]),
        policy=CascadePolicy.from_json(report["policy"]),
        calibration={
            "method": "conformal",
            "target_fpr": report["alpha"],
            "calibration_photos": report["calibration_photos"],
            "budget_share": report["budget_share"],
            "verifier_share_calib_photos": chosen["verifier_share_calib_photos"],
            "rule_fitted_on": report["fit"],
            "train_card_recall": chosen["train_card_recall"],
        },
        measured=chosen["eval"],
    )


def with_quadrant_route(cascade: TextCascade, report: dict[str, Any], alpha: float) -> TextCascade:
    """The cascade with the quadrant route that `alocc cascade quadrants` measured over it at `alpha`.

    Raises:
        ConfigError: the report was measured over another cascade, or has no route at `alpha`.
    """
    if report.get("cascade_version") != cascade.version:
        raise ConfigError(
            f"the quadrant route was measured over {report.get('cascade_version')!r}, not over the fitted "
            f"cascade {cascade.version!r}: run `alocc cascade quadrants` on the attached fit first"
        )
    row = next((r for r in report["evaluation"] if r.get("alpha") == alpha), None)
    if row is None:
        raise ConfigError(
            f"the quadrant report has no route at alpha {alpha}: measure it with --alpha {alpha}"
        )
    policy = dataclasses.replace(
        cascade.policy,
        send_from=float(row["send_from"]),
        parts_send_from=float(row["parts_send_from"]),
        threshold=float(row["threshold"]),
        parts_member=report.get("parts_member"),
        parts_rule=CascadeRule.from_json(report["parts_rule"]) if report.get("parts_rule") else None,
    )
    calibration = {
        **cascade.calibration,
        "target_fpr": alpha,
        "quadrant_route": {
            "whole_share": report["whole_share"],
            "chosen_on": report.get("held_out", []),
            "held_out_layouts": report.get("held_out_layouts", []),
        },
    }
    measured = {key: value for key, value in row.items() if "/" in key}
    return dataclasses.replace(cascade, policy=policy, calibration=calibration, measured=measured)


def attach(
    model_dir: Path,
    out_dir: Path,
    report: dict[str, Any],
    quadrants: tuple[dict[str, Any], float] | None = None,
) -> ModelCard:
    """Write the checkpoint with the cascade into `out_dir` (may be `model_dir`); returns its card. With
    `quadrants` (a `cascade-quadrants.json` report and an alpha), the cascade gets that quadrant route."""
    from model.checkpoint import WEIGHTS_FILE, read_card, write_card

    card = read_card(model_dir)
    cascade = cascade_from_fit(report, card)
    if quadrants is not None:
        cascade = with_quadrant_route(cascade, *quadrants)
    out_dir.mkdir(parents=True, exist_ok=True)
    if out_dir.resolve() != model_dir.resolve():
        shutil.copyfile(model_dir / WEIGHTS_FILE, out_dir / WEIGHTS_FILE)
    attached = dataclasses.replace(card, text_cascade=cascade.to_json())
    write_card(out_dir, attached)
    return attached


def register(subcommands: Any) -> None:
    """Attach `alocc cascade attach` to the root parser's subparsers."""
    from model.model_commands import add_grouped_command

    parser = add_grouped_command(
        subcommands,
        group="cascade",
        group_help="the model + text verifier cascade",
        action="attach",
        action_help="record a fitted cascade on a checkpoint's card (its own model version)",
        description=__doc__,
    )
    parser.add_argument(
        "--fit", type=Path, required=True, help="cascade-ENGINE.json from `alocc cascade fit`"
    )
    parser.add_argument(
        "--model", type=Path, help="checkpoint directory (default: the shipped default model)"
    )
    parser.add_argument("--out", type=Path, help="where to write the checkpoint (default: in place)")
    parser.add_argument(
        "--quadrants",
        type=Path,
        help="cascade-quadrants.json from `alocc cascade quadrants`: also serve its quadrant route",
    )
    parser.add_argument(
        "--route-alpha",
        type=float,
        default=0.001,
        help="the route's target false-positive rate (default %(default)s)",
    )
    parser.set_defaults(handler=run_attach)


def run_attach(args: argparse.Namespace) -> int:
    """`alocc cascade attach`."""
    from model.scoring import default_model_dir  # imports torch: not at `alocc --help` time

    model_dir = args.model or default_model_dir()
    quadrants = (json.loads(args.quadrants.read_text()), args.route_alpha) if args.quadrants else None
    card = attach(model_dir, args.out or model_dir, json.loads(args.fit.read_text()), quadrants)
    assert card.text_cascade is not None
    policy = card.text_cascade["policy"]
    route = f", parts_send_from {policy['parts_send_from']:.4f}" if "parts_send_from" in policy else ""
    print(
        f"{args.out or model_dir}: serves {card.serving_version} (model {card.model_version}, "
        f"verifier {card.text_cascade['engine_version']}, send_from {policy['send_from']:.4f}{route}, "
        f"threshold {policy['threshold']:.4f})"
    )
    return 0
