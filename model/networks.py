"""The ALOCC networks: the reconstructor R and the discriminator D.

R maps a (noisy) image to an image of the same shape; D maps an image to one **logit** per image
(higher = more like the trained class). The seed's D ends in a Sigmoid; here the sigmoid is applied
at scoring time instead, so training can use `BCEWithLogitsLoss` (stable, and safe under bf16).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torch.utils.flop_counter import FlopCounterMode

from model.presets import NetworkSpec

_SEED_CHANNELS = (64, 128, 256, 512)


def _seed_reconstructor(spec: NetworkSpec) -> tuple[nn.Sequential, nn.Sequential]:
    """The blog post's R: four 3x3 stride-1 convs (no padding) and four mirrored transposed convs.

    Each unpadded conv shrinks the side by 2 and each transposed conv grows it back by 2, so a
    64x64 input comes out 64x64: (B, 3, 64, 64) -> (B, 512, 56, 56) -> (B, 3, 64, 64).
    """
    encoder: list[nn.Module] = []
    in_channels = 3
    for channels in _SEED_CHANNELS:
        # Conv -> ReLU -> BatchNorm, in the seed's order.
        encoder += [
            nn.Conv2d(in_channels, channels, 3, stride=1),
            nn.ReLU(),
            nn.BatchNorm2d(channels, spec.bn_eps),
        ]
        in_channels = channels
    decoder: list[nn.Module] = []
    for channels in reversed(_SEED_CHANNELS[:-1]):
        decoder += [
            nn.ConvTranspose2d(in_channels, channels, 3, stride=1),
            nn.ReLU(),
            nn.BatchNorm2d(channels, spec.bn_eps),
        ]
        in_channels = channels
    decoder += [nn.ConvTranspose2d(in_channels, 3, 3, stride=1), nn.Tanh()]
    return nn.Sequential(*encoder), nn.Sequential(*decoder)


def _strided_reconstructor(spec: NetworkSpec) -> tuple[nn.Sequential, nn.Sequential]:
    """The official code's R: 5x5 stride-2 convs down, 5x5 stride-2 transposed convs back up.

    (B, 3, S, S) -> (B, width * 2**(r_depth-1), S / 2**r_depth, ...) -> (B, 3, S, S).
    """
    channels = [min(spec.width * 2**i, spec.width * 8) for i in range(spec.r_depth)]
    encoder: list[nn.Module] = []
    in_channels = 3
    for out_channels in channels:
        encoder += [
            nn.Conv2d(in_channels, out_channels, 5, stride=2, padding=2, bias=False),
            nn.BatchNorm2d(out_channels, spec.bn_eps),
            nn.LeakyReLU(0.2),
        ]
        in_channels = out_channels
    decoder: list[nn.Module] = []
    for out_channels in reversed(channels[:-1]):
        decoder += [
            nn.ConvTranspose2d(
                in_channels, out_channels, 5, stride=2, padding=2, output_padding=1, bias=False
            ),
            nn.BatchNorm2d(out_channels, spec.bn_eps),
            nn.ReLU(),
        ]
        in_channels = out_channels
    decoder += [nn.ConvTranspose2d(in_channels, 3, 5, stride=2, padding=2, output_padding=1), nn.Tanh()]
    return nn.Sequential(*encoder), nn.Sequential(*decoder)


def resize_input(images: torch.Tensor, side: int) -> torch.Tensor:
    """`images` (B, 3, S, S) resized to (B, 3, side, side); the same tensor when S == side.

    How an ensemble member trained at a smaller side reads the model's larger input. Antialiased
    bilinear: shrinking without a low-pass filter would alias thin text strokes into noise.
    """
    if images.shape[-1] == side and images.shape[-2] == side:
        return images
    return F.interpolate(images, size=(side, side), mode="bilinear", antialias=True, align_corners=False)


class Reconstructor(nn.Module):
    """R: an encoder/decoder that should reconstruct the trained class well and other images badly.

    In an ensemble with `member_sizes`, R runs at the side it was trained at (the first member's):
    the input is shrunk to it and the reconstruction enlarged back to the input's side.
    """

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        builder = _seed_reconstructor if spec.architecture == "seed" else _strided_reconstructor
        self.encoder, self.decoder = builder(spec)
        self.own_side = spec.r_input_size if spec.member_sizes else None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [-1, 1] -> (B, 3, S, S) in [-1, 1]."""
        if self.own_side is None:
            return self.decoder(self.encoder(images))
        side = images.shape[-1]
        return resize_input(self.decoder(self.encoder(resize_input(images, self.own_side))), side)


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class Discriminator(nn.Module):
    """D: conv stack, then one logit per image, shape (B,).

    The head is the spec's `d_head`: "flatten" (one linear unit over the flattened last map, the
    paper's D) or "patch_mean" (a 1x1 conv scores each cell of an 8x8 map; the logits are averaged).
    """

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels, side = 3, spec.input_size
        if spec.architecture == "seed":
            # Four 3x3 stride-2 unpadded convs: 64 -> 31 -> 15 -> 7 -> 3, hence Linear(512 * 9, 1).
            plan = [(channels, 3, 0) for channels in _SEED_CHANNELS]
        else:
            # 5x5 stride-2 "same" convs until the map is 4x4 (4 stages at 64 px, 5 at 128 px), or
            # 8x8 for the patch head (its cells must stay local enough to be patches).
            plan = []
            last_side = 8 if spec.d_head == "patch_mean" else 4
            while side > last_side:
                plan.append((min(spec.width * 2 ** len(plan), spec.width * 8), 5, 2))
                side //= 2
            side = spec.input_size
        for channels, kernel, padding in plan:
            layers += [
                nn.Conv2d(in_channels, channels, kernel, stride=2, padding=padding),
                nn.BatchNorm2d(channels, spec.bn_eps),
                nn.LeakyReLU(0.2),
                nn.Dropout2d(spec.dropout),
            ]
            in_channels, side = channels, _conv_out(side, kernel, 2, padding)
        self.features = nn.Sequential(*layers)
        self.patch_head = spec.d_head == "patch_mean"
        self.classifier: nn.Module = (
            nn.Conv2d(in_channels, 1, 1) if self.patch_head else nn.Linear(in_channels * side * side, 1)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B,) logits; sigmoid(logit) is the probability of the trained class."""
        features = self.features(images)  # (B, C, s, s)
        if self.patch_head:
            return self.classifier(features).mean(dim=(1, 2, 3))  # mean of the (B, 1, s, s) cell logits
        return self.classifier(features.flatten(1)).squeeze(1)


class DiscriminatorEnsemble(nn.Module):
    """D made of several discriminators of one spec: its logit is the mean of theirs, shape (B,).

    Members trained on different negatives make different mistakes (see docs/EXPERIMENTS.md), and
    averaging logits (not probabilities) keeps a member that is sure from being rounded away by
    the sigmoid's saturation. Ensembles are assembled from trained checkpoints (`model.ensemble`);
    training always trains a single D. With `spec.member_sizes`, each member reads the input at the
    side it was trained at (`resize_input`).
    """

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        # None: the member reads the input as it is (every member of a single-size ensemble).
        self.sides: tuple[int | None, ...] = spec.member_sizes or (None,) * spec.d_members
        self.members = nn.ModuleList(
            Discriminator(
                dataclasses.replace(spec, input_size=side or spec.input_size, d_members=1, member_sizes=())
            )
            for side in self.sides
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B,) mean of the members' logits."""
        logits = [
            member(images if side is None else resize_input(images, side))
            for member, side in zip(self.members, self.sides, strict=True)
        ]
        return torch.stack(logits).mean(dim=0)


class AloccNetworks(NamedTuple):
    """The pair of networks that make up one ALOCC model."""

    reconstructor: Reconstructor
    discriminator: Discriminator | DiscriminatorEnsemble


def build_networks(spec: NetworkSpec) -> AloccNetworks:
    """Build freshly initialised R and D for `spec` (D an ensemble when `spec.d_members` > 1).

    D is built before R. The order decides which random numbers each network's initial weights
    draw: the default model (`make model`) is trained with this order, and runs before
    alocc-strided-x2-20261127-644d3031 (R first) started from other initial weights for the same seed.
    """
    discriminator = Discriminator(spec) if spec.d_members == 1 else DiscriminatorEnsemble(spec)
    return AloccNetworks(Reconstructor(spec), discriminator)


def inference_copy(module: nn.Module) -> nn.Module:
    """An eval-mode copy of `module` for serving, with the same outputs up to float rounding.

    Every BatchNorm that directly follows a convolution is folded into that convolution's weights
    and bias, and eval-mode no-ops (Dropout) are dropped, so a forward pass makes one memory pass
    per layer fewer. The weights are laid out channels-last, the layout oneDNN and cuDNN convolve
    fastest. `module` itself is left untouched (validation scores live training networks).
    """
    clone = copy.deepcopy(module).eval()
    _fold_children(clone)
    return clone.to(memory_format=torch.channels_last)


def _fold_children(module: nn.Module) -> None:
    """Fold every Sequential below `module`, in place (the networks keep their layers in Sequentials)."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Sequential):
            setattr(module, name, _fold_sequential(child))
        else:
            _fold_children(child)


def _fold_sequential(layers: nn.Sequential) -> nn.Sequential:
    """`layers` without Dropout, each Conv + BatchNorm pair replaced by one equivalent Conv."""
    kept: list[nn.Module] = []
    for layer in layers:
        if isinstance(layer, nn.Dropout | nn.Dropout2d):
            continue
        previous = kept[-1] if kept else None
        if isinstance(layer, nn.BatchNorm2d) and isinstance(previous, nn.Conv2d | nn.ConvTranspose2d):
            kept[-1] = fuse_conv_bn_eval(previous, layer, transpose=isinstance(previous, nn.ConvTranspose2d))
        else:
            kept.append(layer)
    return nn.Sequential(*kept)


class NetworkCost(NamedTuple):
    """Parameter count and forward FLOPs for one image (1 multiply-add = 2 FLOPs)."""

    params: int
    flops: int


def network_cost(module: nn.Module, input_size: int) -> NetworkCost:
    """Count parameters and per-image forward FLOPs of `module` (conv, transposed conv, linear).

    FLOPs come from `torch.utils.flop_counter` run on a meta-device copy, so nothing is computed.
    """
    params = sum(p.numel() for p in module.parameters())
    was_training = module.training
    module.eval()
    try:
        meta = _meta_copy(module)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            meta(torch.empty(1, 3, input_size, input_size, device="meta"))
        flops = int(counter.get_total_flops())
    finally:
        module.train(was_training)
    return NetworkCost(params=params, flops=flops)


def _meta_copy(module: nn.Module) -> nn.Module:
    clone = copy.deepcopy(module)
    return clone.to_empty(device="meta")
