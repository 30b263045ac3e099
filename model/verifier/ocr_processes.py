"""The text verifier in child processes: a crash or a hang of the OCR engine costs one read, not the caller.

An OCR engine is native code fed with uploads from strangers. In the worker it runs in children started as
`python -m model.verifier.ocr_processes CONFIG_JSON` (plain subprocesses: nothing of the parent, its
threads or its Kafka client is forked into them). Each child loads the engine's models once and then reads
one image at a time: raw upload bytes in, features out. It decodes the bytes itself, with the worker's
image limits, so a hostile image meets the decoder there too.

`OcrProcessReader.features(data)` runs on the calling thread's own child (one `warm` started ahead, or
started on first use). A child
that dies, or answers nothing within the engine's timeout plus a margin, is killed and replaced by the
next read; the read in progress raises `VerifierUnavailable`, which the worker turns into the model's own
decision for that image.

Wire format (pipes; the parent is the only peer, so no authentication and no pickle): each message is
`struct ">I"` (length) followed by that many bytes. Parent -> child: `struct ">HHHHHH"` (the line reading's
page segmentation, text height, least glyphs and skip_page, all 0 for none: `model.verifier.line_read`;
then the panel reading's least confident characters plus one, 0 for none: `model.verifier.panel_read`;
then what to read: 0 the page, 1 a sheet (`model.verifier.text_verifier.SheetReading`, whose JSON follows as
a message: `{"search", "input_size", "slot"}`, with `"second"`, a `SecondRead`, where the second engine
reads it: the sheet's second reading), 2 the page's layout alone (`TextVerifier.layout_features`:
words found, none recognised), 3 the page with the second engine (`TextVerifier.second_features`, whose
`SecondRead` JSON follows as a message; a child started without that engine loads it on first use)), then
the image bytes as a message. Child -> parent: JSON, first `{"ready": true, "engine": <version>}` (and
`"second_engine": <version>` where the child was started with the second reading: its engine is loaded
then) or `{"ready": false, "error", "message"}` once, then per image `{"ok": true, "features": {...}}` (a
second reading's answer also names its engine's version, `"engine"`) or `{"ok": false, "error": <class
name>, "message"}`. Recognised text never crosses the pipe.

This module imports no torch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import struct
import subprocess
import sys
import threading
import time
from typing import Any

from model.decode import ImageLimits
from model.verifier.engines import VerifierConfig, VerifierUnavailable
from model.verifier.features import TextFeatures
from model.verifier.line_read import LineRead
from model.verifier.panel_read import PanelRead
from model.verifier.second_read import SecondRead
from model.verifier.text_verifier import SheetReading

_HEADER = struct.Struct(">I")
_READING = struct.Struct(">HHHHHH")
# What a request reads (the last field of `_READING`).
READ_PAGE, READ_SHEET, READ_LAYOUT, READ_SECOND = 0, 1, 2, 3


def pack_reading(
    line_read: LineRead | None,
    panel_read: PanelRead | None = None,
    sheet: SheetReading | None = None,
    *,
    layout: bool = False,
    second: SecondRead | None = None,
) -> bytes:
    """How to read an image, as the parent sends it before the image (zeros: a page reading alone); a sheet
    reading's or a second reading's spec follows as its own message; `layout`: the page's layout alone."""
    if (sheet is not None) + layout + (second is not None) > 1:
        raise ValueError("a request reads one of a sheet, the page's layout or the second reading")
    panel = 0 if panel_read is None else panel_read.min_confident + 1
    fields = (
        (0, 0, 0, 0)
        if line_read is None
        else (
            line_read.page_segmentation,
            line_read.text_height,
            line_read.min_glyphs,
            int(line_read.skip_page),
        )
    )
    kind = (
        READ_SHEET
        if sheet is not None
        else READ_LAYOUT
        if layout
        else READ_SECOND
        if second is not None
        else READ_PAGE
    )
    packed = _READING.pack(*fields, panel, kind)
    if sheet is not None:
        record = {"search": sheet.search.to_json(), "input_size": sheet.input_size, "slot": sheet.slot}
        if sheet.second is not None:  # the sheet's second reading: read by the second engine
            record["second"] = sheet.second.to_json()
    elif second is not None:
        record = second.to_json()
    else:
        return packed
    spec = json.dumps(record)
    return packed + _HEADER.pack(len(spec)) + spec.encode()


