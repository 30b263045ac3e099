"""What a caller may watch of a running worker, event by event, without reaching into it.

The worker reports every stored and every committed event to its observers; a benchmark records
latencies this way. Prometheus metrics cover the same for operators, aggregated.
"""

from __future__ import annotations

from typing import Protocol


class WorkerObserver(Protocol):
    """Called on the worker's loop thread: keep each call short."""

    def on_stored(self, image_id: str, upload_to_store_s: float) -> None:
        """An event's score record was written to Redis, this long after the image was uploaded."""

    def on_committed(self, image_id: str, upload_to_commit_s: float) -> None:
        """An event's decision was committed (offsets and outputs), this long after the upload."""
