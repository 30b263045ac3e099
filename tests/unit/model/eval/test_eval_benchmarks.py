"""The MNIST protocol (`--quick`) and the throughput benchmark on tiny settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from alocc.cli import main
from model.benchmarks.mnist import (
    ALOCC_METHODS,
    BASELINES,
    MnistConfig,
    alocc_scorer,
    load_mnist,
    split_digit,
    to_model_input,
    train_alocc,
)
from model.benchmarks.throughput import ThroughputConfig, compose_batches, gate_for_share, run_benchmark
from model.scoring import ScoreMode


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _rows_as_bytes(images: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in images}


def test_split_is_deterministic_disjoint_and_mixes_the_right_outlier_counts() -> None:
    images, labels = load_mnist()
    assert images.shape == (5000, 1, 28, 28) and images.dtype == torch.uint8
    config = MnistConfig.quick()
    a = split_digit(images, labels, 3, config)
    b = split_digit(images, labels, 3, config)
    assert torch.equal(a.train, b.train) and torch.equal(a.outliers[0.3], b.outliers[0.3])
    parts = [_rows_as_bytes(x) for x in (a.train, a.threshold, a.test_inliers)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    # share p of the test mix is outliers: n_out = n_test * p / (1 - p)
    assert {share: len(x) for share, x in a.outliers.items()} == {0.1: 4, 0.2: 10, 0.3: 17, 0.4: 27, 0.5: 40}
    assert not (_rows_as_bytes(a.outliers[0.5]) & (parts[0] | parts[1] | parts[2]))


def test_model_input_is_three_channel_in_range() -> None:
    images, _ = load_mnist()
    x = to_model_input(images[:4], 32)
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])
    assert float(x.min()) == -1.0  # MNIST's black background maps to -1


def test_alocc_thresholds_come_from_held_out_inliers() -> None:
    images, labels = load_mnist()
    config = MnistConfig.quick()
    split = split_digit(images, labels, 0, config)
    scorer = alocc_scorer(train_alocc(split.train, config, seed=0), split.threshold, config)
    x = to_model_input(split.threshold, config.input_size)
    for mode in ALOCC_METHODS:
        missed = float(np.mean(~scorer.score(x, ScoreMode(mode)).excluded))
        assert missed <= config.miss_share + 1e-9, mode


def test_quick_mnist_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["benchmark", "mnist", "--quick", "--digits", "0,1", "--json", "--no-progress"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    methods = (*ALOCC_METHODS, *BASELINES)
    assert set(result["summary"]) == set(methods)
    assert len(result["results"]) == 2 * len(methods) * 5
    for method in methods:
        summary = result["summary"][method]
        assert set(summary["per_digit"]) == {"0", "1"}
        assert set(summary["per_share"]) == {"0.1", "0.2", "0.3", "0.4", "0.5"}
        assert 0.0 <= summary["f1_mean"] <= 1.0 and 0.0 <= summary["auroc_mean"] <= 1.0
    assert "held-out inliers" in result["threshold_rule"]
    # Pixel baselines separate MNIST digits well even on tiny splits; a broken split would not.
    assert result["summary"]["ocsvm"]["auroc_mean"] > 0.8


def test_compose_batches_puts_the_share_in_every_batch() -> None:
    pool = torch.arange(40, dtype=torch.float32).reshape(40, 1)
    d_x = np.linspace(0.0, 1.0, 40, dtype=np.float32)
    gate = gate_for_share(d_x, 0.1)
    batches = compose_batches(pool, d_x, gate, batch_size=10, n_batches=2, share=0.1)
    assert [len(b) for b in batches] == [10, 10]
    for batch in batches:
        assert int(np.sum(d_x[batch[:, 0].long().numpy()] >= gate)) == 1
    with pytest.raises(ValueError):
        compose_batches(pool, d_x, gate, batch_size=10, n_batches=5, share=0.1)


def test_gate_for_share() -> None:
    scores = np.linspace(0.0, 1.0, 50, dtype=np.float32)
    assert np.mean(scores >= gate_for_share(scores, 0.1)) == pytest.approx(0.1)
    assert np.mean(scores >= gate_for_share(scores, 0.0)) == 0.0
    assert np.mean(scores >= gate_for_share(scores, 1.0)) == 1.0


def test_throughput_benchmark_reports_every_mode_and_the_pass_share() -> None:
    config = ThroughputConfig(presets=("strided",), batch_size=10, n_batches_in_set=2, min_seconds=0.0)
    result = run_benchmark(config)
    r = result["presets"]["strided"]
    assert set(r["modes"]) == {"d_x", "d_rx", "cascade"}
    assert all(m["images_per_s"] > 0 for m in r["modes"].values())
    # Each batch of 10 holds exactly one image above the gate.
    assert r["cascade_pass_share"] == pytest.approx(0.1)
    assert r["cascade_speedup_vs_d_rx"] > 0
    assert r["gflops_per_image"]["R"] > 0 and r["gflops_per_image"]["D"] > 0
    json.dumps(result, allow_nan=False)
