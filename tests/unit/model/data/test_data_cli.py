"""`alocc data ...` through the real root parser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alocc.cli import main


@pytest.mark.slow
def test_build_preview_and_demo(tmp_path: Path, capsys) -> None:
    out = tmp_path / "ds"
    argv = ["data", "build", "--out", str(out), "--scale", "small", "--seed", "2", "--workers", "1"]
    assert main(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["scale"] == "small"
    assert manifest["seed"] == 2
    assert "eval/other" in capsys.readouterr().out

    assert main(["data", "preview", str(out), "--per-folder", "4"]) == 0
    assert (out / "preview.png").stat().st_size > 10_000

    assert main(["data", "demo", "--out", str(tmp_path / "demo"), "--cards", "1", "--photos", "1"]) == 0
    assert len(list((tmp_path / "demo").glob("*.jpg"))) == 2


@pytest.mark.slow
def test_a_draw_adds_files_the_build_would_draw_past_its_own(tmp_path: Path, capsys) -> None:
    from model.data.build import render_item

    out = tmp_path / "draw"
    argv = ["data", "draw", "--folder", "calib/other", "--count", "3", "--out", str(out), "--workers", "1"]
    assert main(argv) == 0
    record = json.loads((out / "draw-calib-other.json").read_text())
    assert (record["folder"], record["start"], record["count"]) == ("calib/other", 6000, 3)
    files = sorted(path.name for path in (out / "calib/other").glob("*.jpg"))
    assert sorted(name.rsplit("-", 1)[1] for name in files) == ["06000.jpg", "06001.jpg", "06002.jpg"]
    # The same file the build's own drawing gives for that index.
    _, row = render_item(0, "calib/other", 6001)
    assert row == record["files"][1] and (out / str(row["file"])).is_file()
    assert "drew 3 files of calib/other (from index 6000)" in capsys.readouterr().out

    assert main(argv) == 2  # the folder holds files now: never mixed with another draw
    assert main([*argv[:2], "--folder", "eval/nowhere", *argv[4:]]) == 2
    assert "not a dataset folder" in capsys.readouterr().err
