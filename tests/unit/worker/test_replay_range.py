"""The replay range: its size, and how Redis stores it for every process and restart of a group."""

from __future__ import annotations

import argparse
import datetime as dt

import pytest

from worker.replay import ReplayRange
from worker.replay_commands import parse_offsets, parse_time


def test_a_range_counts_its_events_and_round_trips_through_its_stored_form() -> None:
    replay = ReplayRange("uploads", starts={0: 10, 1: 0, 2: 7}, ends={0: 25, 1: 0, 2: 5})

    assert replay.total == 15  # an empty partition and one whose start is past its end count nothing
    assert ReplayRange.from_json(replay.to_json()) == replay


def test_times_are_rfc_3339_and_a_naive_one_is_utc() -> None:
    assert parse_time("2026-11-01T00:00:00Z") == dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    assert parse_time("2026-11-01T09:00:00+09:00") == dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    assert parse_time("2026-11-01T00:00:00") == dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def test_explicit_offsets_parse_and_reject_a_reversed_span() -> None:
    assert parse_offsets("0:100-200, 3:0-50") == {0: (100, 200), 3: (0, 50)}
    with pytest.raises(argparse.ArgumentTypeError, match="START <= END"):
        parse_offsets("0:200-100")
    with pytest.raises(argparse.ArgumentTypeError, match="PARTITION:START-END"):
        parse_offsets("zero:1-2")
