"""A second engine for pages Tesseract reads without confidence: PP-OCRv6 tiny, where the rule said product.

Tesseract finds the words of many cards the cascade misses, but reads them with little confidence: a
caption in a brush or pixel font, a strip of text over a photograph, a coupon's stamped letters, a notice
photographed at an angle. The main rule then scores the page like a product. PP-OCRv6 tiny (`PpOcrEngine`:
PaddleOCR's detector and a recogniser of Chinese, English and Japanese in one model) reads many of them
(half the caption strips), and few characters in photographs: its false positives are products with
printed words.

So a page that the main or corner rule decided is no card (and in which Tesseract found at least
`SecondRead.min_boxes` word boxes, where set) is read once more by the second engine, and is a card where
that reading reads at least `SecondRead.min_characters` characters (boxes it scores 0.6 or
more, `model.verifier.features.READ_CONFIDENCE`), or, where `SecondRead.min_confident` is set, where it
reads that many characters confidently. Where `SecondRead.max_ground` is set, a page on a plain ground (a
product cut out on a studio ground, whose label the second engine reads) is not read again. Only such
pages pay for it (a PP-OCR read detecting at the read's side costs about 30 ms on one core, a third of a
Tesseract read), and the gate's pictures are not read again: their own rules weigh the line's shape. The
count is the least at which the second reading flags at most a given number of the calibration photos it
reads, raised above the training negatives it reads where those are given (`model.cascade_second`); its
bound adds to the cascade's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from model.verifier.engines import VerifierConfig
from model.verifier.features import TextFeatures

SECOND_ENGINE = "ppocr"


@dataclass(frozen=True)
class SecondRead:
    """Which engine reads the page a second time, at what side, and how many characters make a card."""

    min_characters: int
    engine: str = SECOND_ENGINE
    side: int = 512
    # The release it was calibrated with (`OcrEngine.version()`): another reads differently, and the worker
    # refuses to serve it unless told to (as for the main engine).
    engine_version: str = ""
    # Only pages in which the first reading found at least this many boxes (`TextFeatures.boxes`, read or
    # not) are read again: Tesseract finds the words of a card it misreads; a page it finds no word in at
    # all is a picture, whose printed words the second engine would read as a card's. 0: every page.
    min_boxes: int = 0
    # Only pages whose ground is at most this flat (`TextFeatures.ground_emptiness`, the share of the picture
    # outside the first reading's read boxes without edges) are read again: the cards the first reading
    # misreads are text over a picture (a caption strip across a photo, a notice photographed in a scene),
    # while a product's printed label, which the second engine reads as a card's text, sits on a cut-out
    # photographed on a plain studio ground. None: any ground.
    max_ground: float | None = None
    # A page is a card too where the second engine reads at least this many characters confidently
    # (`TextFeatures.confident_characters`), fewer than `min_characters` in all: in the textures it misreads
    # (a close-up of fabric, a circuit board) it reads characters, but none of them confidently, while a
    # caption's short line comes back whole and sure. None: the count of all characters alone decides.
    min_confident: int | None = None

    def __post_init__(self) -> None:
        if self.min_characters < 1:
            raise ValueError(f"the second reading needs at least one character, got {self.min_characters}")
        if self.min_boxes < 0:
            raise ValueError(f"the least boxes found is a count, not {self.min_boxes}")
        if self.min_confident is not None and self.min_confident < 1:
            raise ValueError(f"the confident count needs at least one character, got {self.min_confident}")
        if self.max_ground is not None and not 0.0 <= self.max_ground <= 1.0:
            raise ValueError(f"the ground's bound is a share between 0 and 1, not {self.max_ground}")
        if self.side < 32:
            raise ValueError(f"the second reading's side must be at least 32 pixels, got {self.side}")

    def config(self, timeout_s: float) -> VerifierConfig:
        """The engine's configuration (with the main verifier's timeout)."""
        return VerifierConfig(engine=self.engine, side=self.side, timeout_s=timeout_s)

    def reads_after(self, page: TextFeatures | Mapping[str, Any] | None) -> bool:
        """Whether a page the first reading left a product is read again: the first reading found at least
        `min_boxes` boxes in it, and its ground is no flatter than `max_ground` (None: the page was not
        read)."""
        if page is None:
            return False
        if isinstance(page, TextFeatures):
            boxes, ground = page.boxes, page.ground_emptiness
        else:
            boxes, ground = page.get("boxes", 0), page.get("ground_emptiness", 0.0)
        if self.max_ground is not None and float(ground) > self.max_ground:
            return False
        return int(boxes) >= self.min_boxes

    def card(self, features: TextFeatures | Mapping[str, Any]) -> bool:
        """Whether the second reading makes the page a card: enough characters read, or enough of them read
        confidently (`min_confident`, where set)."""
        if isinstance(features, TextFeatures):
            read, confident = features.read_characters, features.confident_characters
        else:
            read, confident = features["read_characters"], features.get("confident_characters", 0)
        if int(read) >= self.min_characters:
            return True
        return self.min_confident is not None and int(confident) >= self.min_confident

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready record (the card's policy stores it)."""
        record: dict[str, Any] = {
            "engine": self.engine,
            "engine_version": self.engine_version,
            "side": int(self.side),
            "min_characters": int(self.min_characters),
        }
        if self.min_boxes:
            record["min_boxes"] = int(self.min_boxes)
        if self.max_ground is not None:  # written only where set: older cards keep their versions
            record["max_ground"] = float(self.max_ground)
        if self.min_confident is not None:
            record["min_confident"] = int(self.min_confident)
        return record

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> SecondRead:
        """Read what `to_json` wrote."""
        return cls(
            int(record["min_characters"]),
            str(record["engine"]),
            int(record["side"]),
            str(record.get("engine_version", "")),
            int(record.get("min_boxes", 0)),
            None if record.get("max_ground") is None else float(record["max_ground"]),
            None if record.get("min_confident") is None else int(record["min_confident"]),
        )
