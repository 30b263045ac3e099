"""The one batched scoring API, used by the CLI, the worker, evaluation and the benchmarks.

Modes (higher score = more like an announcement card, the trained class):
- `d_x`: sigmoid(D(X)).
- `d_rx`: sigmoid(D(R(X))), the paper's score.
- `cascade`: D(X) on every image; R and D(R(X)) only on images whose D(X) reaches the card's
  loose gate threshold (the d_x threshold at a much higher false-positive rate). Images that fail
  the gate score 0.0 and are never excluded, so the cascade keeps d_rx's low false-positive rate
  while R, the expensive network, runs on few images.

The decision is `excluded = score >= threshold` for every mode (see `model.calibrate` for why the
stored thresholds make this the conformal rule).
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import torch

from model.checkpoint import CARD_FILE, ModelCard, load_checkpoint
from model.errors import ConfigError, DefaultModelMissing, DeviceUnavailable
from model.networks import AloccNetworks, DiscriminatorEnsemble, inference_copy, resize_input


class ScoreMode(StrEnum):
    """Which ALOCC score decides."""

    D_X = "d_x"
    D_RX = "d_rx"
    CASCADE = "cascade"


@dataclass(frozen=True)
class BatchScores:
    """Scores and decisions for one batch.

    Attributes:
        scores: (N,) float32; higher = more like an announcement card.
        excluded: (N,) bool; `scores >= threshold`.
        mode: The mode that produced the scores.
        threshold: The decision threshold used.
        model_version: The checkpoint's version string.
    """

    scores: np.ndarray
    excluded: np.ndarray
    mode: ScoreMode
    threshold: float
    model_version: str


@dataclass(frozen=True)
class RawScores:
    """Every score of a batch at once (for calibration and evaluation).

    Attributes:
        d_x: (N,) sigmoid(D(X)).
        d_rx: (N,) sigmoid(D(R(X))).
        reconstruction_error: (N,) mean squared error between X and R(X), in [-1, 1] pixel units.
    """

    d_x: np.ndarray
    d_rx: np.ndarray
    reconstruction_error: np.ndarray


def default_model_dir() -> Path:
    """Directory of the default model shipped as package data (`model/default/`)."""
    return Path(str(importlib.resources.files("model").joinpath("default")))


def resolve_device(device: str) -> torch.device:
    """Validate a device name: "auto", "cpu", "cuda" or "cuda:N".

    Raises:
        DeviceUnavailable: the name is not one of those, or CUDA (or that GPU index) is absent.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceUnavailable(f"device {device!r} requested but CUDA is not available on this machine")
        index_text = device.partition(":")[2]
        if index_text:
            if not index_text.isdigit():
                raise DeviceUnavailable(f"invalid CUDA device {device!r}")
            if int(index_text) >= torch.cuda.device_count():
                raise DeviceUnavailable(
                    f"{device!r} requested but only {torch.cuda.device_count()} GPU(s) exist"
                )
        return torch.device(device)
    raise DeviceUnavailable(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")


def cascade_scores(d_x: np.ndarray, d_rx: np.ndarray, gate: float) -> np.ndarray:
    """Cascade score from stage scores: d_rx where d_x passed the gate, else 0.0."""
    return np.where(d_x >= gate, d_rx, np.float32(0.0)).astype(np.float32)


class Scorer:
    """A loaded ALOCC model ready to score preprocessed batches.

    Build it with `Scorer.load`. Not safe for concurrent `score` calls from several threads on the
    same instance (one model, one stream of batches); create one per thread if needed.
    """

    def __init__(
        self, networks: AloccNetworks, card: ModelCard, device: torch.device, mode: ScoreMode | None = None
    ) -> None:
        self.card = card
        self.device = device
        self.input_size: int = card.input_size
        self.model_version: str = card.model_version
        self.mode: ScoreMode = mode if mode is not None else ScoreMode(card.default_mode)
        self._reconstructor = inference_copy(networks.reconstructor).to(device)
        self._discriminator = inference_copy(networks.discriminator).to(device)
        # Fail at load time, not on the first batch, if the chosen mode has no threshold.
        self.threshold(self.mode)

    @classmethod
    def load(
        cls, path: str | Path | None = None, *, device: str = "auto", mode: ScoreMode | str | None = None
    ) -> Scorer:
        """Load a checkpoint directory (None: the shipped default model) onto a device.

        Raises:
            DefaultModelMissing: `path` is None and no default model has been shipped yet.
            CheckpointError: the directory is not a valid checkpoint.
            DeviceUnavailable: bad device name, or CUDA requested but absent.
            ConfigError: unknown mode, or no threshold for it in the card.
        """
        torch_device = resolve_device(device)
        if path is None:
            path = default_model_dir()
            if not (path / CARD_FILE).is_file():
                raise DefaultModelMissing(
                    "no default model is shipped in model/default/ yet; train one with `make model` "
                    "or pass a checkpoint directory"
                )
        try:
            chosen = ScoreMode(mode) if mode is not None else None
        except ValueError as exc:
            raise ConfigError(
                f"unknown score mode {mode!r}; choose one of {[m.value for m in ScoreMode]}"
            ) from exc
        networks, card = load_checkpoint(path)
        return cls(networks, card, torch_device, chosen)

    def threshold(self, mode: ScoreMode | None = None) -> float:
        """The card's decision threshold for `mode` (default: the scorer's mode)."""
        mode = mode or self.mode
        record = self.card.thresholds.get(mode.value)
        if record is None:
            raise ConfigError(f"model {self.model_version} has no threshold for mode {mode.value!r}")
        if mode is ScoreMode.CASCADE and self.card.cascade_gate is None:
            raise ConfigError(f"model {self.model_version} has no cascade gate threshold")
        return float(record.threshold)

    def score(self, images: torch.Tensor, mode: ScoreMode | None = None) -> BatchScores:
        """Score a batch from `preprocess()`: (N, 3, input_size, input_size) float32 in [-1, 1]."""
        mode = mode or self.mode
        threshold = self.threshold(mode)
        self._check_batch(images)
        if mode is ScoreMode.D_X:
            scores = self._run(images, self._forward_d_x)[0]
        elif mode is ScoreMode.D_RX:
            scores = self._run(images, self._forward_d_rx)[0]
        else:
            scores = self._cascade(images)
        return BatchScores(
            scores=scores,
            excluded=scores >= np.float32(threshold),
            mode=mode,
            threshold=threshold,
            model_version=self.model_version,
        )

    def raw_scores(self, images: torch.Tensor) -> RawScores:
        """Compute d_x, d_rx and the reconstruction error for every image of the batch."""
        self._check_batch(images)
        d_x, d_rx, error = self._run(images, self._forward_all)
        return RawScores(d_x=d_x, d_rx=d_rx, reconstruction_error=error)

    def member_d_x(self, images: torch.Tensor, member: int) -> np.ndarray:
        """sigmoid of one ensemble member's logit (`(N,)`; a single D is member 0). A cheaper screen than
        the whole ensemble where a look at many pictures must stay cheap (the quadrant route's corners)."""
        self._check_batch(images)
        ensemble = self._discriminator
        if not isinstance(ensemble, DiscriminatorEnsemble):
            if member != 0:
                raise ConfigError(f"model {self.model_version} has one discriminator, not member {member}")
            return self._run(images, self._forward_d_x)[0]
        if not 0 <= member < len(ensemble.members):
            raise ConfigError(
                f"model {self.model_version} has {len(ensemble.members)} members, not member {member}"
            )
        network, side = ensemble.members[member], ensemble.sides[member]

        def forward(batch: torch.Tensor) -> tuple[np.ndarray, ...]:
            batch = self._to_device(batch)
            with torch.inference_mode(), self._autocast():
                logits = network(batch if side is None else resize_input(batch, side))
                return (_numpy(torch.sigmoid(logits.float())),)

        return self._run(images, forward)[0]

    def _cascade(self, images: torch.Tensor) -> np.ndarray:
        gate = self.card.cascade_gate
        assert gate is not None  # checked by threshold()
        d_x = self._run(images, self._forward_d_x)[0]
        passed = np.flatnonzero(d_x >= np.float32(gate.threshold))
        d_rx = np.zeros_like(d_x)
        if passed.size:
            # Only R and D(R(X)) for the images that passed; their D(X) is already known.
            d_rx[passed] = self._run(images[torch.from_numpy(passed)], self._forward_d_rx)[0]
        return cascade_scores(d_x, d_rx, gate.threshold)

    def _check_batch(self, images: torch.Tensor) -> None:
        expected = (3, self.input_size, self.input_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"expected a batch of shape (N, {expected}), got {tuple(images.shape)}")

    def _run(
        self, images: torch.Tensor, forward: Callable[[torch.Tensor], tuple[np.ndarray, ...]]
    ) -> tuple[np.ndarray, ...]:
        """`forward` the batch; on CUDA out-of-memory, split it in halves and retry each.

        An empty batch goes through as well (convolutions and eval-mode BatchNorm accept N = 0).
        """
        try:
            return forward(images)
        except torch.cuda.OutOfMemoryError:
            if images.shape[0] == 1:
                raise
        # Retry outside the except block: while the exception is alive its traceback keeps the
        # failed attempt's activations referenced, and the halves would run out of memory too.
        torch.cuda.empty_cache()
        half = images.shape[0] // 2
        first = self._run(images[:half], forward)
        second = self._run(images[half:], forward)
        return tuple(np.concatenate([a, b]) for a, b in zip(first, second, strict=True))

    def _to_device(self, images: torch.Tensor) -> torch.Tensor:
        on_cuda = self.device.type == "cuda"
        if on_cuda and images.device.type == "cpu":
            # Pinned host memory lets the copy run asynchronously with respect to the host.
            images = images.pin_memory()
        images = images.to(self.device, dtype=torch.float32, non_blocking=on_cuda)
        return images.contiguous(memory_format=torch.channels_last)  # the networks' weight layout

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    def _forward_d_x(self, images: torch.Tensor) -> tuple[np.ndarray, ...]:
        """(D(X),)"""
        batch = self._to_device(images)
        with torch.inference_mode(), self._autocast():
            d_x = torch.sigmoid(self._discriminator(batch).float())
        return (_numpy(d_x),)

    def _forward_d_rx(self, images: torch.Tensor) -> tuple[np.ndarray, ...]:
        """(D(R(X)),)"""
        batch = self._to_device(images)
        with torch.inference_mode(), self._autocast():
            d_rx = torch.sigmoid(self._discriminator(self._reconstructor(batch).float()).float())
        return (_numpy(d_rx),)

    def _forward_all(self, images: torch.Tensor) -> tuple[np.ndarray, ...]:
        """(D(X), D(R(X)), mean squared reconstruction error)"""
        batch = self._to_device(images)
        with torch.inference_mode(), self._autocast():
            d_x = torch.sigmoid(self._discriminator(batch).float())
            reconstruction = self._reconstructor(batch).float()
            d_rx = torch.sigmoid(self._discriminator(reconstruction).float())
            error = (reconstruction - batch).pow(2).flatten(1).mean(1)
        return tuple(_numpy(t) for t in (d_x, d_rx, error))


def _numpy(values: torch.Tensor) -> np.ndarray:
    return values.cpu().numpy().astype(np.float32)
