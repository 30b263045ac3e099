"""Training: the step moves the losses; the loop selects, checkpoints, resumes and calibrates."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from model.calibrate import calibrate_checkpoint
from model.checkpoint import read_card
from model.errors import ConfigError
from model.networks import build_networks
from model.presets import get_preset
from model.scoring import ScoreMode, Scorer
from model.train import AloccTrainer, TrainConfig, learning_rate_factor, train

FolderFactory = Callable[..., Path]


def test_cosine_schedule_decays_from_the_peak_to_the_floor() -> None:
    config = TrainConfig(data="unused", out="unused", lr_schedule="cosine", lr_floor=0.1)
    factors = [learning_rate_factor(config, t) for t in np.linspace(0, 1, 11)]
    assert factors[0] == pytest.approx(1.0)
    assert factors[5] == pytest.approx(0.55)  # halfway: floor + (1 - floor) / 2
    assert factors[-1] == pytest.approx(0.1)
    assert all(a > b for a, b in itertools.pairwise(factors))
    assert learning_rate_factor(TrainConfig(data="unused", out="unused"), 0.7) == 1.0


def test_the_trainer_applies_the_factor_to_both_peaks_and_rejects_unknown_schedules() -> None:
    networks = build_networks(get_preset("strided", width=4, input_size=32))
    config = TrainConfig(data="unused", out="unused", lr_r=1e-3, lr_d=4e-3, lr_schedule="cosine")
    trainer = AloccTrainer(networks, config, torch.device("cpu"))
    trainer.set_learning_rate_factor(0.5)
    assert [g["lr"] for g in trainer.opt_r.param_groups] == [pytest.approx(5e-4)]
    assert [g["lr"] for g in trainer.opt_d.param_groups] == [pytest.approx(2e-3)]
    with pytest.raises(ConfigError, match="lr_schedule"):
        AloccTrainer(networks, TrainConfig(data="u", out="u", lr_schedule="step"), torch.device("cpu"))


@pytest.mark.parametrize(
    ("d_batch", "precision"), [("separate", "auto"), ("joint", "auto"), ("joint", "bf16")]
)
def test_training_steps_move_the_losses(d_batch: str, precision: str) -> None:
    torch.manual_seed(0)
    spec = get_preset("strided", width=4, input_size=32)
    networks = build_networks(spec)
    # A large reconstruction weight makes the movement of loss_r_rec reliable in a few steps.
    config = TrainConfig(
        data="unused",
        out="unused",
        lr_r=2e-3,
        lr_d=2e-3,
        lambda_rec=10.0,
        d_batch=d_batch,
        precision=precision,
    )
    trainer = AloccTrainer(networks, config, torch.device("cpu"))
    # A structured target class: horizontal stripes of random phase.
    rows = torch.arange(32).float().view(1, 1, 32, 1)
    targets = torch.sin(rows / 2 + torch.rand(16, 1, 1, 1) * 6).expand(16, 3, 32, 32).contiguous()
    negatives = torch.rand(16, 3, 32, 32) * 2 - 1
    before = [p.detach().clone() for p in networks.discriminator.parameters()]
    history = [trainer.step(targets, negatives) for _ in range(40)]
    rec = [h["loss_r_rec"] for h in history]
    assert np.mean(rec[-5:]) < 0.5 * np.mean(rec[:5])
    assert all(np.isfinite(h["loss_d"]) and np.isfinite(h["loss_r"]) for h in history)
    assert history[-1]["loss_d_neg"] != history[0]["loss_d_neg"]
    assert any(
        not torch.equal(a, b) for a, b in zip(before, networks.discriminator.parameters(), strict=True)
    )


def test_bf16_steps_on_the_cpu_are_repeatable_and_keep_fp32_weights() -> None:
    def run(precision: str = "bf16") -> list[torch.Tensor]:
        torch.manual_seed(0)
        networks = build_networks(get_preset("strided", width=4, input_size=32))
        config = TrainConfig(data="u", out="u", d_batch="joint", precision=precision)
        trainer = AloccTrainer(networks, config, torch.device("cpu"))
        targets, negatives = torch.rand(8, 3, 32, 32), torch.rand(8, 3, 32, 32) - 1
        for _ in range(3):
            trainer.step(targets, negatives)
        return [p.detach() for net in networks for p in net.parameters()]

    first, second = run(), run()
    assert all(p.dtype == torch.float32 for p in first)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    # The same steps in fp32 end elsewhere: the CPU step really ran under bf16 autocast.
    assert not all(torch.equal(a, b) for a, b in zip(first, run("fp32"), strict=True))
    networks = build_networks(get_preset("strided", width=4, input_size=32))
    with pytest.raises(ConfigError, match="precision"):
        AloccTrainer(networks, TrainConfig(data="u", out="u", precision="fp16"), torch.device("cpu"))


def test_a_discriminator_only_step_leaves_r_alone_and_needs_no_fake_weight() -> None:
    torch.manual_seed(0)
    networks = build_networks(get_preset("strided", width=4, input_size=32))
    with pytest.raises(ConfigError, match="fake_weight 0"):
        AloccTrainer(networks, TrainConfig(data="u", out="u", train_reconstructor=False), torch.device("cpu"))
    config = TrainConfig(data="u", out="u", train_reconstructor=False, fake_weight=0.0, d_batch="joint")
    trainer = AloccTrainer(networks, config, torch.device("cpu"))
    r_before = [p.detach().clone() for p in networks.reconstructor.parameters()]
    d_before = [p.detach().clone() for p in networks.discriminator.parameters()]
    targets, negatives = torch.rand(8, 3, 32, 32), torch.rand(8, 3, 32, 32) - 1
    losses = [trainer.step(targets, negatives) for _ in range(3)]
    assert set(losses[0]) == {"loss_d", "loss_d_neg"}
    assert losses[-1]["loss_d"] < losses[0]["loss_d"]
    assert all(torch.equal(a, b) for a, b in zip(r_before, networks.reconstructor.parameters(), strict=True))
    assert not all(
        torch.equal(a, b) for a, b in zip(d_before, networks.discriminator.parameters(), strict=True)
    )


def test_train_selects_checkpoints_resumes_and_calibrates(
    tmp_path: Path, make_cards: FolderFactory, make_photos: FolderFactory
) -> None:
    cards = make_cards(tmp_path / "cards", 24)
    val_cards = make_cards(tmp_path / "val_cards", 10, seed=5)
    photos = make_photos(tmp_path / "photos", 24)
    val_photos = make_photos(tmp_path / "val_photos", 30, seed=7)
    out = tmp_path / "run"
    config = TrainConfig(
        data=str(cards),
        out=str(out),
        preset="strided",
        width=4,
        input_size=32,
        negatives=str(photos),
        val_target=str(val_cards),
        val_other=str(val_photos),
        epochs=2,
        batch_size=8,
        steps_per_epoch=2,
        cache_dir=str(tmp_path / "cache"),
        progress=False,
    )
    best = train(config)
    assert {p.name for p in out.iterdir()} >= {"epoch-001", "epoch-002", "last", "best"}
    card = read_card(best)
    assert card.training["best"]["epoch"] in (1, 2)
    assert "FNR" in card.training["best"]["reason"]
    assert card.default_mode in {m.value for m in ScoreMode}
    assert set(card.metrics["validation"]) == {"d_x", "d_rx", "cascade", "neg_rec_error"}
    assert card.thresholds["d_x"].method == "validation-empirical"
    assert len(card.data["data"]) == 64  # sha256 fingerprint of the training folder
    assert (out / "last" / "training_state.safetensors").is_file()
    assert not (best / "training_state.safetensors").exists()

    resumed = TrainConfig(**{**config.__dict__, "epochs": 3, "resume": True})
    train(resumed)
    last = read_card(out / "last")
    assert last.training["epoch"] == 3
    assert [h["epoch"] for h in last.metrics["history"]] == [1, 2, 3]

    report = calibrate_checkpoint(
        best,
        val_photos,
        target_fpr=0.05,  # n = 30 >= 19 needed
        gate_fpr=0.2,
        target_dir=val_cards,
        cache_dir=tmp_path / "cache",
        device="cpu",
        default_mode="auto",
    )
    calibrated = read_card(best)
    fnr = {mode: values["target_fnr"] for mode, values in report.items()}
    assert fnr[calibrated.default_mode] == min(fnr.values())
    assert calibrated.thresholds["d_rx"].method == "conformal"
    assert (
        calibrated.thresholds["d_rx"].n == 30 and calibrated.thresholds["d_rx"].rank == 30
    )  # ceil(31 * 0.95)
    assert all(r["calibration_fpr"] <= 0.05 for r in report.values())
    assert "target_fnr" in report["cascade"]
    scorer = Scorer.load(best, device="cpu", mode="cascade")
    assert scorer.threshold() == calibrated.thresholds["cascade"].threshold
    json.dumps(report)  # the CLI prints it


def test_a_discriminator_only_run_validates_and_selects_on_d_x_alone(
    tmp_path: Path, make_cards: FolderFactory, make_photos: FolderFactory
) -> None:
    config = TrainConfig(
        data=str(make_cards(tmp_path / "cards", 16)),
        out=str(tmp_path / "run"),
        preset="strided",
        width=4,
        input_size=32,
        negatives=str(make_photos(tmp_path / "photos", 16)),
        val_target=str(make_cards(tmp_path / "val_cards", 8, seed=5)),
        val_other=str(make_photos(tmp_path / "val_photos", 8, seed=7)),
        train_reconstructor=False,
        fake_weight=0.0,
        d_batch="joint",
        epochs=2,
        batch_size=8,
        steps_per_epoch=2,
        cache_dir=str(tmp_path / "cache"),
        progress=False,
    )
    card = read_card(train(config))
    assert set(card.metrics["validation"]) == {"d_x"}
    assert card.training["best"]["mode"] == card.default_mode == "d_x"
    assert card.thresholds["d_x"].method == "validation-empirical"
    assert card.thresholds["d_rx"].method == "uncalibrated"
    assert card.training["train_reconstructor"] is False
