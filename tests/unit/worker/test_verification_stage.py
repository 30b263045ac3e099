"""The verifier stage: download, read on its threads, and fail per image (the worker then falls back)."""

from __future__ import annotations

import io

import pytest
from fakes import FakeFetcher
from PIL import Image

from model.cascade_decisions import describe_failure
from model.errors import UnsupportedImageFormat
from model.verifier import ReadBox, TextVerifier, VerifierUnavailable
from worker.failures import HttpError
from worker.stages.verify import VerificationStage


class StubEngine:
    """Reads one confident 12-character box in the middle of every image; 'crash' mode fails."""

    name = "stub"

    def __init__(self) -> None:
        self.crash = False

    def version(self) -> str:
        return "stub 1"

    def read(self, image: Image.Image, page_segmentation: int | None = None) -> list[ReadBox]:
        del page_segmentation
        if self.crash:
            raise VerifierUnavailable("stub engine crashed")
        width, height = image.size
        return [ReadBox(width * 0.25, height * 0.4, width * 0.5, height * 0.2, 95.0, 12)]


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (200, 100), (240, 240, 240)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_read_downloads_the_image_and_returns_its_features_and_failures_raise_per_image() -> None:
    engine = StubEngine()
    fetcher = FakeFetcher({"card": _png(), "junk": b"not an image"})
    stage = VerificationStage(fetcher, TextVerifier(engine=engine), workers=2)
    try:
        reading = stage.submit("fake://card").result(timeout=10)
        assert reading.features.read_characters == 12 and reading.features.lines == 1
        assert reading.seconds >= 0

        with pytest.raises(HttpError):
            stage.submit("fake://gone").result(timeout=10)
        with pytest.raises(UnsupportedImageFormat):
            stage.submit("fake://junk").result(timeout=10)
        engine.crash = True
        with pytest.raises(VerifierUnavailable) as crashed:
            stage.submit("fake://card").result(timeout=10)
        assert describe_failure(crashed.value) == "VerifierUnavailable: stub engine crashed"
    finally:
        stage.close()
