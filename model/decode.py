"""Image bytes -> a square uint8 RGB array: the decoding half of the shared preprocessing.

`decode_pixels(source, size)` is everything `model.preprocess.preprocess` does before the
arithmetic on tensors: checks (bytes, format, pixels), decode (JPEG draft mode), EXIF orientation,
mode conversion (alpha onto white) and the centre-crop resize. It imports neither torch nor the
networks, so the worker's decode processes stay small; `model.preprocess` wraps it for the model.

Resize policy: **centre crop to a square, then resize**. Announcement cards and product photos come in
many aspect ratios, and in our data the aspect ratio itself differs between the classes (generated
cards vs. camera photos). Letterboxing would add flat bars whose presence and width tell the model the
aspect ratio, and squashing would stretch strokes and objects by class-dependent amounts; both give the
model a shortcut that has nothing to do with "is this a text card". A centre crop keeps the pixel
statistics undistorted; the cost is losing the outer edges of very wide or tall images, where an
announcement still keeps its middle lines of text and a product photo usually keeps its product.

Thread safety: nothing here touches global Pillow state (no `Image.MAX_IMAGE_PIXELS` edits, no
`warnings` filters), so many threads may call `decode_pixels` at once; Pillow releases the GIL while
it decodes.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from model.errors import CorruptImage, ImageTooLarge, UnsupportedImageFormat

if TYPE_CHECKING:
    from model.sheets import SheetSearch

# Pillow format names, grouped by the family a user names in `allowed_formats`. Phone cameras write
# multi-picture JPEGs; Pillow's JPEG opener returns those with format "MPO".
_FORMAT_FAMILIES: dict[str, tuple[str, ...]] = {
    "JPEG": ("JPEG",),
    "PNG": ("PNG",),
    "WEBP": ("WEBP",),
    "GIF": ("GIF",),
    "BMP": ("BMP",),
    "TIFF": ("TIFF",),
}

# Magic numbers, to tell "a format we know but refuse" and "a known format whose data is broken"
# apart from "not an image at all".
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"),
    (b"WEBP", 8, "WEBP"),
    (b"BM", 0, "BMP"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
)

# What a broken image raises inside Pillow's decoders.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, ZeroDivisionError)


@dataclass(frozen=True)
class ImageLimits:
    """Per-call limits on what `preprocess` accepts.

    Attributes:
        max_bytes: Largest accepted encoded size in bytes.
        max_pixels: Largest accepted width*height, checked from the header before decoding.
            Keep it below Pillow's own `Image.MAX_IMAGE_PIXELS` (about 89 Mpx): between the two,
            Pillow emits a `DecompressionBombWarning` before our check rejects the image; above
            twice that value Pillow raises `DecompressionBombError`, which we map to `ImageTooLarge`.
        allowed_formats: Format families accepted (JPEG, PNG, WEBP, GIF, BMP, TIFF). TIFF is off by
            default: marketplace uploads do not need it and its decoders are a large attack surface.
    """

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000
    allowed_formats: frozenset[str] = field(
        default_factory=lambda: frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP"})
    )

    def pillow_formats(self) -> tuple[str, ...]:
        """Pillow format names that `Image.open` may try for these limits."""
        unknown = self.allowed_formats - set(_FORMAT_FAMILIES)
        if unknown:
            raise ValueError(f"unknown image formats in allowed_formats: {sorted(unknown)}")
        return tuple(name for family in sorted(self.allowed_formats) for name in _FORMAT_FAMILIES[family])


DEFAULT_LIMITS = ImageLimits()


def sniff_format(data: bytes) -> str | None:
    """Return the format family named by the magic number at the start of `data`, if any."""
    for magic, offset, family in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            if family == "WEBP" and data[:4] != b"RIFF":
                continue
            return family
    return None


def _open(data: bytes, limits: ImageLimits) -> Image.Image:
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"{len(data)} bytes exceeds the limit of {limits.max_bytes} bytes")
    family = sniff_format(data)
    if family is not None and family not in limits.allowed_formats:
        raise UnsupportedImageFormat(f"{family} images are not accepted")
    try:
        return Image.open(io.BytesIO(data), formats=limits.pillow_formats())
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc)) from exc
    except UnidentifiedImageError as exc:
        if family is None:
            raise UnsupportedImageFormat("bytes are not an image in an accepted format") from exc
        raise CorruptImage(f"{family} header could not be parsed") from exc
    except _DECODE_ERRORS as exc:
        raise CorruptImage(f"cannot open image: {exc}") from exc


def _check_pixels(image: Image.Image, limits: ImageLimits) -> None:
    width, height = image.size
    if width <= 0 or height <= 0:
        raise CorruptImage(f"image has an empty size {width}x{height}")
    if width * height > limits.max_pixels:
        raise ImageTooLarge(f"{width}x{height} pixels exceeds the limit of {limits.max_pixels} pixels")


def _high_bit_depth_to_l(image: Image.Image) -> Image.Image:
    """Map 16/32-bit integer or float greyscale to 8-bit 'L' by its nominal range."""
    array = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        array = array / 257.0
    elif image.mode == "F":
        array = array * 255.0 if array.size and float(array.max()) <= 1.0 else array
    elif array.size and float(array.max()) > 255.0:
        # Mode "I" is how Pillow opens 16-bit greyscale PNGs (values 0..65535).
        array = array / 257.0 if float(array.max()) <= 65535.0 else array * (255.0 / float(array.max()))
    return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), mode="L")


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB, compositing transparency onto white.

    Handles '1', 'L', 'P' (with or without a transparency entry), 'LA', 'PA', 'RGBA', 'RGBa',
    'CMYK', 'YCbCr', 'LAB', 'HSV' and the 16/32-bit greyscale modes 'I;16*', 'I', 'F'.
    """
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        image = _high_bit_depth_to_l(image)
        mode = image.mode
    has_alpha = mode in {"RGBA", "LA", "PA", "RGBa", "La"} or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "RGB":
        return image
    return image.convert("RGB")


