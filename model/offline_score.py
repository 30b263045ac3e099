"""`alocc score`: score image files or folders offline, one JSON line per image.

This is the embedded default: no Kafka, no Redis, just the model. Each image is preprocessed by
`model.preprocess.preprocess` and scored by `Scorer.score`, exactly as the worker does, so a score
printed here equals the one the worker would store for the same bytes and model.

Output, in input order (folders expanded recursively and sorted):
    {"path": ..., "score": 0.93, "excluded": true, "mode": "d_x", "threshold": 0.81, "model_version": ...}
    {"path": ..., "error": "CorruptImage", "message": "..."}
The error name is the exception's class name, the same reason a dead-letter record carries. The exit
code is 0 when every image was scored, 1 when some could not be, and 2 when the model itself could
not be loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from model.scoring import Scorer

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_MODEL_ERROR = 2


def expand_paths(paths: Sequence[str | Path]) -> Iterator[Path | tuple[Path, str, str]]:
    """Expand folders into their image files; yield files as-is, problems as (path, error, message).

    A file named directly is scored whatever its extension (the bytes decide); a folder contributes
    the image files that training and calibration would list. A missing path or an empty folder is
    reported, not skipped silently.
    """
    from model.errors import DataError
    from model.training_data import list_images

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            try:
                files = list_images(path)
            except DataError as exc:
                yield (path, type(exc).__name__, str(exc))
                continue
            if not files:
                yield (path, "DataError", "the folder holds no image files")
            yield from files
        elif path.exists():
            yield path
        else:
            yield (path, "FileNotFoundError", "no such file or directory")


def _load(path: Path, size: int) -> Any:
    """Preprocess one file; return the tensor or (error class name, message)."""
    from model.errors import ImageError
    from model.preprocess import preprocess

    try:
        return preprocess(path.read_bytes(), size)
    except (ImageError, OSError) as exc:
        return (type(exc).__name__, str(exc))


def score_paths(
    scorer: Scorer, items: Iterable[Path | tuple[Path, str, str]], *, batch_size: int = 64, workers: int = 2
) -> Iterator[dict[str, Any]]:
    """Score files in batches and yield one result record per item, in input order.

    Args:
        scorer: the loaded model (its mode and threshold decide).
        items: files, or (path, error, message) for inputs already known to be bad.
        batch_size: images per `Scorer.score` call.
        workers: decoding threads.

    Yields:
        A score record or an error record per item.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    import torch

    def flush(pending: list[tuple[Path, Future[Any] | tuple[str, str]]]) -> Iterator[dict[str, Any]]:
        loaded = [(path, v.result() if isinstance(v, Future) else v) for path, v in pending]
        good = [i for i, (_, value) in enumerate(loaded) if isinstance(value, torch.Tensor)]
        tensors = [value for _, value in loaded if isinstance(value, torch.Tensor)]
        scored: dict[int, dict[str, Any]] = {}
        if good:
            batch = scorer.score(torch.stack(tensors))
            for i, score, excluded in zip(good, batch.scores, batch.excluded, strict=True):
                scored[i] = {
                    "score": float(score),
                    "excluded": bool(excluded),
                    "mode": batch.mode.value,
                    "threshold": batch.threshold,
                    "model_version": batch.model_version,
                }
        for i, (path, value) in enumerate(loaded):
            if i in scored:
                yield {"path": str(path), **scored[i]}
            else:
                error, message = value
                yield {"path": str(path), "error": error, "message": message}

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        # Decoding of the whole batch runs in the pool while earlier results are being written.
        pending: list[tuple[Path, Future[Any] | tuple[str, str]]] = []
        for item in items:
            if isinstance(item, tuple):
                pending.append((item[0], (item[1], item[2])))
            else:
                pending.append((item, pool.submit(_load, item, scorer.input_size)))
            if len(pending) == batch_size:
                yield from flush(pending)
                pending = []
        if pending:
            yield from flush(pending)


def write_lines(records: Iterable[dict[str, Any]], out: IO[str]) -> int:
    """Write records as JSON lines (flushed per line); return how many were errors."""
    failed = 0
    for record in records:
        failed += "error" in record
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        out.flush()
    return failed


def register(subcommands: Any) -> None:
    """Attach `alocc score` to the root parser's subparsers."""
    p = subcommands.add_parser(
        "score",
        help="score image files or folders offline, one JSON line per image",
        description=(
            "Scores images with the model (no services needed). Prints one JSON line per image: "
            "path, score, excluded, mode, threshold, model_version; or path, error, message when the "
            "image cannot be read. Exit code 1 when some images failed, 2 when the model cannot load."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    p.add_argument("--model", help="checkpoint directory (default: the shipped default model)")
    p.add_argument("--mode", choices=("d_x", "d_rx", "cascade"), help="score mode (default: the card's)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handler of `alocc score`; returns the exit code."""
    from model.errors import ModelError
    from model.scoring import Scorer

    if args.batch_size < 1:
        print("error: --batch-size must be at least 1", file=sys.stderr)
        return EXIT_MODEL_ERROR
    try:
        scorer = Scorer.load(args.model, device=args.device, mode=args.mode)
    except ModelError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_MODEL_ERROR
    try:
        failed = write_lines(
            score_paths(scorer, expand_paths(args.paths), batch_size=args.batch_size), sys.stdout
        )
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, like other line-oriented tools, and
        # point stdout at /dev/null so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    return EXIT_SOME_FAILED if failed else EXIT_OK
