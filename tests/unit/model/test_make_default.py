"""The default-model recipe runs end to end on a tiny dataset and installs a loadable model."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from model import make_default as recipe_module
from model.errors import DataError
from model.scoring import Scorer

FolderFactory = Callable[..., Path]


def _tiny_dataset(root: Path, make_cards: FolderFactory, make_photos: FolderFactory) -> Path:
    """The folders a recipe reads, a few images each, and a manifest marking a built dataset."""
    make_cards(root / "train" / "target", 16)
    make_photos(root / "train" / "negatives", 16)
    make_cards(root / "val" / "target", 8, seed=3)
    make_photos(root / "val" / "other", 12, seed=4)
    make_photos(root / "calib" / "other", 20, seed=5)
    (root / "manifest.json").write_text("{}")
    return root


def test_recipe_trains_calibrates_and_installs(
    tmp_path: Path, make_cards: FolderFactory, make_photos: FolderFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _tiny_dataset(tmp_path / "data", make_cards, make_photos)
    recipe = {
        "train": {
            "data": "train/target",
            "negatives": "train/negatives",
            "val_target": "val/target",
            "val_other": "val/other",
            "preset": "strided",
            "width": 4,
            "input_size": 32,
            "epochs": 1,
            "batch_size": 8,
            "steps_per_epoch": 2,
            "cache_dir": str(tmp_path / "cache"),
            "progress": False,
        },
        "calibrate": {"other": "calib/other", "target": "val/target", "target_fpr": 0.1, "gate_fpr": 0.5},
    }
    recipe_path = tmp_path / "recipe.json"
    recipe_path.write_text(json.dumps(recipe))
    installed = tmp_path / "installed"
    monkeypatch.setattr(recipe_module, "default_model_dir", lambda: installed)

    report = recipe_module.make_default(root, tmp_path / "run", recipe_path, install=True, device="cpu")
    assert set(report) == {"d_x", "d_rx", "cascade"}
    scorer = Scorer.load(installed, device="cpu")
    assert scorer.card.thresholds["d_x"].method == "conformal"
    assert scorer.card.thresholds["d_x"].n == 20


def test_an_ensemble_recipe_trains_each_member_and_installs_their_mean(
    tmp_path: Path, make_cards: FolderFactory, make_photos: FolderFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _tiny_dataset(tmp_path / "data", make_cards, make_photos)
    make_photos(root / "train" / "structured", 6, seed=7)
    train = {
        "data": "train/target",
        "negatives": "train/negatives",
        "val_target": "val/target",
        "val_other": "val/other",
        "width": 4,
        "input_size": 32,
        "epochs": 1,
        "batch_size": 8,
        "steps_per_epoch": 2,
        "threads": 1,
        "cache_dir": str(tmp_path / "cache"),
        "progress": False,
    }
    recipe = {
        "train": train,
        "members": [
            {},
            {"extra_negatives": "train/structured", "seed": 1},
            {
                "extra_negatives": "train/structured",
                "seed": 2,
                "train_reconstructor": False,
                "fake_weight": 0,
            },
        ],
        "calibrate": {"other": "calib/other", "target": "val/target", "target_fpr": 0.1, "gate_fpr": 0.5},
    }
    recipe_path = tmp_path / "recipe.json"
    recipe_path.write_text(json.dumps(recipe))
    installed = tmp_path / "installed"
    monkeypatch.setattr(recipe_module, "default_model_dir", lambda: installed)
    monkeypatch.setattr(recipe_module.os, "cpu_count", lambda: 2)  # the third member waits for a process

    recipe_module.make_default(root, tmp_path / "run", recipe_path, install=True, device="cpu")
    scorer = Scorer.load(installed, device="cpu")
    assert scorer.card.spec.d_members == 3
    assert scorer.card.thresholds["d_x"].method == "conformal"
    members = [m["training"] for m in scorer.card.training["ensemble_of"]]
    structured = str(root / "train" / "structured")
    assert [m["extra_negatives"] for m in members] == [None, structured, structured]
    assert [m["train_reconstructor"] for m in members] == [True, True, False]
    assert (
        scorer.card.training["reconstructor_from"] == scorer.card.training["ensemble_of"][0]["model_version"]
    )
    assert (tmp_path / "run" / "member-2" / "best" / "card.json").is_file()


def test_recipe_needs_a_built_dataset(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="alocc data build"):
        recipe_module.make_default(tmp_path, tmp_path / "run")


def test_shipped_recipe_names_only_known_options() -> None:
    recipe = recipe_module.load_recipe(recipe_module.DEFAULT_RECIPE)
    from model.train import TrainConfig

    assert set(recipe["train"]) <= set(TrainConfig.__dataclass_fields__)
    for member in recipe.get("members", []):
        assert set(member) <= set(TrainConfig.__dataclass_fields__)
    assert {"other", "target", "target_fpr"} <= set(recipe["calibrate"])
