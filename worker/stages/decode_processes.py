"""Fetch and decode in separate processes, so they do not share the worker's interpreter lock.

In one process, downloads (an asyncio HTTP client: Python code per request), decoding (Pillow releases
the lock, the Python around it does not), the Kafka loop and the batching all take turns on one
interpreter lock; on a CPU worker that lock, not the cores, capped throughput. `DecodeProcessPool`
has the same interface as `ImagePreparer` (`submit(url)` -> future of `PreparedImage`, `close()`) but
runs N child processes, each an `ImagePreparer` of its own (its own SSRF-safe fetcher and decode
thread) built from the worker's settings. The parent sends URLs and gets back pixels or the reason an
image is bad; every safety check still runs, in the child.

The children import neither torch nor the model (`model.decode` is torch-free), so each costs tens of
MB, not the hundreds a copy of torch would. They are started as plain
`python -m worker.stages.decode_processes` subprocesses, not by `multiprocessing`, so nothing of the
parent (threads, CUDA, the Kafka client) is forked or re-imported into them.

Wire format (pipes; the parent is the only peer, so no authentication and no pickle):
- parent -> child, stdin: one JSON line per job, `{"id": int, "url": str}`; EOF means stop.
- child -> parent, stdout: `struct ">II"` (header length, payload length), a JSON header, then the
  payload: `{"id", "ok": true, "size_bytes", "fetch_s", "decode_s"}` with `size*size*3` pixel bytes,
  or `{"id", "ok": false, "error": <BadInput class name>, "message"}` with no payload.

A child that dies (killed by the OOM killer, a crashing decoder) is replaced and its unfinished jobs
are sent again once; a job whose child dies twice is dead-lettered as `DecoderCrashed`, so one
poisonous image cannot take the worker down, and too many deaths in a row stop the worker
(`DecodePoolFailed`) instead of spinning.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import gc
import itertools
import json
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import structlog

from model.decode import ImageLimits
from worker.failures import BadInput, DecodePoolFailed, DecoderCrashed, bad_input_from_name
from worker.settings import FetchSettings
from worker.stages.prepare import PreparedImage

log = structlog.get_logger("alocc.decodepool")

_FRAME = struct.Struct(">II")
# A job is retried on a fresh child once; the second death blames the image.
_MAX_ATTEMPTS = 2
# This many child deaths with no successful result in between: something other than one image is wrong.
_MAX_CONSECUTIVE_DEATHS = 5


@dataclass(frozen=True)
class ChildConfig:
    """What a child needs to build its preparer (sent as JSON on its command line)."""

    fetch: dict[str, Any]
    size: int
    max_bytes: int
    max_pixels: int
    allowed_formats: list[str]
    threads: int
    log_level: str
    log_format: str
    with_parts: bool = False  # also the picture's corner squares (a cascade with the quadrant route)
    # and its sheets, searched so (`SheetSearch.to_json`; a cascade with the sheet route)
    sheets: dict[str, Any] | None = None

    def to_json(self) -> str:
        """One-line JSON."""
        return json.dumps(self.__dict__, separators=(",", ":"))


@dataclass(eq=False)
class _Job:
    id: int
    url: str
    future: concurrent.futures.Future[PreparedImage]
    attempts: int = 0


class _Child:
    """One child process, its pending jobs and the thread reading its results."""

    def __init__(
        self, config: ChildConfig, on_exit: Callable[[_Child], None], to_pixels: Callable[..., Any]
    ) -> None:
        self._to_pixels = to_pixels
        self._size = config.size
        self._on_exit = on_exit
        self.pending: dict[int, _Job] = {}
        self._pending_lock = threading.Lock()
        self._write_lock = threading.Lock()  # one writer at a time on stdin; never held while reading
        self._dead = False
        self.ready = threading.Event()  # the child built its preparer and reads jobs
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker.stages.decode_processes", config.to_json()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        self._reader = threading.Thread(target=self._read_loop, name="alocc-decodepool-reader", daemon=True)
        self._reader.start()

    def send(self, job: _Job) -> bool:
        """Queue `job` on this child; False when the child's pipe is gone (it died)."""
        line = json.dumps({"id": job.id, "url": job.url}).encode() + b"\n"
        with self._pending_lock:
            if self._dead:
                return False
            self.pending[job.id] = job  # before the write: the answer may come back at once
        try:
            with self._write_lock:
                assert self.process.stdin is not None
                self.process.stdin.write(line)
        except (BrokenPipeError, OSError, ValueError):
            with self._pending_lock:
                self.pending.pop(job.id, None)
            return False
        return True

    def take_orphans(self) -> list[_Job]:
        """Mark the child dead and return the jobs it never answered."""
        with self._pending_lock:
            self._dead = True
            orphans = list(self.pending.values())
            self.pending.clear()
        return orphans

    def _read_loop(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        try:
            while True:
                frame = _read_exactly(stream, _FRAME.size)
                if frame is None:
                    break
                header_len, payload_len = _FRAME.unpack(frame)
                header_bytes = _read_exactly(stream, header_len)
                payload = _read_exactly(stream, payload_len) if payload_len else b""
                if header_bytes is None or payload is None:
                    break
                self._deliver(json.loads(header_bytes), payload)
        finally:
            self.process.wait()
            self._on_exit(self)

    def _deliver(self, header: dict[str, Any], payload: bytes) -> None:
        if header.get("ready"):
            self.ready.set()
            return
        with self._pending_lock:
            job = self.pending.pop(int(header["id"]), None)
        if job is None or job.future.done():
            return
        if header.get("ok"):
            pixels = self._to_pixels(payload, self._size)
            job.future.set_result(
                PreparedImage(
                    pixels, int(header["size_bytes"]), float(header["fetch_s"]), float(header["decode_s"])
                )
            )
        else:
            job.future.set_exception(bad_input_from_name(str(header["error"]), str(header["message"])))

    def stop(self, timeout_s: float) -> None:
        """Close stdin (the child's stop signal), wait, then kill if it lingers."""
        with self._write_lock:
            if self.process.stdin is not None and not self.process.stdin.closed:
                with contextlib.suppress(OSError):
                    self.process.stdin.close()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout_s)


