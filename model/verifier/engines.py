"""OCR engines behind one small interface: an RGB image in, the boxes read (no text) out.

- `tesseract`: Debian's `tesseract-ocr` 5 with the `eng` and `jpn` models (`tesseract-ocr-eng`,
  `tesseract-ocr-jpn`; Apache-2.0), run as a subprocess that reads a PNG on stdin and writes TSV on stdout:
  no temporary files, a hard timeout, one thread (`OMP_THREAD_LIMIT=1`), so a verifier process uses one core.
- `rapidocr`: `rapidocr-onnxruntime` from PyPI (Apache-2.0; onnxruntime is MIT), whose wheel carries the
  PP-OCR detection and recognition models. Optional: installed with the `rapidocr` extra. Its recogniser
  reads Latin and Chinese characters and drops Japanese kana.

Both get the image at a fixed long side (`VerifierConfig.side`): small text on a small upload is enlarged to
a size the engines read, and a huge upload costs no more than a normal one.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from PIL import Image

from model.verifier.features import ReadBox


class VerifierUnavailable(RuntimeError):
    """The OCR engine is not installed or failed to run."""


@dataclass(frozen=True)
class VerifierConfig:
    """How the verifier runs its engine; recorded on the model card so a version names its verifier."""

    engine: str = "tesseract"
    languages: str = "eng+jpn"
    side: int = 512  # the image's long side as the engine sees it
    page_segmentation: int = 11  # tesseract: 11 = sparse text, find as much text as possible in no order
    timeout_s: float = 10.0


class OcrEngine(Protocol):
    """Reads an image; returns every box it found, with confidence 0-100 and character counts."""

    name: str

    def version(self) -> str:
        """The engine's version string, for the model card."""
        ...

    def read(self, image: Image.Image) -> list[ReadBox]:
        """Boxes read in `image` (RGB, at the side the config asks for; the engine converts as it needs)."""
        ...


class TesseractEngine:
    """Tesseract 5 through its command line (TSV output, word level)."""

    name = "tesseract"

    def __init__(self, config: VerifierConfig) -> None:
        """Check that the binary and the configured language models are installed."""
        binary = shutil.which("tesseract")
        if binary is None:
            raise VerifierUnavailable("tesseract not found: apt-get install tesseract-ocr tesseract-ocr-jpn")
        self._binary = binary
        self._config = config
        self._env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
        installed = set(self._run(["--list-langs"], b"").split()[1:])
        missing = set(config.languages.split("+")) - installed
        if missing:
            raise VerifierUnavailable(f"tesseract language models missing: {', '.join(sorted(missing))}")

    def _run(self, args: Sequence[str], stdin: bytes) -> str:
        try:
            done = subprocess.run(
                [self._binary, *args],
                input=stdin,
                capture_output=True,
                timeout=self._config.timeout_s,
                env=self._env,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise VerifierUnavailable(f"tesseract timed out after {self._config.timeout_s} s") from exc
        if done.returncode != 0:
            # stderr names the failure (bad image, missing model); it never holds recognised text.
            raise VerifierUnavailable(f"tesseract failed: {done.stderr.decode(errors='replace')[-300:]}")
        return done.stdout.decode("utf-8", errors="replace")

    def version(self) -> str:
        """The first line of `tesseract --version`, e.g. `tesseract 5.3.0`."""
        return self._run(["--version"], b"").splitlines()[0].strip()

    def read(self, image: Image.Image) -> list[ReadBox]:
        """Word boxes of one image (read in greyscale: a third of the bytes to encode, the same words)."""
        png = io.BytesIO()
        image.convert("L").save(png, format="PNG", compress_level=1)
        tsv = self._run(
            [
                "stdin",
                "stdout",
                "-l",
                self._config.languages,
                "--psm",
                str(self._config.page_segmentation),
                "tsv",
            ],
            png.getvalue(),
        )
        boxes = []
        for row in csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE):
            if row.get("level") != "5":  # word level only
                continue
            characters = len("".join((row.get("text") or "").split()))
            boxes.append(
                ReadBox(
                    left=float(row["left"]),
                    top=float(row["top"]),
                    width=float(row["width"]),
                    height=float(row["height"]),
                    confidence=max(0.0, float(row["conf"])),
                    characters=characters,
                )
            )
        return boxes


class RapidOcrEngine:
    """RapidOCR (PP-OCR detection + recognition on onnxruntime), line boxes."""

    name = "rapidocr"

    def __init__(self, config: VerifierConfig) -> None:
        """Load the models the wheel carries (nothing is downloaded)."""
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:
            raise VerifierUnavailable(
                "rapidocr-onnxruntime is not installed (pip install '.[rapidocr]')"
            ) from exc
        del config
        self._engine: Any = RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1)

    def version(self) -> str:
        """`rapidocr-onnxruntime <version>`."""
        from importlib.metadata import version

        return f"rapidocr-onnxruntime {version('rapidocr-onnxruntime')}"

    def read(self, image: Image.Image) -> list[ReadBox]:
        """Line boxes of one image (axis-aligned hulls of the detected quadrilaterals)."""
        result, _elapsed = self._engine(np.asarray(image.convert("RGB")))
        boxes = []
        for corners, text, score in result or []:
            points = np.asarray(corners, dtype=np.float32)
            left, top = points.min(axis=0)
            right, bottom = points.max(axis=0)
            boxes.append(
                ReadBox(
                    left=float(left),
                    top=float(top),
                    width=float(right - left),
                    height=float(bottom - top),
                    confidence=100.0 * float(score),
                    characters=len("".join(str(text).split())),
                )
            )
        return boxes


def make_engine(config: VerifierConfig) -> OcrEngine:
    """The engine the config names."""
    if config.engine == "tesseract":
        return TesseractEngine(config)
    if config.engine == "rapidocr":
        return RapidOcrEngine(config)
    raise ValueError(f"unknown OCR engine {config.engine!r} (tesseract or rapidocr)")