def centre_square_resize(image: Image.Image, size: int) -> Image.Image:
    """The picture's centre square resized to `size` x `size` (the model's input; `model.sheets` cuts its
    straightened sheets to the model's input the same way)."""
    width, height = image.size
    side = min(width, height)
    left = (width - side) // 2
    top = (height - side) // 2
    # reducing_gap lets Pillow shrink by an integer factor first (fast, box filter) and finish with
    # bicubic, which keeps thin text strokes from aliasing.
    return image.resize(
        (size, size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side), reducing_gap=3.0
    )


def _load_rgb(source: bytes | Image.Image, limits: ImageLimits, draft_side: int) -> Image.Image:
    """Open (bytes), check the limits, decode at >= `draft_side` per side, orient, convert to RGB."""
    image = _open(source, limits) if isinstance(source, bytes | bytearray | memoryview) else source
    if not isinstance(image, Image.Image):
        raise TypeError(f"source must be bytes or a PIL image, not {type(source).__name__}")
    _check_pixels(image, limits)
    try:
        if image.format in {"JPEG", "MPO"}:
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale; the result is still >= draft_side per side,
            # so the final resize has enough pixels and large photos decode several times faster.
            image.draft("RGB", (draft_side, draft_side))
        image.load()
        return to_rgb(ImageOps.exif_transpose(image))
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc)) from exc
    except _DECODE_ERRORS as exc:
        raise CorruptImage(f"cannot decode image: {exc}") from exc


def decode_pixels(source: bytes | Image.Image, size: int, *, limits: ImageLimits | None = None) -> np.ndarray:
    """Decode, orient, convert and resize an image; return a `(size, size, 3)` uint8 RGB array.

    Raises:
        UnsupportedImageFormat: not an image, or a format outside `limits.allowed_formats`.
        ImageTooLarge: over the byte or pixel limit, or a decompression bomb.
        CorruptImage: truncated or undecodable data.
    """
    return _model_input(_load_for(source, size, limits), size)


def _load_for(source: bytes | Image.Image, size: int, limits: ImageLimits | None) -> Image.Image:
    """The picture loaded for a `size`-pixel model input: checked, and decoded at >= `2 * size` per side."""
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    return _load_rgb(source, limits or DEFAULT_LIMITS, size * 2)


def _model_input(image: Image.Image, size: int) -> np.ndarray:
    """The model's `(size, size, 3)` uint8 input from a loaded picture: its centre square, resized."""
    try:
        rgb = centre_square_resize(image, size)
    except _DECODE_ERRORS as exc:
        raise CorruptImage(f"cannot decode image: {exc}") from exc
    return np.array(rgb, dtype=np.uint8)  # (H, W, 3), a writable copy


QUADRANTS = 4


def _corner_squares(image: Image.Image, size: int) -> np.ndarray:
    """`(4, size, size, 3)`: the corner squares of `image` as if it were resized so its short side is
    `2 * size`: each is a square of half the short side at a corner, resized to `size`. Only those four
    boxes are resampled, so the work is bounded whatever the picture's aspect ratio (resizing a 20000 x 10
    picture whole to a short side of 192 would make 74 million pixels)."""
    width, height = image.size
    side = min(width, height) / 2
    corners = ((0.0, 0.0), (width - side, 0.0), (0.0, height - side), (width - side, height - side))
    try:
        return np.stack(
            [
                np.asarray(
                    image.resize(
                        (size, size),
                        Image.Resampling.BICUBIC,
                        box=(x, y, x + side, y + side),
                        reducing_gap=3.0,
                    ),
                    dtype=np.uint8,
                )
                for x, y in corners
            ]
        )
    except _DECODE_ERRORS as exc:
        raise CorruptImage(f"cannot decode image: {exc}") from exc


