"""Shapes and costs of every preset."""

from __future__ import annotations

import pytest
import torch

from model.errors import ConfigError, UnknownPreset
from model.networks import build_networks, inference_copy, network_cost
from model.presets import PRESETS, NetworkSpec, get_preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_maps_images_to_images_and_logits(name: str) -> None:
    spec = PRESETS[name]
    r, d = build_networks(spec)
    # The meta device checks shapes without computing (the seed R costs ~20 GFLOP per image).
    r, d = r.to_empty(device="meta"), d.to_empty(device="meta")
    x = torch.empty(2, 3, spec.input_size, spec.input_size, device="meta")
    assert r(x).shape == (2, 3, spec.input_size, spec.input_size)
    assert d(x).shape == (2,)


def test_seed_matches_the_blog_post() -> None:
    spec = PRESETS["seed"]
    r, d = build_networks(spec)
    norms = [m for m in r.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.eps == 0.8 for m in norms)  # BatchNorm2d(C, 0.8): the 0.8 is eps
    fixed = build_networks(PRESETS["seed-fixed"]).reconstructor
    assert all(m.eps == 1e-5 for m in fixed.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert d.classifier.in_features == 512 * 9
    convs = [m for m in r.encoder if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512]
    assert all(c.stride == (1, 1) and c.kernel_size == (3, 3) for c in convs)


def test_seed_costs_match_hand_counted_multiply_adds() -> None:
    # Unpadded 3x3 convs: encoder outputs 62, 60, 58, 56 px; decoder inputs 56, 58, 60, 62 px.
    pairs = [(3, 64, 62), (64, 128, 60), (128, 256, 58), (256, 512, 56)]
    encoder_macs = sum(cin * cout * 9 * side * side for cin, cout, side in pairs)
    r_flops = 2 * 2 * encoder_macs  # the decoder mirrors the encoder exactly
    d_pairs = [(3, 64, 31), (64, 128, 15), (128, 256, 7), (256, 512, 3)]
    d_flops = 2 * (sum(cin * cout * 9 * s * s for cin, cout, s in d_pairs) + 512 * 9)
    r, d = build_networks(PRESETS["seed"])
    assert network_cost(r, 64).flops == r_flops
    assert network_cost(d, 64).flops == d_flops
    assert 19e9 < r_flops < 21e9 and 0.08e9 < d_flops < 0.1e9


def test_strided_width_and_size_are_configurable() -> None:
    spec = get_preset("strided", width=4, input_size=32)
    r, d = build_networks(spec)
    x = torch.randn(3, 3, 32, 32)
    assert r(x).shape == x.shape and d(x).shape == (3,)
    assert network_cost(r, 32).flops < network_cost(*build_networks(get_preset("strided"))[:1], 64).flops


def test_patch_mean_head_averages_cell_logits_and_ignores_where_text_is() -> None:
    spec = get_preset("strided", width=4, d_head="patch_mean")
    d = build_networks(spec).discriminator.eval()
    assert isinstance(d.classifier, torch.nn.Conv2d) and d.classifier.kernel_size == (1, 1)
    x = torch.randn(2, 3, 64, 64)
    cells = d.classifier(d.features(x))
    assert cells.shape == (2, 1, 8, 8)  # one logit per 8x8 cell at 64 px
    torch.testing.assert_close(d(x), cells.mean(dim=(1, 2, 3)))
    # Old cards have no d_head field: they load as the paper's flatten head.
    old = NetworkSpec.from_dict({k: v for k, v in spec.to_dict().items() if k != "d_head"})
    assert old.d_head == "flatten"
    assert NetworkSpec.from_dict(spec.to_dict()) == spec


def test_bad_presets_are_refused() -> None:
    with pytest.raises(UnknownPreset):
        get_preset("nope")
    with pytest.raises(ConfigError):
        NetworkSpec(architecture="strided", input_size=60, r_depth=3)
    with pytest.raises(ConfigError):
        get_preset("seed", width=8)
    with pytest.raises(ConfigError):
        get_preset("seed", d_head="patch_mean")
    with pytest.raises(ConfigError):
        get_preset("strided", d_head="max")
    with pytest.raises(ConfigError):
        get_preset("strided", d_members=0)


@pytest.mark.parametrize(
    "spec",
    [
        get_preset("strided", width=4, input_size=32),
        get_preset("strided", width=4, d_head="patch_mean"),
        get_preset("seed", input_size=32),  # R: BatchNorm after ReLU, nothing to fold
        get_preset("strided", width=4, input_size=32, d_members=3),
    ],
    ids=["strided", "patch_mean", "seed", "ensemble"],
)
def test_inference_copy_scores_like_the_trained_networks(spec: NetworkSpec) -> None:
    torch.manual_seed(0)
    networks = build_networks(spec)
    for module in networks:
        for layer in module.modules():
            if isinstance(layer, torch.nn.BatchNorm2d):  # non-trivial statistics to fold
                layer.running_mean.uniform_(-0.5, 0.5)
                layer.running_var.uniform_(0.5, 2.0)
                layer.weight.data.uniform_(0.5, 1.5)
                layer.bias.data.uniform_(-0.5, 0.5)
    r, d = networks
    x = torch.rand(4, 3, spec.input_size, spec.input_size) * 2 - 1
    r.eval(), d.eval()
    with torch.inference_mode():
        expected = (d(x), r(x))
        fast_r, fast_d = inference_copy(r), inference_copy(d)
        got = (fast_d(x), fast_r(x))
    for want, have in zip(expected, got, strict=True):
        torch.testing.assert_close(have, want, rtol=1e-4, atol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast_d.modules())
    r_folded = spec.architecture != "seed"
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in fast_r.modules()) is not r_folded
    assert not any(isinstance(m, torch.nn.Dropout2d) for m in fast_d.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())  # the original is untouched
