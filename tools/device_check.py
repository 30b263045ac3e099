"""A prepared GPU check of the scoring path: `python -m tools.device_check --json`.

Runs where a GPU is present but Kafka and Redis may not be. It measures, for each model (the shipped
default model if there is one, and randomly initialised networks of the named presets, whose speed does
not depend on their weights):

- `Scorer.score` throughput per mode and batch size on the device (bf16 autocast, pinned host memory,
  non-blocking copies, all inside `Scorer`), and the first call's time (CUDA start-up);
- the decode + preprocess ceiling over all CPU cores;
- a broker-less pipeline: the worker's own fetch (file:// URLs through `BackgroundFetcher`), decode
  (`ImagePreparer`) and scoring (`ScoringStage`) stages, overlapped as in the worker, to show whether
  the device or the CPU decode bounds a GPU worker.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch


def _random_checkpoint(preset: str, directory: Path) -> Path:
    from model.checkpoint import ModelCard, ThresholdRecord, save_checkpoint
    from model.networks import build_networks
    from model.presets import PRESETS

    spec = PRESETS[preset]
    record = ThresholdRecord(threshold=0.5, method="uncalibrated")
    card = ModelCard(
        preset=preset,
        network=spec.to_dict(),
        input_size=spec.input_size,
        default_mode="d_x",
        thresholds={"d_x": record, "d_rx": record, "cascade": record},
        cascade_gate=ThresholdRecord(threshold=0.5, method="uncalibrated"),
    )
    target = directory / preset
    save_checkpoint(target, build_networks(spec), card)
    return target


def _score_rates(scorer: Any, batch_sizes: list[int], seconds: float) -> dict[str, Any]:
    from model.scoring import ScoreMode

    out: dict[str, Any] = {}
    size = scorer.input_size
    for mode in (ScoreMode.D_X, ScoreMode.D_RX, ScoreMode.CASCADE):
        for batch in batch_sizes:
            images = torch.rand(batch, 3, size, size) * 2 - 1
            started = time.perf_counter()
            scorer.score(images, mode)
            first = time.perf_counter() - started
            calls = 0
            started = time.perf_counter()
            while time.perf_counter() - started < seconds:
                scorer.score(images, mode)  # returns numpy: synchronised with the device
                calls += 1
            elapsed = time.perf_counter() - started
            out[f"{mode.value}@{batch}"] = {
                "ips": round(calls * batch / elapsed, 1),
                "ms_per_batch": round(elapsed / calls * 1000, 3),
                "first_call_ms": round(first * 1000, 1),
            }
    return out


def _decode_ceiling(payloads: list[bytes], size: int, workers: int, count: int) -> float:
    from model.preprocess import preprocess_uint8

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda data: preprocess_uint8(data, size), payloads[:workers]))
        started = time.perf_counter()
        list(pool.map(lambda i: preprocess_uint8(payloads[i % len(payloads)], size), range(count)))
        return count / (time.perf_counter() - started)


def _pipeline(
    scorer: Any, folder: Path, names: list[str], count: int, *, batch: int, workers: int
) -> dict[str, Any]:
    """Fetch (file://) -> decode -> micro-batch -> score, overlapped like the worker; events per second."""
    import functools

    from model.preprocess import ImageLimits, preprocess_uint8
    from worker.settings import FetchSettings
    from worker.stages.batch import MicroBatcher
    from worker.stages.fetch import BackgroundFetcher
    from worker.stages.prepare import ImagePreparer, PreparedImage
    from worker.stages.score import ScoredBatch, ScoringStage

    fetcher = BackgroundFetcher(FetchSettings(allow_file_urls=True, file_root=folder, concurrency=256))
    decode = functools.partial(preprocess_uint8, size=scorer.input_size, limits=ImageLimits())
    preparer = ImagePreparer(fetcher, decode, workers)
    stage = ScoringStage(scorer)
    batcher: MicroBatcher[PreparedImage] = MicroBatcher(batch, 0.005)
    in_flight: list[concurrent.futures.Future[PreparedImage]] = []
    scoring: concurrent.futures.Future[ScoredBatch] | None = None
    submitted = scored = 0
    batches = 0
    started = time.perf_counter()
    try:
        while scored < count:
            while submitted < count and len(in_flight) < 4 * batch:
                in_flight.append(preparer.submit(f"file://{folder}/{names[submitted % len(names)]}"))
                submitted += 1
            still = []
            for future in in_flight:
                if future.done():
                    batcher.add(future.result())
                else:
                    still.append(future)
            in_flight = still
            if scoring is not None and scoring.done():
                scored += len(scoring.result().scores)
                scoring = None
            if scoring is None and (
                batcher.ready() or (submitted == count and not in_flight and len(batcher))
            ):
                items = batcher.take()
                scoring = stage.submit([item.pixels for item in items])
                batches += 1
            time.sleep(0.0005)
        elapsed = time.perf_counter() - started
    finally:
        stage.close()
        preparer.close()
        fetcher.close()
    return {"ips": round(count / elapsed, 1), "events": count, "mean_batch": round(count / batches, 1)}


def main(argv: list[str] | None = None) -> int:
    """Run the check and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--presets", nargs="*", default=["strided", "strided-128", "seed"])
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[32, 128, 512])
    parser.add_argument("--seconds", type=float, default=1.5, help="timing window per mode and batch size")
    parser.add_argument("--pipeline-events", type=int, default=4000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from model.errors import DefaultModelMissing
    from model.scoring import Scorer
    from tools.sample_images import write_samples

    report: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "cpu_count": os.cpu_count(),
    }
    workers = os.cpu_count() or 2
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        samples = write_samples(folder, cards=32, photos=32, simple=True)
        names = samples.cards + samples.photos
        payloads = [(folder / n).read_bytes() for n in names]
        models: dict[str, Path | None] = {}
        try:
            Scorer.load(None, device="auto")
            models["default"] = None
        except DefaultModelMissing:
            pass
        for preset in args.presets:
            models[preset] = _random_checkpoint(preset, Path(tmp))
        for name, path in models.items():
            scorer = Scorer.load(path, device="auto")
            entry: dict[str, Any] = {"model_version": scorer.model_version, "input_size": scorer.input_size}
            entry["score"] = _score_rates(scorer, args.batch_sizes, args.seconds)
            entry["decode_ceiling_ips"] = round(
                _decode_ceiling(payloads, scorer.input_size, workers, 2000), 1
            )
            entry["pipeline"] = _pipeline(
                scorer, folder, names, args.pipeline_events, batch=128, workers=workers
            )
            report[name] = entry
            print(json.dumps({name: entry}), file=sys.stderr, flush=True)
    print(json.dumps(report, indent=None if args.json else 2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
