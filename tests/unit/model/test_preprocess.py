"""The one preprocessing function: modes, orientation, limits and bad bytes."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

from model.decode import decode_quadrants
from model.errors import CorruptImage, ImageError, ImageTooLarge, UnsupportedImageFormat
from model.preprocess import ImageLimits, normalise, preprocess, preprocess_uint8


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def pixel(tensor: torch.Tensor, y: int, x: int) -> tuple[int, ...]:
    return tuple(int(v) for v in tensor[:, y, x])


def test_output_contract() -> None:
    out = preprocess(encode(Image.new("RGB", (80, 60), (255, 0, 0)), "PNG"), 32)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    assert out.min() >= -1.0 and out.max() <= 1.0
    assert torch.allclose(out[:, 0, 0], torch.tensor([1.0, -1.0, -1.0]))


def test_rgba_is_flattened_on_white() -> None:
    image = Image.new("RGBA", (20, 20), (0, 0, 0, 0))  # fully transparent black
    image.paste((0, 0, 255, 255), (0, 0, 10, 20))  # opaque blue left half
    out = preprocess_uint8(encode(image, "PNG"), 20)
    assert pixel(out, 10, 2) == (0, 0, 255)
    assert pixel(out, 10, 17) == (255, 255, 255)


def test_palette_with_transparency() -> None:
    image = Image.new("P", (16, 16), 0)
    image.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    image.paste(1, (8, 0, 16, 16))
    data = encode(image, "PNG", transparency=0)
    out = preprocess_uint8(data, 16)
    assert pixel(out, 8, 2) == (255, 255, 255)  # transparent index 0 -> white, not black
    assert pixel(out, 8, 13) == (0, 255, 0)
    gif = preprocess_uint8(encode(image, "GIF", transparency=0), 16)
    assert pixel(gif, 8, 2) == (255, 255, 255)


def test_cmyk_jpeg() -> None:
    image = Image.new("CMYK", (24, 24), (0, 255, 255, 0))  # pure red in CMYK
    out = preprocess_uint8(encode(image, "JPEG", quality=95), 24)
    r, g, b = pixel(out, 12, 12)
    assert r > 200 and g < 50 and b < 50


def test_sixteen_bit_greyscale() -> None:
    array = np.full((16, 16), 65535, dtype=np.uint16)
    array[:, :8] = 0
    image = Image.fromarray(array)  # mode I;16
    out = preprocess_uint8(encode(image, "PNG"), 16)
    assert pixel(out, 4, 2) == (0, 0, 0)
    assert pixel(out, 4, 13) == (255, 255, 255)
    mode_i = Image.fromarray(array.astype(np.int32))  # mode I, 0..65535
    assert pixel(preprocess_uint8(mode_i, 16), 4, 13) == (255, 255, 255)


def test_grayscale_and_bilevel() -> None:
    grey = preprocess_uint8(encode(Image.new("L", (10, 10), 128), "JPEG"), 10)
    assert len(set(pixel(grey, 5, 5))) == 1
    bilevel = preprocess_uint8(encode(Image.new("1", (10, 10), 1), "BMP"), 10)
    assert pixel(bilevel, 5, 5) == (255, 255, 255)


def test_exif_orientation_is_applied() -> None:
    # Stored 40 wide x 20 high: left half red, right half blue. Orientation 6 = rotate 90 degrees
    # clockwise for display, so the displayed image is 20 x 40 with red on top.
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(image, "JPEG", exif=exif, quality=95)
    out = preprocess_uint8(data, 20)  # centre square of the 20 x 40 upright image
    top, bottom = pixel(out, 1, 10), pixel(out, 18, 10)
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60


def test_centre_crop_keeps_aspect() -> None:
    image = Image.new("RGB", (90, 30), (255, 0, 0))
    image.paste((0, 255, 0), (30, 0, 60, 30))  # the centre third is green
    out = preprocess_uint8(encode(image, "PNG"), 30)
    assert pixel(out, 15, 1) == (0, 255, 0) and pixel(out, 15, 28) == (0, 255, 0)


def test_large_jpeg_uses_draft_and_matches_size() -> None:
    image = Image.new("RGB", (2000, 1500), (10, 200, 30))
    out = preprocess_uint8(encode(image, "JPEG"), 64)
    assert out.shape == (3, 64, 64)


def test_decompression_bomb_raises_image_too_large() -> None:
    bomb = encode(Image.new("L", (4000, 4000), 0), "PNG")  # tiny file, 16 Mpx
    assert len(bomb) < 100_000
    with pytest.raises(ImageTooLarge):
        preprocess(bomb, 32, limits=ImageLimits(max_pixels=1_000_000))


def test_byte_cap() -> None:
    data = encode(Image.new("RGB", (10, 10)), "PNG")
    with pytest.raises(ImageTooLarge):
        preprocess(data, 8, limits=ImageLimits(max_bytes=len(data) - 1))


def test_truncated_bytes_raise_corrupt_image() -> None:
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    for fmt in ("JPEG", "PNG"):
        data = encode(noisy, fmt)
        with pytest.raises(CorruptImage):
            preprocess(data[: len(data) // 2], 32)
    with pytest.raises(CorruptImage):
        preprocess(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, 32)


def test_unsupported_formats() -> None:
    with pytest.raises(UnsupportedImageFormat):
        preprocess(b"definitely not an image", 32)
    tiff = encode(Image.new("RGB", (10, 10)), "TIFF")
    with pytest.raises(UnsupportedImageFormat):
        preprocess(tiff, 8)
    allowed = ImageLimits(allowed_formats=frozenset({"TIFF"}))
    assert preprocess(tiff, 8, limits=allowed).shape == (3, 8, 8)
    with pytest.raises(UnsupportedImageFormat):
        preprocess(encode(Image.new("RGB", (10, 10)), "PNG"), 8, limits=allowed)


def test_error_names_are_reasons() -> None:
    for cls in (CorruptImage, ImageTooLarge, UnsupportedImageFormat):
        assert issubclass(cls, ImageError)


def test_normalise_is_the_same_arithmetic_as_preprocess() -> None:
    data = encode(Image.effect_mandelbrot((50, 40), (-2, -1.5, 1, 1.5), 50).convert("RGB"), "PNG")
    assert torch.equal(preprocess(data, 24), normalise(preprocess_uint8(data, 24)))


def test_thread_safe() -> None:
    rng = np.random.default_rng(1)
    blobs = [
        encode(Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)), "JPEG") for _ in range(8)
    ]
    expected = [preprocess(b, 32) for b in blobs]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda b: preprocess(b, 32), blobs * 4))
    for i, result in enumerate(results):
        assert torch.equal(result, expected[i % len(blobs)])


def test_pillow_bomb_error_is_mapped_even_with_a_generous_limit() -> None:
    import struct
    import zlib

    # A PNG header claiming 30000 x 30000 pixels (900 Mpx): Pillow's own bomb check fires in open().
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )
    with pytest.raises(ImageTooLarge):
        preprocess(png, 32, limits=ImageLimits(max_pixels=10**12))


@pytest.mark.parametrize("formats", [frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP"}), frozenset({"PNG"})])
def test_warm_up_decodes_only_allowed_formats(
    formats: frozenset[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import model.decode

    seen: list[str | None] = []
    decode = model.decode.decode_pixels

    def recording(source: bytes, size: int, *, limits: ImageLimits) -> object:
        seen.append(model.decode.sniff_format(source))
        return decode(source, size, limits=limits)

    monkeypatch.setattr(model.decode, "decode_pixels", recording)
    model.decode.warm_up(16, ImageLimits(allowed_formats=formats))
    assert seen and set(seen) <= formats


def _four_colours(width: int, height: int) -> Image.Image:
    image = Image.new("RGB", (width, height))
    half_w, half_h = width // 2, height // 2
    for (x, y), colour in zip(
        ((0, 0), (half_w, 0), (0, half_h), (half_w, half_h)),
        ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)),
        strict=True,
    ):
        image.paste(colour, (x, y, x + half_w, y + half_h))
    return image


def test_quadrants_of_a_square_picture_are_its_quarters() -> None:
    parts = decode_quadrants(encode(_four_colours(400, 400), "PNG"), 32)
    assert parts.shape == (4, 32, 32, 3) and parts.dtype == np.uint8
    # Away from the seams each quarter is one flat colour, in reading order.
    centres = [tuple(int(v) for v in part[16, 16]) for part in parts]
    assert centres == [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]


def test_quadrants_of_a_wide_picture_are_its_ends() -> None:
    image = Image.new("RGB", (800, 200), (255, 255, 255))
    image.paste((0, 0, 0), (0, 0, 100, 200))  # a dark band at the left end only
    parts = decode_quadrants(encode(image, "PNG"), 32)
    assert parts.shape == (4, 32, 32, 3)
    assert parts[0, :, :5].max() == 0 and parts[2, :, :5].max() == 0  # left corners see the band
    assert parts[1].min() == 255 and parts[3].min() == 255  # right corners do not


def test_quadrants_share_the_checks_of_decode_pixels() -> None:
    with pytest.raises(UnsupportedImageFormat):
        decode_quadrants(b"not an image", 32)
    with pytest.raises(ImageTooLarge):
        decode_quadrants(encode(Image.new("RGB", (64, 64)), "PNG"), 32, limits=ImageLimits(max_pixels=100))
    with pytest.raises(ValueError):
        decode_quadrants(encode(Image.new("RGB", (64, 64)), "PNG"), 0)


def test_quadrants_of_an_extreme_aspect_ratio_stay_small_and_fast() -> None:
    # Resizing the whole of a 20000 x 10 picture to a short side of 64 would make 128 million pixels; only
    # the four corner boxes are resampled.
    image = Image.new("RGB", (20000, 10), (255, 255, 255))
    image.paste((0, 0, 0), (0, 0, 5, 10))
    parts = decode_quadrants(encode(image, "PNG"), 32)
    assert parts.shape == (4, 32, 32, 3)
    assert parts[0].mean() < parts[1].mean()  # the left corners see the dark end, the right ones do not