def _read_exactly(stream: IO[bytes], count: int) -> bytes | None:
    chunks: list[bytes] = []
    while count:
        chunk = stream.read(count)
        if not chunk:
            return None
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def _tensor_pixels() -> Callable[[bytes, int], Any]:
    """Payload bytes, side -> `(3, S, S)` uint8 tensor. Imported here, in the parent only: the
    children must not load torch."""
    from model.preprocess import pixels_to_tensor

    def to_tensor(payload: bytes, size: int) -> Any:
        pixels = np.frombuffer(payload, dtype=np.uint8).reshape(-1, size, size, 3).copy()
        # One picture, or the picture and its parts (`ChildConfig.with_parts`).
        return pixels_to_tensor(pixels[0] if len(pixels) == 1 else pixels)

    return to_tensor


class DecodeProcessPool:
    """`ImagePreparer`'s interface over N fetch-and-decode child processes."""

    def __init__(
        self,
        config: ChildConfig,
        processes: int,
        *,
        to_pixels: Callable[[bytes, int], Any] | None = None,
        ready_timeout_s: float = 60.0,
    ) -> None:
        """Start `processes` children and wait until each has built its fetcher and decoder.

        Waiting here means a worker starts consuming only with its decode stage up (the first events
        do not wait for interpreters to start), and a child that cannot start is a startup error,
        not a stream of dead children.

        Args:
            config: the children's settings.
            processes: how many children.
            to_pixels: payload bytes, side -> what `PreparedImage.pixels` holds (default: a
                `(3, S, S)` uint8 tensor).
            ready_timeout_s: how long the children may take to start.

        Raises:
            DecodePoolFailed: a child exited or did not report ready in time.
        """
        if processes < 1:
            raise ValueError(f"processes must be at least 1, got {processes}")
        self._config = config
        self._to_pixels = to_pixels if to_pixels is not None else _tensor_pixels()
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._closing = False
        self._consecutive_deaths = 0
        self._failed: DecodePoolFailed | None = None
        self._children = [self._spawn() for _ in range(processes)]
        self._wait_until_ready(ready_timeout_s)

    def _wait_until_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for child in list(self._children):
            while not child.ready.wait(0.05):
                if child.process.poll() is not None or self._failed is not None:
                    self.close()
                    raise DecodePoolFailed(
                        f"a decode process exited while starting (exit code {child.process.returncode}); "
                        "its error is in the log above"
                    )
                if time.monotonic() > deadline:
                    self.close()
                    raise DecodePoolFailed(f"a decode process did not start within {timeout_s:.0f} s")

    def _spawn(self) -> _Child:
        return _Child(self._config, self._on_child_exit, self._counting_to_pixels)

    def _counting_to_pixels(self, payload: bytes, size: int) -> Any:
        self._consecutive_deaths = 0  # a child delivered: the pool works
        return self._to_pixels(payload, size)

    @property
    def pids(self) -> list[int]:
        """Process ids of the live children (for tests and diagnostics)."""
        with self._lock:
            return [child.process.pid for child in self._children]

    def submit(self, url: str) -> concurrent.futures.Future[PreparedImage]:
        """Fetch and decode `url` in a child; the future raises a `BadInput` subclass for bad input."""
        job = _Job(next(self._ids), url, concurrent.futures.Future())
        self._dispatch(job)
        return job.future

    def _dispatch(self, job: _Job) -> None:
        job.attempts += 1
        while True:
            with self._lock:
                if self._failed is not None:
                    job.future.set_exception(self._failed)
                    return
                if self._closing:
                    job.future.cancel()
                    return
                child = min(self._children, key=lambda c: len(c.pending))
            if child.send(job):
                return
            time.sleep(0.01)  # that child just died; its replacement is on the way

    def _on_child_exit(self, child: _Child) -> None:
        orphans = child.take_orphans()
        with self._lock:
            if self._closing:
                for job in orphans:
                    job.future.cancel()
                return
            self._consecutive_deaths += 1
            log.error(
                "decode_process_died",
                pid=child.process.pid,
                returncode=child.process.returncode,
                unfinished=len(orphans),
            )
            if self._consecutive_deaths >= _MAX_CONSECUTIVE_DEATHS:
                self._failed = DecodePoolFailed(
                    f"{self._consecutive_deaths} decode processes died in a row (last exit code "
                    f"{child.process.returncode})"
                )
            else:
                self._children[self._children.index(child)] = self._spawn()
        for job in orphans:
            if self._failed is not None:
                job.future.set_exception(self._failed)
            elif job.attempts >= _MAX_ATTEMPTS:
                job.future.set_exception(
                    DecoderCrashed(
                        "the decode process died twice while preparing this image "
                        f"(exit {child.process.returncode})"
                    )
                )
            else:
                self._dispatch(job)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the children; jobs not finished are cancelled."""
        with self._lock:
            self._closing = True
            children = list(self._children)
        for child in children:
            child.stop(timeout_s)


# ----------------------------------------------------------------------------- the child process
def child_main(config_json: str) -> int:
    """Run one child: read jobs from stdin until EOF, write results to stdout."""
    from model.decode import decode_pixels, decode_with_parts, warm_up
    from model.sheets import SheetSearch
    from worker.logs import configure_logging
    from worker.stages.fetch import BackgroundFetcher
    from worker.stages.prepare import ImagePreparer

    raw = json.loads(config_json)
    config = ChildConfig(**raw)
    configure_logging(config.log_level, config.log_format)
    limits = ImageLimits(
        max_bytes=config.max_bytes,
        max_pixels=config.max_pixels,
        allowed_formats=frozenset(config.allowed_formats),
    )
    fetcher = BackgroundFetcher(FetchSettings.model_validate(config.fetch))
    preparer = ImagePreparer(
        fetcher,
        functools.partial(
            decode_with_parts,
            size=config.size,
            limits=limits,
            sheets=None if config.sheets is None else SheetSearch.from_json(config.sheets),
        )
        if config.with_parts
        else functools.partial(decode_pixels, size=config.size, limits=limits),
        config.threads,
    )
    out = sys.stdout.buffer
    write_lock = threading.Lock()

    def send(header: dict[str, Any], payload: bytes = b"") -> None:
        encoded = json.dumps(header, separators=(",", ":")).encode()
        with write_lock:
            out.write(_FRAME.pack(len(encoded), len(payload)) + encoded + payload)
            out.flush()

    def finished(job_id: int, future: concurrent.futures.Future[PreparedImage]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        try:
            if error is None:
                prepared = future.result()
                send(
                    {
                        "id": job_id,
                        "ok": True,
                        "size_bytes": prepared.size_bytes,
                        "fetch_s": prepared.fetch_s,
                        "decode_s": prepared.decode_s,
                    },
                    prepared.pixels.tobytes(),
                )
            elif isinstance(error, BadInput):
                send({"id": job_id, "ok": False, "error": error.reason, "message": str(error)})
            else:  # not an input problem: report it as a crash of this image's preparation
                send({"id": job_id, "ok": False, "error": "DecoderCrashed", "message": repr(error)})
        except (BrokenPipeError, OSError):
            pass  # the parent is gone; stdin EOF will end this process

    warm_up(config.size, limits)
    # Everything built so far lives as long as the process: keep it out of the cyclic collector's
    # full scans (see `Worker.run`).
    gc.collect()
    gc.freeze()
    send({"id": -1, "ready": True})
    try:
        for line in sys.stdin.buffer:
            job = json.loads(line)
            preparer.submit(str(job["url"])).add_done_callback(functools.partial(finished, int(job["id"])))
    finally:
        preparer.close()
        fetcher.close()
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1]))
