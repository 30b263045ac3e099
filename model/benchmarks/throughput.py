"""Scoring throughput of the model alone: images per second per mode and preset, through `Scorer.score`.

Untrained weights are enough: speed does not depend on what the weights are, except for the
cascade, where it depends on how many images pass the D(X) gate. The gate is therefore set from the
benchmark's own images: at the (1 - text_share) quantile of the D(X) scores of a pool of images, and
every timed batch is then composed of exactly floor(batch_size * text_share) images that pass the
gate and the rest that do not, like a stream where that share are text images. The measured pass
share is reported next to the speed.

Timing: one warm-up call per mode, then whole batches until both `min_batches` and `min_seconds`
are reached. On CUDA the device is synchronised before the clock starts and before it stops (the
scorer's bf16 autocast and pinned-memory copies are part of what is timed, as in production).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from model.checkpoint import ModelCard, ThresholdRecord
from model.networks import build_networks, network_cost
from model.presets import get_preset
from model.scoring import ScoreMode, Scorer, resolve_device

DEFAULT_PRESETS = ("seed", "strided", "strided-128")
MODES = (ScoreMode.D_X, ScoreMode.D_RX, ScoreMode.CASCADE)


@dataclass(frozen=True)
class ThroughputConfig:
    """Options of one throughput run (reported with the results)."""

    presets: tuple[str, ...] = DEFAULT_PRESETS
    batch_size: int = 64
    text_share: float = 0.1
    n_batches_in_set: int = 4
    min_batches: int = 1
    min_seconds: float = 3.0
    device: str = "cpu"
    seed: int = 0


def synthetic_images(n: int, size: int, seed: int) -> torch.Tensor:
    """(n, 3, size, size) float32 in [-1, 1]: smooth random colour fields plus pixel noise.

    Only the shape matters for speed; the smooth part keeps D(X) scores spread out, so a quantile
    gate splits them cleanly.
    """
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 8, 8, generator=generator) * 2 - 1
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    noise = 0.1 * torch.randn(n, 3, size, size, generator=generator)
    return (smooth + noise).clamp(-1, 1)


def gate_for_share(d_x: np.ndarray, share: float) -> float:
    """A gate such that at most `share` of these scores are `>= gate` (barring ties)."""
    values = np.sort(np.asarray(d_x, dtype=np.float32))
    n_pass = int(np.floor(len(values) * share + 1e-9))
    if n_pass <= 0:
        return float(np.nextafter(values[-1], np.float32(np.inf)))
    return float(values[len(values) - n_pass])


def compose_batches(
    pool: torch.Tensor, d_x: np.ndarray, gate: float, *, batch_size: int, n_batches: int, share: float
) -> list[torch.Tensor]:
    """Batches with exactly floor(batch_size * share) images at or above the gate in each.

    Raises:
        ValueError: the pool has too few passing or failing images for that many batches.
    """
    passing = np.flatnonzero(d_x >= np.float32(gate))
    failing = np.flatnonzero(d_x < np.float32(gate))
    k = int(np.floor(batch_size * share + 1e-9))
    if len(passing) < n_batches * k or len(failing) < n_batches * (batch_size - k):
        raise ValueError(
            f"pool of {len(pool)} has {len(passing)} passing / {len(failing)} failing images; "
            f"{n_batches} batches of {batch_size} at share {share} need {n_batches * k} / "
            f"{n_batches * (batch_size - k)}"
        )
    batches = []
    for b in range(n_batches):
        idx = np.r_[passing[b * k : (b + 1) * k], failing[b * (batch_size - k) : (b + 1) * (batch_size - k)]]
        batches.append(pool[torch.from_numpy(idx)])
    return batches


def _card(preset: str, spec: Any, gate: float) -> ModelCard:
    note = "throughput benchmark: untrained weights"
    return ModelCard(
        preset=preset,
        network=spec.to_dict(),
        input_size=spec.input_size,
        default_mode="d_x",
        model_version=f"bench-{preset}-untrained",
        thresholds={m.value: ThresholdRecord(0.5, "uncalibrated", note=note) for m in MODES},
        cascade_gate=ThresholdRecord(gate, "benchmark-quantile", note=note),
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_mode(
    scorer: Scorer, batches: list[torch.Tensor], mode: ScoreMode, config: ThroughputConfig
) -> dict[str, float]:
    """Images per second of `Scorer.score` in one mode; also the cascade's measured pass share."""
    gate = scorer.card.cascade_gate.threshold if scorer.card.cascade_gate else 0.0
    scorer.score(batches[0], mode)  # warm-up: lazy init, allocator, CUDA kernels
    _sync(scorer.device)
    images = passed = done = 0
    started = time.perf_counter()
    while done < config.min_batches or time.perf_counter() - started < config.min_seconds:
        batch = batches[done % len(batches)]
        result = scorer.score(batch, mode)
        images += len(batch)
        if mode is ScoreMode.CASCADE:
            # A cascade image scores 0.0 exactly when it failed the gate (d_rx is a sigmoid, never 0).
            passed += int(np.count_nonzero(result.scores > 0.0))
        done += 1
    _sync(scorer.device)
    seconds = time.perf_counter() - started
    timing = {"images_per_s": images / seconds, "batches": float(done), "seconds": seconds}
    if mode is ScoreMode.CASCADE:
        timing["pass_share"] = passed / images
        timing["gate"] = gate
    return timing


