"""The sheet reading: a notice photographed in a scene is found again, flattened, and read."""

from __future__ import annotations

import pytest
from ocr_samples import LATIN_FONT, engine_reads, photographed_notice, png, sheet_reading
from PIL import Image

from model.sheets import SheetSearch
from model.verifier import ReadBox, TextVerifier, VerifierUnavailable
from model.verifier.text_verifier import SheetReading


class _SizeEngine:
    """Reads one box over the whole image, and keeps the sizes it was given."""

    name = "size"

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []

    def read(self, image: Image.Image, page_segmentation: int | None = None) -> list[ReadBox]:
        self.sizes.append(image.size)
        return [ReadBox(0, 0, image.width, image.height, 95.0, 6)]


def test_the_sheet_is_read_flattened_at_the_verifiers_side() -> None:
    data, search = png(photographed_notice()), SheetSearch()
    engine = _SizeEngine()
    features = TextVerifier(engine=engine).sheet_features(data, sheet_reading(data, search))  # type: ignore[arg-type]
    assert len(engine.sizes) == 1 and max(engine.sizes[0]) == 512  # the sheet alone, at the reader's side
    width, height = engine.sizes[0]
    assert 1.1 < width / height < 1.5  # its own proportions (300 x 240), not the picture's
    assert features.read_characters == 6
    with pytest.raises(VerifierUnavailable, match="no sheet"):
        TextVerifier(engine=engine).sheet_features(  # type: ignore[arg-type]
            data, SheetReading(search=search, input_size=96, slot=search.slots)
        )


@pytest.mark.skipif(not engine_reads(LATIN_FONT), reason="needs Tesseract with eng and jpn, and DejaVu fonts")
def test_tesseract_reads_the_flattened_notice() -> None:
    data = png(photographed_notice())
    features = TextVerifier().sheet_features(data, sheet_reading(data))
    assert features.read_characters >= 6  # "CLOSED" or "TODAY" at least


@pytest.mark.skipif(not engine_reads(), reason="needs tesserocr with eng and jpn")
def test_the_engine_silences_leptonicas_own_messages() -> None:
    import ctypes

    from model.verifier import VerifierConfig, make_engine

    make_engine(VerifierConfig())
    with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
        paths = sorted({line.split()[-1] for line in maps if "libleptonica" in line})
    assert paths, "tesserocr's Leptonica is loaded"
    library = ctypes.CDLL(paths[0])
    assert library.setMsgSeverity(6) == 6  # already silent: the previous level is returned


def test_an_engine_without_layout_analysis_fails_a_layout_request_clearly() -> None:
    data = png(photographed_notice())
    with pytest.raises(VerifierUnavailable, match="no layout analysis"):
        TextVerifier(engine=_SizeEngine()).layout_features(data)  # type: ignore[arg-type]
