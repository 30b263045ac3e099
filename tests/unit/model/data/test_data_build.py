"""A small dataset build: layout, counts, sizes, manifest, source separation, reproducibility."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from model.data import build, splits
from model.data.dataset_errors import DatasetLayoutError
from model.data.folder import iter_image_files

SYNTHETIC = {"synthetic-tshirt", "synthetic-sky", "cards-train", "cards-heldout"}

pytestmark = pytest.mark.slow  # one small build (about 100 images) shared by the module


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ds")
    manifest = build.build(out, seed=5, scale="small", workers=1)
    return out, manifest


def test_layout_and_counts(small: tuple[Path, dict]) -> None:
    out, manifest = small
    for folder, n in build.COUNTS[build.Scale.SMALL].items():
        files = list(iter_image_files(out / folder))
        assert len(files) == n, folder
        assert manifest["splits"][folder]["count"] == n
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["seed"] == 5
    assert len(on_disk["files"]) == sum(build.COUNTS[build.Scale.SMALL].values())
    assert set(on_disk["families"]) == {"train", "heldout", "check"}


def test_images_are_rgb_jpegs_with_long_side_256(small: tuple[Path, dict]) -> None:
    out, _ = small
    for path in list(iter_image_files(out))[::7]:
        with Image.open(path) as im:
            assert im.format == "JPEG"
            assert im.mode == "RGB"
            assert max(im.size) == build.LONG_SIDE


def test_sources_per_split(small: tuple[Path, dict]) -> None:
    _, manifest = small
    by_folder = {f: set(info["by_source"]) for f, info in manifest["splits"].items()}
    eval_sources = set(splits.EVAL_SOURCES)
    assert by_folder["eval/other"] - SYNTHETIC <= eval_sources
    for folder in ("train/negatives", "val/other", "calib/other"):
        assert not (by_folder[folder] & eval_sources), folder
    assert by_folder["train/target"] == {"cards-train"}
    assert by_folder["eval/target"] == {"cards-heldout"}
    assert by_folder["check/target"] == {"cards-check"}
    assert by_folder["check/one-line"] == {"cards-check"}
    # No photo file feeds two different splits among train/val/calib/eval.
    used: dict[str, set[str]] = {}
    for rec in manifest["files"]:
        if rec["kind"] != "card" and rec.get("photo"):
            split = rec["file"].split("/")[0]
            used.setdefault(f"{rec['source']}/{rec['photo']}", set()).add(split)
    assert all(len(s) == 1 for s in used.values()), {k: v for k, v in used.items() if len(v) > 1}


def test_smooth_and_structured_negatives_are_for_training_only() -> None:
    # Wide defocused scenes and skies are drawn into train/negatives, item sets and slats into their
    # own train/structured (appended to PLANS after the first seven folders): every other folder
    # keeps its random draws (and so its images) exactly as before.
    soft = {plan.folder for plan in build.PLANS if plan.soft_share > 0}
    structured = {plan.folder for plan in build.PLANS if plan.structured_share > 0}
    assert soft == {"train/negatives"}
    assert structured == {"train/structured"}
    assert [plan.folder for plan in build.PLANS[-6:]] == [
        "train/structured",
        "check/target",
        "check/one-line",
        "train/one-line",
        "check/photographed",
        "train/photographed",
    ]


def test_the_one_line_folder_holds_one_line_cards_only(small: tuple[Path, dict]) -> None:
    _, manifest = small
    for folder, source in (("check/one-line", "cards-check"), ("train/one-line", "cards-train")):
        records = [rec for rec in manifest["files"] if rec["file"].startswith(folder + "/")]
        assert {(rec["layout"], rec["source"]) for rec in records} == {("one_line", source)}


def test_the_photographed_folders_hold_their_family_s_cards_in_scenes(small: tuple[Path, dict]) -> None:
    _, manifest = small
    photographed = []
    for folder, source in (("check/photographed", "cards-check"), ("train/photographed", "cards-train")):
        records = [rec for rec in manifest["files"] if rec["file"].startswith(folder + "/")]
        assert records and all(rec["photographed"] and rec["source"] == source for rec in records)
        photographed += records
    assert not any(rec.get("photographed") for rec in manifest["files"] if rec not in photographed)


def test_items_are_reproducible(small: tuple[Path, dict]) -> None:
    _, manifest = small
    for rec in manifest["files"][::9]:
        folder, name = rec["file"].rsplit("/", 1)
        index = int(name.rsplit("-", 1)[1].split(".")[0])
        _, again = build.render_item(5, folder, index)
        assert again == rec


def test_refuses_a_non_dataset_folder(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(DatasetLayoutError):
        build.build(tmp_path, scale="small", overwrite=True)
    assert (tmp_path / "keep.txt").exists()


def test_an_interrupted_build_can_be_overwritten(tmp_path: Path) -> None:
    (tmp_path / build.INCOMPLETE_MARKER).write_text("")
    (tmp_path / "train" / "target").mkdir(parents=True)
    (tmp_path / "train" / "target" / "card-x-00000.jpg").write_bytes(b"partial")
    with pytest.raises(DatasetLayoutError):
        build.build(tmp_path, scale="small")  # not without overwrite
    manifest = build.build(tmp_path, scale="small", overwrite=True, workers=1)
    assert not (tmp_path / build.INCOMPLETE_MARKER).exists()
    assert not (tmp_path / "train" / "target" / "card-x-00000.jpg").exists()
    per_split = manifest["splits"]
    assert isinstance(per_split, dict)
    assert per_split["train/target"]["count"] == build.COUNTS[build.Scale.SMALL]["train/target"]
