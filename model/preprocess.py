"""The one preprocessing function shared by training, evaluation, calibration and serving.

`preprocess(source, size)` turns encoded image bytes (or a PIL image) into a `(3, size, size)` float32
tensor in [-1, 1]. It is `model.decode.decode_pixels` (checks, decode, orientation, RGB, centre-crop
resize; torch-free) followed by `normalise`. Training caches the uint8 stage (`preprocess_uint8`) and
applies `normalise` per batch, and the worker decodes in separate processes with `decode_pixels` and
normalises per batch: the exact same arithmetic, so training and serving cannot drift apart.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from model.decode import DEFAULT_LIMITS, ImageLimits, decode_pixels, decode_with_parts, sniff_format, to_rgb
from model.sheets import SheetSearch

__all__ = [
    "DEFAULT_LIMITS",
    "NORMALISATION",
    "ImageLimits",
    "decode_pixels",
    "denormalise",
    "normalise",
    "pixels_to_tensor",
    "preprocess",
    "preprocess_uint8",
    "sniff_format",
    "to_rgb",
]


def preprocess_uint8(
    source: bytes | Image.Image,
    size: int,
    *,
    limits: ImageLimits | None = None,
    with_parts: bool = False,
    sheets: SheetSearch | None = None,
) -> torch.Tensor:
    """Decode, orient, convert and resize an image; return a `(3, size, size)` uint8 tensor.

    This is the first half of `preprocess` (`model.decode.decode_pixels`, channels first); training
    caches its output and applies `normalise`. `with_parts` (a cascade with the quadrant route): a
    `(1 + 4, 3, size, size)` tensor, the same picture first and its four corner squares after it
    (`model.decode.decode_with_parts`, `model.quadrants`); with `sheets` too (a cascade with the sheet
    route), the picture's straightened sheets after them (`model.sheets`).

    Raises:
        UnsupportedImageFormat: not an image, or a format outside `limits.allowed_formats`.
        ImageTooLarge: over the byte or pixel limit, or a decompression bomb.
        CorruptImage: truncated or undecodable data.
    """
    if with_parts:
        return pixels_to_tensor(decode_with_parts(source, size, limits=limits, sheets=sheets))
    return pixels_to_tensor(decode_pixels(source, size, limits=limits))


def pixels_to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """`(H, W, 3)` uint8 array from `decode_pixels` -> `(3, H, W)` uint8 tensor; `(P, H, W, 3)` from
    `decode_with_parts` -> `(P, 3, H, W)`."""
    return torch.from_numpy(pixels).movedim(-1, -3).contiguous()


def normalise(images: torch.Tensor) -> torch.Tensor:
    """Map uint8 pixels (any shape) to float32 in [-1, 1], the range the networks expect."""
    return images.to(torch.float32).div_(127.5).sub_(1.0)


def denormalise(images: torch.Tensor) -> torch.Tensor:
    """Inverse of `normalise`: float in [-1, 1] to uint8 pixels (for previews)."""
    return images.add(1.0).mul(127.5).round_().clamp_(0, 255).to(torch.uint8)


def preprocess(source: bytes | Image.Image, size: int, *, limits: ImageLimits | None = None) -> torch.Tensor:
    """Turn image bytes or a PIL image into the model's input tensor.

    Args:
        source: Encoded image bytes, or an already opened PIL image.
        size: Side of the square model input (the checkpoint's `input_size`).
        limits: Byte, pixel and format limits; `DEFAULT_LIMITS` when omitted.

    Returns:
        A `(3, size, size)` float32 tensor in [-1, 1].

    Raises:
        UnsupportedImageFormat: not an image, or a format outside `limits.allowed_formats`.
        ImageTooLarge: over the byte or pixel limit, or a decompression bomb.
        CorruptImage: truncated or undecodable data.
    """
    return normalise(preprocess_uint8(source, size, limits=limits))


# Description stored in every checkpoint card so a reader knows how inputs were prepared.
NORMALISATION = {
    "pixels": "uint8 RGB / 127.5 - 1 -> [-1, 1]",
    "resize": "centre square crop, bicubic resize (reducing_gap=3)",
    "alpha": "composited onto white",
    "orientation": "EXIF transpose applied",
}
