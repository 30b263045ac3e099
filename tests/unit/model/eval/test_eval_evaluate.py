"""`alocc evaluate` on a tiny untrained model: output shape, honesty of thresholds, report files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from eval_helpers import make_tiny_checkpoint, write_photo_images, write_text_images

from alocc.cli import main
from model.evaluate import MODES, evaluate, list_image_files, load_subkind_manifest, subkind_of
from model.scoring import ScoreMode, Scorer


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    # The test machine is shared; tiny models gain nothing from more threads.
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
def image_folders(tmp_path: Path) -> tuple[Path, Path]:
    """5 text images as targets; 4 photos and 2 printed-word images as others."""
    target, other = tmp_path / "target", tmp_path / "other"
    write_text_images(target, 5)
    write_photo_images(other, 4, prefix="photo")
    write_text_images(other, 2, prefix="printed", seed=3)
    return target, other


def test_evaluate_json_shape(
    tiny_model: Path, image_folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    target, other = image_folders
    code = main(
        ["evaluate", "--target", str(target), "--other", str(other), "--model", str(tiny_model), "--json"]
    )
    assert code == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, "--json prints exactly one JSON object"
    payload = json.loads(out[0])
    assert set(payload) == {"model_version", "n_target", "n_other", "default_mode", "modes"}
    assert payload["n_target"] == 5
    assert payload["n_other"] == 6
    assert payload["default_mode"] == "d_x"
    assert payload["model_version"].startswith("alocc-strided-")
    assert set(payload["modes"]) == set(MODES)
    for mode, m in payload["modes"].items():
        assert set(m) == {"accuracy", "fpr", "fnr", "auroc", "f1", "threshold"}, mode
        assert m["threshold"] == pytest.approx(0.5)
        for key in ("accuracy", "fpr", "fnr", "auroc", "f1"):
            assert 0.0 <= m[key] <= 1.0


def test_metrics_match_scorer_decisions_at_card_threshold(
    tiny_model: Path, image_folders: tuple[Path, Path]
) -> None:
    target, other = image_folders
    scorer = Scorer.load(tiny_model, device="cpu")
    result = evaluate(scorer, list_image_files(target), list_image_files(other), show_progress=False)
    for mode in MODES:
        t_scores, o_scores = result.target.scores[mode], result.other.scores[mode]
        threshold = scorer.threshold(ScoreMode(mode))
        # The rates are the scorer's own decisions at the stored threshold, not a re-tuned one.
        assert result.metrics[mode].threshold == threshold
        assert result.metrics[mode].fnr == pytest.approx(float(np.mean(t_scores < threshold)))
        assert result.metrics[mode].fpr == pytest.approx(float(np.mean(o_scores >= threshold)))
    # The cascade runs R only behind the gate: images below it score exactly 0.
    gate = scorer.card.cascade_gate
    assert gate is not None
    d_x = np.r_[result.target.scores["d_x"], result.other.scores["d_x"]]
    cascade = np.r_[result.target.scores["cascade"], result.other.scores["cascade"]]
    assert np.all(cascade[d_x < gate.threshold] == 0.0)


def test_unreadable_images_are_skipped_not_fatal(
    tiny_model: Path, image_folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    target, other = image_folders
    (other / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    code = main(
        ["evaluate", "--target", str(target), "--other", str(other), "--model", str(tiny_model), "--json"]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["n_other"] == 6


def test_table_report_and_subkinds(
    tiny_model: Path, image_folders: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target, other = image_folders
    report = tmp_path / "report"
    code = main(
        [
            "evaluate",
            "--target",
            str(target),
            "--other",
            str(other),
            "--model",
            str(tiny_model),
            "--report",
            str(report),
            "--by-subkind",
            "--no-progress",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    for needle in ("d_x (default)", "d_rx", "cascade", "seed blog D(X)", "0.920", "printed ", "photo "):
        assert needle in text
    for name in ("roc.png", "histograms.png", "reconstructions.png"):
        data = (report / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 2000, name


def test_missing_folder_is_a_clean_error(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["evaluate", "--target", str(tmp_path / "nope"), "--other", str(tmp_path), "--model", str(tiny_model)]
    )
    assert code == 2
    assert "DataError" in capsys.readouterr().err


def test_json_nan_becomes_null(tiny_model: Path, image_folders: tuple[Path, Path]) -> None:
    target, other = image_folders
    scorer = Scorer.load(tiny_model, device="cpu")
    result = evaluate(scorer, list_image_files(target), list_image_files(other), show_progress=False)
    payload = result.to_json_dict()
    json.dumps(payload, allow_nan=False)  # raises if a NaN slipped through
    assert not any(
        isinstance(v, float) and math.isnan(v) for m in payload["modes"].values() for v in m.values()
    )


def test_subkinds_come_from_the_dataset_manifest(tmp_path: Path) -> None:
    other = tmp_path / "ds" / "eval" / "other"
    other.mkdir(parents=True)
    files = {
        "eval/other/printed-synthetic-tshirt-00001.jpg": {"kind": "printed"},
        "eval/other/product-kodak-00002.jpg": {"kind": "product"},
        "eval/target/card-table-00003.jpg": {"kind": "card", "layout": "table"},
    }
    manifest = {"files": [{"file": name, **record} for name, record in files.items()]}
    (tmp_path / "ds" / "manifest.json").write_text(json.dumps(manifest))
    kinds = load_subkind_manifest(other)
    assert kinds == {"printed-synthetic-tshirt-00001.jpg": "printed", "product-kodak-00002.jpg": "product"}
    assert subkind_of(other / "product-kodak-00002.jpg", other, kinds) == "product"
    # Without a manifest entry: the file-name prefix.
    assert subkind_of(other / "photo-x-00009.jpg", other, kinds) == "photo"
    target = tmp_path / "ds" / "eval" / "target"
    target.mkdir()
    assert load_subkind_manifest(target) == {"card-table-00003.jpg": "card:table"}