def unpack_reading(data: bytes) -> tuple[LineRead | None, PanelRead | None, int]:
    """What `pack_reading` sent in its fixed part: the line and panel readings, and what to read
    (`READ_PAGE`, `READ_SHEET`: its spec follows, `unpack_sheet`; `READ_LAYOUT`; `READ_SECOND`: its spec
    follows, `SecondRead.from_json`)."""
    page_segmentation, text_height, min_glyphs, skip_page, panel, kind = _READING.unpack(data)
    line_read = LineRead(page_segmentation, text_height, min_glyphs, bool(skip_page)) if text_height else None
    return line_read, (PanelRead(panel - 1) if panel else None), kind


def unpack_sheet(spec: bytes) -> SheetReading:
    """The sheet reading `pack_reading` sent after its fixed part."""
    from model.sheets import SheetSearch

    record = json.loads(spec)
    second = record.get("second")
    return SheetReading(
        SheetSearch.from_json(record["search"]),
        int(record["input_size"]),
        int(record["slot"]),
        None if second is None else SecondRead.from_json(second),
    )


_START_TIMEOUT_S = 60.0  # loading the language models takes about 0.2 s; a loaded host, much more
_MARGIN_S = 5.0  # beyond the engine's own timeout, before a silent child is killed
_MAX_MESSAGE = 64 * 1024 * 1024


