"""Training augmentation: shapes, no mirrored text, inversion flips light and dark, tilt and zoom-out."""

from __future__ import annotations

import pytest
import torch

from model.training_data import Augmenter


def _cards(n: int, value: int) -> torch.Tensor:
    images = torch.full((n, 3, 32, 32), value, dtype=torch.uint8)
    images[:, :, 10:12, 4:28] = 255 - value  # one "line of text"
    return images


def test_output_is_a_uint8_batch_of_the_same_shape() -> None:
    out = Augmenter(32, kind="photo", strength=2.0)(_cards(8, 200))
    assert out.dtype == torch.uint8 and out.shape == (8, 3, 32, 32)


@pytest.mark.parametrize(("p_invert", "dark"), [(0.0, False), (1.0, True)])
def test_inversion_turns_light_cards_dark(p_invert: float, dark: bool) -> None:
    torch.manual_seed(0)
    # strength 0: no colour jitter, so the background's brightness shows the inversion alone.
    out = Augmenter(32, kind="text", strength=0.0, p_invert=p_invert)(_cards(16, 240))
    background = out.float().mean(dim=(1, 2, 3))
    assert bool((background < 80).all()) is dark
    assert bool((background > 170).all()) is not dark


def _dark_columns(images: torch.Tensor) -> torch.Tensor:
    """How many columns of each image hold a dark pixel."""
    return (images.float().mean(dim=1) < 128).any(dim=1).sum(dim=1)


def test_zoom_out_shrinks_the_image_inside_the_frame() -> None:
    torch.manual_seed(0)
    cards = _cards(32, 240)  # a 24-column dark line on a light card
    out = Augmenter(32, kind="text", strength=0.0, max_zoom_out=3.0, p_geometry=1.0)(cards)
    columns = _dark_columns(out)
    assert bool((columns <= 25).all())
    assert columns.float().mean() < 18  # the side shrinks by a factor drawn from [1, 3]


def test_rotation_tilts_a_horizontal_line() -> None:
    torch.manual_seed(0)
    cards = _cards(16, 240)
    out = Augmenter(32, kind="text", strength=0.0, max_rotation_deg=30.0, p_geometry=1.0)(cards)
    dark_rows = (out.float().mean(dim=1) < 128).any(dim=2).sum(dim=1)
    assert dark_rows.float().mean() > 4  # the 2-row line now spans more rows


def test_tilt_inside_the_image_turns_the_window_and_never_leaves_the_image() -> None:
    torch.manual_seed(0)
    augmenter = Augmenter(32, kind="photo", max_tilt_deg=30.0, p_geometry=1.0)
    theta = augmenter._windows(2000)
    corners = torch.tensor([[-1.0, -1.0, 1.0], [-1.0, 1.0, 1.0], [1.0, -1.0, 1.0], [1.0, 1.0, 1.0]]).T
    mapped = theta @ corners  # (n, 2, 4): where the output's corners sample the image
    assert float(mapped.abs().max()) <= 1.0 + 1e-5
    assert float((theta[:, 0, 1].abs() > 0.05).float().mean()) > 0.5  # most windows are turned

    cards = _cards(16, 240)
    out = Augmenter(32, kind="text", strength=0.0, max_tilt_deg=30.0, p_geometry=1.0)(cards)
    dark_rows = (out.float().mean(dim=1) < 128).any(dim=2).sum(dim=1)
    assert dark_rows.float().mean() > 4  # the 2-row line now spans more rows


def test_tilt_inside_the_image_excludes_the_surround_jitter() -> None:
    with pytest.raises(ValueError, match="excludes"):
        Augmenter(32, kind="text", max_tilt_deg=5.0, max_rotation_deg=5.0)
    with pytest.raises(ValueError):
        Augmenter(32, kind="text", max_tilt_deg=-1.0)


@pytest.mark.parametrize(("rotation", "zoom"), [(-1.0, 1.0), (0.0, 0.9)])
def test_geometry_arguments_are_checked(rotation: float, zoom: float) -> None:
    with pytest.raises(ValueError):
        Augmenter(32, kind="text", max_rotation_deg=rotation, max_zoom_out=zoom)
