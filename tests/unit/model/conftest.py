"""Shared helpers for the model unit tests: tiny networks and tiny image folders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from model.checkpoint import ModelCard, ThresholdRecord
from model.networks import AloccNetworks, build_networks
from model.presets import NetworkSpec, get_preset
from model.scoring import ScoreMode


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    # The test machine is shared; tiny models gain nothing from more threads.
    torch.set_num_threads(1)


def write_cards(folder: Path, count: int, seed: int = 0) -> Path:
    """Write `count` small text-card PNGs (dark strokes on light backgrounds)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image = Image.new("RGB", (48, 40), tuple(int(v) for v in rng.integers(190, 256, 3)))
        draw = ImageDraw.Draw(image)
        for line in range(3):
            draw.text((2, 2 + 12 * line), "SALE"[: 2 + line], fill=(0, 0, 0))
        image.save(folder / f"card{i}.png")
    return folder


def write_photos(folder: Path, count: int, seed: int = 1) -> Path:
    """Write `count` small smooth colourful JPEGs (a stand-in for photographs)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:40, 0:48]
    for i in range(count):
        phase = rng.uniform(0, 6.28, 3)
        array = np.stack([127 + 120 * np.sin(xx / 7 + yy / 9 + p) for p in phase], -1).astype(np.uint8)
        Image.fromarray(array).save(folder / f"photo{i}.jpg", quality=90)
    return folder


def _tiny_card(spec: NetworkSpec) -> ModelCard:
    thresholds = {m.value: ThresholdRecord(0.5, "uncalibrated") for m in ScoreMode}
    return ModelCard(
        preset="strided",
        network=spec.to_dict(),
        input_size=spec.input_size,
        default_mode="d_x",
        thresholds=thresholds,
        cascade_gate=ThresholdRecord(0.3, "uncalibrated"),
    )


def _tiny_model(width: int = 4, seed: int = 0, input_size: int = 32) -> tuple[AloccNetworks, ModelCard]:
    torch.manual_seed(seed)
    spec = get_preset("strided", width=width, input_size=input_size)
    networks = build_networks(spec)
    # A few training-mode batches, so BatchNorm running statistics differ from their defaults.
    for module in networks:
        module.train()
        for _ in range(3):
            module(torch.randn(8, 3, input_size, input_size))
    return networks, _tiny_card(spec)


TinyModelFactory = Callable[..., tuple[AloccNetworks, ModelCard]]


@pytest.fixture
def tiny_model() -> TinyModelFactory:
    """Factory: `tiny_model(width=4, seed=0, input_size=32)` -> (networks, card) of a strided model."""
    return _tiny_model


FolderFactory = Callable[..., Path]


@pytest.fixture
def make_cards() -> FolderFactory:
    """Factory: `make_cards(folder, count, seed=0)` writes small text-card PNGs."""
    return write_cards


@pytest.fixture
def make_photos() -> FolderFactory:
    """Factory: `make_photos(folder, count, seed=1)` writes small photo-like JPEGs."""
    return write_photos
