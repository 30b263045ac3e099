"""`alocc` subcommands owned by the model package: train, calibrate, ensemble, info.

Also attaches the subcommands of the model's sibling modules (data building, evaluation, offline
scoring, reports, benchmarks) when those modules are present. Heavy imports (torch) happen inside
the handlers so that building the parser stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import weakref
from pathlib import Path
from typing import Any

# Modules that may contribute subcommands through a `register(subcommands)` function.
_OPTIONAL_REGISTRARS = (
    "model.data.data_commands",
    "model.evaluate",
    "model.report",
    "model.offline_score",
    "model.benchmarks",
    "model.verifier.measure",
    "model.cascade_fit",
    "model.cascade_card",
    "model.cascade_evaluate",
    "model.cascade_draws",
    "model.cascade_compare",
    "model.cascade_quadrants",
    "model.cascade_sheets",
)

# Each group parser's own subparsers, so that several modules can add actions to one group.
_GROUP_ACTIONS: weakref.WeakKeyDictionary[argparse.ArgumentParser, Any] = weakref.WeakKeyDictionary()


def register(subcommands: Any) -> None:
    """Attach the model subcommands to the root parser's subparsers."""
    _register_train(subcommands)
    _register_calibrate(subcommands)
    _register_ensemble(subcommands)
    _register_info(subcommands)
    for name in _OPTIONAL_REGISTRARS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # Only "this module is not there yet" is tolerated; a missing dependency inside an
            # existing module is a real error and propagates.
            if exc.name is None or not name.startswith(exc.name):
                raise
            continue
        registrar = getattr(module, "register", None)
        if registrar is not None:
            registrar(subcommands)


