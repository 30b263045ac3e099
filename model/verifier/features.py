"""What an OCR engine read in an image, reduced to numbers: the text verifier's features.

An engine (`model.verifier.engines`) reports the boxes it read, each with its confidence and the number of
characters it recognised. The recognised text itself never leaves the engine adapter: shops' images can
carry personal data (names, phone numbers, addresses), so it is neither kept, returned nor logged.

The features describe how much legible text there is and how the picture is laid out around it, so that a
small rule can tell an announcement card (large, legible text; a plain ground) from a product that happens
to carry words (a T-shirt print, a label: text over a busy picture) and from fine regular textures that
fool a text detector (grass, fur, fabric: boxes with nothing legible in them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

# A box counts as read when the engine's confidence (0-100) reaches this. Tesseract's own tools print
# words from 60 up; RapidOCR's recogniser scores a clean read above 0.8 (reported here as 80).
READ_CONFIDENCE = 60.0
# A read box counts as confidently read from this confidence up. Fine regular textures (planks, window
# rows, fabric) are read as short runs of symbols at 60-90; a card's words come back at 90 and above, so
# the characters read this surely tell the two apart where a count from 60 does not (chosen on the
# training family: `docs/CASCADE.md`).
CONFIDENT_READ = 90.0
# A pixel of the ground is "empty" when its local gradient stays under this (grey levels, 0-255): the
# flat or softly shaded background of a card; photographs rarely have large areas so calm.
_EMPTY_GRADIENT = 6.0
# The emptiness is measured on the image shrunk to this side: cheap, and JPEG noise averages out.
_EMPTINESS_SIDE = 96


@dataclass(frozen=True)
class ReadBox:
    """One box an engine read: where (pixels of the image it was given), how sure, how many characters."""

    left: float
    top: float
    width: float
    height: float
    confidence: float  # 0-100
    characters: int  # recognised characters, whitespace excluded; the characters themselves are not kept


@dataclass(frozen=True)
class TextFeatures:
    """The verifier's view of one image. All fractions are of the image's area or height."""

    boxes: int  # every box the engine returned, read or not
    read_boxes: int  # boxes read with confidence >= READ_CONFIDENCE
    read_characters: int  # characters in the read boxes
    read_area: float  # fraction of the image covered by read boxes (union)
    lines: int  # lines of read boxes (boxes that overlap vertically form one line)
    largest_text_height: float  # the tallest read box, as a fraction of the image's height
    ground_emptiness: float  # fraction of the image outside read boxes that is flat (no edges)
    confident_characters: int  # characters in the boxes read with confidence >= CONFIDENT_READ
    # The drawing's shape (`model.verifier.line_read.drawing_shape`), measured where the line is read too
    # (the plain-line gate's pictures); 0 for a page reading alone.
    drawing_marks: int = 0
    drawing_glyphs: int = 0
    drawing_aspect: float = 0.0

    def as_dict(self) -> dict[str, float | int]:
        """The features by name (the order of the dataclass), for records and tables."""
        return asdict(self)

    @classmethod
    def names(cls) -> list[str]:
        """The feature names, in order."""
        return list(cls.__dataclass_fields__)


def features_from_boxes(boxes: Sequence[ReadBox], gray: npt.NDArray[np.uint8]) -> TextFeatures:
    """Reduce an engine's boxes to features; `gray` is the image the engine read, (H, W) uint8."""
    height, width = gray.shape
    read = [box for box in boxes if box.confidence >= READ_CONFIDENCE and box.characters > 0]
    mask = np.zeros((height, width), dtype=bool)
    for box in read:
        top, left = max(0, int(box.top)), max(0, int(box.left))
        mask[top : int(np.ceil(box.top + box.height)), left : int(np.ceil(box.left + box.width))] = True
    return TextFeatures(
        boxes=len(boxes),
        read_boxes=len(read),
        read_characters=sum(box.characters for box in read),
        read_area=float(mask.mean()) if mask.size else 0.0,
        lines=_count_lines(read),
        largest_text_height=max((box.height for box in read), default=0.0) / max(height, 1),
        ground_emptiness=_ground_emptiness(gray, mask),
        confident_characters=sum(box.characters for box in read if box.confidence >= CONFIDENT_READ),
    )


def _count_lines(boxes: Sequence[ReadBox]) -> int:
    """Boxes whose vertical extents overlap by half the smaller height are on one line."""
    lines: list[tuple[float, float]] = []
    for box in sorted(boxes, key=lambda b: b.top):
        top, bottom = box.top, box.top + box.height
        for index, (line_top, line_bottom) in enumerate(lines):
            overlap = min(bottom, line_bottom) - max(top, line_top)
            if overlap >= 0.5 * min(box.height, line_bottom - line_top):
                lines[index] = (min(top, line_top), max(bottom, line_bottom))
                break
        else:
            lines.append((top, bottom))
    return len(lines)


def _ground_emptiness(gray: npt.NDArray[np.uint8], text_mask: npt.NDArray[np.bool_]) -> float:
    """Share of the non-text part of a shrunk copy of the image whose gradient is under _EMPTY_GRADIENT."""
    height, width = gray.shape
    if height < 2 or width < 2:
        return 0.0
    rows = np.linspace(0, height - 1, min(_EMPTINESS_SIDE, height)).astype(int)
    cols = np.linspace(0, width - 1, min(_EMPTINESS_SIDE, width)).astype(int)
    small = gray[np.ix_(rows, cols)].astype(np.float32)
    outside = ~text_mask[np.ix_(rows, cols)]
    gradient = np.zeros_like(small)
    gradient[:, :-1] = np.abs(np.diff(small, axis=1))
    gradient[:-1, :] = np.maximum(gradient[:-1, :], np.abs(np.diff(small, axis=0)))
    if not outside.any():
        return 0.0
    return float((gradient[outside] < _EMPTY_GRADIENT).mean())
