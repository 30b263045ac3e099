"""Evaluation figures: ROC curves, per-class score histograms and the X vs R(X) grid.

Everything here takes plain arrays, so the figures can be drawn from any evaluation run and tested
without a model. Matplotlib runs on the Agg backend: no display is needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the evaluation runs on servers and in CI

import matplotlib.pyplot as plt  # after matplotlib.use: the backend is chosen before pyplot loads
import numpy as np
import numpy.typing as npt

from model.metrics import roc_curve


@dataclass(frozen=True)
class ModeScores:
    """Scores of one mode on an evaluation set, with the threshold and the rates measured at it."""

    target: npt.NDArray[np.floating]
    other: npt.NDArray[np.floating]
    threshold: float
    auroc: float
    fpr: float
    fnr: float


def plot_roc(modes: Mapping[str, ModeScores], out: Path) -> Path:
    """Draw the ROC curves of all modes on one figure, with a log FPR axis.

    The log axis matters: the product's operating point is an FPR near 1% or below, a region a
    linear axis squeezes into the left edge. Each mode's operating point (its stored threshold)
    is marked.

    Args:
        modes: scores per mode name.
        out: the PNG to write.

    Returns:
        The written path.
    """
    fig, ax = plt.subplots(figsize=(6.5, 5))
    for name, m in modes.items():
        labels = np.r_[np.ones(len(m.target)), np.zeros(len(m.other))]
        scores = np.r_[m.target, m.other]
        fpr, tpr, _ = roc_curve(labels, scores)
        # The log axis cannot show FPR = 0; start the curve at half of the smallest step.
        floor = 0.5 / max(len(m.other), 1)
        # Straight segments between the points: a run of tied scores is a diagonal, which is how the
        # AUROC (ties count one half) integrates it.
        (line,) = ax.plot(np.maximum(fpr, floor), tpr, label=f"{name} (AUROC {m.auroc:.3f})")
        ax.plot([max(m.fpr, floor)], [1.0 - m.fnr], "o", color=line.get_color())
    ax.set_xscale("log")
    ax.set_xlim(0.5 / max(*(len(m.other) for m in modes.values()), 1), 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("false-positive rate (non-text images flagged), log scale")
    ax.set_ylabel("true-positive rate (text images caught)")
    ax.set_title("ROC per scoring mode (dots: stored thresholds)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


_PROBABILITY_TICKS = (1e-4, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999)


def _logit(scores: npt.ArrayLike) -> npt.NDArray[np.floating]:
    """log(p / (1 - p)), with p kept 1e-7 away from 0 and 1 (float32 scores reach exactly 1.0)."""
    p = np.clip(np.asarray(scores, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def plot_histograms(modes: Mapping[str, ModeScores], out: Path) -> Path:
    """Draw the per-class score histograms of each mode with its threshold line.

    Args:
        modes: scores per mode name.
        out: the PNG to write.

    Returns:
        The written path.
    """
    fig, axes = plt.subplots(1, len(modes), figsize=(5 * len(modes), 4), squeeze=False)
    tick_at = _logit(_PROBABILITY_TICKS)
    for ax, (name, m) in zip(axes[0], modes.items(), strict=True):
        # Scores are probabilities that crowd against 0 and 1, where the threshold sits; on the logit
        # scale 0.99, 0.999 and 0.9999 are evenly spaced, so the separation there is visible.
        target, other, threshold = _logit(m.target), _logit(m.other), float(_logit(m.threshold))
        both = np.r_[target, other, threshold]
        lo, hi = float(np.min(both)), float(np.max(both))
        bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, 41)
        ax.hist(other, bins=bins, alpha=0.6, label=f"other (n={len(m.other)})", color="tab:blue")
        ax.hist(target, bins=bins, alpha=0.6, label=f"target (n={len(m.target)})", color="tab:orange")
        ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {m.threshold:.6g}")
        ax.set_yscale("log")
        ax.set_title(name)
        shown = (tick_at >= lo) & (tick_at <= hi)
        ax.set_xticks(
            tick_at[shown],
            [f"{p:g}" for p, keep in zip(_PROBABILITY_TICKS, shown, strict=True) if keep],
            fontsize=7,
            rotation=45,
        )
        ax.set_xlabel("score, logit scale (higher = more like a text image)")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("images (log)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _to_display(images: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
    """(N, 3, H, W) in [-1, 1] -> (N, H, W, 3) in [0, 1] for imshow."""
    return np.clip((np.transpose(images, (0, 2, 3, 1)) + 1.0) / 2.0, 0.0, 1.0)


def plot_reconstructions(
    rows: Mapping[str, tuple[npt.NDArray[np.floating], npt.NDArray[np.floating]]], out: Path
) -> Path:
    """Draw X above R(X) for a few images of each class (the paper's qualitative figure).

    Args:
        rows: per class name, `(x, r_x)`, both (N, 3, H, W) in [-1, 1] as `preprocess` makes them.
        out: the PNG to write.

    Returns:
        The written path.
    """
    n_cols = max(len(x) for x, _ in rows.values())
    fig, axes = plt.subplots(2 * len(rows), n_cols, figsize=(1.3 * n_cols, 2.8 * len(rows)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, (name, (x, rx)) in enumerate(rows.items()):
        for c, (img, rec) in enumerate(zip(_to_display(x), _to_display(rx), strict=True)):
            axes[2 * r][c].imshow(img)
            axes[2 * r + 1][c].imshow(rec)
        axes[2 * r][0].set_title(f"{name}: X", loc="left", fontsize=9)
        axes[2 * r + 1][0].set_title(f"{name}: R(X)", loc="left", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
