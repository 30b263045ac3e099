"""`alocc score`: score image files or folders offline, one JSON line per image.

This is the embedded default: no Kafka, no Redis. Each image is decoded by `model.preprocess` and scored
by `Scorer.score`, exactly as the worker does; where the model's card carries a text cascade, the images it
sends to the verifier are read here, in this process, and decided by `model.cascade_decisions` as the
worker decides them. So a decision printed here equals the one the worker would store for the same bytes
and model card (`--model-only` scores the model alone, as `ALOCC_VERIFIER__ENABLED=false` does).

Output, in input order (folders expanded recursively and sorted):
    {"path": ..., "score": 0.93, "excluded": true, "mode": "d_x", "threshold": 0.81, "model_version": ...}
    with a cascade also "model_score", "decided_by" (model, verifier, model_fallback), "verifier" (the
    features it read, never text) and, after a failed read, "fallback_reason";
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
    from model.cascade import TextCascade
    from model.cascade_decisions import CascadeDecisions
    from model.scoring import Scorer
    from model.sheets import SheetSearch
    from model.verifier.text_verifier import TextVerifier

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


def _load(path: Path, size: int, with_parts: bool = False, sheets: SheetSearch | None = None) -> Any:
    """Decode one file; return its `(3, S, S)` uint8 tensor (`(1 + 4 [+ slots], 3, S, S)` with its parts and
    sheets) or (error class name, message)."""
    from model.errors import ImageError
    from model.preprocess import preprocess_uint8

    try:
        return preprocess_uint8(path.read_bytes(), size, with_parts=with_parts, sheets=sheets)
    except (ImageError, OSError) as exc:
        return (type(exc).__name__, str(exc))


def score_paths(
    scorer: Scorer,
    items: Iterable[Path | tuple[Path, str, str]],
    *,
    batch_size: int = 64,
    workers: int = 2,
    cascade: tuple[TextCascade, TextVerifier] | None = None,
) -> Iterator[dict[str, Any]]:
    """Score files in batches and yield one result record per item, in input order.

    Args:
        scorer: the loaded model (its mode and threshold decide).
        items: files, or (path, error, message) for inputs already known to be bad.
        batch_size: images per `Scorer.score` call.
        workers: decoding threads.
        cascade: the card's text cascade and a verifier to read with; None scores the model alone.

    Yields:
        A score record or an error record per item.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    import torch

    from model.cascade_decisions import CascadeDecisions
    from model.screen import screen_batch

    decisions = CascadeDecisions(cascade[0].policy) if cascade is not None else None
    policy = decisions.policy if decisions is not None else None
    # Looks only where the cascade has a plain-line gate, parts only where it has the quadrant route, as the
    # worker's scoring stage does.
    with_looks = policy is not None and policy.gate is not None
    with_parts = policy is not None and policy.parts_send_from is not None
    parts_member = policy.parts_member if policy is not None else None
    sheets = policy.sheets if policy is not None else None

    def flush(pending: list[tuple[Path, Future[Any] | tuple[str, str]]]) -> Iterator[dict[str, Any]]:
        loaded = [(path, v.result() if isinstance(v, Future) else v) for path, v in pending]
        good = [i for i, (_, value) in enumerate(loaded) if isinstance(value, torch.Tensor)]
        tensors = [value for _, value in loaded if isinstance(value, torch.Tensor)]
        scored: dict[int, dict[str, Any]] = {}
        if good:
            # The worker's scoring stage screens a batch the same way.
            screened = screen_batch(
                scorer,
                torch.stack(tensors),
                with_looks=with_looks,
                parts_member=parts_member,
                parts_matter=policy.parts_matter if policy is not None else None,
                sheet_member=sheets.member if sheets is not None else None,
            )
            batch, looks, part_scores = screened.result, screened.looks, screened.part_scores
            sheet_scores, sheet_slots = screened.sheet_scores, screened.sheet_slots
            for row, (i, score, excluded) in enumerate(zip(good, batch.scores, batch.excluded, strict=True)):
                scored[i] = {
                    "score": float(score),
                    "excluded": bool(excluded),
                    "mode": batch.mode.value,
                    "threshold": batch.threshold,
                    "model_version": batch.model_version,
                }
                if cascade is not None and decisions is not None:
                    look = None if looks is None else looks[row]
                    part = None if part_scores is None else float(part_scores[row])
                    sheet = None if sheet_scores is None else float(sheet_scores[row])
                    slot = None if sheet_slots is None else int(sheet_slots[row])
                    scored[i].update(
                        _decide(
                            cascade,
                            decisions,
                            loaded[i][0],
                            scored[i],
                            look,
                            part_score=part,
                            sheet_score=sheet,
                            sheet_slot=slot,
                            input_size=scorer.input_size,
                        )
                    )
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
                pending.append(
                    (
                        item,
                        pool.submit(
                            _load, item, scorer.input_size, with_parts, sheets.search if sheets else None
                        ),
                    )
                )
            if len(pending) == batch_size:
                yield from flush(pending)
                pending = []
        if pending:
            yield from flush(pending)