def decode_quadrants(
    source: bytes | Image.Image, size: int, *, limits: ImageLimits | None = None
) -> np.ndarray:
    """Decode like `decode_pixels`, and return the picture's four corner squares: `(4, size, size, 3)` uint8.

    The four squares of half the picture's short side at its corners (all of the picture, no centre crop),
    each resized to `size`: top left, top right, bottom left, bottom right. As if the picture were resized
    so its short side is `2 * size` and `size`-pixel squares cut from its corners. On a square picture they
    are its quarters; on a wide or tall one they cover its ends. The model sees each
    at the same scale as a whole card twice the size, so a notice printed across one part of a photograph
    (a caption strip, a panel beside the picture) fills a part the way a card fills the whole (see
    `model.quadrants`). Raises the same errors as `decode_pixels`.
    """
    return _corner_squares(_load_for(source, size, limits), size)


def decode_with_parts(
    source: bytes | Image.Image,
    size: int,
    *,
    limits: ImageLimits | None = None,
    sheets: SheetSearch | None = None,
) -> np.ndarray:
    """`(1 + QUADRANTS, size, size, 3)` uint8: the model's input (exactly `decode_pixels`'s), then the four
    corner squares (`decode_quadrants`), for a cascade with the quadrant route; with `sheets`, then the
    picture's sheets straightened (`model.sheets.sheet_pixels`: `sheets.slots` more, all zero where there is
    no sheet), for a cascade with the sheet route. The picture is decoded once, at `decode_pixels`'s draft
    size (at least `2 * size` per side), for all of them."""
    image = _load_for(source, size, limits)
    parts = [_model_input(image, size)[None], _corner_squares(image, size)]
    if sheets is not None:
        from model.sheets import sheet_pixels  # imports OpenCV: only where a cascade has the sheet route

        try:
            parts.append(sheet_pixels(image, size, sheets))
        except _DECODE_ERRORS as exc:
            raise CorruptImage(f"cannot decode image: {exc}") from exc
    return np.concatenate(parts)


def decode_sheet_picture(
    source: bytes | Image.Image, size: int, search: SheetSearch, *, limits: ImageLimits | None = None
) -> np.ndarray:
    """The picture `decode_with_parts` searches for sheets, as an `(H, W, 3)` uint8 array at the search's
    work side: decoded exactly as for the model's input of `size`, so a sheet found here is the one the
    worker's decode processes found (the verifier reads it: `model.sheets.sheet_to_read`). Raises the
    same errors as `decode_pixels`."""
    from model.sheets import work_picture

    image = _load_for(source, size, limits)
    try:
        return work_picture(image, search)
    except _DECODE_ERRORS as exc:
        raise CorruptImage(f"cannot decode image: {exc}") from exc


def decode_for_reading(
    source: bytes | Image.Image, long_side: int, *, limits: ImageLimits | None = None
) -> Image.Image:
    """Decode like `decode_pixels`, but keep the whole picture: RGB, its long side resized to `long_side`.

    What the text verifier reads: an OCR engine needs every part of the image and its aspect ratio, at a
    size where small text is legible. Raises the same errors as `decode_pixels`.
    """
    if long_side <= 0:
        raise ValueError(f"long_side must be positive, got {long_side}")
    image = _load_rgb(source, limits or DEFAULT_LIMITS, long_side)
    try:
        return long_side_resize(image, long_side)
    except _DECODE_ERRORS as exc:
        raise CorruptImage(f"cannot decode image: {exc}") from exc


def long_side_resize(image: Image.Image, long_side: int) -> Image.Image:
    """The picture resized (bicubic) so that its long side is `long_side`, its aspect ratio kept; the picture
    itself where it already is that size (what the verifier reads, and where `model.sheets` searches)."""
    width, height = image.size
    scale = long_side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0) if size != image.size else image


def warm_up(size: int, limits: ImageLimits | None = None) -> None:
    """Decode one small generated image in each allowed everyday format (JPEG, PNG, WebP).

    Pillow imports a format's plugin and the codec libraries set up on first use: in a fresh process
    the first JPEG costs about 13 ms against 0.6 ms afterwards. A worker calls this while it starts,
    so its first real images do not pay for it.
    """
    limits = limits or DEFAULT_LIMITS
    for name in ("JPEG", "PNG", "WEBP"):
        if name not in limits.allowed_formats:
            continue
        buffer = io.BytesIO()
        try:
            Image.new("RGB", (4 * size, 3 * size), (250, 250, 245)).save(buffer, name)
        except (KeyError, OSError):  # this Pillow build cannot write the format: nothing to warm
            continue
        decode_pixels(buffer.getvalue(), size, limits=limits)
