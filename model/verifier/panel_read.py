"""A second reading for cards whose text sits on a panel of another tone: the page with its ground flattened.

Tesseract binarises the page with one global threshold (Otsu). On a card whose text is printed on a coloured
panel (a coupon's ticket, a scroll's paper strip, a sticky note) over a lighter ground, that threshold falls
between the ground and the panel: the whole panel turns to ink, the text inside it with it, and nothing is
read at all, although the text is large and clear. Dividing the grey image by a heavily blurred copy of
itself (a flat-field correction) takes the panel's tone out and leaves the strokes, which the same global
threshold then separates.

Read this way, photographs yield runs of junk characters at low confidence, so the flattened reading is used
only where the page reading read nothing, and counts only where it reads at least `PanelRead.min_confident`
characters with high confidence: more than the flattened reading of any calibration photo did
(`model.cascade_card.with_panel_read`), so the cascade's decisions on its calibration photos, and the
conformal threshold set on them, do not move. The cascade asks for it on its score route only
(`model.cascade.CascadePolicy.panel_read`): the pictures the whole model score sends, where a card the model
is nearly sure of was otherwise taken out of the exclusions for reading nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from model.verifier.features import TextFeatures

# The blur that estimates the ground, in pixels of the reading (a long side of 512): wider than a stroke and
# a character, narrower than a panel.
GROUND_BLUR = 24
# The flattened ground's grey level: the ratio image * this, clipped to 255 (ground about 200, ink below).
GROUND_LEVEL = 200.0


def flatten_ground(image: Image.Image) -> Image.Image:
    """The image's grey levels divided by a blurred copy of themselves: an even ground, the strokes kept."""
    gray = image.convert("L")
    ground = np.asarray(gray.filter(ImageFilter.GaussianBlur(GROUND_BLUR)), dtype=np.float32) + 1.0
    ratio = np.asarray(gray, dtype=np.float32) / ground * GROUND_LEVEL
    return Image.fromarray(np.clip(ratio, 0, 255).astype(np.uint8))


@dataclass(frozen=True)
class PanelRead:
    """When the flattened reading replaces the page's: the page read nothing, the flattened one read at least
    `min_confident` characters with high confidence."""

    min_confident: int

    def __post_init__(self) -> None:
        if not 0 <= self.min_confident < 0xFFFF:
            raise ValueError(f"min_confident must be 0-65534, got {self.min_confident}")

    @staticmethod
    def wanted(page: TextFeatures | Mapping[str, Any]) -> bool:
        """Whether the page reading leaves room for the flattened one: it read nothing."""
        read = page.read_characters if isinstance(page, TextFeatures) else page["read_characters"]
        return int(read) == 0

    def better(self, page: Any, panel: Any) -> Any:
        """The reading that counts (`TextFeatures` or their dicts, alike): `panel` where the page read
        nothing and the panel reading read `min_confident` confident characters, else `page`."""
        if not self.wanted(page):
            return page
        confident = (
            panel.confident_characters if isinstance(panel, TextFeatures) else panel["confident_characters"]
        )
        return panel if int(confident) >= self.min_confident else page

    def to_json(self) -> dict[str, int]:
        """A JSON-ready record (the card's policy stores it)."""
        return {"min_confident": int(self.min_confident)}

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> PanelRead:
        """Read what `to_json` wrote."""
        return cls(int(record["min_confident"]))
