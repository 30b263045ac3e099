"""`alocc score`: one JSON line per image, errors as lines with the reason, and the exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from eval_helpers import make_tiny_checkpoint, write_photo_images, write_text_images

from alocc.cli import main
from model.checkpoint import read_card
from model.offline_score import EXIT_MODEL_ERROR, EXIT_OK, EXIT_SOME_FAILED
from model.preprocess import preprocess
from model.scoring import Scorer


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-model"))


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_scores_folder_and_file_with_a_corrupt_one(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "imgs"
    photos = write_photo_images(folder / "sub", 3)
    cards = write_text_images(folder, 2)
    corrupt = folder / "truncated.jpg"
    corrupt.write_bytes(photos[0].read_bytes()[:60])
    not_image = tmp_path / "notes.txt"
    not_image.write_text("hello")

    code = main(["score", str(folder), str(not_image), "--model", str(tiny_model), "--batch-size", "2"])
    assert code == EXIT_SOME_FAILED
    lines = _lines(capsys)
    assert len(lines) == 7
    by_path = {line["path"]: line for line in lines}
    # Folders expand recursively in sorted order, named files follow in argument order.
    in_folder = sorted(str(p) for p in [*photos, *cards, corrupt])
    assert [line["path"] for line in lines] == [*in_folder, str(not_image)]
    assert by_path[str(corrupt)]["error"] == "CorruptImage"
    assert by_path[str(not_image)]["error"] == "UnsupportedImageFormat"
    assert isinstance(by_path[str(corrupt)]["message"], str)

    scorer = Scorer.load(tiny_model, device="cpu")
    for path in [*photos, *cards]:
        line = by_path[str(path)]
        assert set(line) == {"path", "score", "excluded", "mode", "threshold", "model_version"}
        assert line["mode"] == "d_x"
        assert line["threshold"] == pytest.approx(0.5)
        assert line["model_version"] == scorer.model_version
        # The same bytes through the same preprocessing and scorer give the same score.
        expected = scorer.score(preprocess(path.read_bytes(), scorer.input_size).unsqueeze(0))
        assert line["score"] == pytest.approx(float(expected.scores[0]), abs=1e-6)
        assert line["excluded"] == (line["score"] >= 0.5)


def test_all_good_exits_zero_and_mode_is_honoured(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = write_photo_images(tmp_path, 2)
    code = main(["score", *map(str, paths), "--model", str(tiny_model), "--mode", "cascade"])
    assert code == EXIT_OK
    lines = _lines(capsys)
    assert [line["mode"] for line in lines] == ["cascade", "cascade"]


def test_missing_path_and_empty_folder_are_reported(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["score", str(tmp_path / "absent.png"), str(empty), "--model", str(tiny_model)])
    assert code == EXIT_SOME_FAILED
    errors = [line["error"] for line in _lines(capsys)]
    assert errors == ["FileNotFoundError", "DataError"]


def test_bad_model_exits_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["score", str(tmp_path), "--model", str(tmp_path / "no-model")])
    assert code == EXIT_MODEL_ERROR
    assert "CheckpointError" in capsys.readouterr().err


def _with_text_cascade(model_dir: Path, out: Path) -> str:
    """A copy of the checkpoint whose card reads every image with Tesseract: a card when it reads words."""
    import dataclasses
    import shutil

    from cascade_samples import characters_rule

    from model.cascade import CascadePolicy, TextCascade
    from model.checkpoint import write_card
    from model.verifier.engines import VerifierConfig

    card = read_card(model_dir)
    rule = characters_rule(bias=-10.0)
    cascade = TextCascade(card.model_version, VerifierConfig(), "test", CascadePolicy(0.0, rule, 0.5))
    shutil.copytree(model_dir, out)
    write_card(out, dataclasses.replace(card, text_cascade=cascade.to_json()))
    return cascade.version


def test_the_cards_text_cascade_is_served_offline_as_the_worker_serves_it(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image, ImageDraw, ImageFont

    version = _with_text_cascade(tiny_model, tmp_path / "model")
    notice = tmp_path / "notice.png"
    image = Image.new("RGB", (480, 240), (250, 250, 245))
    ImageDraw.Draw(image).text(
        (30, 80), "SHOP CLOSED TODAY", fill=(10, 10, 10), font=ImageFont.load_default(40)
    )
    image.save(notice)
    photo = write_photo_images(tmp_path / "photos", 1)[0]

    assert main(["score", str(notice), str(photo), "--model", str(tmp_path / "model")]) == EXIT_OK
    read, smooth = _lines(capsys)
    assert {read["model_version"], smooth["model_version"]} == {version}
    assert (read["decided_by"], smooth["decided_by"]) == ("verifier", "verifier")  # send_from 0: all read
    assert read["verifier"]["read_characters"] >= 10 and read["excluded"] is True  # type: ignore[index]
    assert smooth["excluded"] is False
    assert isinstance(read["model_score"], float) and read["threshold"] == 0.5

    assert main(["score", str(notice), "--model-only", "--model", str(tmp_path / "model")]) == EXIT_OK
    (alone,) = _lines(capsys)
    assert alone["model_version"] == read_card(tmp_path / "model").model_version and "decided_by" not in alone


def test_a_sheet_in_the_reading_band_is_read_offline_as_the_worker_reads_it(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import dataclasses
    import shutil

    from cascade_samples import characters_rule
    from ocr_samples import LATIN_FONT, engine_reads, photographed_notice
    from PIL import Image

    from model.cascade import CascadePolicy, TextCascade
    from model.checkpoint import write_card
    from model.sheets import SheetRoute
    from model.verifier.engines import VerifierConfig

    if not engine_reads(LATIN_FONT):
        pytest.skip("needs Tesseract with eng and jpn, and DejaVu fonts")
    # Nothing is read as a page (no score or corner reaches 1); every best sheet is read, a card from 6
    # characters read in it.
    route = SheetRoute(card_from=0.999999, member=None, read_from=1e-6, read_characters=6)
    policy = CascadePolicy(1.0, characters_rule(bias=-10.0), 0.5, parts_send_from=1.0, sheets=route)
    card = read_card(tiny_model)
    cascade = TextCascade(card.model_version, VerifierConfig(), "test", policy)
    shutil.copytree(tiny_model, tmp_path / "model")
    write_card(tmp_path / "model", dataclasses.replace(card, text_cascade=cascade.to_json()))
    notice = tmp_path / "notice.png"
    photographed_notice().save(notice)
    plain = tmp_path / "plain.png"
    Image.new("RGB", (300, 200), (128, 140, 150)).save(plain)

    assert main(["score", str(notice), str(plain), "--model", str(tmp_path / "model")]) == EXIT_OK
    read, bare = _lines(capsys)
    assert (read["decided_by"], read["excluded"], read["threshold"]) == ("verifier", True, 1e-6)
    assert read["verifier"]["sheet_read_characters"] >= 6  # type: ignore[index]
    assert "read_characters" not in read["verifier"]  # type: ignore[operator]  # the page was not read
    assert (bare["decided_by"], bare["excluded"]) == ("model", False)  # no sheet: nothing to read
