"""One-class ALOCC training: R and D on a folder of target (announcement card) images.

Per step, with X a batch of target images in [-1, 1] and eta ~ N(0, sigma^2):
1. D step: BCE(D(X), 1) + w_fake * BCE(D(R(X + eta)).detach(), 0) [+ w_neg * BCE(D(N), 0) for a
   batch N of generic photos when outlier exposure is on]; the seed's loop is w_fake = 1, no N.
2. R step: BCE(D(R(X + eta)), 1) + lambda * mean((X - R(X + eta))^2).

With `train_reconstructor=False` (a discriminator-only ensemble member, whose R the ensemble never
uses) step 2 and R's forward pass are skipped and D's batch holds X and N only: about 0.4x the
cost of a full step on a CPU. Only d_x is validated then.

After every epoch the model is scored on held-out target images and held-out other images. The
best epoch is the one with the lowest false-negative rate at the validation threshold that keeps
the false-positive rate <= `select_fpr` (1%), taking the best score mode of that epoch; ties go to
the higher AUROC (to 3 decimals), then to the later epoch. Every epoch is checkpointed, `best/`
holds the winner and `last/` the state for `--resume`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from tqdm import tqdm

from model.calibrate import empirical_threshold, rates_at, raw_scores_uint8
from model.checkpoint import (
    ModelCard,
    ThresholdRecord,
    load_checkpoint,
    load_training_state,
    save_checkpoint,
    save_training_state,
)
from model.errors import ConfigError
from model.networks import AloccNetworks, build_networks, network_cost
from model.preprocess import NORMALISATION, normalise
from model.presets import get_preset
from model.scoring import RawScores, ScoreMode, Scorer, cascade_scores, resolve_device
from model.training_data import Augmenter, FolderImages, load_folder

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Training options (all stored in the checkpoint card)."""

    data: str
    out: str
    preset: str = "strided"
    width: int | None = None
    input_size: int | None = None
    d_head: str | None = None  # None = the preset's ("flatten"); "patch_mean" for a layout-invariant D
    negatives: str | None = None
    extra_negatives: str | None = None  # a second folder of negatives, pooled with `negatives`
    val_target: str | None = None
    val_other: str | None = None
    epochs: int = 10
    batch_size: int = 64
    lr_r: float = 2e-4
    lr_d: float = 2e-4
    optimizer: str = "adam"  # "adam" | "rmsprop"
    lr_schedule: str = "constant"  # "constant" | "cosine" (decays both learning rates to lr_floor x peak)
    lr_floor: float = 0.05
    beta1: float = 0.5
    noise_sigma: float = 0.155
    lambda_rec: float = 0.4
    negative_weight: float = 1.0
    fake_weight: float = 1.0
    # False: train D alone (no R updates, no reconstructions in D's batch); needs fake_weight 0.
    # For ensemble members after the first, whose R is never used (model/ensemble.py).
    train_reconstructor: bool = True
    d_batch: str = "separate"  # "separate" (the seed's loop) | "joint"
    augment: bool = True
    augment_strength: float = 1.0
    invert_p: float = 0.0  # share of images (cards and negatives alike) turned into their negative
    max_rotation_deg: float = 0.0  # geometric jitter for cards and negatives alike (see Augmenter)
    max_zoom_out: float = 1.0
    max_tilt_deg: float = 0.0  # tilt inside the image, no surround (see Augmenter)
    weight_decay: float = 0.0
    select_fpr: float = 0.01
    gate_fpr: float = 0.1
    holdout_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"
    # Arithmetic of the training step: "auto" = bf16 autocast on CUDA, fp32 elsewhere; "bf16" also
    # autocasts on the CPU (about 1.6-1.9x faster per step where the CPU has AMX / AVX-512 BF16,
    # slower where it emulates bf16); "fp32" everywhere. Weights, optimiser state and validation stay fp32.
    precision: str = "auto"
    threads: int | None = None
    max_images: int | None = None
    steps_per_epoch: int | None = None
    cache_dir: str | None = None
    resume: bool = False
    progress: bool = True


