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
