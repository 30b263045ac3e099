"""The fetch-and-decode process pool: same pixels and same reasons as in-process, and child deaths.

Real child processes and real HTTP from a local server; no Kafka or Redis.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from model.preprocess import ImageLimits, preprocess_uint8
from tools.sample_images import ImageServer, SampleSet, write_samples
from worker.failures import (
    CorruptImage,
    DecodePoolFailed,
    DecoderCrashed,
    ForbiddenAddress,
    HttpError,
    ImageTooLarge,
    UnsupportedImageFormat,
)
from worker.settings import FetchSettings
from worker.stages.decode_processes import ChildConfig, DecodeProcessPool

SIZE = 32


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, SampleSet]]:
    directory = tmp_path_factory.mktemp("pool-images")
    yield directory, write_samples(directory, cards=2, photos=2, simple=True)


def _config(*, allow_private: bool = True) -> ChildConfig:
    fetch = FetchSettings(allow_private_networks=allow_private, total_timeout_s=10, max_attempts=1)
    limits = ImageLimits()
    return ChildConfig(
        fetch=fetch.model_dump(mode="json"),
        size=SIZE,
        max_bytes=limits.max_bytes,
        max_pixels=limits.max_pixels,
        allowed_formats=sorted(limits.allowed_formats),
        threads=1,
        log_level="ERROR",
        log_format="json",
    )


def test_children_decode_exactly_as_the_worker_process_does(served: tuple[Path, SampleSet]) -> None:
    directory, samples = served
    pool = DecodeProcessPool(_config(), processes=2)
    try:
        with ImageServer(directory) as server:
            names = samples.cards + samples.photos
            futures = [pool.submit(server.url(name)) for name in names]
            for name, future in zip(names, futures, strict=True):
                prepared = future.result(60)
                expected = preprocess_uint8((directory / name).read_bytes(), SIZE)
                assert prepared.pixels.dtype == torch.uint8 and prepared.pixels.shape == (3, SIZE, SIZE)
                assert torch.equal(prepared.pixels, expected)
                assert prepared.size_bytes == (directory / name).stat().st_size
    finally:
        pool.close()


def test_children_decode_the_parts_exactly_as_the_worker_process_does(served: tuple[Path, SampleSet]) -> None:
    directory, samples = served
    pool = DecodeProcessPool(dataclasses.replace(_config(), with_parts=True), processes=1)
    try:
        with ImageServer(directory) as server:
            for name in samples.cards[:1] + samples.photos[:1]:
                prepared = pool.submit(server.url(name)).result(60)
                expected = preprocess_uint8((directory / name).read_bytes(), SIZE, with_parts=True)
                assert prepared.pixels.shape == (5, 3, SIZE, SIZE) and torch.equal(prepared.pixels, expected)
                assert torch.equal(
                    prepared.pixels[0], preprocess_uint8((directory / name).read_bytes(), SIZE)
                )
    finally:
        pool.close()


def test_bad_input_comes_back_as_the_same_reason(served: tuple[Path, SampleSet]) -> None:
    directory, samples = served
    pool = DecodeProcessPool(_config(), processes=1)
    strict = DecodeProcessPool(_config(allow_private=False), processes=1)
    try:
        with ImageServer(directory) as server:
            cases = {
                samples.not_image: UnsupportedImageFormat,
                samples.truncated: CorruptImage,
                samples.bomb: ImageTooLarge,
                "missing.jpg": HttpError,
            }
            futures = {name: pool.submit(server.url(name)) for name in cases}
            for name, expected in cases.items():
                with pytest.raises(expected):
                    futures[name].result(60)
            with pytest.raises(ForbiddenAddress):  # the SSRF guard runs in the child
                strict.submit(server.url(samples.cards[0])).result(60)
    finally:
        pool.close()
        strict.close()


def _kill_the_child(pool: DecodeProcessPool, after_s: float) -> int:
    """SIGKILL the pool's only child after `after_s` (its downloads wait on a slow server), wait until
    the pool has replaced it, and return the killed pid."""
    pid = pool.pids[0]
    time.sleep(after_s)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while pool.pids[0] == pid and time.monotonic() < deadline:
        time.sleep(0.02)
    return pid


def test_a_killed_child_is_replaced_and_its_jobs_run_again(served: tuple[Path, SampleSet]) -> None:
    directory, samples = served
    pool = DecodeProcessPool(_config(), processes=1)
    try:
        with ImageServer(directory, delay_s=1.0) as server:
            futures = [pool.submit(server.url(name)) for name in samples.cards]
            killed = _kill_the_child(pool, after_s=0.3)
            for future in futures:
                assert future.result(60).pixels.shape == (3, SIZE, SIZE)
            assert pool.pids[0] != killed
    finally:
        pool.close()


def test_an_image_whose_child_dies_twice_is_dead_lettered(served: tuple[Path, SampleSet]) -> None:
    directory, samples = served
    pool = DecodeProcessPool(_config(), processes=1)
    try:
        with ImageServer(directory, delay_s=3.0) as server:
            future = pool.submit(server.url(samples.cards[0]))
            for _ in range(2):
                _kill_the_child(pool, after_s=0.5)
            with pytest.raises(DecoderCrashed):
                future.result(30)
            # The pool still works after that.
            assert pool.submit(server.url(samples.photos[0])).result(60).pixels.shape == (3, SIZE, SIZE)
    finally:
        pool.close()


def test_close_cancels_unfinished_work_and_ends_the_children(served: tuple[Path, SampleSet]) -> None:
    directory, samples = served
    pool = DecodeProcessPool(_config(), processes=2)
    with ImageServer(directory, delay_s=5.0) as server:
        future = pool.submit(server.url(samples.cards[0]))
        pids = pool.pids
        time.sleep(0.2)
        started = time.monotonic()
        pool.close()
        assert time.monotonic() - started < 10
        assert future.cancelled()
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)


def test_a_child_that_cannot_start_fails_the_pool_at_once() -> None:
    broken = _config()
    broken = ChildConfig(**{**broken.__dict__, "fetch": {**broken.fetch, "concurrency": -1}})
    started = time.monotonic()
    with pytest.raises(DecodePoolFailed, match="exited while starting"):
        DecodeProcessPool(broken, processes=1)
    assert time.monotonic() - started < 30
