"""Non-card samples: the smooth and the structured training negatives."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from model.data import photos, samples, splits, structured
from model.data.cards import CardGenerator
from model.data.fonts import Family
from model.data.splits import Role


def _edge_density(image: np.ndarray) -> float:
    gray = image.astype(np.float32).mean(axis=2)
    return float((np.abs(np.diff(gray, axis=1)) > 30).mean())


def _draw_twice(draw: Callable[..., samples.OtherSample], seeds: int = 12) -> list[samples.OtherSample]:
    """One sample per seed from `draw` on the TRAIN files, each checked to be reproducible, RGB, 128 px."""
    files = splits.role_files(Role.TRAIN)
    drawn = []
    for seed in range(seeds):
        a = draw(np.random.default_rng(seed), files, 128)
        b = draw(np.random.default_rng(seed), files, 128)
        assert a.image.tobytes() == b.image.tobytes()
        assert max(a.image.size) == 128
        assert a.image.mode == "RGB"
        drawn.append(a)
    return drawn


def _train_scene_sources() -> set[str]:
    return {name for name, _ in splits.role_files(Role.TRAIN).files(photos.PhotoKind.SCENE)}


def test_soft_scene_is_deterministic_sized_and_from_training_files() -> None:
    drawn = _draw_twice(samples.soft_scene)
    assert all(a.kind is samples.OtherKind.PHOTO for a in drawn)
    assert all(a.source == "synthetic-sky" or a.source in _train_scene_sources() for a in drawn)
    assert {a.source == "synthetic-sky" for a in drawn} == {True, False}  # skies and scene views


def test_soft_scenes_carry_far_fewer_edges_than_cards() -> None:
    # The point of these negatives: smooth, text-free pictures, unlike any card.
    files = splits.role_files(Role.TRAIN)
    soft = [
        _edge_density(np.asarray(samples.soft_scene(np.random.default_rng(s), files, 128).image))
        for s in range(16)
    ]
    gen = CardGenerator(Family.TRAIN, size=128)
    card = [_edge_density(np.asarray(gen.render(s)[0])) for s in range(16)]
    assert float(np.median(soft)) < float(np.median(card))


def test_structured_scenes_are_deterministic_sized_and_of_both_arrangements() -> None:
    drawn = _draw_twice(samples.structured_scene)
    assert all(a.source in _train_scene_sources() for a in drawn)
    assert not any(a.word for a in drawn)  # text-free by construction
    assert {a.arrangement for a in drawn} == {"item_set", "slats"}


def test_slats_repeat_along_one_axis() -> None:
    # Vertical slats: the column profile alternates between planks and gaps, so it varies far
    # more across the picture than the row profile does along it.
    scene = photos.load(splits.role_files(Role.TRAIN).files(photos.PhotoKind.SCENE)[0][1])
    checked = 0
    for seed in range(8):
        rng = np.random.default_rng(seed)
        if rng.random() >= 0.6:
            continue  # a horizontal draw; the first roll decides the direction
        img = np.asarray(structured.slats(np.random.default_rng(seed), (128, 96), scene), np.float32)
        gray = img.mean(axis=2)
        across = np.abs(np.diff(gray.mean(axis=0))).max()
        along = np.abs(np.diff(gray.mean(axis=1))).max()
        assert across > along
        checked += 1
    assert checked >= 3