@dataclass(frozen=True)
class EpochReport:
    """Validation results of one epoch."""

    epoch: int
    losses: dict[str, float]
    metrics: dict[str, dict[str, float]]
    best_mode: str
    diagnostics: list[str]

    @property
    def key(self) -> tuple[float, float]:
        """Sort key for model selection: lower is better."""
        best = self.metrics.get(self.best_mode, {})
        # AUROC to 3 decimals: once the validation FNR reaches 0, differences in the 4th decimal are a
        # few of the 250k target-other pairs, noise rather than a better model.
        return (best.get("fnr_at_fpr", math.inf), -round(best.get("auroc", 0.0), 3))


def _make_optimizer(config: TrainConfig, params: Any, lr: float) -> torch.optim.Optimizer:
    if config.d_batch not in ("separate", "joint"):
        raise ConfigError(f"d_batch must be 'separate' or 'joint', got {config.d_batch!r}")
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(config.beta1, 0.999), weight_decay=config.weight_decay)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=config.weight_decay)
    raise ConfigError(f"optimizer must be 'adam' or 'rmsprop', got {config.optimizer!r}")


def learning_rate_factor(config: TrainConfig, progress: float) -> float:
    """The share of the peak learning rates to use at `progress` (0 = first step, 1 = after the last).

    A pure function of progress rather than a torch scheduler with state of its own, so `--resume`
    continues on exactly the curve an uninterrupted run follows.
    """
    if config.lr_schedule == "constant":
        return 1.0
    if config.lr_schedule == "cosine":
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
        return config.lr_floor + (1.0 - config.lr_floor) * cosine
    raise ConfigError(f"lr_schedule must be 'constant' or 'cosine', got {config.lr_schedule!r}")


