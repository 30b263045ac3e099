"""The batched scoring API: modes, decisions, devices, the cascade and OOM splitting."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from model import scoring
from model.checkpoint import ModelCard, ThresholdRecord, save_checkpoint
from model.errors import ConfigError, DefaultModelMissing, DeviceUnavailable
from model.networks import AloccNetworks
from model.scoring import ScoreMode, Scorer, resolve_device

TinyModelFactory = Callable[..., tuple[AloccNetworks, ModelCard]]


@pytest.fixture
def scorer(tmp_path: Path, tiny_model: TinyModelFactory) -> Scorer:
    save_checkpoint(tmp_path / "ckpt", *tiny_model())
    return Scorer.load(tmp_path / "ckpt", device="cpu")


def batch(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_decisions_follow_the_threshold(scorer: Scorer) -> None:
    raw = scorer.raw_scores(batch(16))
    scorer.card.thresholds["d_x"] = ThresholdRecord(float(np.median(raw.d_x)), "test")
    result = scorer.score(batch(16), ScoreMode.D_X)
    assert result.scores.dtype == np.float32 and result.scores.shape == (16,)
    assert np.array_equal(result.excluded, result.scores >= np.float32(result.threshold))
    assert 0 < result.excluded.sum() < 16
    assert result.mode is ScoreMode.D_X and result.model_version == scorer.model_version
    assert np.allclose(result.scores, raw.d_x)
    assert np.allclose(scorer.score(batch(16), ScoreMode.D_RX).scores, raw.d_rx)


def test_cascade_runs_r_only_on_images_that_pass_the_gate(
    scorer: Scorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = batch(20, seed=3)
    raw = scorer.raw_scores(images)
    gate = float(np.sort(raw.d_x)[14])  # the top 6 of 20 pass (d_x >= gate)
    assert scorer.card.cascade_gate is not None
    scorer.card.cascade_gate.threshold = gate
    seen: list[int] = []
    reconstructor = scorer._reconstructor
    original = reconstructor.forward

    def counting(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        return original(x)

    monkeypatch.setattr(reconstructor, "forward", counting)
    discriminator = scorer._discriminator
    d_seen: list[int] = []
    d_original = discriminator.forward

    def d_counting(x: torch.Tensor) -> torch.Tensor:
        d_seen.append(x.shape[0])
        return d_original(x)

    monkeypatch.setattr(discriminator, "forward", d_counting)
    result = scorer.score(images, ScoreMode.CASCADE)
    passed = raw.d_x >= np.float32(gate)
    assert seen == [int(passed.sum())] == [6]
    assert d_seen == [20, 6]  # D(X) once for all, D(R(X)) for the passed; D(X) is not recomputed
    assert np.allclose(result.scores[passed], raw.d_rx[passed], atol=1e-6)
    assert np.all(result.scores[~passed] == 0.0)


def test_oom_splits_the_batch_and_gives_the_same_scores(
    scorer: Scorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = batch(10, seed=5)
    expected = scorer.score(images, ScoreMode.D_RX).scores
    original = scorer._forward_d_rx
    sizes: list[int] = []

    def small_memory(x: torch.Tensor) -> tuple[np.ndarray, ...]:
        # The halves must run after the out-of-memory exception is gone: a live traceback keeps
        # the failed attempt's activations allocated.
        assert sys.exc_info()[0] is None
        sizes.append(x.shape[0])
        if x.shape[0] > 3:
            raise torch.cuda.OutOfMemoryError("simulated")
        return original(x)

    monkeypatch.setattr(scorer, "_forward_d_rx", small_memory)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    assert np.allclose(scorer.score(images, ScoreMode.D_RX).scores, expected, atol=1e-6)
    assert sizes[0] == 10 and max(s for s in sizes[1:]) <= 5


def test_bad_inputs_are_refused(scorer: Scorer) -> None:
    with pytest.raises(ValueError, match="shape"):
        scorer.score(torch.zeros(2, 3, 16, 16))
    assert scorer.score(torch.zeros(0, 3, 32, 32)).scores.shape == (0,)
    with pytest.raises(ConfigError):
        Scorer.load(Path("unused"), device="cpu", mode="nonsense")


def test_device_validation() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("gpu", "cuda:x", "mps0"):
        with pytest.raises(DeviceUnavailable):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailable, match="CUDA is not available"):
            resolve_device("cuda")


def test_missing_default_model_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scoring, "default_model_dir", lambda: tmp_path / "default")
    with pytest.raises(DefaultModelMissing, match="make model"):
        Scorer.load(None, device="cpu")
