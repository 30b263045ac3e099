"""`alocc data ...`: build datasets, preview them, write demo images."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any

# Kept literal (not imported from model.data.build) so building the parser imports nothing heavy.
SCALES = ("small", "default")


def _build(args: argparse.Namespace) -> int:
    from model.data.build import build

    manifest = build(
        args.out, seed=args.seed, scale=args.scale, workers=args.workers, overwrite=args.overwrite
    )
    splits = manifest["splits"]
    assert isinstance(splits, dict)
    for folder, info in splits.items():
        print(f"{folder:18s} {info['count']:6d}  {json.dumps(info['by_kind'])}")
    print(f"wrote {args.out}/manifest.json in {manifest['seconds']} s")
    return 0


def _draw(args: argparse.Namespace) -> int:
    from model.data.build import draw
    from model.data.dataset_errors import DatasetError

    try:
        record = draw(
            args.out, args.folder, args.count, start=args.start, seed=args.seed, workers=args.workers
        )
    except DatasetError as exc:
        print(f"alocc data draw: {exc}", file=sys.stderr)
        return 2
    files = record["files"]
    assert isinstance(files, list)
    kinds = Counter(str(row["kind"]) for row in files)
    print(
        f"drew {len(files)} files of {args.folder} (from index {record['start']}) into "
        f"{args.out}/{args.folder}: {json.dumps(dict(sorted(kinds.items())))}"
    )
    return 0


def _preview(args: argparse.Namespace) -> int:
    from model.data.preview import contact_sheet

    path = contact_sheet(args.root, args.out, per_folder=args.per_folder, seed=args.seed)
    print(f"wrote {path}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from model.data.demo_images import write_demo_images

    paths = write_demo_images(args.out, args.cards, args.photos, args.seed)
    print(f"wrote {len(paths)} images to {args.out}")
    return 0


def register(subcommands: Any) -> None:
    """Attach `alocc data {build,draw,preview,demo}` to the root parser's subparsers."""
    data = subcommands.add_parser("data", help="build, preview and sample the training/evaluation data")
    sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)

    b = sub.add_parser("build", help="write the train/val/calib/eval image folders and manifest.json")
    b.add_argument("--out", required=True, help="output folder (e.g. data/v10)")
    b.add_argument("--seed", type=int, default=0, help="build seed (default 0)")
    b.add_argument("--scale", choices=SCALES, default="default", help="default ~12k images; small ~100")
    b.add_argument("--workers", type=int, default=None, help="render processes (default: up to 2)")
    b.add_argument("--overwrite", action="store_true", help="replace an earlier build in --out")
    b.set_defaults(handler=_build)

    dr = sub.add_parser(
        "draw",
        help="draw more files of one folder, as the build would draw them past its own",
        description=(
            "Write COUNT more files of one dataset folder, drawn exactly as `alocc data build` draws that "
            "folder's files, from index --start on (default: just past the build's own, so none is a file "
            "the dataset holds). A fresh sample of the same sources and roles: `alocc data draw --folder "
            "calib/other --count 4000 --out data/v11-calib-draw`, then `alocc score` on it, measures a "
            "card's false-positive rate on photos its calibration never used."
        ),
    )
    dr.add_argument("--folder", required=True, help="the dataset folder to draw from (e.g. calib/other)")
    dr.add_argument("--count", type=int, required=True, help="how many files to draw")
    dr.add_argument("--out", required=True, help="output root; files go to OUT/FOLDER")
    dr.add_argument("--start", type=int, default=None, help="first index (default: the build's count)")
    dr.add_argument("--seed", type=int, default=0, help="build seed (default 0, the shipped dataset's)")
    dr.add_argument("--workers", type=int, default=None, help="render processes (default: up to 2)")
    dr.set_defaults(handler=_draw)

    p = sub.add_parser("preview", help="write a contact-sheet PNG of a built dataset")
    p.add_argument("root", help="dataset folder")
    p.add_argument("--out", default=None, help="PNG path (default ROOT/preview.png)")
    p.add_argument("--per-folder", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=lambda a: _preview(_default_preview_out(a)))

    d = sub.add_parser("demo", help="write a few held-out cards and unseen photos for a demo")
    d.add_argument("--out", required=True)
    d.add_argument("--cards", type=int, default=4)
    d.add_argument("--photos", type=int, default=4)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(handler=_demo)


def _default_preview_out(args: argparse.Namespace) -> argparse.Namespace:
    if args.out is None:
        args.out = f"{args.root.rstrip('/')}/preview.png"
    return args
