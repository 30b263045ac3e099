"""Errors of the data package: one root class, one subclass per reason."""

from __future__ import annotations


class DataError(Exception):
    """Root of every error raised by `model.data`."""


class FontsMissing(DataError):
    """A font family needs fonts that are not installed; the message lists the apt packages."""


class PhotoSourceMissing(DataError):
    """A photo source's files are not installed; the message lists the apt or pip packages."""


class DatasetLayoutError(DataError):
    """An output folder is not usable for a dataset build (e.g. not empty)."""


class UnknownLayout(DataError, ValueError):
    """A layout name that is not part of the requested card family."""
