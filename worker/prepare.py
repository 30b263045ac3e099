"""Fetch then decode one image off the main thread: URL in, `(3, S, S)` uint8 tensor out.

Downloads run on the fetcher's event loop; decoding runs in a thread pool (Pillow releases the GIL
while decoding, so the threads use several cores). The model's shared `preprocess_uint8` does the
decoding; the float normalisation is applied per batch (`model.preprocess.normalise`), which is the
same arithmetic as `preprocess` and keeps the in-flight tensors 4x smaller.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from model.errors import ImageError
from worker.errors import BadInput, from_image_error

Decode = Callable[[bytes], torch.Tensor]


class Fetcher(Protocol):
    """Starts a download; the future raises a `BadInput` subclass on failure."""

    def submit(self, url: str) -> concurrent.futures.Future[bytes]:
        """Start downloading `url`."""
        ...


@dataclass(frozen=True)
class PreparedImage:
    """A decoded image and what it cost."""

    pixels: torch.Tensor  # (3, S, S) uint8
    size_bytes: int
    fetch_s: float
    decode_s: float


class ImagePreparer:
    """Chains a fetcher and a decode thread pool; `submit(url)` returns a future of `PreparedImage`."""

    def __init__(self, fetcher: Fetcher, decode: Decode, workers: int) -> None:
        """Create the preparer.

        Args:
            fetcher: Downloads bytes (normally a `BackgroundFetcher`).
            decode: Bytes -> `(3, S, S)` uint8 tensor; raises `model.errors.ImageError` on bad bytes.
            workers: Decode threads.
        """
        self._fetcher = fetcher
        self._decode = decode
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="alocc-decode"
        )

    def submit(self, url: str) -> concurrent.futures.Future[PreparedImage]:
        """Fetch and decode `url`; the future raises a `BadInput` subclass for bad input."""
        result: concurrent.futures.Future[PreparedImage] = concurrent.futures.Future()
        started = time.monotonic()

        def fetched(download: concurrent.futures.Future[bytes]) -> None:
            if download.cancelled():
                result.cancel()
                return
            error = download.exception()
            if error is not None:
                result.set_exception(error)
                return
            data = download.result()
            fetch_s = time.monotonic() - started
            try:
                self._pool.submit(self._decode_one, data, fetch_s, result)
            except RuntimeError as exc:  # pool shut down while closing
                result.set_exception(exc)

        self._fetcher.submit(url).add_done_callback(fetched)
        return result

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
        result.set_result(PreparedImage(pixels, len(data), fetch_s, time.monotonic() - started))

    def close(self) -> None:
        """Stop the decode threads (work not started is cancelled)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
