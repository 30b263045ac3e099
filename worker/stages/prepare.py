"""Fetch then decode one image off the main thread: URL in, decoded pixels out.

Downloads run on the fetcher's event loop; decoding runs in a thread pool (Pillow releases the GIL
while decoding, so the threads use several cores). The model's shared decoding does the work
(`preprocess_uint8` in the worker's own process; `decode_pixels` inside a decode process, see
`worker.stages.decode_processes`); the float normalisation is applied per batch
(`model.preprocess.normalise`), which is the same arithmetic as `preprocess` and keeps the in-flight
images 4x smaller.

This module imports no torch: the decode processes run it too.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from model.errors import ImageError
from worker.failures import BadInput, CorruptImage, from_image_error

# Bytes -> pixels: a `(3, S, S)` uint8 tensor in the worker, a `(S, S, 3)` uint8 array in a decode process.
Decode = Callable[[bytes], Any]


class Fetcher(Protocol):
    """Starts a download; the future raises a `BadInput` subclass on failure."""

    def submit(self, url: str) -> concurrent.futures.Future[bytes]:
        """Start downloading `url`."""
        ...


class Preparer(Protocol):
    """The fetch + decode stage as the worker sees it (`ImagePreparer`, `DecodeProcessPool`)."""

    def submit(self, url: str) -> concurrent.futures.Future[PreparedImage]:
        """Fetch and decode `url`; the future raises a `BadInput` subclass for bad input."""
        ...

    def close(self) -> None:
        """Stop; work not finished is cancelled."""
        ...


@dataclass(frozen=True)
class PreparedImage:
    """A decoded image and what it cost."""

    pixels: Any  # (3, S, S) uint8 tensor (what the scoring stage takes)
    size_bytes: int
    fetch_s: float
    decode_s: float


T = TypeVar("T")


def fetch_then(
    fetcher: Fetcher,
    url: str,
    pool: concurrent.futures.Executor,
    step: Callable[[bytes, float, concurrent.futures.Future[T]], None],
) -> concurrent.futures.Future[T]:
    """Download `url`, then run `step(data, fetch_seconds, result)` on `pool`; returns `result`.

    A failed or cancelled download fails or cancels `result` without running `step`; `step` must settle
    `result` itself.
    """
    result: concurrent.futures.Future[T] = concurrent.futures.Future()
    started = time.monotonic()

    def fetched(download: concurrent.futures.Future[bytes]) -> None:
        if download.cancelled():
            result.cancel()
            return
        error = download.exception()
        if error is not None:
            result.set_exception(error)
            return
        try:
            pool.submit(step, download.result(), time.monotonic() - started, result)
        except RuntimeError as exc:  # pool shut down while closing
            result.set_exception(exc)

    fetcher.submit(url).add_done_callback(fetched)
    return result


class ImagePreparer:
    """Chains a fetcher and a decode thread pool; `submit(url)` returns a future of `PreparedImage`."""

    def __init__(self, fetcher: Fetcher, decode: Decode, workers: int) -> None:
        """Create the preparer.

        Args:
            fetcher: Downloads bytes (normally a `BackgroundFetcher`).
            decode: Bytes -> pixels; raises `model.errors.ImageError` on bad bytes.
            workers: Decode threads.
        """
        self._fetcher = fetcher
        self._decode = decode
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="alocc-decode"
        )

    def submit(self, url: str) -> concurrent.futures.Future[PreparedImage]:
        """Fetch and decode `url`; the future raises a `BadInput` subclass for bad input."""
        return fetch_then(self._fetcher, url, self._pool, self._decode_one)

    def _decode_one(
        self, data: bytes, fetch_s: float, result: concurrent.futures.Future[PreparedImage]
    ) -> None:
        started = time.monotonic()
        try:
            pixels = self._decode(data)
        except ImageError as exc:
            result.set_exception(from_image_error(exc))
            return
        except BadInput as exc:
            result.set_exception(exc)
            return
        except Exception as exc:  # noqa: BLE001 - a decoder bug on one image must not strand its event
            result.set_exception(CorruptImage(f"the decoder failed unexpectedly: {exc!r}"))
            return
        result.set_result(PreparedImage(pixels, len(data), fetch_s, time.monotonic() - started))

    def close(self) -> None:
        """Stop the decode threads (work not started is cancelled)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
