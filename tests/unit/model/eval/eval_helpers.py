"""Helpers for the evaluation tests: a tiny untrained checkpoint and tiny image folders.

A plain module, not a conftest: test modules import what they need and declare their own fixtures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from model.checkpoint import ModelCard, ThresholdRecord, save_checkpoint
from model.networks import build_networks
from model.presets import get_preset

TINY_SIZE = 32


def make_tiny_checkpoint(directory: Path, *, threshold: float = 0.5, gate: float = 0.3) -> Path:
    """Save an untrained strided model at 32x32 with width 4 and fixed thresholds for all modes."""
    torch.manual_seed(0)
    spec = get_preset("strided", width=4, input_size=TINY_SIZE)
    card = ModelCard(
        preset="strided",
        network=spec.to_dict(),
        input_size=TINY_SIZE,
        default_mode="d_x",
        thresholds={m: ThresholdRecord(threshold, "uncalibrated") for m in ("d_x", "d_rx", "cascade")},
        cascade_gate=ThresholdRecord(gate, "uncalibrated"),
    )
    save_checkpoint(directory, build_networks(spec), card)
    return directory


def write_text_images(folder: Path, count: int, prefix: str = "card", seed: int = 0) -> list[Path]:
    """Small PNGs with dark text lines on a light background."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        image = Image.new("RGB", (60, 44), tuple(int(v) for v in rng.integers(200, 256, 3)))
        draw = ImageDraw.Draw(image)
        for line in range(3):
            draw.text((3, 3 + 13 * line), ["CLOSED", "NOTICE", "SALE"][line], fill=(0, 0, 0))
        path = folder / f"{prefix}_{i:03d}.png"
        image.save(path)
        paths.append(path)
    return paths


def write_photo_images(folder: Path, count: int, prefix: str = "photo", seed: int = 1) -> list[Path]:
    """Small smooth colourful JPEGs, a stand-in for photographs."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:40, 0:52]
    paths = []
    for i in range(count):
        phase = rng.uniform(0, 6.28, 3)
        array = np.stack([127 + 120 * np.sin(xx / 6 + yy / 8 + p) for p in phase], -1).astype(np.uint8)
        path = folder / f"{prefix}_{i:03d}.jpg"
        Image.fromarray(array).save(path, quality=90)
        paths.append(path)
    return paths
