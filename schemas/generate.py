"""Generate the JSON Schema files in this folder from the pydantic models.

Run `python -m schemas.generate` after changing `schemas/events.py`; `--check` exits 1 when a file is
out of date (the unit tests run the same comparison).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import BaseModel

from schemas.events import DeadLetterHeaders, ExclusionEvent, ImageUploaded

SCHEMA_DIR = Path(__file__).resolve().parent

#: file name -> the model it is generated from
SCHEMAS: dict[str, type[BaseModel]] = {
    "image_uploaded.schema.json": ImageUploaded,
    "exclusion_event.schema.json": ExclusionEvent,
    "dead_letter_headers.schema.json": DeadLetterHeaders,
}


def render(model: type[BaseModel]) -> str:
    """Render one model's JSON Schema as stable, pretty-printed text."""
    schema = model.model_json_schema(mode="validation")
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def out_of_date(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of the schema files whose content differs from what the models generate."""
    stale = []
    for name, model in SCHEMAS.items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != render(model):
            stale.append(name)
    return stale


def write_all(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write every schema file; returns the paths written."""
    written = []
    for name, model in SCHEMAS.items():
        path = directory / name
        path.write_text(render(model), encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if a file is out of date")
    args = parser.parse_args(argv)
    if args.check:
        stale = out_of_date()
        for name in stale:
            print(f"out of date: {name}", file=sys.stderr)
        return 1 if stale else 0
    for path in write_all():
        print(path.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
