"""Training augmentation: shapes, text is never mirrored, inversion flips light and dark."""

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
