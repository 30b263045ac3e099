"""`alocc cascade draws`: a card's decisions on fresh draws of the evaluation folders, per family.

The evaluation folders of a build hold a few hundred images per family (126 caption strips, 438 photos), so
a family's rate is known to within several points (`model.metrics.rate_interval`), and every choice made
with those folders' numbers in view leans towards the draw they happen to be. `alocc data draw` writes more
files of any folder, drawn exactly as the build draws it, past the build's own: new renders of the same card
designs, new crops of the same photo sources. This command scores each drawn folder as the worker decides
it (`model.offline_score.score_paths`: the model, the text cascade, the verifier's reads) and reports, per
family, the share missed (folders of cards) or flagged (the others) with its exact 95% interval, and for the
other images per source too. Nothing here is chosen or fitted.

    alocc data draw --folder check/target --count 2000 --out data/v11-eval-draw
    alocc data draw --folder eval/other --count 4000 --out data/v11-eval-draw
    alocc cascade draws data/v11-eval-draw --out reports/draws.json --records reports/draws-records.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from model.errors import ConfigError

DRAW_RECORD_GLOB = "draw-*.json"  # what `model.data.build.draw` writes beside each drawn folder


def family_of(file: Mapping[str, Any]) -> str:
    """A drawn file's family as the evaluation names it (`model.evaluate.subkind_of`): `card:<layout>` for a
    card, else its kind (`photo`, `printed`, `product`)."""
    kind = str(file.get("kind", "unknown"))
    return f"card:{file['layout']}" if kind == "card" and file.get("layout") else kind


def tally(
    folder: str, files: Sequence[Mapping[str, Any]], records: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    """Per family of one drawn folder: images, errors (cards not excluded in a folder of cards, images
    excluded in the others), the rate with its exact 95% interval, and which stage decided the errors
    (`decided_by`). Images of other kinds are also counted per `kind:source`. An image that could not be
    scored is counted apart (`unscored`), in no rate.

    Raises:
        ConfigError: a record's file is not one of the draw's.
    """
    from model.metrics import rate_interval

    by_name = {Path(str(file["file"])).name: file for file in files}
    cards = bool(files) and all(file.get("kind") == "card" for file in files)
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    unscored = 0
    for record in records:
        name = Path(str(record["path"])).name
        file = by_name.get(name)
        if file is None:
            raise ConfigError(f"{record['path']} is not a file of the draw of {folder}")
        if "error" in record:
            unscored += 1
            continue
        groups["all"].append(record)
        groups[family_of(file)].append(record)
        if not cards:
            groups[f"{file.get('kind')}:{file.get('source')}"].append(record)
    families = {}
    for name, rows in sorted(groups.items()):
        wrong = [row for row in rows if bool(row.get("excluded")) != cards]
        low, high = rate_interval(len(wrong), len(rows))
        families[name] = {
            "images": len(rows),
            "errors": len(wrong),
            "rate": len(wrong) / len(rows),
            "interval95": [low, high],
            "decided_by": dict(Counter(str(row.get("decided_by", "model")) for row in wrong)),
        }
    return {
        "folder": folder,
        "measure": "missed" if cards else "flagged",
        "unscored": unscored,
        "families": families,
    }


def drawn_folders(root: Path) -> list[dict[str, Any]]:
    """The draw records under `root` (one per `alocc data draw` into it), sorted by folder.

    Raises:
        ConfigError: `root` holds no draw record, or a record names a folder that is not there.
    """
    draws = []
    for path in sorted(root.glob(DRAW_RECORD_GLOB)):
        record = json.loads(path.read_text(encoding="utf-8"))
        if not (root / str(record["folder"])).is_dir():
            raise ConfigError(f"{path} records a draw of {record['folder']}, which {root} does not hold")
        draws.append(record)
    if not draws:
        raise ConfigError(f"{root} holds no draw ({DRAW_RECORD_GLOB}): write one with `alocc data draw`")
    return sorted(draws, key=lambda record: str(record["folder"]))


def format_table(report: Mapping[str, Any]) -> str:
    """A Markdown table of a report's families, one row each."""
    lines = [
        f"`{report['model_version']}` on fresh draws",
        "",
        "| folder | family | images | measure | rate | 95% interval | errors decided by |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for result in report["folders"]:
        for name, family in result["families"].items():
            low, high = family["interval95"]
            by = ", ".join(f"{stage} {count}" for stage, count in sorted(family["decided_by"].items()))
            lines.append(
                f"| {result['folder']} | {name} | {family['images']} | {result['measure']} | "
                f"{100 * family['rate']:.2f}% | {100 * low:.2f}-{100 * high:.2f}% | {by or '-'} |"
            )
    return "\n".join(lines)


def register(subcommands: Any) -> None:
    """Attach `alocc cascade draws` to the root parser's subparsers."""
    from model.model_commands import add_cascade_command

    parser = add_cascade_command(
        subcommands,
        action="draws",
        action_help="a card's misses and flags on fresh draws of the evaluation folders, per family",
        description=__doc__,
    )
    parser.add_argument("root", type=Path, help="the --out of one or more `alocc data draw` runs")
    parser.add_argument("--model", help="checkpoint directory (default: the shipped default model)")
    parser.add_argument("--out", type=Path, help="also write the report as JSON here")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    parser.add_argument(
        "--records",
        type=Path,
        help="also write every image's decision here, one JSON line each as `alocc score` prints it (the "
        "stage, bound and verifier features behind each error)",
    )
    parser.set_defaults(handler=run_draws)


def _kept(records: Iterable[dict[str, Any]], sink: IO[str] | None) -> Iterator[dict[str, Any]]:
    """`records`, each also written to `sink` as a JSON line where there is one."""
    for record in records:
        if sink is not None:
            sink.write(json.dumps(record) + "\n")
        yield record


def run_draws(args: argparse.Namespace) -> int:
    """Handler of `alocc cascade draws`: 0 when every drawn folder was scored, 2 when the draws or the model
    cannot be read."""
    from tqdm import tqdm

    from model.errors import ModelError
    from model.offline_score import expand_paths, load_cascade, score_paths
    from model.scoring import Scorer

    sink = None
    try:
        draws = drawn_folders(args.root)
        scorer = Scorer.load(args.model, device="cpu")
        cascade = load_cascade(scorer)
        if args.records is not None:
            args.records.parent.mkdir(parents=True, exist_ok=True)
            sink = args.records.open("w", encoding="utf-8")
        folders = []
        for draw in draws:
            folder = str(draw["folder"])
            records = score_paths(
                scorer, expand_paths([args.root / folder]), batch_size=args.batch_size, cascade=cascade
            )
            progress = tqdm(records, total=len(draw["files"]), desc=folder, unit="img", file=sys.stderr)
            folders.append(tally(folder, draw["files"], _kept(progress, sink)))
    except (ModelError, ValueError) as exc:
        print(f"alocc cascade draws: {exc}", file=sys.stderr)
        return 2
    finally:
        if sink is not None:
            sink.close()
    version = scorer.model_version if cascade is None else cascade[0].version
    report = {"model_version": version, "root": str(args.root), "folders": folders}
    print(format_table(report))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0
