"""A second reading for pictures of one line on a plain ground: the line alone, cut out and read as a line.

Tesseract's sparse-text reading (page segmentation 11), which suits a card of many lines, reads nothing at
all in some one-line cards whose text is perfectly clear (a large "送料無料" on a flat ground): its layout
analysis does not find a text block in so much empty space. Cut out, scaled to a text height Tesseract reads
well and read as one raw line (page segmentation 13, no layout analysis), the same line is read. On the
training family's one-line cards that the plain-line gate (`model.screen`) passes, the sparse reading found
nothing in 13 of 288; the line reading read all 13, and reads nothing or a character or two in most
training photos the gate passes.

`LineRead` is part of the cascade's record (the plain-line gate carries it), so the card's version names it;
`line_boxes` cuts out and reads the line, and returns the boxes in the coordinates of the whole picture,
so the verifier's features (area, text height, empty ground) keep their meaning.

`drawing_shape` measures, without reading, whether the drawing is made of glyphs: a line of text is many
separate marks of about the line's height side by side, a product cut out on a flat ground is one or two
large shapes. The gate's pictures that no reading makes sense of are told apart by that shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from PIL import Image

from model.verifier.features import ReadBox

# A neighbour difference of this many grey levels is part of the drawing, not JPEG noise on a flat ground.
_INK_GRADIENT = 12.0
# A row or column with fewer inked pixels than this is empty (a stray pixel does not widen the line).
_INK_PIXELS = 2
# A pixel is ink when it differs from the ground (the median of the picture's border) by this many grey
# levels: cards set their text apart from a flat ground; JPEG noise and soft shading stay under it.
_INK_CONTRAST = 40.0
# Marks smaller than this many pixels are specks, not parts of a glyph.
_MARK_PIXELS = 6
# A mark at least this share of the drawing's height is a glyph (or a glyph's main stroke): the parts of a
# line of text are about as tall as the line; accents, dots and a product's small details are not.
_GLYPH_HEIGHT = 0.3
# The drawing's width over its height, capped: a hairline would give any number.
_MAX_ASPECT = 30.0


class LineEngine(Protocol):
    """What `line_boxes` needs of an OCR engine (`model.verifier.engines.OcrEngine`)."""

    def read(self, image: Image.Image, page_segmentation: int | None = None) -> list[ReadBox]:
        """Boxes read in `image`, with the given page segmentation where the engine has one."""
        ...


@dataclass(frozen=True)
class LineRead:
    """How the line is read: Tesseract's page segmentation, and the text height it is scaled to (pixels)."""

    page_segmentation: int = 13  # raw line: one line of text, no layout analysis
    text_height: int = 32
    # Read the line only where the drawing has at least this many glyph-sized marks (`drawing_shape`): a
    # product cut out on a flat ground is one shape, and a line reading of it costs a read for nothing.
    min_glyphs: int = 0
    # Where the drawing has fewer glyph-sized marks than `min_glyphs`, read nothing, not even the page: the
    # picture is weighed on its shape and ground alone. No one-line card of any set has fewer than two, and
    # no picture with fewer was flagged with its page read; products cut out on a flat ground (most of what
    # the gate passes) cost a page reading each for nothing.
    skip_page: bool = False

    def __post_init__(self) -> None:
        if not 8 <= self.text_height <= 256:
            raise ValueError(f"text_height must be 8-256 pixels, got {self.text_height}")
        if self.min_glyphs < 0:
            raise ValueError(f"min_glyphs must be >= 0, got {self.min_glyphs}")
        if self.skip_page and not self.min_glyphs:
            raise ValueError("skip_page needs min_glyphs: it skips the page where the glyphs are fewer")

    def to_json(self) -> dict[str, int | bool]:
        """A JSON-ready record (the card stores it); `min_glyphs` and `skip_page` only where set, so the
        versions of cards written before them stay."""
        record: dict[str, int | bool] = {
            "page_segmentation": int(self.page_segmentation),
            "text_height": int(self.text_height),
        }
        if self.min_glyphs:
            record["min_glyphs"] = int(self.min_glyphs)
        if self.skip_page:
            record["skip_page"] = True
        return record

    def skips(self, shape: DrawingShape) -> bool:
        """Whether a picture of this shape is read at all (the page's reading included)."""
        return self.skip_page and shape.glyphs < self.min_glyphs

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> LineRead:
        """Read what `to_json` wrote."""
        return cls(
            int(record["page_segmentation"]),
            int(record["text_height"]),
            int(record.get("min_glyphs", 0)),
            bool(record.get("skip_page", False)),
        )


