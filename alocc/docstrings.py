"""Read a module's docstring without importing it, for `--help` texts of commands whose modules load Kafka."""

from __future__ import annotations

import ast
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]


def module_docstring(relative: str) -> str:
    """The docstring of the module at `relative`, a path from the repository root (`worker/replay.py`)."""
    return ast.get_docstring(ast.parse((_ROOT / relative).read_text(encoding="utf-8"))) or ""
