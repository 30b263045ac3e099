"""Checkpoints round-trip exactly and never unpickle."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from model.checkpoint import (
    WEIGHTS_FILE,
    ModelCard,
    load_checkpoint,
    load_training_state,
    read_card,
    save_checkpoint,
    save_training_state,
)
from model.errors import CheckpointError
from model.networks import AloccNetworks
from model.scoring import ScoreMode, Scorer

TinyModelFactory = Callable[..., tuple[AloccNetworks, ModelCard]]


def test_round_trip_gives_identical_scores(tmp_path: Path, tiny_model: TinyModelFactory) -> None:
    networks, card = tiny_model()
    card = save_checkpoint(tmp_path / "ckpt", networks, card)
    assert card.model_version.startswith("alocc-strided-") and len(card.model_version.split("-")[-1]) == 8

    images = torch.rand(6, 3, 32, 32) * 2 - 1
    before = Scorer(networks, card, torch.device("cpu"))
    after = Scorer.load(tmp_path / "ckpt", device="cpu")
    assert after.model_version == card.model_version
    for mode in ScoreMode:
        a, b = before.score(images, mode), after.score(images, mode)
        assert (a.scores == b.scores).all(), mode
    assert read_card(tmp_path / "ckpt") == card


def test_loading_never_unpickles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model: TinyModelFactory
) -> None:
    save_checkpoint(tmp_path / "ckpt", *tiny_model())

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("checkpoint loading must not unpickle")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    loaded, _ = load_checkpoint(tmp_path / "ckpt")
    assert not loaded.reconstructor.training


class _Payload:
    """Unpickling this touches a marker file: the classic pickle code-execution trick."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (Path.touch, (self.marker,))


def test_a_pickle_posing_as_weights_is_rejected_unexecuted(
    tmp_path: Path, tiny_model: TinyModelFactory
) -> None:
    directory = tmp_path / "ckpt"
    save_checkpoint(directory, *tiny_model())
    marker = tmp_path / "executed"
    torch.save({"weights": _Payload(marker)}, directory / WEIGHTS_FILE)
    with pytest.raises(CheckpointError):
        load_checkpoint(directory)
    assert not marker.exists()


def test_mismatched_or_missing_files_are_checkpoint_errors(
    tmp_path: Path, tiny_model: TinyModelFactory
) -> None:
    save_checkpoint(tmp_path / "a", *tiny_model())
    save_checkpoint(tmp_path / "b", *tiny_model(width=8))
    (tmp_path / "a" / WEIGHTS_FILE).replace(tmp_path / "b" / WEIGHTS_FILE)  # weights of a, card of b
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(tmp_path / "b")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "a")  # weights gone
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "nothing-here")


def test_training_state_round_trip(tmp_path: Path, tiny_model: TinyModelFactory) -> None:
    networks, _ = tiny_model()
    optimizer = torch.optim.Adam(networks.reconstructor.parameters(), betas=(0.5, 0.999))
    networks.reconstructor(torch.randn(2, 3, 32, 32)).mean().backward()
    optimizer.step()
    save_training_state(tmp_path, {"epoch": 3, "opt": optimizer.state_dict(), "note": "x"})
    state = load_training_state(tmp_path)
    assert state["epoch"] == 3 and state["note"] == "x"
    restored = torch.optim.Adam(networks.reconstructor.parameters())
    restored.load_state_dict(state["opt"])
    original = optimizer.state_dict()
    for key, value in original["state"][0].items():
        assert torch.equal(restored.state_dict()["state"][0][key], value)
    assert restored.param_groups[0]["betas"][0] == 0.5
