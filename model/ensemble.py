"""Assemble one checkpoint whose D is an ensemble of the discriminators of trained checkpoints.

    alocc ensemble runs/a/best runs/b/best --out runs/ab

Discriminators trained on different negatives rank different images highest: one trained with
structured negatives (sets of items, slats) stops flagging rows of boats and fences but doubts
cards made of rows of text, one trained without them does the opposite, and the mean of their
logits ranks the held-out cards better than either (docs/EXPERIMENTS.md). The assembled checkpoint
is an ordinary one: R is the first member's, D is `DiscriminatorEnsemble`, and the card records
every member's version, training configuration and data. Its thresholds are uncalibrated: run
`alocc calibrate` on it before serving.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from model.checkpoint import ModelCard, ThresholdRecord, load_checkpoint, save_checkpoint
from model.errors import ConfigError
from model.networks import AloccNetworks, Discriminator, DiscriminatorEnsemble, build_networks


def assemble(members: Sequence[str | Path], out: str | Path) -> ModelCard:
    """Write a checkpoint to `out` whose D averages the logits of every member's D.

    Args:
        members: checkpoint directories with single discriminators of one network spec; the first
            member's R becomes the ensemble's R. Members trained at different input sizes make a
            model whose input is the largest size; the others read it shrunk to their own
            (`NetworkSpec.member_sizes`).
        out: the new checkpoint directory.

    Returns:
        The card as written (uncalibrated thresholds).

    Raises:
        ConfigError: fewer than two members, members that are ensembles themselves, members
            whose networks or preprocessing differ in more than the input size, or a first member
            whose R was not trained.
    """
    if len(members) < 2:
        raise ConfigError("an ensemble needs at least two member checkpoints")
    loaded = [load_checkpoint(path) for path in members]
    first_net, first_card = loaded[0]
    if first_card.training.get("train_reconstructor") is False:
        raise ConfigError(
            f"{members[0]} was trained without R (a discriminator-only member), and the first member "
            "gives the ensemble its R: list a member that trained R first"
        )
    for path, (_, card) in zip(members, loaded, strict=True):
        if card.spec.d_members != 1:
            raise ConfigError(f"{path} is an ensemble already; list its members instead")
        # Members may differ in input size (each reads the input at its own side), nothing else.
        if _apart_from_size(card) != _apart_from_size(first_card):
            raise ConfigError(
                f"{path} has another network or preprocessing than {members[0]}: "
                f"{card.network} {card.normalisation} vs {first_card.network} {first_card.normalisation}"
            )
    sides = tuple(card.input_size for _, card in loaded)
    spec = dataclasses.replace(
        first_card.spec,
        input_size=max(sides),
        d_members=len(members),
        member_sizes=sides if len(set(sides)) > 1 else (),
    )
    networks = build_networks(spec)
    ensemble = networks.discriminator
    assert isinstance(ensemble, DiscriminatorEnsemble)
    networks.reconstructor.load_state_dict(first_net.reconstructor.state_dict())
    for slot, (member_net, _) in zip(ensemble.members, loaded, strict=True):
        assert isinstance(member_net.discriminator, Discriminator)
        slot.load_state_dict(member_net.discriminator.state_dict())
    card = ModelCard(
        preset=f"{first_card.preset}-x{len(members)}",
        network=spec.to_dict(),
        input_size=spec.input_size,
        default_mode="d_x",
        normalisation=dict(first_card.normalisation),
        thresholds={"d_x": ThresholdRecord(0.5, "uncalibrated", note="run alocc calibrate")},
        training={
            "ensemble_of": [
                {"model_version": c.model_version, "checkpoint": str(path), "training": c.training}
                for path, (_, c) in zip(members, loaded, strict=True)
            ],
            "reconstructor_from": first_card.model_version,
        },
        data={"members": [c.data for _, c in loaded]},
        # A list in member order, like `ensemble_of` and `data.members` (keyed by version, two members
        # with equal weights, e.g. one checkpoint listed twice, would share one entry).
        metrics={
            "members": [
                {"model_version": c.model_version, "validation": c.metrics.get("validation", {})}
                for _, c in loaded
            ]
        },
    )
    return save_checkpoint(out, AloccNetworks(networks.reconstructor.eval(), ensemble.eval()), card)


def _apart_from_size(card: ModelCard) -> tuple[dict[str, Any], dict[str, Any]]:
    """The card's network and preprocessing, leaving out the input size."""
    network = {key: value for key, value in card.spec.to_dict().items() if key != "input_size"}
    return network, dict(card.normalisation)
