"""Checkpoints: `weights.safetensors` + `card.json` in one directory, loaded without unpickling.

The card is self-describing: the preset and its network spec (to rebuild R and D), the input size
and normalisation, the training configuration, data fingerprints, the model version, per-mode
thresholds with how they were calibrated, the default mode and the metrics measured.

Loading reads JSON and safetensors only. `torch.load` and `pickle` are never used, so a checkpoint
from an untrusted place cannot execute code.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from model.errors import CheckpointError
from model.networks import AloccNetworks, build_networks
from model.presets import NetworkSpec

CARD_FILE = "card.json"
WEIGHTS_FILE = "weights.safetensors"
TRAINING_STATE_FILE = "training_state.safetensors"
TRAINING_STATE_CARD = "training_state.json"
CARD_FORMAT = 1
# mkstemp creates owner-only files; checkpoints are meant to be read by the serving user too.
_FILE_MODE = 0o644


@dataclass
class ThresholdRecord:
    """One mode's decision threshold and how it was obtained.

    The decision is `excluded = score >= threshold`. For conformal calibration the threshold is the
    smallest float32 strictly above `rank_score` (the rank-th smallest calibration score), so
    `score >= threshold` is exactly `score > rank_score`; see `model.calibrate`.
    """

    threshold: float
    method: str  # "conformal", "conformal-max-fallback", "validation-empirical", "uncalibrated"
    target_fpr: float | None = None
    n: int | None = None
    rank: int | None = None
    rank_score: float | None = None
    data_fingerprint: str | None = None
    fallback: bool = False
    measured: dict[str, float] = field(default_factory=dict)
    note: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ThresholdRecord:
        """Rebuild from the card's JSON."""
        return cls(**dict(data))


@dataclass
class ModelCard:
    """Everything about a trained model that is not a weight."""

    preset: str
    network: dict[str, Any]
    input_size: int
    default_mode: str
    model_version: str = ""
    normalisation: dict[str, str] = field(default_factory=dict)
    thresholds: dict[str, ThresholdRecord] = field(default_factory=dict)
    cascade_gate: ThresholdRecord | None = None
    # The text-verifier cascade served over this model, when one is attached (`model.cascade.TextCascade`
    # reads it): the verifier's engine and configuration, the rule, its thresholds and its own version.
    text_cascade: dict[str, Any] | None = None
    training: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    format: int = CARD_FORMAT

    @property
    def serving_version(self) -> str:
        """The version a worker serving this checkpoint writes under: the cascade's when one is attached."""
        if self.text_cascade is not None:
            return str(self.text_cascade["version"])
        return self.model_version

    @property
    def spec(self) -> NetworkSpec:
        """The network spec that rebuilds R and D."""
        return NetworkSpec.from_dict(self.network)

    def to_json(self) -> str:
        """Serialise to indented JSON."""
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        """Parse a card; raises `CheckpointError` on malformed content."""
        try:
            data = json.loads(text)
            if data.get("format") != CARD_FORMAT:
                raise CheckpointError(f"unsupported card format {data.get('format')!r}")
            data["thresholds"] = {
                mode: ThresholdRecord.from_dict(record) for mode, record in data.get("thresholds", {}).items()
            }
            gate = data.get("cascade_gate")
            data["cascade_gate"] = ThresholdRecord.from_dict(gate) if gate is not None else None
            return cls(**data)
        except (ValueError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"malformed {CARD_FILE}: {exc}") from exc


def weights_state(networks: AloccNetworks) -> dict[str, torch.Tensor]:
    """Flat tensor dict of both networks' parameters and buffers (BatchNorm running stats)."""
    state: dict[str, torch.Tensor] = {}
    for name, module in zip(("reconstructor", "discriminator"), networks, strict=True):
        for key, tensor in module.state_dict().items():
            state[f"{name}.{key}"] = tensor.detach().to("cpu").contiguous()
    return state


