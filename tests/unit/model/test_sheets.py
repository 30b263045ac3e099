"""The sheet route's search: a tilted notice in a textured scene is found by its corners and straightened."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from model.sheets import SheetSearch, find_sheets, is_empty_slot, sheet_pixels, straighten, work_picture

# A tilted sheet in a 256 x 192 scene: top left, top right, bottom right, bottom left.
CORNERS = np.array([[60.0, 40.0], [200.0, 52.0], [192.0, 150.0], [52.0, 138.0]], dtype=np.float32)


def _scene(seed: int = 0) -> Image.Image:
    """Gravel-like blocks of random grey, and a light sheet with dark lines of 'text' on it."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(40, 200, (24, 32, 1), dtype=np.uint8).repeat(3, axis=2)
    scene = Image.fromarray(blocks).resize((256, 192), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(scene)
    draw.polygon([tuple(point) for point in CORNERS], fill=(236, 228, 210))
    for row in range(5):  # lines of text run along the sheet's top edge
        y = 62 + 16 * row
        draw.line([(72, y + 1.2 * row), (178, y + 9 + 1.2 * row)], fill=(30, 30, 40), width=4)
    return scene


def test_a_tilted_sheet_in_a_textured_scene_is_found_by_its_corners() -> None:
    rgb = np.asarray(_scene(), dtype=np.uint8)
    sheets = find_sheets(rgb)
    assert 1 <= len(sheets) <= SheetSearch().slots
    errors = [float(np.abs(sheet - CORNERS).max()) for sheet in sheets]
    assert min(errors) <= 4.0, errors  # within a few pixels of the true corners
    assert all(sheet.shape == (4, 2) and sheet.dtype == np.float32 for sheet in sheets)


def test_the_straightened_sheet_is_the_sheet_and_its_text_not_the_scene() -> None:
    rgb = np.asarray(_scene(), dtype=np.uint8)
    flat = straighten(rgb, CORNERS, 48)
    assert flat.shape == (48, 48, 3) and flat.dtype == np.uint8
    grey = flat.mean(axis=2)
    # Mostly the sheet's light ground, with the dark lines on it; none of the scene's mid greys dominate.
    assert (grey > 200).mean() > 0.5
    assert (grey < 80).mean() > 0.05


def test_sheet_pixels_fill_the_slots_largest_first_and_leave_the_rest_empty() -> None:
    pixels = sheet_pixels(_scene(), 32)
    assert pixels.shape == (SheetSearch().slots, 32, 32, 3)
    empty = is_empty_slot(pixels)
    assert not empty[0]
    # Filled slots come first; the empty ones after them are all zero.
    assert list(empty) == sorted(empty)
    assert not pixels[empty].any()


def test_a_picture_without_sheets_gives_empty_slots() -> None:
    plain = Image.new("RGB", (300, 200), (128, 140, 150))
    assert find_sheets(np.asarray(plain, dtype=np.uint8)) == []
    assert is_empty_slot(sheet_pixels(plain, 16)).all()


def test_the_search_works_at_its_work_side_whatever_the_upload_size() -> None:
    large = _scene().resize((2560, 1920), Image.Resampling.BICUBIC)
    assert work_picture(large, SheetSearch()).shape == (192, 256, 3)
    sheets = find_sheets(work_picture(large, SheetSearch()))
    assert min(float(np.abs(sheet - CORNERS).max()) for sheet in sheets) <= 5.0


def test_is_empty_slot_takes_torch_tensors_too() -> None:
    import torch

    slots = torch.zeros((3, 4, 4, 3), dtype=torch.uint8)
    slots[1, 0, 0, 0] = 1
    assert list(is_empty_slot(slots)) == [True, False, True]


def test_the_search_round_trips_through_json_and_refuses_nonsense() -> None:
    search = SheetSearch(closings=(0, 5), slots=4)
    assert SheetSearch.from_json(search.to_json()) == search
    assert SheetSearch.from_json({}) == SheetSearch()
    with pytest.raises(ValueError):
        SheetSearch(min_area=0.5, max_area=0.4)
    with pytest.raises(ValueError):
        SheetSearch(slots=0)


def test_a_picture_opencv_cannot_search_holds_no_sheet_instead_of_failing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import cv2

    from model import sheets

    def broken(*_args: object) -> None:
        raise cv2.error("simulated")

    monkeypatch.setattr(sheets, "find_sheets", broken)
    assert is_empty_slot(sheet_pixels(_scene(), 16)).all()
    monkeypatch.undo()
    monkeypatch.setattr(sheets, "straighten", broken)
    assert is_empty_slot(sheet_pixels(_scene(), 16)).all()


def test_odd_pictures_search_without_error() -> None:
    rng = np.random.default_rng(0)
    for width, height in [(1, 1), (1, 500), (500, 1), (3, 700), (20000, 10), (7, 7)]:
        noise = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        assert sheet_pixels(noise, 16).shape == (SheetSearch().slots, 16, 16, 3)


def test_the_flat_sheet_is_the_whole_sheet_at_the_readers_size() -> None:
    from model.sheets import flat_sheet

    rgb = np.asarray(_scene(), dtype=np.uint8)
    flat = flat_sheet(rgb, CORNERS, 512)
    assert flat.dtype == np.uint8 and max(flat.shape[:2]) == 512
    height, width = flat.shape[:2]
    assert 1.2 < width / height < 1.6  # the sheet is about 141 x 98 pixels: its own proportions, not a square
    grey = flat.mean(axis=2)
    assert (grey > 200).mean() > 0.5 and (grey < 80).mean() > 0.03  # the ground, and its lines


def test_the_sheet_to_read_is_found_again_in_the_same_picture() -> None:
    from model.decode import decode_sheet_picture
    from model.sheets import sheet_to_read

    buffer = io.BytesIO()
    _scene().save(buffer, format="PNG")
    search = SheetSearch()
    picture = decode_sheet_picture(buffer.getvalue(), 32, search)
    assert picture.shape[1] == search.work_side  # the scene is wide: its long side at the work side
    sheet = sheet_to_read(picture, 0, search, 256)
    assert sheet is not None and max(sheet.size) == 256
    assert sheet_to_read(picture, search.slots, search, 256) is None  # no sheet in that slot
    assert sheet_to_read(np.zeros((64, 64, 3), dtype=np.uint8), 0, search, 256) is None


def test_best_sheets_gives_each_pictures_best_slot() -> None:
    import torch

    from model.sheets import best_sheets

    class Member:
        """Scores a sheet by its mean brightness: the test picks which slot wins."""

        def member_d_x(self, images: torch.Tensor, member: int) -> np.ndarray:
            assert member == 1
            return ((images.float().mean(dim=(1, 2, 3)) + 1) / 2).numpy()  # normalised to -1..1

    sheets = torch.zeros((3, 4, 3, 8, 8), dtype=torch.uint8)
    sheets[0, 0], sheets[0, 2] = 40, 90  # the second filled slot is brighter
    sheets[1, 1] = 10  # one sheet, in slot 1
    scores, slots = best_sheets(Member(), sheets, 1)
    assert slots.tolist() == [2, 1, -1]  # the third picture holds no sheet
    assert scores[0] > scores[1] > scores[2] == 0.0
