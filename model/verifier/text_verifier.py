"""`TextVerifier`: image bytes (or a decoded image) in, `TextFeatures` out, through one OCR engine."""

from __future__ import annotations

import numpy as np
from PIL import Image

from model.decode import ImageLimits, decode_for_reading
from model.verifier.engines import OcrEngine, VerifierConfig, make_engine
from model.verifier.features import TextFeatures, features_from_boxes


class TextVerifier:
    """Reads images with the configured engine; one instance per process (engines are not thread-safe)."""

    def __init__(self, config: VerifierConfig | None = None, *, engine: OcrEngine | None = None) -> None:
        """Start the engine the config names (or use `engine`, for tests).

        Raises:
            VerifierUnavailable: the engine or its language models are not installed.
        """
        self.config = config or VerifierConfig()
        self.engine = engine or make_engine(self.config)

    def features(self, source: bytes | Image.Image, *, limits: ImageLimits | None = None) -> TextFeatures:
        """The features of one image.

        Raises:
            ImageError: the bytes are not an acceptable image (as in `model.decode`).
            VerifierUnavailable: the engine failed on this image (timeout, crash).
        """
        image = decode_for_reading(source, self.config.side, limits=limits)
        boxes = self.engine.read(image)
        return features_from_boxes(boxes, np.asarray(image.convert("L"), dtype=np.uint8))