class OcrProcess:
    """One child process running the verifier; one read at a time."""

    def __init__(self, config: VerifierConfig, limits: ImageLimits, second: SecondRead | None = None) -> None:
        """Start the child and wait until its engine is loaded (and the second reading's, where given: its
        models load before the first upload waits on them).

        Raises:
            VerifierUnavailable: the child could not start its engine (the message says why).
        """
        self._timeout_s = config.timeout_s + _MARGIN_S
        payload = json.dumps(
            {
                "verifier": dataclasses.asdict(config),
                "second": None if second is None else second.to_json(),
                "limits": {
                    "max_bytes": limits.max_bytes,
                    "max_pixels": limits.max_pixels,
                    "allowed_formats": sorted(limits.allowed_formats),
                },
            }
        )
        self._process = subprocess.Popen(
            [sys.executable, "-m", "model.verifier.ocr_processes", payload],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        ready = self._receive(time.monotonic() + _START_TIMEOUT_S)
        if not ready.get("ready"):
            self.close()
            raise VerifierUnavailable(f"{ready.get('error')}: {ready.get('message')}")
        self.engine_version = str(ready["engine"])
        self.last_engine = self.engine_version  # the engine of the last answer (the second one's, after it)
        # The second reading's engine, where the child loaded it at start.
        self.second_engine_version = str(ready.get("second_engine", ""))

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._process.pid

    def features(
        self,
        data: bytes,
        *,
        line_read: LineRead | None = None,
        panel_read: PanelRead | None = None,
        sheet: SheetReading | None = None,
        layout: bool = False,
        second: SecondRead | None = None,
    ) -> TextFeatures:
        """Read one image in the child (with the line or the panel reading too, where given), or with
        `sheet`, the picture's sheet alone (`TextVerifier.sheet_features`), or with `layout`, find its
        words without reading them (`TextVerifier.layout_features`), or with `second`, read it with the
        second engine (`TextVerifier.second_features`; its version is then `last_engine`).

        Raises:
            VerifierUnavailable: the child failed on this image, died, or did not answer in time; the
                child is then killed (the caller starts another).
        """
        stdin = self._process.stdin
        assert stdin is not None
        try:
            request = pack_reading(line_read, panel_read, sheet, layout=layout, second=second)
            stdin.write(request + _HEADER.pack(len(data)) + data)
            stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            self.close()
            raise VerifierUnavailable(f"the OCR process died ({self._exit_status()})") from exc
        answer = self._receive(time.monotonic() + self._timeout_s)
        if not answer.get("ok"):
            error, message = answer.get("error"), answer.get("message")
            # The engine's own failures keep their message; others (a bad image) are named by their class.
            raise VerifierUnavailable(
                message if error == VerifierUnavailable.__name__ else f"{error}: {message}"
            )
        self.last_engine = str(answer.get("engine", self.engine_version))
        return TextFeatures(**answer["features"])

    def _receive(self, deadline: float) -> dict[str, Any]:
        stdout = self._process.stdout
        assert stdout is not None
        header = self._read_exactly(stdout.fileno(), _HEADER.size, deadline)
        (length,) = _HEADER.unpack(header)
        if length > _MAX_MESSAGE:
            self.close()
            raise VerifierUnavailable(f"the OCR process sent a {length}-byte message")
        message: dict[str, Any] = json.loads(self._read_exactly(stdout.fileno(), length, deadline))
        return message

    def _read_exactly(self, fd: int, count: int, deadline: float) -> bytes:
        chunks: list[bytes] = []
        left = count
        while left:
            remaining = deadline - time.monotonic()
            readable = select.select([fd], [], [], max(0.0, remaining))[0] if remaining > 0 else []
            if not readable:
                self.close()
                raise VerifierUnavailable(f"the OCR process did not answer within {self._timeout_s:.0f} s")
            chunk = os.read(fd, left)
            if not chunk:
                self.close()
                raise VerifierUnavailable(f"the OCR process died ({self._exit_status()})")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _exit_status(self) -> str:
        code = self._process.poll()
        if code is None:
            return "still running"
        return f"killed by signal {-code}" if code < 0 else f"exit code {code}"

    @property
    def alive(self) -> bool:
        """Whether the child still runs."""
        return self._process.poll() is None

    def close(self) -> None:
        """Stop the child: end of input first, then a kill if it lingers."""
        if self._process.poll() is None:
            try:
                if self._process.stdin is not None:
                    self._process.stdin.close()
                self._process.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait(timeout=5)
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None and not stream.closed:
                stream.close()


class OcrProcessReader:
    """`features(data)` on the calling thread's own `OcrProcess`; thread-safe, one child per thread."""

    def __init__(self, config: VerifierConfig, limits: ImageLimits, second: SecondRead | None = None) -> None:
        """Remember how to start children (each with the second reading's engine loaded too, where given);
        the first read of each thread starts its child."""
        self._config = config
        self._limits = limits
        self._second = second
        self._local = threading.local()
        self._children: list[OcrProcess] = []
        self._idle: list[OcrProcess] = []  # started by `warm`, not yet any thread's
        self._lock = threading.Lock()
        self._closed = False

    def check(self) -> str:
        """Start a child and return its engine's version: a start-up check. The child is kept for the first
        read (`warm`) where it is one the reads can use (no second reading asked of this reader).

        Raises:
            VerifierUnavailable: the engine cannot run here (the message says why).
        """
        child = OcrProcess(self._config, self._limits)
        if self._second is None:
            self._keep_idle(child)
        else:
            child.close()
        return child.engine_version

    def features(
        self, data: bytes, *, line_read: LineRead | None = None, panel_read: PanelRead | None = None
    ) -> TextFeatures:
        """Read one image; raises `VerifierUnavailable` when the child fails (see `OcrProcess.features`)."""
        return self._on_child(data, line_read=line_read, panel_read=panel_read)

    def sheet_features(self, data: bytes, sheet: SheetReading) -> TextFeatures:
        """Read a picture's sheet; raises `VerifierUnavailable` when the child fails."""
        return self._on_child(data, sheet=sheet)

    def layout_features(self, data: bytes) -> TextFeatures:
        """Find the words of an image without reading them; raises `VerifierUnavailable` when the child
        fails."""
        return self._on_child(data, layout=True)

    def second_features(self, data: bytes, second: SecondRead) -> TextFeatures:
        """Read an image with the second engine; raises `VerifierUnavailable` when the child fails."""
        return self._on_child(data, second=second)

    def check_second(self, second: SecondRead) -> str:
        """Start a child with the second engine loaded, stop it, and return that engine's version: a
        start-up check.

        Raises:
            VerifierUnavailable: the second engine cannot run here (the message says why).
        """
        child = OcrProcess(self._config, self._limits, second)
        if second == self._second:
            self._keep_idle(child)
        else:
            child.close()
        return child.second_engine_version

    def _keep_idle(self, child: OcrProcess) -> None:
        """Keep a started child for the first read that needs one (`warm`'s children are kept so too)."""
        with self._lock:
            self._children = [c for c in self._children if c.alive] + [child]
            self._idle.append(child)

    def _on_child(self, data: bytes, **reading: Any) -> TextFeatures:
        child = self._child()
        try:
            return child.features(data, **reading)
        finally:
            if not child.alive:
                self._local.child = None

    def _child(self) -> OcrProcess:
        child: OcrProcess | None = getattr(self._local, "child", None)
        if child is not None and child.alive:
            return child
        with self._lock:
            if self._closed:
                raise VerifierUnavailable("the verifier is closed")
            # A child `warm` started takes no time to load; one that died idle is left for `close`.
            while self._idle:
                child = self._idle.pop()
                if child.alive:
                    self._local.child = child
                    return child
        child = OcrProcess(self._config, self._limits, self._second)
        with self._lock:
            self._children = [c for c in self._children if c.alive] + [child]
        self._local.child = child
        return child

    def warm(self, count: int) -> None:
        """Have `count` children started, their engines loaded, for the first reads to take (counting those
        the start-up checks kept): a child loads its models in about a second (both engines), which would
        otherwise wait inside uploads' decisions.

        Raises:
            VerifierUnavailable: a child could not start its engine (the message says why).
        """
        with self._lock:
            ready = sum(child.alive for child in self._idle)  # the start-up checks' children, kept
        for _ in range(count - ready):
            self._keep_idle(OcrProcess(self._config, self._limits, self._second))

    def pids(self) -> list[int]:
        """Process ids of the live children."""
        with self._lock:
            return [child.pid for child in self._children if child.alive]

    def close(self) -> None:
        """Stop every child."""
        with self._lock:
            self._closed = True
            children, self._children, self._idle = self._children, [], []
        for child in children:
            child.close()


def child_main(config_json: str) -> int:
    """The child's loop: read images from stdin, write features to stdout, until stdin ends."""
    from model.verifier.text_verifier import TextVerifier

    out = sys.stdout.buffer
    source = sys.stdin.buffer

    def send(message: dict[str, Any]) -> None:
        body = json.dumps(message).encode()
        out.write(_HEADER.pack(len(body)) + body)
        out.flush()

    config = json.loads(config_json)
    limits = ImageLimits(
        max_bytes=config["limits"]["max_bytes"],
        max_pixels=config["limits"]["max_pixels"],
        allowed_formats=frozenset(config["limits"]["allowed_formats"]),
    )
    try:
        verifier = TextVerifier(VerifierConfig(**config["verifier"]))
        ready = {"ready": True, "engine": verifier.engine.version()}
        if config.get("second") is not None:
            preloaded = verifier.second_verifier(SecondRead.from_json(config["second"]))
            ready["second_engine"] = preloaded.engine.version()
        send(ready)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which refuses to start
        send({"ready": False, "error": type(exc).__name__, "message": str(exc)[:500]})
        return 1
    # From here every failure is answered over the pipe; the native libraries' own messages on stderr
    # ("Error in pixScanForForeground: invalid box") would be stray non-JSON lines in the worker's logs.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    while True:
        header = source.read(_READING.size)
        if len(header) < _READING.size:
            return 0  # the parent closed our input: stop
        line_read, panel_read, kind = unpack_reading(header)
        spec = _read_message(source) if kind in (READ_SHEET, READ_SECOND) else b""
        data = _read_message(source)
        if spec is None or data is None:
            return 0
        try:
            if kind == READ_SHEET:
                features = verifier.sheet_features(data, unpack_sheet(spec), limits=limits)
            elif kind == READ_LAYOUT:
                features = verifier.layout_features(data, limits=limits)
            elif kind == READ_SECOND:
                second = SecondRead.from_json(json.loads(spec))
                features = verifier.second_features(data, second, limits=limits)
                engine = verifier.second_verifier(second).engine.version()
                send({"ok": True, "features": features.as_dict(), "engine": engine})
                continue
            else:
                features = verifier.features(data, limits=limits, line_read=line_read, panel_read=panel_read)
        except Exception as exc:  # noqa: BLE001 - one image's failure is that read's answer
            send({"ok": False, "error": type(exc).__name__, "message": str(exc)[:300]})
            continue
        send({"ok": True, "features": features.as_dict()})


def _read_message(source: Any) -> bytes | None:
    """One length-prefixed message from the parent; None where its input ended."""
    header = source.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (length,) = _HEADER.unpack(header)
    return bytes(source.read(length))


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1]))
