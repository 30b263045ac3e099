"""Errors raised by the worker package.

Everything derives from `WorkerError`. Two families below it:

- `BadInput`: one event cannot be scored. The event goes to the dead-letter topic and the offset moves
  on. Each reason is its own class and the class name is the `error_type` the dead-letter record
  carries (model image errors are mapped onto same-named classes here by `from_image_error`).
- `FatalWorkerError`: the worker itself cannot go on (broken deploy, lost broker, fenced producer). It
  stops without committing the work in progress, so nothing is lost.
"""

from __future__ import annotations


class WorkerError(Exception):
    """Root of every error raised by the worker package."""


class ConfigurationError(WorkerError):
    """A setting is missing or inconsistent."""


# ---------------------------------------------------------------- bad input (dead-lettered)
class BadInput(WorkerError):
    """One event cannot be scored; the class name is the dead-letter reason."""

    @property
    def reason(self) -> str:
        """The dead-letter reason: this error's class name."""
        return type(self).__name__


class InvalidEvent(BadInput):
    """The message is not valid JSON or does not match the input event schema."""


class UrlNotAllowed(BadInput):
    """The URL's scheme, host or form is not allowed (only http/https, optional host allow-list)."""


class ForbiddenAddress(BadInput):
    """The host resolves to a loopback, private, link-local, metadata or otherwise non-public address."""


class HostNotFound(BadInput):
    """The URL's host name does not resolve."""


class FetchTimeout(BadInput):
    """Connecting or downloading took longer than the configured timeouts (after retries)."""


class ConnectionFailed(BadInput):
    """The server could not be reached (refused, reset, TLS failure), after retries."""


class HttpError(BadInput):
    """The server answered with a non-success status (4xx, or 5xx after retries)."""


class TooManyRedirects(BadInput):
    """The redirect chain is longer than allowed."""


class ResponseTooLarge(BadInput):
    """The body exceeds the byte cap (counted while streaming, not taken from Content-Length)."""


class UnsupportedImageFormat(BadInput):
    """The bytes are not an image in one of the allowed formats (sniffed from the magic bytes)."""


class ImageTooLarge(BadInput):
    """The decoded pixel count exceeds the limit (decompression bomb)."""


class CorruptImage(BadInput):
    """The image is truncated or cannot be decoded."""


class DecoderCrashed(BadInput):
    """The process preparing this image died twice while on it (a decoder crash or out of memory)."""


class TransientFetchError(WorkerError):
    """A failure worth retrying (timeout, connection error, 5xx); becomes `final` when retries run out."""

    def __init__(self, message: str, final: BadInput) -> None:
        super().__init__(message)
        self.final = final


# ---------------------------------------------------------------- fatal (worker stops)
class FatalWorkerError(WorkerError):
    """The worker cannot go on; it stops without committing work in progress."""


class FailureRateExceeded(FatalWorkerError):
    """Most of a recent window of events failed: likely a broken deploy, not bad input."""


class KafkaFatalError(FatalWorkerError):
    """The Kafka client reported an unrecoverable error (for example a fenced producer)."""


class StoreUnavailable(FatalWorkerError):
    """Redis could not be written after retries."""


class DecodePoolFailed(FatalWorkerError):
    """The fetch-and-decode processes keep dying without finishing any image."""


_IMAGE_ERROR_TYPES: dict[str, type[BadInput]] = {
    "UnsupportedImageFormat": UnsupportedImageFormat,
    "ImageTooLarge": ImageTooLarge,
    "CorruptImage": CorruptImage,
}


def from_image_error(error: Exception) -> BadInput:
    """Map a `model.errors.ImageError` onto the worker error of the same name (`CorruptImage` if unknown)."""
    for klass in type(error).__mro__:
        mapped = _IMAGE_ERROR_TYPES.get(klass.__name__)
        if mapped is not None:
            return mapped(str(error))
    return CorruptImage(str(error))


def _bad_input_classes(root: type[BadInput] = BadInput) -> dict[str, type[BadInput]]:
    found: dict[str, type[BadInput]] = {}
    for klass in root.__subclasses__():
        found[klass.__name__] = klass
        found.update(_bad_input_classes(klass))
    return found


def bad_input_from_name(reason: str, message: str) -> BadInput:
    """Rebuild a `BadInput` from its reason (class name) and message, e.g. as a decode process sent it.

    An unknown reason becomes `DecoderCrashed` with the reason kept in the message.
    """
    klass = _bad_input_classes().get(reason)
    if klass is None:
        return DecoderCrashed(f"{reason}: {message}")
    return klass(message)
