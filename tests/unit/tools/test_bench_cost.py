"""What `alocc bench --cost-rounds` reports from its rounds of runs."""

from __future__ import annotations

import pytest

from tools.bench import added_by_part, cost_rounds_summary


def test_one_round_reports_its_own_figures_without_lists() -> None:
    summary = cost_rounds_summary([(15.0, 3.0)])
    assert summary == {
        "cost_rounds": 1,
        "worker_core_ms_per_event": 15.0,
        "model_only_core_ms_per_event": 3.0,
        "verifier_added_core_ms_per_event": 12.0,
        "cascade_to_model_core_ratio": 5.0,
    }


def test_rounds_report_medians_of_each_round_and_every_round() -> None:
    # A machine slowing down over the rounds: each pair is measured back to back, so the median of
    # the per-round differences is not the difference of the medians of unrelated runs.
    summary = cost_rounds_summary([(14.0, 3.0), (22.0, 5.0), (12.0, 3.0)])
    assert summary["cost_rounds"] == 3
    assert summary["verifier_added_core_ms_per_event"] == 11.0  # median of 11, 17, 9
    assert summary["worker_core_ms_per_event"] == 14.0
    assert summary["model_only_core_ms_per_event"] == 3.0
    assert summary["cascade_to_model_core_ratio"] == 4.4  # median of 4.67, 4.4, 4.0
    assert summary["verifier_added_core_ms_per_event_rounds"] == [11.0, 17.0, 9.0]
    assert summary["model_only_core_ms_per_event_rounds"] == [3.0, 5.0, 3.0]


def test_no_rounds_is_an_error() -> None:
    with pytest.raises(ValueError, match="no cost rounds"):
        cost_rounds_summary([])


def test_added_cost_by_part_is_the_median_of_each_rounds_difference() -> None:
    rounds = [
        (
            {"worker_process": 5.0, "decode_processes": 6.0, "ocr_processes": 8.0},
            {"worker_process": 3.0, "decode_processes": 1.0},
        ),
        (
            {"worker_process": 6.0, "decode_processes": 7.0, "ocr_processes": 9.0},
            {"worker_process": 3.5, "decode_processes": 1.5},
        ),
        (
            {"worker_process": 4.0, "decode_processes": 6.5, "ocr_processes": 7.0},
            {"worker_process": 3.0, "decode_processes": 1.0},
        ),
    ]
    # The model alone runs no OCR process: its reads count from zero.
    assert added_by_part(rounds) == {"decode_processes": 5.5, "ocr_processes": 8.0, "worker_process": 2.0}


def test_added_cost_by_part_needs_rounds() -> None:
    with pytest.raises(ValueError, match="no cost rounds"):
        added_by_part([])


def test_sends_by_route_are_shares_of_the_events() -> None:
    from tools.bench import sends_by_route
    from worker.prometheus_metrics import WorkerMetrics

    metrics = WorkerMetrics()
    metrics.verifier_sends.labels("quadrants").inc(15)
    metrics.verifier_sends.labels("sheet_reading").inc()
    metrics.verifier_sends.labels("model_score").inc(0)  # a route never taken is left out
    assert sends_by_route(metrics.registry, 200) == {"quadrants": 0.075, "sheet_reading": 0.005}


def test_read_time_by_route_is_per_event_of_the_run() -> None:
    from tools.bench import read_ms_by_route
    from worker.prometheus_metrics import WorkerMetrics

    metrics = WorkerMetrics()
    for seconds in (0.05, 0.15):
        metrics.verifier_read_seconds.labels("quadrants").observe(seconds)
    metrics.verifier_read_seconds.labels("model_score").observe(0.1)
    assert read_ms_by_route(metrics.registry, 200) == {"model_score": 0.5, "quadrants": 1.0}