def model_version(preset: str, state: Mapping[str, torch.Tensor], when: dt.datetime | None = None) -> str:
    """`alocc-<preset>-<YYYYMMDD>-<first 8 hex of the weights' sha256>`."""
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].to(torch.float32).numpy().tobytes())
    day = (when or dt.datetime.now(dt.UTC)).strftime("%Y%m%d")
    return f"alocc-{preset}-{day}-{digest.hexdigest()[:8]}"


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, _FILE_MODE)
    os.replace(tmp, path)


def _atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    save_file(tensors, tmp, metadata=metadata)
    os.chmod(tmp, _FILE_MODE)
    os.replace(tmp, path)


def save_checkpoint(directory: str | Path, networks: AloccNetworks, card: ModelCard) -> ModelCard:
    """Write weights and card into `directory` (created if needed); returns the card as written.

    The card's `model_version` is derived from the weights, and `created_at` is set when empty.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = weights_state(networks)
    now = dt.datetime.now(dt.UTC)
    card = dataclasses.replace(
        card,
        model_version=model_version(card.preset, state, now),
        created_at=card.created_at or now.isoformat(timespec="seconds"),
    )
    _atomic_save_tensors(directory / WEIGHTS_FILE, state, {"model_version": card.model_version})
    write_card(directory, card)
    return card


def write_card(directory: str | Path, card: ModelCard) -> None:
    """Replace the card of an existing checkpoint (e.g. after calibration)."""
    _atomic_write_text(Path(directory) / CARD_FILE, card.to_json())


def read_card(directory: str | Path) -> ModelCard:
    """Read only the card of a checkpoint."""
    path = Path(directory) / CARD_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise CheckpointError(f"no {CARD_FILE} in {directory}") from exc
    return ModelCard.from_json(text)


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device="cpu")
    except FileNotFoundError as exc:
        raise CheckpointError(f"missing {path.name} in {path.parent}") from exc
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a valid safetensors file: {exc}") from exc


def load_checkpoint(directory: str | Path) -> tuple[AloccNetworks, ModelCard]:
    """Rebuild R and D from a checkpoint directory, in eval mode on the CPU.

    Raises:
        CheckpointError: missing files, malformed card, or weights that do not fit the card's spec.
    """
    directory = Path(directory)
    card = read_card(directory)
    networks = build_networks(card.spec)
    state = _read_tensors(directory / WEIGHTS_FILE)
    for name, module in zip(("reconstructor", "discriminator"), networks, strict=True):
        prefix = f"{name}."
        sub = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
        try:
            module.load_state_dict(sub, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"weights in {directory} do not match the card's network: {exc}") from exc
        module.eval()
    return networks, card


def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Move tensors out of a nested structure into `tensors`; return a JSON-able skeleton."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().to("cpu").contiguous()
        return {"__tensor__": prefix}
    if isinstance(obj, Mapping):
        return {"__map__": [[_key(k), _flatten(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        return {"__list__": [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    return obj


def _key(key: Any) -> Any:
    return {"__int__": key} if isinstance(key, int) else key


def _unkey(key: Any) -> Any:
    return key["__int__"] if isinstance(key, dict) else key


def _unflatten(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__map__" in obj:
            return {_unkey(k): _unflatten(v, tensors) for k, v in obj["__map__"]}
        if "__list__" in obj:
            return [_unflatten(v, tensors) for v in obj["__list__"]]
    return obj


def save_training_state(directory: str | Path, state: Mapping[str, Any]) -> None:
    """Save optimizer states and loop counters for `--resume`, as safetensors + JSON (no pickle)."""
    directory = Path(directory)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(dict(state), "state", tensors)
    _atomic_save_tensors(directory / TRAINING_STATE_FILE, tensors, {})
    _atomic_write_text(directory / TRAINING_STATE_CARD, json.dumps(skeleton))


def load_training_state(directory: str | Path) -> dict[str, Any]:
    """Inverse of `save_training_state`."""
    directory = Path(directory)
    try:
        skeleton = json.loads((directory / TRAINING_STATE_CARD).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CheckpointError(f"no training state in {directory}; cannot resume") from exc
    result = _unflatten(skeleton, _read_tensors(directory / TRAINING_STATE_FILE))
    if not isinstance(result, dict):
        raise CheckpointError(f"malformed training state in {directory}")
    return result
