"""Non-card samples: the smooth and the structured training negatives."""

from __future__ import annotations

import numpy as np

from model.data import photos, samples, splits, structured
from model.data.cards import CardGenerator
from model.data.fonts import Family
from model.data.splits import Role


def _edge_density(image: np.ndarray) -> float:
    gray = image.astype(np.float32).mean(axis=2)
    return float((np.abs(np.diff(gray, axis=1)) > 30).mean())


def test_soft_scene_is_deterministic_sized_and_from_training_files() -> None:
    files = splits.role_files(Role.TRAIN)
    train_names = {name for name, _ in files.files(photos.PhotoKind.SCENE)}
    seen = set()
    for seed in range(12):
        a = samples.soft_scene(np.random.default_rng(seed), files, 128)
        b = samples.soft_scene(np.random.default_rng(seed), files, 128)
        assert a.image.tobytes() == b.image.tobytes()
        assert max(a.image.size) == 128
        assert a.image.mode == "RGB"
        assert a.kind is samples.OtherKind.PHOTO
        assert a.source == "synthetic-sky" or a.source in train_names
        seen.add(a.source == "synthetic-sky")
    assert seen == {True, False}  # both skies and scene views are drawn


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
    files = splits.role_files(Role.TRAIN)
    train_names = {name for name, _ in files.files(photos.PhotoKind.SCENE)}
    arrangements = set()
    for seed in range(12):
        a = samples.structured_scene(np.random.default_rng(seed), files, 128)
        b = samples.structured_scene(np.random.default_rng(seed), files, 128)
        assert a.image.tobytes() == b.image.tobytes()
        assert max(a.image.size) == 128
        assert a.image.mode == "RGB"
        assert a.source in train_names
        assert not a.word  # text-free by construction
        arrangements.add(a.arrangement)
    assert arrangements == {"item_set", "slats"}


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
