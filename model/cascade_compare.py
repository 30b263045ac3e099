"""`alocc cascade compare`: two cards' reports on the same fresh draws, side by side, per family.

A change to the cascade is tested on a draw nothing was chosen on: `alocc cascade draws` scores it once with
the served card and once with the changed one, and the test stated beforehand is read off the difference
(errors gained or lost per family). This prints that difference from the two `--out` reports, so the
numbers a decision rests on are not copied by hand:

    alocc cascade draws data/eval-draw-120000 --out reports/draws/served.json
    alocc cascade draws data/eval-draw-120000 --model runs/changed --out reports/draws/changed.json
    alocc cascade compare reports/draws/served.json reports/draws/changed.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model.errors import ConfigError


def compare_reports(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per folder and family of `before`: its images and measure, the errors and rate in each
    report, and the change in errors (`after` - `before`).

    Raises:
        ConfigError: the reports are not of the same draws (another root, folder, family or image count).
    """
    if before.get("root") != after.get("root"):
        raise ConfigError(f"the reports are of different draws: {before.get('root')} and {after.get('root')}")
    later = {result["folder"]: result for result in after["folders"]}
    rows = []
    for result in before["folders"]:
        folder = result["folder"]
        if folder not in later:
            raise ConfigError(f"{folder} is in the first report only")
        for family, was in result["families"].items():
            now = later[folder]["families"].get(family)
            if now is None or now["images"] != was["images"]:
                raise ConfigError(f"{folder} {family} differs between the reports: not the same draws")
            rows.append(
                {
                    "folder": folder,
                    "family": family,
                    "images": was["images"],
                    "measure": result["measure"],
                    "before": {"errors": was["errors"], "rate": was["rate"]},
                    "after": {"errors": now["errors"], "rate": now["rate"]},
                    "change": now["errors"] - was["errors"],
                }
            )
    return rows


def format_comparison(before: Mapping[str, Any], after: Mapping[str, Any], rows: list[dict[str, Any]]) -> str:
    """A Markdown table of `compare_reports`' rows, errors and rates of both cards."""
    lines = [
        f"`{before['model_version']}` -> `{after['model_version']}` on `{before['root']}`",
        "",
        "| folder | family | images | measure | before | after | change |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        was, now = row["before"], row["after"]
        lines.append(
            f"| {row['folder']} | {row['family']} | {row['images']} | {row['measure']} | "
            f"{was['errors']} ({was['rate']:.2%}) | {now['errors']} ({now['rate']:.2%}) | "
            f"{row['change']:+d} |"
        )
    return "\n".join(lines)


def register(subcommands: Any) -> None:
    """Attach `alocc cascade compare` to the root parser's subparsers."""
    from model.model_commands import add_cascade_command

    parser = add_cascade_command(
        subcommands,
        action="compare",
        action_help="two cards' `alocc cascade draws` reports on the same draws, side by side",
        description=__doc__,
    )
    parser.add_argument("before", type=Path, help="the served card's report (`alocc cascade draws --out`)")
    parser.add_argument("after", type=Path, help="the changed card's report on the same draws")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    parser.set_defaults(handler=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    """Handler of `alocc cascade compare`: 0 when printed, 2 when a report is unreadable or of other draws."""
    try:
        before = json.loads(args.before.read_text())
        after = json.loads(args.after.read_text())
        rows = compare_reports(before, after)
    except (OSError, ValueError, KeyError, ConfigError) as exc:
        print(f"alocc cascade compare: {exc}", file=sys.stderr)
        return 2
    print(format_comparison(before, after, rows))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0