def bench_preset(preset: str, config: ThroughputConfig) -> dict[str, Any]:
    """Build an untrained model of `preset`, set the cascade gate, and time every mode."""
    device = resolve_device(config.device)
    spec = get_preset(preset)
    torch.manual_seed(config.seed)
    networks = build_networks(spec)
    cost_r = network_cost(networks.reconstructor, spec.input_size)
    cost_d = network_cost(networks.discriminator, spec.input_size)
    # A pool twice the timed set, so both sides of the gate have enough images to fill the batches.
    pool = synthetic_images(2 * config.batch_size * config.n_batches_in_set, spec.input_size, config.seed)
    probe = Scorer(networks, _card(preset, spec, 0.0), device)
    d_x = np.concatenate([probe.score(b, ScoreMode.D_X).scores for b in pool.split(config.batch_size)])
    gate = gate_for_share(d_x, config.text_share)
    batches = compose_batches(
        pool,
        d_x,
        gate,
        batch_size=config.batch_size,
        n_batches=config.n_batches_in_set,
        share=config.text_share,
    )
    scorer = Scorer(networks, _card(preset, spec, gate), device)

    modes = {mode.value: time_mode(scorer, batches, mode, config) for mode in MODES}
    share = modes["cascade"]["pass_share"]
    # Work per image in D-passes and R-passes: d_rx = D(X) is skipped, R + D(R(X)); the cascade
    # runs D(X) on all and, behind the gate, D(X) again plus R and D(R(X)) (the scorer's path).
    expected = (cost_r.flops + cost_d.flops) / (cost_d.flops + share * (cost_r.flops + 2 * cost_d.flops))
    return {
        "input_size": spec.input_size,
        "gflops_per_image": {"R": cost_r.flops / 1e9, "D": cost_d.flops / 1e9},
        "modes": modes,
        "cascade_pass_share": share,
        "cascade_speedup_vs_d_rx": modes["cascade"]["images_per_s"] / modes["d_rx"]["images_per_s"],
        "cascade_speedup_by_flops": expected,
    }


def describe_device(device: torch.device) -> str:
    """A short description of where the benchmark ran."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)} (bf16 autocast)"
    return f"cpu: {torch.get_num_threads()} torch threads (float32)"


def run_benchmark(config: ThroughputConfig) -> dict[str, Any]:
    """Time every configured preset; returns the JSON-ready result."""
    device = resolve_device(config.device)
    return {
        "benchmark": "model-throughput",
        "device": describe_device(device),
        "config": dataclasses.asdict(config),
        "presets": {preset: bench_preset(preset, config) for preset in config.presets},
    }


def format_table(result: dict[str, Any]) -> str:
    """Images per second per preset and mode, the cascade's pass share and its speed-up over d_rx."""
    cfg = result["config"]
    lines = [
        f"model throughput on {result['device']}, batch {cfg['batch_size']}, untrained weights, "
        f"cascade gate set so <= {cfg['text_share']:.0%} of inputs pass",
        f"{'preset':<12} {'size':>4} {'R GFLOP':>8} {'D GFLOP':>8} {'d_x img/s':>10} {'d_rx img/s':>11} "
        f"{'cascade img/s':>14} {'pass':>6} {'speed-up':>9} {'by FLOPs':>9}",
    ]
    for preset, r in result["presets"].items():
        m = r["modes"]
        lines.append(
            f"{preset:<12} {r['input_size']:>4} {r['gflops_per_image']['R']:>8.3f} "
            f"{r['gflops_per_image']['D']:>8.3f} {m['d_x']['images_per_s']:>10.1f} "
            f"{m['d_rx']['images_per_s']:>11.1f} {m['cascade']['images_per_s']:>14.1f} "
            f"{r['cascade_pass_share']:>6.1%} {r['cascade_speedup_vs_d_rx']:>8.2f}x "
            f"{r['cascade_speedup_by_flops']:>8.2f}x"
        )
    lines.append("speed-up = cascade img/s / d_rx img/s; 'by FLOPs' is what the FLOP counts predict")
    return "\n".join(lines)