def _uses_bf16(precision: str, device: torch.device) -> bool:
    """Whether the training step autocasts to bf16 (`TrainConfig.precision`)."""
    choices = {"auto": device.type == "cuda", "bf16": True, "fp32": False}
    if precision not in choices:
        raise ConfigError(f"precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    return choices[precision]


class AloccTrainer:
    """The GAN-style training step for one pair of networks, independent of data loading."""

    def __init__(self, networks: AloccNetworks, config: TrainConfig, device: torch.device) -> None:
        self.reconstructor = networks.reconstructor.to(device)
        self.discriminator = networks.discriminator.to(device)
        self.config = config
        self.device = device
        self.opt_r = _make_optimizer(config, self.reconstructor.parameters(), config.lr_r)
        self.opt_d = _make_optimizer(config, self.discriminator.parameters(), config.lr_d)
        learning_rate_factor(config, 0.0)  # reject an unknown schedule here, not at the first step
        if not config.train_reconstructor and config.fake_weight != 0.0:
            raise ConfigError("train_reconstructor=False leaves D no reconstructions: set fake_weight 0")
        self.bce = nn.BCEWithLogitsLoss()
        self.bf16 = _uses_bf16(config.precision, device)

    def set_learning_rate_factor(self, factor: float) -> None:
        """Scale both optimisers' learning rates to `factor` x their configured peaks."""
        for optimizer, peak in ((self.opt_r, self.config.lr_r), (self.opt_d, self.config.lr_d)):
            for group in optimizer.param_groups:
                group["lr"] = peak * factor

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def step(self, targets: torch.Tensor, negatives: torch.Tensor | None = None) -> dict[str, float]:
        """One D update then (unless R is frozen) one R update; inputs are normalised (B, 3, S, S)."""
        self.reconstructor.train(self.config.train_reconstructor)
        self.discriminator.train()
        ones = torch.ones(targets.shape[0], device=self.device)
        fake = None
        with self._autocast():
            if self.config.train_reconstructor:
                fake = self.reconstructor(targets + self.config.noise_sigma * torch.randn_like(targets))
            logits_real, logits_fake, logits_neg = self._discriminate(
                targets, None if fake is None else fake.detach(), negatives
            )
            loss_d = self.bce(logits_real, ones)
            if logits_fake is not None:
                loss_d = loss_d + self.config.fake_weight * self.bce(
                    logits_fake, torch.zeros_like(logits_fake)
                )
            loss_d_neg = torch.zeros((), device=self.device)
            if logits_neg is not None:
                loss_d_neg = self.bce(logits_neg, torch.zeros_like(logits_neg))
                loss_d = loss_d + self.config.negative_weight * loss_d_neg
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        losses = {"loss_d": float(loss_d.detach()), "loss_d_neg": float(loss_d_neg.detach())}
        if fake is not None:
            losses.update(self._step_reconstructor(targets, fake, ones))
        return losses

    def _step_reconstructor(
        self, targets: torch.Tensor, fake: torch.Tensor, ones: torch.Tensor
    ) -> dict[str, float]:
        """R's update: fool D, and stay close to the clean targets."""
        if self.config.d_batch == "joint":
            # R learns from D as it scores at serving time (eval mode: running BatchNorm statistics,
            # no dropout), not from the statistics of an all-fake batch. D gets no update here.
            self.discriminator.eval()
        with self._autocast():
            loss_r_adv = self.bce(self.discriminator(fake).float(), ones)
            loss_r_rec = (targets - fake.float()).pow(2).mean()
            loss_r = loss_r_adv + self.config.lambda_rec * loss_r_rec
        self.discriminator.train()
        self.opt_r.zero_grad(set_to_none=True)
        loss_r.backward()
        self.opt_r.step()
        return {"loss_r": float(loss_r.detach()), "loss_r_rec": float(loss_r_rec.detach())}

    def _discriminate(
        self, targets: torch.Tensor, fakes: torch.Tensor | None, negatives: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """D's logits for each group present, in one batch ("joint") or one batch each ("separate").

        With separate batches (the seed's loop) BatchNorm normalises each group by its own
        statistics, so in training D can tell the groups apart by batch identity, a cue that is
        gone in eval mode; one joint batch makes training-mode D see what eval-mode D sees.
        """
        groups = [g for g in (targets, fakes, negatives) if g is not None]
        if self.config.d_batch == "joint":
            logits = iter(self.discriminator(torch.cat(groups)).float().split([len(g) for g in groups]))
        else:
            logits = iter([self.discriminator(g).float() for g in groups])
        real = next(logits)
        fake = next(logits) if fakes is not None else None
        negative = next(logits) if negatives is not None else None
        return real, fake, negative


def _auroc(target: np.ndarray, other: np.ndarray) -> float:
    labels = np.concatenate([np.ones(len(target)), np.zeros(len(other))])
    return float(roc_auc_score(labels, np.concatenate([target, other])))


def mode_scores(raw: RawScores, gate: float) -> dict[str, np.ndarray]:
    """Score arrays per mode (plus the negated reconstruction error, for diagnosis)."""
    return {
        "d_x": raw.d_x,
        "d_rx": raw.d_rx,
        "cascade": cascade_scores(raw.d_x, raw.d_rx, gate),
        "neg_rec_error": -raw.reconstruction_error,
    }


def validation_metrics(
    target: RawScores,
    other: RawScores,
    select_fpr: float,
    gate_fpr: float,
    modes: Sequence[str] | None = None,
) -> tuple[dict[str, dict[str, float]], float]:
    """AUROC, and the FN rate at the in-sample threshold with FP rate <= select_fpr, per mode.

    `modes` limits the modes measured (default: every mode of `mode_scores`).
    """
    gate = empirical_threshold(other.d_x, gate_fpr)
    target_modes, other_modes = mode_scores(target, gate), mode_scores(other, gate)
    metrics: dict[str, dict[str, float]] = {}
    for mode in modes or list(target_modes):
        target_scores = target_modes[mode]
        threshold = empirical_threshold(other_modes[mode], select_fpr)
        rates = rates_at(target_scores, other_modes[mode], threshold)
        metrics[mode] = {
            "auroc": _auroc(target_scores, other_modes[mode]),
            "fnr_at_fpr": rates["fnr"],
            "fpr": rates["fpr"],
            "threshold": threshold,
        }
    return metrics, gate


def diagnose(target: RawScores, other: RawScores, losses: dict[str, float]) -> list[str]:
    """Human-readable warnings about R collapsing to identity and D over-confidence."""
    notes = []
    err_t = float(np.mean(target.reconstruction_error))
    err_o = float(np.mean(other.reconstruction_error))
    if np.isnan(err_o):  # R was not trained (discriminator-only member): nothing to say about it
        pass
    elif err_o < 0.005:
        notes.append(
            f"R collapsed to identity: it reproduces other images almost exactly (error {err_o:.4f}), "
            "so d_rx behaves like d_x and the reconstruction error carries no signal"
        )
    elif err_o < 1.25 * err_t:
        notes.append(
            f"R reconstructs other images as well as targets (error {err_o:.4f} vs {err_t:.4f}): "
            "d_rx and the reconstruction error cannot separate"
        )
    all_dx = np.concatenate([target.d_x, other.d_x])
    saturated = float(np.mean((all_dx < 1e-3) | (all_dx > 1 - 1e-3)))
    if saturated > 0.9:
        notes.append(f"D over-confident: {saturated:.0%} of validation d_x scores are within 1e-3 of 0 or 1")
    if float(np.mean(other.d_x)) > float(np.mean(target.d_x)):
        notes.append(
            "D inverted: other images score higher than targets on average (sharp photo vs blurry fake)"
        )
    if losses.get("loss_d", 1.0) < 0.01:
        notes.append(f"D wins outright (loss_d={losses['loss_d']:.4f}): R gets no useful adversarial signal")
    return notes


def _split_holdout(images: FolderImages, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(images.images), generator=generator)
    n_val = max(1, int(len(order) * fraction))
    return images.images[order[n_val:]], images.images[order[:n_val]]


def _threshold_records(
    metrics: dict[str, dict[str, float]] | None, gate: float | None, config: TrainConfig, fp: str | None
) -> tuple[dict[str, ThresholdRecord], ThresholdRecord]:
    if metrics is None or gate is None:
        note = "no validation photos; run `alocc calibrate` before use"
        records = {m.value: ThresholdRecord(0.5, "uncalibrated", note=note) for m in ScoreMode}
        return records, ThresholdRecord(0.5, "uncalibrated", note=note)
    note = "in-sample threshold on the validation photos; run `alocc calibrate` for a guarantee"
    records = {
        m.value: ThresholdRecord(
            metrics[m.value]["threshold"],
            "validation-empirical",
            config.select_fpr,
            data_fingerprint=fp,
            note=note,
        )
        if m.value in metrics
        else ThresholdRecord(0.5, "uncalibrated", note="R not trained: a discriminator-only ensemble member")
        for m in ScoreMode
    }
    return records, ThresholdRecord(
        gate, "validation-empirical", config.gate_fpr, data_fingerprint=fp, note=note
    )


def train(config: TrainConfig) -> Path:
    """Run training as configured; returns the directory of the best (or last) checkpoint."""
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    spec = get_preset(config.preset, width=config.width, input_size=config.input_size, d_head=config.d_head)
    size = spec.input_size
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)

    def load(folder: str) -> FolderImages:
        return load_folder(folder, size, cache_dir=config.cache_dir, max_images=config.max_images)

    target = load(config.data)
    if config.val_target:
        train_images = target.images
        val_target = load(config.val_target).images
    else:
        train_images, val_target = _split_holdout(target, config.holdout_fraction, config.seed)
    negatives = load(config.negatives) if config.negatives else None
    extra = load(config.extra_negatives) if config.extra_negatives else None
    if extra is not None:
        if negatives is None:
            raise ConfigError("extra_negatives adds to negatives; set negatives too")
        negatives = dataclasses.replace(
            negatives,
            images=torch.cat([negatives.images, extra.images]),
            names=negatives.names + extra.names,
            skipped=negatives.skipped + extra.skipped,
        )
    val_other = load(config.val_other) if config.val_other else None
    log.info(
        "data: %d train targets, %d val targets, %s negatives, %s val others",
        len(train_images),
        len(val_target),
        len(negatives.images) if negatives else 0,
        len(val_other.images) if val_other else 0,
    )

    networks = build_networks(spec)
    cost_r, cost_d = (network_cost(module, size) for module in networks)
    costs: dict[str, dict[str, float]] = {
        "params": {"R": cost_r.params, "D": cost_d.params},
        "gflops_per_image": {"R": cost_r.flops / 1e9, "D": cost_d.flops / 1e9},
    }
    trainer = AloccTrainer(networks, config, device)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    start_epoch = 1
    if config.resume and (out / "last" / "card.json").is_file():
        start_epoch, history, best = _resume(out / "last", trainer)
        log.info("resumed after epoch %d", start_epoch - 1)

    def augmenter(kind: str) -> Augmenter | None:
        if not config.augment:
            return None
        return Augmenter(
            size,
            kind=kind,
            strength=config.augment_strength,
            p_invert=config.invert_p,
            max_rotation_deg=config.max_rotation_deg,
            max_zoom_out=config.max_zoom_out,
            max_tilt_deg=config.max_tilt_deg,
        )

    augment_text, augment_photo = augmenter("text"), augmenter("photo")
    batch = config.batch_size
    steps = config.steps_per_epoch or max(1, len(train_images) // batch)
    fingerprints = {
        "data": target.fingerprint,
        "negatives": negatives.fingerprint if negatives else None,
        "extra_negatives": extra.fingerprint if extra else None,
        "val_other": val_other.fingerprint if val_other else None,
    }

    for epoch in range(start_epoch, config.epochs + 1):
        started = time.monotonic()
        # Enough shuffled passes for `steps` full batches (steps_per_epoch may exceed one pass).
        passes = math.ceil(steps * batch / len(train_images))
        order = torch.cat([torch.randperm(len(train_images)) for _ in range(passes)])
        sums: dict[str, float] = {}
        bar = tqdm(
            range(steps), desc=f"epoch {epoch}/{config.epochs}", disable=not config.progress, leave=False
        )
        for step in bar:
            trainer.set_learning_rate_factor(
                learning_rate_factor(config, ((epoch - 1) * steps + step) / (config.epochs * steps))
            )
            idx = order[step * batch : (step + 1) * batch]
            x = train_images[idx]
            x = augment_text(x) if augment_text else x
            neg = None
            if negatives is not None:
                neg = negatives.images[torch.randint(len(negatives.images), (batch,))]
                neg = augment_photo(neg) if augment_photo else neg
                neg = normalise(neg).to(device, non_blocking=True)
            losses = trainer.step(normalise(x).to(device, non_blocking=True), neg)
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value
            bar.set_postfix({key: f"{losses[key]:.3f}" for key in ("loss_d", "loss_r") if key in losses})
        mean_losses = {key: value / steps for key, value in sums.items()}
        report, gate = _validate(
            epoch=epoch,
            trainer=trainer,
            size=spec.input_size,
            val_target=val_target,
            val_other=val_other,
            losses=mean_losses,
            config=config,
        )
        for note in report.diagnostics:
            log.warning("epoch %d: %s", epoch, note)
        # `<=`: on a tie the later epoch wins; it has trained longer (and, with the cosine schedule, at a
        # lower learning rate), and the tied metric gives no reason to prefer the earlier one.
        is_best = val_other is not None and (best is None or report.key <= tuple(best["key"]))
        entry = {
            "epoch": epoch,
            "seconds": round(time.monotonic() - started, 1),
            "losses": mean_losses,
            "metrics": report.metrics,
            "best_mode": report.best_mode,
            "diagnostics": report.diagnostics,
        }
        history.append(entry)
        if is_best:
            previous = f"epoch {best['epoch']} ({best['reason']})" if best else "none"
            m = report.metrics[report.best_mode]
            reason = (
                f"{report.best_mode}: FNR {m['fnr_at_fpr']:.4f} at val FPR <= {config.select_fpr}, "
                f"AUROC {m['auroc']:.4f}"
            )
            best = {"epoch": epoch, "key": list(report.key), "reason": reason, "mode": report.best_mode}
            log.info("epoch %d is the new best: %s (previous best: %s)", epoch, reason, previous)
        card = _card(
            config=config,
            spec=spec,
            report=report,
            gate=gate,
            fingerprints=fingerprints,
            history=history,
            best=best,
            epoch=epoch,
            costs=costs,
        )
        epoch_dir = out / f"epoch-{epoch:03d}"
        save_checkpoint(epoch_dir, AloccNetworks(trainer.reconstructor, trainer.discriminator), card)
        _replace_dir(epoch_dir, out / "last")
        save_training_state(
            out / "last",
            {
                "epoch": epoch,
                "opt_r": trainer.opt_r.state_dict(),
                "opt_d": trainer.opt_d.state_dict(),
                "history": json.dumps(history),
                "best": json.dumps(best),
                "rng": torch.get_rng_state(),
            },
        )
        if is_best:
            _replace_dir(epoch_dir, out / "best")
        _log_epoch(entry)
    if best is None:
        log.warning("no validation photos (--val-other): no model selection, the last epoch is kept as best")
        _replace_dir(out / "last", out / "best", skip_state=True)
    else:
        log.info("selected epoch %d: %s", best["epoch"], best["reason"])
    return out / "best"


def _validate(
    *,
    epoch: int,
    trainer: AloccTrainer,
    size: int,
    val_target: torch.Tensor,
    val_other: FolderImages | None,
    losses: dict[str, float],
    config: TrainConfig,
) -> tuple[EpochReport, float | None]:
    networks = AloccNetworks(trainer.reconstructor, trainer.discriminator)
    scorer = Scorer(networks, _probe_card(size), trainer.device)
    d_x_only = not config.train_reconstructor
    target_raw = raw_scores_uint8(scorer, val_target, d_x_only=d_x_only)
    if val_other is None:
        return EpochReport(epoch, losses, {}, "d_x", []), None
    other_raw = raw_scores_uint8(scorer, val_other.images, d_x_only=d_x_only)
    # Every mode plus the reconstruction-error diagnostic, or d_x alone when R is not trained.
    measured = [ScoreMode.D_X.value] if d_x_only else None
    metrics, gate = validation_metrics(target_raw, other_raw, config.select_fpr, config.gate_fpr, measured)
    candidates = [m.value for m in ScoreMode if m.value in metrics]
    best_mode = min(candidates, key=lambda m: (metrics[m]["fnr_at_fpr"], -metrics[m]["auroc"]))
    return EpochReport(epoch, losses, metrics, best_mode, diagnose(target_raw, other_raw, losses)), gate


def _probe_card(size: int) -> ModelCard:
    """A throwaway card so validation can reuse the Scorer's batched forward pass."""
    return ModelCard(
        preset="validation",
        network={},
        input_size=size,
        default_mode="d_x",
        thresholds={"d_x": ThresholdRecord(0.5, "uncalibrated")},
    )


def _card(
    *,
    config: TrainConfig,
    spec: Any,
    report: EpochReport,
    gate: float | None,
    fingerprints: dict[str, str | None],
    history: list[dict[str, Any]],
    best: dict[str, Any] | None,
    epoch: int,
    costs: dict[str, dict[str, float]],
) -> ModelCard:
    thresholds, gate_record = _threshold_records(
        report.metrics or None, gate, config, fingerprints["val_other"]
    )
    return ModelCard(
        preset=config.preset,
        network=spec.to_dict(),
        input_size=spec.input_size,
        default_mode=report.best_mode,
        normalisation=dict(NORMALISATION),
        thresholds=thresholds,
        cascade_gate=gate_record,
        training={**dataclasses.asdict(config), "epoch": epoch, "selection": _SELECTION, "best": best},
        data={k: v for k, v in fingerprints.items() if v},
        metrics={
            "validation": report.metrics,
            "losses": report.losses,
            "diagnostics": report.diagnostics,
            "history": [{k: h[k] for k in ("epoch", "best_mode", "seconds")} for h in history],
            **costs,
        },
    )


_SELECTION = (
    "lowest FNR at the validation threshold with FPR <= select_fpr, over modes d_x/d_rx/cascade; "
    "ties broken by higher AUROC (to 3 decimals), then by the later epoch"
)


def _replace_dir(source: Path, destination: Path, *, skip_state: bool = False) -> None:
    tmp = destination.with_name(destination.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ignore = shutil.ignore_patterns("training_state.*") if skip_state else None
    shutil.copytree(source, tmp, ignore=ignore)
    shutil.rmtree(destination, ignore_errors=True)
    tmp.rename(destination)


def _resume(last: Path, trainer: AloccTrainer) -> tuple[int, list[dict[str, Any]], dict[str, Any] | None]:
    networks, _ = load_checkpoint(last)
    trainer.reconstructor.load_state_dict(networks.reconstructor.state_dict())
    trainer.discriminator.load_state_dict(networks.discriminator.state_dict())
    state = load_training_state(last)
    trainer.opt_r.load_state_dict(state["opt_r"])
    trainer.opt_d.load_state_dict(state["opt_d"])
    torch.set_rng_state(state["rng"])
    return int(state["epoch"]) + 1, json.loads(state["history"]), json.loads(state["best"])


def _log_epoch(entry: dict[str, Any]) -> None:
    parts = [f"epoch {entry['epoch']} ({entry['seconds']}s)"]
    parts += [f"{k}={v:.4f}" for k, v in entry["losses"].items()]
    for mode, m in entry["metrics"].items():
        parts.append(f"{mode}: AUROC={m['auroc']:.3f} FNR@FPR={m['fnr_at_fpr']:.3f}")
    log.info(" | ".join(parts))
