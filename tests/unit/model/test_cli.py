"""The model subcommands: registration and `alocc info`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest

from alocc.cli import build_parser, main
from model import model_commands as cli
from model.checkpoint import ModelCard, save_checkpoint
from model.networks import AloccNetworks

TinyModelFactory = Callable[..., tuple[AloccNetworks, ModelCard]]


def test_model_commands_are_registered() -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["train", "--data", "d", "--out", "o", "--preset", "strided-128", "--epochs", "3"]
    )
    assert (args.preset, args.epochs, args.lambda_rec, args.noise_sigma) == ("strided-128", 3, 0.4, 0.155)
    args = parser.parse_args(["calibrate", "--model", "m", "--other", "p"])
    assert args.target_fpr == 0.003


def test_info_lists_presets_with_costs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    seed_line = next(line for line in out.splitlines() if line.startswith("seed "))
    assert "19.854" in seed_line and "0.087" in seed_line  # GFLOPs of R and D per 64x64 image


def test_info_on_a_checkpoint(
    tmp_path: Path, tiny_model: TinyModelFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    card = save_checkpoint(tmp_path / "m", *tiny_model())
    assert main(["info", "--model", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert card.model_version in out and "GFLOPs per image" in out and "threshold d_rx" in out


def test_optional_registrars_tolerate_only_missing_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "_OPTIONAL_REGISTRARS", ("model.not_written_yet",))
    cli.register(argparse.ArgumentParser().add_subparsers())

    def broken(name: str) -> None:
        raise ModuleNotFoundError("No module named 'some_dependency'", name="some_dependency")

    monkeypatch.setattr(cli.importlib, "import_module", broken)
    with pytest.raises(ModuleNotFoundError):
        cli.register(argparse.ArgumentParser().add_subparsers())


def test_ensemble_of_a_missing_member_is_an_error_line_not_a_traceback(
    tmp_path: Path, tiny_model: TinyModelFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    save_checkpoint(tmp_path / "m", *tiny_model())
    code = main(["ensemble", str(tmp_path / "m"), str(tmp_path / "absent"), "--out", str(tmp_path / "e")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "absent" in err
    assert not (tmp_path / "e").exists()
