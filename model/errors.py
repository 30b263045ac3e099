"""Errors raised by the model package.

Every error derives from `ModelError`. Bad input images raise a subclass of `ImageError`; the class
name of that subclass is the reason a dead-letter record carries, so each reason is its own type.
"""

from __future__ import annotations


class ModelError(Exception):
    """Root of every error raised by the model package."""


class ImageError(ModelError):
    """An input image cannot be turned into a model tensor; the subclass name is the reason."""


class UnsupportedImageFormat(ImageError):
    """The bytes are not an image, or are in a format outside the allowed list."""


class ImageTooLarge(ImageError):
    """The encoded bytes or the decoded pixel count exceed the configured limits (decompression bomb)."""


class CorruptImage(ImageError):
    """The image header was recognised but the data is truncated or cannot be decoded."""


class ConfigError(ModelError):
    """A preset, mode, device or training option is invalid."""


class UnknownPreset(ConfigError):
    """The requested network preset does not exist."""


class DeviceUnavailable(ConfigError):
    """The requested device is not valid or not present on this machine."""


class CheckpointError(ModelError):
    """A checkpoint directory is missing, incomplete or inconsistent."""


class DefaultModelMissing(CheckpointError):
    """The package ships no trained default model yet."""


class CalibrationError(ModelError):
    """A threshold cannot be calibrated as requested."""


class CalibrationSampleTooSmall(CalibrationError):
    """The calibration sample is too small to guarantee the requested false-positive rate."""


class DataError(ModelError):
    """A training or evaluation image folder is empty or unusable."""
