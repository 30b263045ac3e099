"""Errors of the dataset builder (`model.data`): one root class, one subclass per reason."""

from __future__ import annotations


class DatasetError(Exception):
    """Root of every error raised by `model.data`."""


class FontsMissing(DatasetError):
    """A font family needs fonts that are not installed; the message lists the apt packages."""


class PhotoSourceMissing(DatasetError):
    """A photo source's files are not installed; the message lists the apt or pip packages."""


class DatasetLayoutError(DatasetError):
    """An output folder is not usable for a dataset build (e.g. not empty)."""


class UnknownLayout(DatasetError, ValueError):
    """A layout name that is not part of the requested card family."""
