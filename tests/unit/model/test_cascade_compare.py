"""`alocc cascade compare`: two `alocc cascade draws` reports of the same draws, side by side."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from model.cascade_compare import compare_reports, format_comparison, run_compare
from model.errors import ConfigError


def _report(version: str, missed: int, flagged: int, *, root: str = "data/draw", photos: int = 100) -> Any:
    family = {"interval95": [0.0, 1.0], "decided_by": {}}
    return {
        "model_version": version,
        "root": root,
        "folders": [
            {
                "folder": "check/target",
                "measure": "missed",
                "unscored": 0,
                "families": {"all": {**family, "images": 50, "errors": missed, "rate": missed / 50}},
            },
            {
                "folder": "eval/other",
                "measure": "flagged",
                "unscored": 0,
                "families": {
                    "photo": {**family, "images": photos, "errors": flagged, "rate": flagged / photos}
                },
            },
        ],
    }


def test_the_comparison_gives_each_familys_errors_in_both_reports_and_their_change() -> None:
    before, after = _report("m-ocr-a", 10, 1), _report("m-ocr-b", 6, 2)

    rows = compare_reports(before, after)

    assert [(r["folder"], r["family"], r["change"]) for r in rows] == [
        ("check/target", "all", -4),
        ("eval/other", "photo", 1),
    ]
    table = format_comparison(before, after, rows)
    assert "`m-ocr-a` -> `m-ocr-b`" in table
    assert "| check/target | all | 50 | missed | 10 (20.00%) | 6 (12.00%) | -4 |" in table


def test_reports_of_other_draws_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="different draws"):
        compare_reports(_report("a", 1, 1), _report("b", 1, 1, root="data/other"))
    with pytest.raises(ConfigError, match="not the same draws"):
        compare_reports(_report("a", 1, 1), _report("b", 1, 1, photos=99))
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps(_report("a", 1, 1)))
    second.write_text(json.dumps(_report("b", 1, 1, root="data/other")))

    assert run_compare(argparse.Namespace(before=first, after=second, out=None)) == 2
    assert "different draws" in capsys.readouterr().err
