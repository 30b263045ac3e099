"""Non-card samples: the smooth training negatives (wide defocused scenes and skies)."""

from __future__ import annotations

import numpy as np

from model.data import photos, samples, splits
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
