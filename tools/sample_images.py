"""Sample images and a local HTTP server for the demo, the benchmark and the integration tests.

The samples are drawn here with Pillow (announcement-like cards with lines of text, and photo-like
pictures made of smooth gradients, shapes and sensor noise), plus the bad payloads the worker must
dead-letter: non-image bytes, a truncated JPEG, and a decompression bomb (a tiny PNG that declares a
huge canvas).
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import struct
import sys
import threading
import time
import uuid
import zlib
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from schemas.events import ImageUploaded

_PHRASES = (
    "TEMPORARILY CLOSED",
    "Shipping notice",
    "Year-end holidays",
    "Please read before ordering",
    "Size chart",
    "Restock next week",
    "Thank you for visiting",
    "Orders ship in 3-5 days",
)


def card_image(rng: np.random.Generator, size: tuple[int, int] = (480, 480)) -> Image.Image:
    """An announcement card: a flat or two-tone background with several lines of text."""
    light = rng.random() < 0.7
    base = tuple(int(v) for v in (rng.integers(200, 256, 3) if light else rng.integers(0, 60, 3)))
    ink = (20, 20, 20) if light else (240, 240, 240)
    image = Image.new("RGB", size, base)
    draw = ImageDraw.Draw(image)
    lines = rng.choice(len(_PHRASES), size=int(rng.integers(2, 5)), replace=False)
    y = size[1] * 0.15
    for index in lines:
        font = ImageFont.load_default(size=int(rng.integers(24, 44)))
        draw.text((size[0] * 0.08, y), _PHRASES[int(index)], fill=ink, font=font)
        y += size[1] * 0.18
    return image


def photo_image(rng: np.random.Generator, size: tuple[int, int] = (480, 480)) -> Image.Image:
    """A photo-like picture: a smooth colour gradient, a few soft shapes, and sensor noise."""
    height, width = size[1], size[0]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = (xx / width * rng.uniform(0.2, 1.0) + yy / height * rng.uniform(0.2, 1.0))[..., None] / 2
    array = c0 * (1 - t) + c1 * t
    image = Image.fromarray(array.clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 6))):
        x0, y0 = rng.uniform(0, width * 0.7), rng.uniform(0, height * 0.7)
        x1, y1 = x0 + rng.uniform(40, width * 0.5), y0 + rng.uniform(40, height * 0.5)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(1.5, 4.0))))
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8), "RGB")


def encode_jpeg(image: Image.Image, quality: int = 88) -> bytes:
    """JPEG bytes of an image."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def decompression_bomb_png(side: int = 30_000) -> bytes:
    """A small PNG whose header declares `side` x `side` pixels (about 1 KB on the wire)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit greyscale
    # Only the first rows exist; the worker must refuse the image from its header alone.
    rows = zlib.compress(b"\x00" * (side + 1) * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


@dataclass(frozen=True)
class SampleSet:
    """Files written by `write_samples`, as names relative to the folder."""

    cards: list[str]
    photos: list[str]
    not_image: str
    truncated: str
    bomb: str


def write_samples(
    directory: Path, *, cards: int, photos: int, seed: int = 0, simple: bool = False
) -> SampleSet:
    """Write card and photo JPEGs plus the bad payloads into `directory`.

    The pictures come from the data package's demo generator (held-out card layouts and evaluation-only
    photo sources, so the model has not seen them); `simple=True`, or a machine without the generator's
    fonts, draws simpler ones here.
    """
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if not simple:
        try:
            from model.data.dataset_errors import DatasetError
            from model.data.demo_images import write_demo_images

            try:
                written = write_demo_images(directory, cards, photos, seed)
            except DatasetError:
                written = []
        except ImportError:
            written = []
        if written:
            names = [path.name for path in written]
            card_names = [name for name in names if name.startswith("card-")]
            photo_names = [name for name in names if not name.startswith("card-")]
            return _write_bad_payloads(directory, rng, card_names, photo_names)
    card_names, photo_names = [], []
    for index in range(cards):
        name = f"card-{index:04d}.jpg"
        (directory / name).write_bytes(encode_jpeg(card_image(rng)))
        card_names.append(name)
    for index in range(photos):
        name = f"photo-{index:04d}.jpg"
        (directory / name).write_bytes(encode_jpeg(photo_image(rng)))
        photo_names.append(name)
    return _write_bad_payloads(directory, rng, card_names, photo_names)


def _write_bad_payloads(
    directory: Path, rng: np.random.Generator, card_names: list[str], photo_names: list[str]
) -> SampleSet:
    (directory / "not-an-image.jpg").write_bytes(b"<html><body>this is not an image</body></html>\n" * 4)
    whole = encode_jpeg(photo_image(rng))
    (directory / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    (directory / "bomb.png").write_bytes(decompression_bomb_png())
    return SampleSet(card_names, photo_names, "not-an-image.jpg", "truncated.jpg", "bomb.png")


class _QuietHandler(SimpleHTTPRequestHandler):
    # Keep-alive, as a CDN would; HTTP/1.0 would open a connection per image.
    protocol_version = "HTTP/1.1"
    # The handler writes the headers and the body in separate sends; with Nagle's algorithm on, the body
    # waits for the client's delayed ACK of the headers (about 40 ms on Linux) on every keep-alive
    # request, which capped the server near 25 answers per second per connection.
    disable_nagle_algorithm = True
    delay_s = 0.0  # set per server: simulated network latency before each answer

    def do_GET(self) -> None:
        if self.delay_s:
            time.sleep(self.delay_s)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        del format, args


class _Server(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: a burst of concurrent downloads overflows it and the
    # dropped connection attempts are retried by TCP only after a second, which looks like a slow worker.
    request_queue_size = 512
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that hangs up mid-answer (a cancelled or timed-out download) is normal here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class ImageServer:
    """Serves a folder over HTTP on 127.0.0.1 from a daemon thread; a context manager."""

    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int = 0, delay_s: float = 0.0) -> None:
        """Bind to `host:port` (0 = a free port); `delay_s` delays every answer (simulated latency)."""
        handler_class = type("Handler", (_QuietHandler,), {"delay_s": delay_s})
        handler = functools.partial(handler_class, directory=str(directory))
        self._server = _Server((host, port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="alocc-images", daemon=True)

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, name: str) -> str:
        """URL of one served file."""
        return f"{self.base_url}/{name}"

    def start(self) -> ImageServer:
        """Start serving; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ImageServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_main(argv: list[str] | None = None) -> int:
    """`python -m tools.sample_images FOLDER [--delay-ms N]`: serve a folder; print the base URL, then serve.

    The benchmark runs the image server in its own process, so serving images does not compete with the
    worker for the worker process's interpreter lock (a CDN would not either).
    """
    import argparse

    parser = argparse.ArgumentParser(description=serve_main.__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    server = ImageServer(args.folder, delay_s=args.delay_ms / 1000)
    print(server.base_url, flush=True)
    try:
        server._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(serve_main())


def make_event(
    image_id: str, url: str, *, shop_id: str = "sample-shop", uploaded_at: dt.datetime | None = None
) -> bytes:
    """One serialised image-uploaded event for `url`, as the demo, the benchmark and tests produce it."""
    return (
        ImageUploaded(
            schema_version=1,
            event_id=f"ev-{uuid.uuid4().hex[:12]}",
            image_id=image_id,
            item_id=f"item-{image_id}",
            shop_id=shop_id,
            image_url=url,
            uploaded_at=uploaded_at or dt.datetime.now(dt.UTC),
        )
        .model_dump_json()
        .encode()
    )