@dataclass(frozen=True)
class DrawingShape:
    """What is drawn on a flat ground, as separate marks: how many, how many glyph-sized, how wide."""

    marks: int  # connected marks of ink, specks excluded
    glyphs: int  # marks at least _GLYPH_HEIGHT of the drawing's height
    aspect: float  # the drawing's width over its height (0 where nothing is drawn)


def drawing_shape(gray: npt.NDArray[np.uint8]) -> DrawingShape:
    """The shape of what is drawn on `gray` (H, W), against the ground the picture's border shows."""
    from scipy import ndimage  # imported where the gate's pictures are read, not at OCR process start

    image = gray.astype(np.float32)
    ground = float(np.median(np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])))
    labels, count = ndimage.label(np.abs(image - ground) > _INK_CONTRAST)
    if not count:
        return DrawingShape(0, 0, 0.0)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    found = ndimage.find_objects(labels)
    boxes = [box for box, size in zip(found, sizes, strict=True) if box is not None and size >= _MARK_PIXELS]
    if not boxes:
        return DrawingShape(0, 0, 0.0)
    top, bottom = min(b[0].start for b in boxes), max(b[0].stop for b in boxes)
    left, right = min(b[1].start for b in boxes), max(b[1].stop for b in boxes)
    height = bottom - top
    glyphs = sum(1 for b in boxes if b[0].stop - b[0].start >= _GLYPH_HEIGHT * height)
    return DrawingShape(len(boxes), glyphs, float(min(_MAX_ASPECT, (right - left) / max(height, 1))))


def line_extent(gray: npt.NDArray[np.uint8]) -> tuple[int, int, int, int] | None:
    """`(left, top, right, bottom)` (exclusive) around everything drawn on the image; None if nothing is."""
    image = gray.astype(np.float32)
    ink = np.zeros(image.shape, dtype=bool)
    ink[:, :-1] = np.abs(np.diff(image, axis=1)) >= _INK_GRADIENT
    ink[:-1, :] |= np.abs(np.diff(image, axis=0)) >= _INK_GRADIENT
    rows = np.flatnonzero(ink.sum(axis=1) >= _INK_PIXELS)
    cols = np.flatnonzero(ink.sum(axis=0) >= _INK_PIXELS)
    if not len(rows) or not len(cols):
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def line_boxes(engine: LineEngine, image: Image.Image, line_read: LineRead) -> list[ReadBox]:
    """Cut out what is drawn on `image`, with a margin of half its height (at least 8 pixels), scale it so
    the drawing is `text_height` pixels high, read it as one line, and map the boxes back onto `image`."""
    gray = np.asarray(image.convert("L"), dtype=np.uint8)
    extent = line_extent(gray)
    if extent is None:
        return []
    left, top, right, bottom = extent
    margin = max(8, (bottom - top) // 2)
    left, top = max(0, left - margin), max(0, top - margin)
    right, bottom = min(image.width, right + margin), min(image.height, bottom + margin)
    scale = 2 * line_read.text_height / (bottom - top)  # the drawing fills about half the cut-out's height
    size = (max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale)))
    if size[0] * size[1] > 16 * image.width * image.height:  # a hairline cut-out: not worth an enlargement
        return []
    cut = image.crop((left, top, right, bottom)).resize(size, Image.Resampling.BICUBIC)
    return [
        replace(
            box,
            left=left + box.left / scale,
            top=top + box.top / scale,
            width=box.width / scale,
            height=box.height / scale,
        )
        for box in engine.read(cut, page_segmentation=line_read.page_segmentation)
    ]
