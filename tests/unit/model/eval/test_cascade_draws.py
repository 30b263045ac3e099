"""`alocc cascade draws`: a card's misses and flags per family on fresh draws, with exact intervals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from eval_helpers import make_tiny_checkpoint, write_photo_images, write_text_images

from alocc.cli import main
from model.cascade_draws import drawn_folders, family_of, format_table, tally
from model.errors import ConfigError
from model.metrics import rate_interval


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _card(name: str, layout: str) -> dict[str, str]:
    return {"kind": "card", "layout": layout, "source": "cards-check", "file": f"check/target/{name}"}


def _photo(name: str, kind: str, source: str) -> dict[str, str]:
    return {"kind": kind, "source": source, "file": f"eval/other/{name}"}


def _record(name: str, excluded: bool, decided_by: str = "verifier") -> dict[str, object]:
    return {"path": f"draws/x/{name}", "excluded": excluded, "decided_by": decided_by}


def test_family_names_follow_the_evaluation() -> None:
    assert family_of(_card("a.jpg", "coupon")) == "card:coupon"
    assert family_of(_photo("b.jpg", "printed", "kde")) == "printed"


def test_cards_count_misses_per_layout_with_their_interval_and_stage() -> None:
    files = [_card("a.jpg", "coupon"), _card("b.jpg", "coupon"), _card("c.jpg", "calendar")]
    records = [_record("a.jpg", True), _record("b.jpg", False, "model"), _record("c.jpg", True)]

    result = tally("check/target", files, records)

    assert result["measure"] == "missed"
    coupon = result["families"]["card:coupon"]
    assert (coupon["images"], coupon["errors"], coupon["rate"]) == (2, 1, 0.5)
    assert coupon["interval95"] == list(rate_interval(1, 2))
    assert coupon["decided_by"] == {"model": 1}
    assert result["families"]["card:calendar"]["errors"] == 0
    assert (result["families"]["all"]["images"], result["families"]["all"]["errors"]) == (3, 1)
    # Cards are not broken down by source: one generator draws them all.
    assert set(result["families"]) == {"all", "card:coupon", "card:calendar"}


def test_other_images_count_flags_per_kind_and_source_and_unscored_apart() -> None:
    files = [
        _photo("p1.jpg", "photo", "kde"),
        _photo("p2.jpg", "photo", "sklearn"),
        _photo("t.jpg", "printed", "kde"),
    ]
    records = [
        _record("p1.jpg", True),
        _record("p2.jpg", False, "model"),
        {"path": "draws/x/t.jpg", "error": "CorruptImage", "message": "truncated"},
    ]

    result = tally("eval/other", files, records)

    assert result["measure"] == "flagged"
    assert result["unscored"] == 1
    families = result["families"]
    assert (families["photo"]["images"], families["photo"]["errors"]) == (2, 1)
    assert families["photo:kde"]["rate"] == 1.0
    assert families["photo:sklearn"]["rate"] == 0.0
    assert "printed" not in families  # its only image could not be scored
    assert "| eval/other | photo:kde | 1 | flagged | 100.00% |" in format_table(
        {"model_version": "m", "folders": [result]}
    )


def test_a_record_outside_the_draw_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a file of the draw"):
        tally("eval/other", [_photo("p1.jpg", "photo", "kde")], [_record("other.jpg", True)])


def test_a_root_without_draws_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no draw"):
        drawn_folders(tmp_path)


def _write_draw(root: Path, folder: str, files: list[dict[str, str]]) -> None:
    record = {"folder": folder, "start": 0, "count": len(files), "files": files}
    (root / f"draw-{folder.replace('/', '-')}.json").write_text(json.dumps(record))


def test_scores_each_drawn_folder_as_alocc_score_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_tiny_checkpoint(tmp_path / "model")
    root = tmp_path / "draws"
    cards = write_text_images(root / "check" / "target", 3)
    photos = write_photo_images(root / "eval" / "other", 2)
    _write_draw(root, "check/target", [_card(path.name, "coupon") for path in cards])
    _write_draw(root, "eval/other", [_photo(path.name, "photo", "kde") for path in photos])
    out = tmp_path / "report.json"

    records = tmp_path / "records.jsonl"
    arguments = ["--model", str(model), "--out", str(out), "--records", str(records)]
    assert main(["cascade", "draws", str(root), *arguments]) == 0

    report = json.loads(out.read_text())
    assert [folder["folder"] for folder in report["folders"]] == ["check/target", "eval/other"]
    assert report["folders"][0]["families"]["card:coupon"]["images"] == 3
    assert report["folders"][1]["families"]["photo:kde"]["images"] == 2
    # The tiny model's own decisions, scored the way `alocc score` scores them.
    assert main(["score", str(root / "eval" / "other"), "--model", str(model)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert report["folders"][1]["families"]["photo"]["errors"] == sum(
        bool(line["excluded"]) for line in lines
    )
    # Every decision behind the report, as `alocc score` prints it.
    kept = [json.loads(line) for line in records.read_text().splitlines()]
    assert len(kept) == 5 and sorted(Path(row["path"]).name for row in kept[3:]) == sorted(
        Path(line["path"]).name for line in lines
    )
    assert [row["excluded"] for row in kept[3:]] == [line["excluded"] for line in lines]


def test_a_draw_naming_a_missing_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_draw(tmp_path, "eval/other", [_photo("p1.jpg", "photo", "kde")])

    assert main(["cascade", "draws", str(tmp_path)]) == 2
    assert "does not hold" in capsys.readouterr().err
