"""`alocc evaluate`: a trained model on held-out text images vs held-out other images.

The thresholds are the ones stored in the model card; they are never re-tuned on the evaluation
data, so the FP and FN rates printed here are what the filter would do in production. Every image
goes through `model.preprocess.preprocess` and every score through `Scorer.score`, the same path
as the worker, and the decision is the scorer's own `excluded` flag.

Torch and the model modules are imported inside the functions that need them, so that building
the `alocc` parser (which imports this module to call `register`) stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from model.metrics import BinaryMetrics, metrics_from_decisions

if TYPE_CHECKING:
    import torch

    from model.scoring import Scorer

log = logging.getLogger(__name__)

MODES: tuple[str, ...] = ("d_x", "d_rx", "cascade")

# The seed blog post's published results (text images as the trained class), printed for reference.
SEED_RESULTS: dict[str, dict[str, float]] = {
    "D(X)": {"accuracy": 0.92, "fpr": 0.06, "fnr": 0.02},
    "D(R(X))": {"accuracy": 0.87, "fpr": 0.03, "fnr": 0.10},
}

# How many images per class are kept for the X vs R(X) figure.
_EXAMPLES_PER_CLASS = 8


@dataclass
class ClassScores:
    """Scores and decisions of one class (target or other) in every mode.

    Attributes:
        paths: the evaluated files, aligned with the score arrays.
        scores: per mode, (N,) float32 scores.
        excluded: per mode, (N,) bool decisions of the scorer.
        skipped: (path, error class name) of files that could not be preprocessed.
        examples: the first few preprocessed images, (K, 3, S, S), for the reconstruction figure.
    """

    paths: list[Path] = field(default_factory=list)
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    excluded: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    examples: torch.Tensor | None = None


@dataclass(frozen=True)
class Evaluation:
    """The result of evaluating one model on one target/other pair of folders."""

    model_version: str
    default_mode: str
    target: ClassScores
    other: ClassScores
    metrics: dict[str, BinaryMetrics]

    def to_json_dict(self) -> dict[str, Any]:
        """The `--json` object: model version, class sizes, default mode and per-mode metrics."""
        keys = ("accuracy", "fpr", "fnr", "auroc", "f1", "threshold")
        return {
            "model_version": self.model_version,
            "n_target": len(self.target.paths),
            "n_other": len(self.other.paths),
            "default_mode": self.default_mode,
            "modes": {
                mode: {key: _json_float(getattr(m, key)) for key in keys} for mode, m in self.metrics.items()
            },
        }


def _json_float(value: float) -> float | None:
    """JSON has no NaN; an undefined rate (empty class) becomes null."""
    return None if math.isnan(value) else float(value)


def list_image_files(root: str | Path) -> list[Path]:
    """The image files of a folder, recursively and sorted.

    The same listing that training and calibration use, so an evaluation folder means the same
    set of files to every command.

    Raises:
        DataError: `root` is not a directory.
    """
    from model.training_data import list_images

    return list_images(root)


def preprocess_files(
    paths: Sequence[Path], size: int, *, workers: int = 2
) -> Iterator[tuple[Path, torch.Tensor | str]]:
    """Read and preprocess files in a thread pool, yielding each path with its tensor or error.

    The error is the class name of the exception (e.g. `CorruptImage`), the same reason string a
    dead-letter record carries. Results come back in input order.
    """
    from model.errors import ImageError
    from model.preprocess import preprocess

    def load(path: Path) -> torch.Tensor | str:
        try:
            return preprocess(path.read_bytes(), size)
        except (ImageError, OSError) as exc:
            return type(exc).__name__

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        yield from zip(paths, pool.map(load, paths), strict=True)


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of up to `size` items."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def score_folder(
    scorer: Scorer,
    paths: Sequence[Path],
    *,
    batch_size: int = 64,
    progress: Callable[[int], object] | None = None,
) -> ClassScores:
    """Score every file in every mode through `Scorer.score`.

    Args:
        scorer: the loaded model.
        paths: image files of one class.
        batch_size: images per `Scorer.score` call.
        progress: called with the number of files handled after each batch.

    Returns:
        Scores and decisions per mode, with the files that could not be read.
    """
    import torch

    from model.scoring import ScoreMode

    result = ClassScores()
    parts: dict[str, list[np.ndarray]] = {mode: [] for mode in MODES}
    decisions: dict[str, list[np.ndarray]] = {mode: [] for mode in MODES}
    examples: list[torch.Tensor] = []
    for chunk in batched(preprocess_files(paths, scorer.input_size), batch_size):
        good = [(path, t) for path, t in chunk if not isinstance(t, str)]
        result.skipped += [(path, t) for path, t in chunk if isinstance(t, str)]
        if good:
            images = torch.stack([t for _, t in good])  # (B, 3, S, S)
            result.paths += [path for path, _ in good]
            for mode in MODES:
                batch = scorer.score(images, ScoreMode(mode))
                parts[mode].append(batch.scores)
                decisions[mode].append(batch.excluded)
            if len(examples) < _EXAMPLES_PER_CLASS:
                examples += list(images[: _EXAMPLES_PER_CLASS - len(examples)])
        if progress is not None:
            progress(len(chunk))
    for mode in MODES:
        result.scores[mode] = np.concatenate(parts[mode]) if parts[mode] else np.zeros(0, np.float32)
        result.excluded[mode] = np.concatenate(decisions[mode]) if decisions[mode] else np.zeros(0, bool)
    result.examples = torch.stack(examples) if examples else None
    return result


def compute_metrics(scorer: Scorer, target: ClassScores, other: ClassScores) -> dict[str, BinaryMetrics]:
    """Per-mode metrics from the scorer's decisions at the card's thresholds."""
    from model.scoring import ScoreMode

    metrics: dict[str, BinaryMetrics] = {}
    labels = np.r_[np.ones(len(target.paths), bool), np.zeros(len(other.paths), bool)]
    for mode in MODES:
        metrics[mode] = metrics_from_decisions(
            labels,
            np.r_[target.scores[mode], other.scores[mode]],
            np.r_[target.excluded[mode], other.excluded[mode]],
            scorer.threshold(ScoreMode(mode)),
        )
    return metrics


def evaluate(
    scorer: Scorer,
    target_paths: Sequence[Path],
    other_paths: Sequence[Path],
    *,
    batch_size: int = 64,
    show_progress: bool = True,
) -> Evaluation:
    """Evaluate a model on lists of target (text) and other (non-text) image files.

    Raises:
        DataError: one of the classes has no readable image.
    """
    from tqdm import tqdm

    from model.errors import DataError

    with tqdm(
        total=len(target_paths) + len(other_paths),
        desc="evaluate",
        unit="img",
        disable=not show_progress,
        file=sys.stderr,
    ) as bar:
        target = score_folder(scorer, target_paths, batch_size=batch_size, progress=bar.update)
        other = score_folder(scorer, other_paths, batch_size=batch_size, progress=bar.update)
    for name, scores in (("target", target), ("other", other)):
        if scores.skipped:
            log.warning(
                "%d %s files could not be read (first: %s, %s)",
                len(scores.skipped),
                name,
                scores.skipped[0][0],
                scores.skipped[0][1],
            )
        if not scores.paths:
            raise DataError(f"no readable {name} images")
    return Evaluation(
        model_version=scorer.model_version,
        default_mode=scorer.mode.value,
        target=target,
        other=other,
        metrics=compute_metrics(scorer, target, other),
    )


def format_table(evaluation: Evaluation) -> str:
    """The human-readable table: every mode side by side with the seed's published numbers."""
    e = evaluation
    lines = [
        f"model {e.model_version}: {len(e.target.paths)} target (text) images, "
        f"{len(e.other.paths)} other images; thresholds from the model card",
        "",
        f"{'mode':<22} {'threshold':>10} {'accuracy':>9} {'FP rate':>8} {'FN rate':>8} "
        f"{'AUROC':>7} {'F1':>7}",
    ]
    for mode, m in e.metrics.items():
        label = f"{mode} (default)" if mode == e.default_mode else mode
        lines.append(
            f"{label:<22} {m.threshold:>10.4g} {m.accuracy:>9.3f} {m.fpr:>8.4f} {m.fnr:>8.4f} "
            f"{m.auroc:>7.3f} {m.f1:>7.3f}"
        )
    for name, ref in SEED_RESULTS.items():
        label = f"seed blog {name}"
        lines.append(
            f"{label:<22} {'':>10} {ref['accuracy']:>9.3f} {ref['fpr']:>8.4f} {ref['fnr']:>8.4f} "
            f"{'':>7} {'':>7}"
        )
    lines += [
        "",
        "FP rate = share of other images flagged (products hidden); FN rate = share of text images missed.",
        "Accuracy depends on the target/other mix of this set; the seed's numbers come from its own data.",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Sub-kinds


def subkind_of(path: Path, root: Path, manifest: dict[str, str] | None) -> str:
    """The sub-kind of an evaluation file (e.g. `printed`, `product`, `photo`, `card:table`).

    Taken from the dataset manifest when it lists the file, else from the first folder below the
    class root, else from the file-name prefix before the first `-` or `_` (the dataset's files are
    named `<kind>-<source>-<index>.jpg`).
    """
    relative = path.relative_to(root).as_posix()
    if manifest and relative in manifest:
        return manifest[relative]
    parts = Path(relative).parts
    if len(parts) > 1:
        return parts[0]
    prefix = re.split(r"[-_]", path.stem, maxsplit=1)
    return prefix[0] if len(prefix) > 1 else "all"


def load_subkind_manifest(root: Path) -> dict[str, str] | None:
    """`{path relative to root: sub-kind}` from the dataset's `manifest.json`, if one is found.

    The manifest (written by `alocc data build`) sits at the dataset root, two levels above a class
    folder such as `eval/other`, and lists every file with its `kind` (cards also with their layout).
    """
    for folder in (root, *list(root.resolve().parents)[:2]):
        candidate = folder / "manifest.json"
        if not candidate.is_file():
            continue
        try:
            records = json.loads(candidate.read_text(encoding="utf-8")).get("files", [])
        except (ValueError, AttributeError):
            log.warning("ignoring unreadable dataset manifest %s", candidate)
            return None
        prefix = root.resolve().relative_to(folder.resolve()).as_posix()
        kinds: dict[str, str] = {}
        for record in records:
            name = str(record.get("file", ""))
            if prefix != "." and not name.startswith(prefix + "/"):
                continue
            kind = str(record.get("kind", "unknown"))
            if kind == "card" and record.get("layout"):
                kind = f"card:{record['layout']}"
            kinds[name if prefix == "." else name[len(prefix) + 1 :]] = kind
        return kinds
    return None


def breakdown_by_subkind(
    scores: ClassScores, root: Path, *, positive: bool
) -> dict[str, dict[str, dict[str, float | int]]]:
    """Per sub-kind and mode: the count and the error rate (FN rate for targets, FP rate for others)."""
    manifest = load_subkind_manifest(root)
    kinds = np.array([subkind_of(p, root, manifest) for p in scores.paths])
    rate_name = "fnr" if positive else "fpr"
    out: dict[str, dict[str, dict[str, float | int]]] = {}
    for kind in sorted(set(kinds.tolist())):
        mask = kinds == kind
        out[kind] = {}
        for mode in MODES:
            flagged = scores.excluded[mode][mask]
            rate = float(np.mean(~flagged)) if positive else float(np.mean(flagged))
            out[kind][mode] = {"n": int(mask.sum()), rate_name: rate}
    return out


def format_subkinds(title: str, table: dict[str, dict[str, dict[str, float | int]]]) -> str:
    """Render one class's sub-kind breakdown (from `breakdown_by_subkind`) as text."""
    rate_name = "fnr" if title == "target" else "fpr"
    lines = [
        f"{title} by sub-kind ({rate_name.upper()} per mode):",
        f"  {'sub-kind':<20} {'n':>6} " + " ".join(f"{mode:>9}" for mode in MODES),
    ]
    for kind, per_mode in table.items():
        rates = " ".join(f"{per_mode[mode][rate_name]:>9.4f}" for mode in MODES)
        lines.append(f"  {kind:<20} {per_mode[MODES[0]]['n']:>6} {rates}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Report figures


def reconstruct(model_dir: str | Path | None, images: torch.Tensor) -> torch.Tensor:
    """R(X) for a few preprocessed images, on the CPU, for the qualitative figure."""
    import torch

    from model.checkpoint import load_checkpoint
    from model.scoring import default_model_dir

    networks, _ = load_checkpoint(model_dir if model_dir is not None else default_model_dir())
    networks.reconstructor.eval()
    with torch.inference_mode():
        return networks.reconstructor(images.float().cpu())


def write_report(evaluation: Evaluation, out_dir: str | Path, model_dir: str | Path | None) -> list[Path]:
    """Write the ROC, histogram and X vs R(X) figures into `out_dir`; returns the written files."""
    from model import report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    modes = {
        mode: report.ModeScores(
            target=evaluation.target.scores[mode],
            other=evaluation.other.scores[mode],
            threshold=m.threshold,
            auroc=m.auroc,
            fpr=m.fpr,
            fnr=m.fnr,
        )
        for mode, m in evaluation.metrics.items()
    }
    written = [
        report.plot_roc(modes, out / "roc.png"),
        report.plot_histograms(modes, out / "histograms.png"),
    ]
    rows = {}
    for name, scores in (("target", evaluation.target), ("other", evaluation.other)):
        if scores.examples is not None:
            x = scores.examples
            rows[name] = (x.numpy(), reconstruct(model_dir, x).numpy())
    if rows:
        written.append(report.plot_reconstructions(rows, out / "reconstructions.png"))
    return written


# ---------------------------------------------------------------------------------------------
# Command line


def register(subcommands: Any) -> None:
    """Attach `alocc evaluate` to the root parser's subparsers."""
    p = subcommands.add_parser(
        "evaluate",
        help="evaluate a model on held-out text vs other images at the card's thresholds",
        description=(
            "Scores every image in every mode (d_x, d_rx, cascade) and prints accuracy, FP rate, FN rate, "
            "AUROC and F1 at the thresholds stored in the model card (never re-tuned on this data)."
        ),
    )
    p.add_argument("--target", required=True, help="folder of text/announcement images (the trained class)")
    p.add_argument("--other", required=True, help="folder of non-text images (product photos)")
    p.add_argument("--model", help="checkpoint directory (default: the shipped default model)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--report", metavar="DIR", help="write ROC, histogram and X vs R(X) PNGs into DIR")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument(
        "--by-subkind",
        action="store_true",
        help="also break the error rates down by sub-kind (dataset manifest, sub-folder or file-name prefix)",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handler of `alocc evaluate`; returns the exit code (2 on a model or data error)."""
    from model.errors import ModelError
    from model.scoring import Scorer

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        scorer = Scorer.load(args.model, device=args.device)
        target_root, other_root = Path(args.target), Path(args.other)
        evaluation = evaluate(
            scorer,
            list_image_files(target_root),
            list_image_files(other_root),
            batch_size=args.batch_size,
            show_progress=args.progress,
        )
    except ModelError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    subkinds = None
    if args.by_subkind:
        subkinds = {
            "target": breakdown_by_subkind(evaluation.target, target_root, positive=True),
            "other": breakdown_by_subkind(evaluation.other, other_root, positive=False),
        }
    if args.report:
        for path in write_report(evaluation, args.report, args.model):
            print(f"wrote {path}", file=sys.stderr)
    if args.json:
        payload = evaluation.to_json_dict()
        if subkinds is not None:
            payload["by_subkind"] = subkinds
        print(json.dumps(payload))
    else:
        print(format_table(evaluation))
        if subkinds is not None:
            print()
            print(format_subkinds("target", subkinds["target"]))
            print(format_subkinds("other", subkinds["other"]))
    return 0