def _decide(
    cascade: tuple[TextCascade, TextVerifier],
    decisions: CascadeDecisions,
    path: Path,
    model: dict[str, Any],
    look: Any,
    *,
    part_score: float | None = None,
    sheet_score: float | None = None,
    sheet_slot: int | None = None,
    input_size: int = 0,
) -> dict[str, Any]:
    """The cascade's decision for one scored image, read here if the policy sends it (as the worker does:
    the page, its best sheet, or both)."""
    from model.cascade_decisions import describe_failure, read_for_verdict
    from model.errors import ImageError
    from model.verifier.engines import VerifierUnavailable
    from model.verifier.text_verifier import SheetReading

    text_cascade, verifier = cascade
    score, excluded, threshold = model["score"], model["excluded"], model["threshold"]
    verdict = decisions.screen(
        score, excluded, threshold, look, part_score=part_score, sheet_score=sheet_score
    )
    if verdict is None:
        try:
            sheet = None
            if decisions.reads_sheet(score, sheet_score):
                route = text_cascade.policy.sheets
                assert route is not None and sheet_slot is not None
                sheet = SheetReading(route.search, input_size, sheet_slot)
            page = decisions.reads_page(score, look, part_score=part_score, sheet_score=sheet_score)
            read = read_for_verdict(
                verifier,
                path.read_bytes(),
                page=page,
                line_read=decisions.line_read(look) if page else None,
                panel_read=decisions.panel_read(look, score) if page else None,
                sheet=sheet,
                layout_first=decisions.layout_first(score, look) if page else None,
                second_after=decisions.second_after(score, look, sheet_score=sheet_score) if page else None,
                sheet_second=decisions.sheet_second(score, sheet_score),
            )
            verdict = decisions.verdict(score, read, look, sheet_score=sheet_score)
        except (VerifierUnavailable, ImageError, OSError) as exc:  # the worker falls back the same way
            verdict = decisions.fallback(score, excluded, threshold, describe_failure(exc))
    record: dict[str, Any] = {
        "score": verdict.score,
        "excluded": verdict.excluded,
        "threshold": verdict.threshold,
        "model_version": text_cascade.version,
        "model_score": verdict.model_score,
        "decided_by": verdict.decided_by,
        "verifier": verdict.features,
    }
    if verdict.fallback_reason:
        record["fallback_reason"] = verdict.fallback_reason
    return record


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
            "Scores images with the model (no services needed) and, where the model's card carries a text "
            "cascade, reads the images it sends to the verifier, deciding each as the worker would. Prints "
            "one JSON line per image: path, score, excluded, mode, threshold, model_version (with a "
            "cascade also model_score, decided_by and the verifier's features); or path, error, message "
            "when the image cannot be read. Exit code 1 when some images failed, 2 when the model or its "
            "verifier cannot load."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    p.add_argument("--model", help="checkpoint directory (default: the shipped default model)")
    p.add_argument("--mode", choices=("d_x", "d_rx", "cascade"), help="score mode (default: the card's)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    p.add_argument(
        "--model-only",
        action="store_true",
        help="score the model alone, without the card's text cascade (its own version and threshold)",
    )
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
        cascade = None if args.model_only else load_cascade(scorer)
    except (ModelError, ValueError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_MODEL_ERROR
    try:
        failed = write_lines(
            score_paths(scorer, expand_paths(args.paths), batch_size=args.batch_size, cascade=cascade),
            sys.stdout,
        )
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, like other line-oriented tools, and
        # point stdout at /dev/null so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    return EXIT_SOME_FAILED if failed else EXIT_OK


def load_cascade(scorer: Scorer) -> tuple[TextCascade, TextVerifier] | None:
    """The card's text cascade and a verifier for it, or None when the card has none.

    Raises:
        ValueError: the card's cascade is unreadable or over other weights, or its engine is missing.
    """
    from model.cascade import card_cascade
    from model.verifier.engines import VerifierUnavailable
    from model.verifier.text_verifier import TextVerifier

    cascade = card_cascade(scorer.card.text_cascade, scorer.model_version)
    if cascade is None:
        return None
    try:
        return cascade, TextVerifier(cascade.verifier)
    except VerifierUnavailable as exc:
        raise ValueError(f"{exc} (--model-only scores without the card's text cascade)") from exc
