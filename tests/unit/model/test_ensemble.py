"""Ensembles of discriminators: the mean logit, assembling checkpoints, and what is refused."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from model.checkpoint import ModelCard, load_checkpoint, save_checkpoint
from model.ensemble import assemble
from model.errors import ConfigError
from model.networks import AloccNetworks, DiscriminatorEnsemble, build_networks, resize_input
from model.presets import NetworkSpec, get_preset
from model.scoring import Scorer

TinyModelFactory = Callable[..., tuple[AloccNetworks, ModelCard]]


def test_an_ensemble_scores_the_mean_of_its_members_logits() -> None:
    torch.manual_seed(0)
    d = build_networks(get_preset("strided", width=4, input_size=32, d_members=3)).discriminator
    assert isinstance(d, DiscriminatorEnsemble)
    d.eval()
    x = torch.rand(5, 3, 32, 32) * 2 - 1
    with torch.inference_mode():
        members = torch.stack([member(x) for member in d.members])
        torch.testing.assert_close(d(x), members.mean(dim=0))
    assert not torch.equal(members[0], members[1])  # members are independent networks


def _save_tiny(tmp_path: Path, tiny_model: TinyModelFactory, name: str, seed: int) -> Path:
    networks, card = tiny_model(seed=seed)
    save_checkpoint(tmp_path / name, networks, card)
    return tmp_path / name


def test_assembled_checkpoint_keeps_each_members_d_and_the_first_r(
    tmp_path: Path, tiny_model: TinyModelFactory
) -> None:
    a = _save_tiny(tmp_path, tiny_model, "a", seed=1)
    b = _save_tiny(tmp_path, tiny_model, "b", seed=2)
    card = assemble([a, b], tmp_path / "ab")
    assert card.spec.d_members == 2
    assert [m["model_version"] for m in card.training["ensemble_of"]] == [
        load_checkpoint(a)[1].model_version,
        load_checkpoint(b)[1].model_version,
    ]
    assert card.thresholds["d_x"].method == "uncalibrated"
    assert [m["model_version"] for m in card.metrics["members"]] == [
        m["model_version"] for m in card.training["ensemble_of"]
    ]

    (r_a, d_a), _ = load_checkpoint(a)
    (_, d_b), _ = load_checkpoint(b)
    (r_ab, d_ab), loaded = load_checkpoint(tmp_path / "ab")
    assert loaded.model_version == card.model_version
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    with torch.inference_mode():
        torch.testing.assert_close(d_ab(x), (d_a(x) + d_b(x)) / 2)
        torch.testing.assert_close(r_ab(x), r_a(x))
    # The serving path (BatchNorm folded into the convolutions) gives the same scores.
    scorer = Scorer.load(tmp_path / "ab", device="cpu")
    expected = torch.sigmoid((d_a(x) + d_b(x)) / 2)
    torch.testing.assert_close(torch.as_tensor(scorer.score(x).scores), expected, rtol=1e-4, atol=1e-5)


def test_assemble_refuses_one_member_ensembles_and_mismatched_networks(
    tmp_path: Path, tiny_model: TinyModelFactory
) -> None:
    a = _save_tiny(tmp_path, tiny_model, "a", seed=1)
    with pytest.raises(ConfigError, match="at least two"):
        assemble([a], tmp_path / "out")
    networks, card = tiny_model(width=8, seed=3)
    wide = tmp_path / "wide"
    save_checkpoint(wide, networks, dataclasses.replace(card, network=card.spec.to_dict()))
    with pytest.raises(ConfigError, match="another network"):
        assemble([a, wide], tmp_path / "out")
    assemble([a, a], tmp_path / "aa")
    with pytest.raises(ConfigError, match="ensemble already"):
        assemble([tmp_path / "aa", a], tmp_path / "out")


def test_assemble_takes_r_only_from_a_first_member_that_trained_it(
    tmp_path: Path, tiny_model: TinyModelFactory
) -> None:
    a = _save_tiny(tmp_path, tiny_model, "a", seed=1)
    networks, card = tiny_model(seed=2)
    d_only = tmp_path / "d_only"
    save_checkpoint(d_only, networks, dataclasses.replace(card, training={"train_reconstructor": False}))
    with pytest.raises(ConfigError, match="without R"):
        assemble([d_only, a], tmp_path / "out")
    assert assemble([a, d_only], tmp_path / "ok").spec.d_members == 2


def test_each_member_keeps_its_own_metrics_entry_even_when_listed_twice(
    tmp_path: Path, tiny_model: TinyModelFactory
) -> None:
    a = _save_tiny(tmp_path, tiny_model, "a", seed=1)
    card = assemble([a, a], tmp_path / "aa")
    assert len(card.metrics["members"]) == 2
    assert card.metrics["members"][0] == card.metrics["members"][1]


def test_members_trained_at_different_sizes_each_read_the_input_at_their_own_side(
    tmp_path: Path, tiny_model: TinyModelFactory
) -> None:
    small = _save_tiny(tmp_path, tiny_model, "small", seed=1)  # 32 px, gives R
    networks, card = tiny_model(seed=2, input_size=48)
    save_checkpoint(tmp_path / "large", networks, card)
    assembled = assemble([small, tmp_path / "large"], tmp_path / "mixed")
    assert (assembled.input_size, assembled.spec.member_sizes) == (48, (32, 48))

    (r_small, d_small), _ = load_checkpoint(small)
    (_, d_large), _ = load_checkpoint(tmp_path / "large")
    (r_mixed, d_mixed), loaded = load_checkpoint(tmp_path / "mixed")
    assert loaded.spec == assembled.spec  # the sizes survive the card's JSON
    x = torch.rand(4, 3, 48, 48) * 2 - 1
    with torch.inference_mode():
        expected = (d_small(resize_input(x, 32)) + d_large(x)) / 2
        torch.testing.assert_close(d_mixed(x), expected)
        # R runs at the side it was trained at and hands back an image of the input's side.
        torch.testing.assert_close(r_mixed(x), resize_input(r_small(resize_input(x, 32)), 48))
    scorer = Scorer.load(tmp_path / "mixed", device="cpu")
    torch.testing.assert_close(
        torch.as_tensor(scorer.score(x).scores), torch.sigmoid(expected), rtol=1e-4, atol=1e-5
    )


def test_member_sizes_must_name_one_side_per_member_and_reach_the_input_size() -> None:
    NetworkSpec("strided", input_size=48, width=4, r_depth=3, d_members=2, member_sizes=(32, 48))
    with pytest.raises(ConfigError, match="one side per member"):
        NetworkSpec("strided", input_size=48, width=4, r_depth=3, d_members=3, member_sizes=(32, 48))
    with pytest.raises(ConfigError, match="largest must be input_size"):
        NetworkSpec("strided", input_size=64, width=4, r_depth=3, d_members=2, member_sizes=(32, 48))
    with pytest.raises(ConfigError, match="divisible"):  # R runs at the first member's side
        NetworkSpec("strided", input_size=48, width=4, r_depth=3, d_members=2, member_sizes=(36, 48))
