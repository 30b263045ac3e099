"""The text verifier: an OCR engine's reading of an image, reduced to features (never the text itself).

The ALOCC model screens every image cheaply; the verifier looks at the images the model is unsure of
(the cascade). This package imports no torch, so it can run in the worker's decode processes.
"""

from model.verifier.engines import OcrEngine, VerifierConfig, VerifierUnavailable, make_engine
from model.verifier.features import READ_CONFIDENCE, ReadBox, TextFeatures, features_from_boxes
from model.verifier.text_verifier import TextVerifier

__all__ = [
    "READ_CONFIDENCE",
    "OcrEngine",
    "ReadBox",
    "TextFeatures",
    "TextVerifier",
    "VerifierConfig",
    "VerifierUnavailable",
    "features_from_boxes",
    "make_engine",
]