def add_grouped_command(
    subcommands: Any, *, group: str, group_help: str, action: str, action_help: str, description: str | None
) -> argparse.ArgumentParser:
    """Add `alocc GROUP ACTION` (e.g. `alocc cascade fit`) and return the action's parser.

    The first action of a group creates the group's parser; later actions of the same group join it.
    """
    group_parser = subcommands.choices.get(group)
    if group_parser is None:
        group_parser = subcommands.add_parser(group, help=group_help)
        _GROUP_ACTIONS[group_parser] = group_parser.add_subparsers(
            dest=f"{group}_command", metavar="ACTION", required=True
        )
    return _GROUP_ACTIONS[group_parser].add_parser(
        action,
        help=action_help,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_cascade_command(
    subcommands: Any, *, action: str, action_help: str, description: str | None
) -> argparse.ArgumentParser:
    """Add `alocc cascade ACTION` (the cascade's group of commands) and return the action's parser."""
    return add_grouped_command(
        subcommands,
        group="cascade",
        group_help="the model + text verifier cascade",
        action=action,
        action_help=action_help,
        description=description,
    )


def add_cascade_measurement(
    subcommands: Any, *, action: str, action_help: str, description: str | None, out_help: str
) -> argparse.ArgumentParser:
    """Add `alocc cascade ACTION`, a measurement over a dataset, with the arguments every such measurement
    takes: `--data` (the dataset), `--out` (`out_help`: its caches and report) and `--model`."""
    parser = add_cascade_command(subcommands, action=action, action_help=action_help, description=description)
    parser.add_argument("--data", type=Path, required=True, help="a dataset built by `alocc data build`")
    parser.add_argument("--out", type=Path, required=True, help=out_help)
    parser.add_argument("--model", help="checkpoint directory (default: the shipped default model)")
    return parser


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _register_train(subcommands: Any) -> None:
    p = subcommands.add_parser(
        "train",
        help="train an ALOCC model on a folder of target (announcement card) images",
        description="One-class ALOCC training with per-epoch validation, checkpoints and model selection.",
    )
    p.add_argument("--data", required=True, help="folder of target-class training images")
    p.add_argument("--out", required=True, help="output directory (epoch-NNN/, last/, best/)")
    p.add_argument(
        "--preset", default="strided", help="network preset: seed, seed-fixed, strided, strided-128"
    )
    p.add_argument("--width", type=int, help="override the preset's base width (strided presets)")
    p.add_argument("--input-size", type=int, help="override the preset's input size")
    p.add_argument(
        "--d-head",
        choices=("flatten", "patch_mean"),
        help="D's head (strided presets): flatten (the paper's linear unit) or patch_mean (mean cell logit)",
    )
    p.add_argument(
        "--negatives", help="folder of generic photos used as extra negatives for D (outlier exposure)"
    )
    p.add_argument(
        "--extra-negatives", help="a second folder of negatives, pooled with --negatives (train/structured)"
    )
    p.add_argument("--negative-weight", type=float, default=1.0, help="weight of the negatives' D loss")
    p.add_argument("--fake-weight", type=float, default=1.0, help="weight of the D loss on R's outputs")
    p.add_argument(
        "--no-reconstructor",
        dest="train_reconstructor",
        action="store_false",
        help="train D alone, about 2.5x cheaper per step on a CPU (an ensemble member after the first, "
        "whose R is not used); needs --fake-weight 0; only d_x is validated",
    )
    p.add_argument(
        "--d-batch",
        choices=("separate", "joint"),
        default="separate",
        help="D sees targets, fakes and negatives in separate batches (seed) or one joint batch",
    )
    p.add_argument("--val-target", help="held-out target images (default: a split of --data)")
    p.add_argument("--val-other", help="held-out non-target images; enables model selection")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps-per-epoch", type=int, help="default: one pass over the training targets")
    p.add_argument("--lr-r", type=float, default=2e-4)
    p.add_argument("--lr-d", type=float, default=2e-4)
    p.add_argument(
        "--lr-schedule",
        choices=("constant", "cosine"),
        default="constant",
        help="cosine: both learning rates decay from their peaks to --lr-floor x peak over the run",
    )
    p.add_argument("--lr-floor", type=float, default=0.05, help="last learning rate / peak (cosine)")
    p.add_argument("--optimizer", choices=("adam", "rmsprop"), default="adam")
    p.add_argument("--beta1", type=float, default=0.5)
    p.add_argument("--noise-sigma", type=float, default=0.155, help="std of the Gaussian noise added for R")
    p.add_argument("--lambda-rec", type=float, default=0.4, help="weight of ||X - R(X+noise)||^2 (paper 0.4)")
    p.add_argument("--no-augment", dest="augment", action="store_false", help="disable augmentation")
    p.add_argument("--augment-strength", type=float, default=1.0, help="scale of the colour jitter")
    p.add_argument(
        "--invert-p",
        type=float,
        default=0.0,
        help="share of images (both classes) turned into their negative",
    )
    p.add_argument(
        "--max-rotation-deg",
        type=float,
        default=0.0,
        help="tilt half the images (both classes) by up to this many degrees",
    )
    p.add_argument(
        "--max-zoom-out",
        type=float,
        default=1.0,
        help="shrink half the images (both classes) inside the frame by up to this side factor",
    )
    p.add_argument(
        "--max-tilt-deg",
        type=float,
        default=0.0,
        help="tilt half the images (both classes) by up to this many degrees, cropped inside the image",
    )
    p.add_argument("--weight-decay", type=float, default=0.0, help="L2 weight decay of both optimizers")
    p.add_argument("--select-fpr", type=float, default=0.01, help="FPR at which FNR selects the best epoch")
    p.add_argument("--gate-fpr", type=float, default=0.1, help="FPR of the cascade's D(X) gate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        default="auto",
        help="training arithmetic: auto = bf16 autocast on CUDA, fp32 on CPU; bf16 also on CPU (AMX)",
    )
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--max-images", type=int, help="use only the first N images of each folder")
    p.add_argument("--cache-dir", help="where decoded image tensors are cached")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    p.set_defaults(handler=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from model.train import TrainConfig, train

    _setup_logging()
    fields = TrainConfig.__dataclass_fields__
    config = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
    best = train(config)
    print(f"best checkpoint: {best}")
    return 0


def _register_calibrate(subcommands: Any) -> None:
    p = subcommands.add_parser(
        "calibrate",
        help="set each mode's threshold for a target false-positive rate (conformal rank rule)",
        description=(
            "Threshold = the ceil((n+1)(1-alpha))-th smallest score of n non-text calibration images; "
            "an image is excluded iff its score is strictly greater."
        ),
    )
    p.add_argument("--model", required=True, help="checkpoint directory (its card.json is updated)")
    p.add_argument("--other", required=True, help="calibration folder of non-text images (photos)")
    p.add_argument("--target-fpr", type=float, default=0.003)
    p.add_argument("--gate-fpr", type=float, default=0.1, help="FPR of the cascade's D(X) gate")
    p.add_argument("--target", help="folder of text images: report the FN rate at each threshold")
    p.add_argument(
        "--default-mode",
        choices=("d_x", "d_rx", "cascade", "auto"),
        help="set the card's default mode (auto: lowest FN rate on --target)",
    )
    p.add_argument(
        "--allow-max",
        action="store_true",
        help="if the sample is too small for the rate, use its maximum (flagged in the card)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--cache-dir")
    p.set_defaults(handler=_run_calibrate)


def _run_calibrate(args: argparse.Namespace) -> int:
    from model.calibrate import calibrate_checkpoint
    from model.errors import CalibrationSampleTooSmall

    _setup_logging()
    try:
        report = calibrate_checkpoint(
            args.model,
            args.other,
            target_fpr=args.target_fpr,
            gate_fpr=args.gate_fpr,
            target_dir=args.target,
            default_mode=args.default_mode,
            allow_max=args.allow_max,
            device=args.device,
            cache_dir=args.cache_dir,
        )
    except CalibrationSampleTooSmall as exc:
        print(f"error: {exc} (or pass --allow-max to accept an uncertified threshold)", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


def _register_ensemble(subcommands: Any) -> None:
    p = subcommands.add_parser(
        "ensemble",
        help="assemble one checkpoint whose D averages the logits of trained checkpoints' Ds",
        description=(
            "R comes from the first member; the members must share one network spec, except that "
            "they may differ in input size (the result reads the largest, and each member and R read "
            "it shrunk to their own). The result is uncalibrated: run `alocc calibrate --model OUT ...` "
            "next."
        ),
    )
    p.add_argument("members", nargs="+", help="two or more checkpoint directories")
    p.add_argument("--out", required=True, help="directory of the assembled checkpoint")
    p.set_defaults(handler=_run_ensemble)


def _run_ensemble(args: argparse.Namespace) -> int:
    from model.ensemble import assemble
    from model.errors import ModelError

    try:
        card = assemble(args.members, args.out)
    except ModelError as exc:  # mismatched members, and missing or unreadable checkpoints alike
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{card.model_version}: {len(args.members)} discriminators -> {args.out} (uncalibrated)")
    return 0


def _register_info(subcommands: Any) -> None:
    p = subcommands.add_parser(
        "info", help="show a model's preset, parameters, GFLOPs per image and card summary (or all presets)"
    )
    p.add_argument("--model", help="checkpoint directory; without it, list every preset")
    p.set_defaults(handler=_run_info)


def _run_info(args: argparse.Namespace) -> int:
    from model.checkpoint import read_card
    from model.networks import build_networks, network_cost
    from model.presets import PRESETS

    if args.model is None:
        print(
            f"{'preset':<12} {'input':>5} {'R params':>10} {'R GFLOPs':>9} {'D params':>10} {'D GFLOPs':>9}"
        )
        for name, spec in PRESETS.items():
            r, d = build_networks(spec)
            cr, cd = network_cost(r, spec.input_size), network_cost(d, spec.input_size)
            print(
                f"{name:<12} {spec.input_size:>5} {cr.params:>10,} {cr.flops / 1e9:>9.3f} "
                f"{cd.params:>10,} {cd.flops / 1e9:>9.3f}"
            )
        return 0
    card = read_card(args.model)
    spec = card.spec
    r, d = build_networks(spec)
    cr, cd = network_cost(r, spec.input_size), network_cost(d, spec.input_size)
    print(f"model version : {card.model_version}")
    print(f"preset        : {card.preset} {json.dumps(card.network)}")
    print(f"input size    : {card.input_size}")
    print(f"R             : {cr.params:,} params, {cr.flops / 1e9:.3f} GFLOPs per image")
    print(f"D             : {cd.params:,} params, {cd.flops / 1e9:.3f} GFLOPs per image")
    print(f"default mode  : {card.default_mode}")
    for mode, record in card.thresholds.items():
        extra = f" n={record.n} rank={record.rank}" if record.n is not None else ""
        flag = " [FALLBACK: sample too small]" if record.fallback else ""
        how = f"{record.method}, target FPR {record.target_fpr}{extra}"
        print(f"threshold {mode:<8}: {record.threshold:.6g} ({how}){flag}")
    if card.cascade_gate is not None:
        print(f"cascade gate  : d_x >= {card.cascade_gate.threshold:.6g} ({card.cascade_gate.method})")
    best = card.training.get("best")
    if best:
        print(f"selected epoch: {best['epoch']}: {best['reason']}")
    for member in card.training.get("ensemble_of", []):
        print(f"D member      : {member['model_version']} (epoch {member['training'].get('epoch')})")
    for note in card.metrics.get("diagnostics", []):
        print(f"warning       : {note}")
    return 0
