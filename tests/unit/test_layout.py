"""The package boundaries that docs/ARCHITECTURE.md promises."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _imported_modules(package: str) -> set[str]:
    """Top-level names of every module that the package's files import, lazily or not."""
    names: set[str] = set()
    for path in (REPO_ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", ["worker", "model", "search_client", "schemas"])
def test_the_product_never_imports_the_tools(package: str) -> None:
    assert "tools" not in _imported_modules(package)


def test_the_search_client_and_the_cli_root_import_without_torch_or_kafka() -> None:
    probe = (
        "import sys, search_client\n"
        "from alocc.cli import build_parser\n"
        "build_parser()\n"
        "print(sorted({'torch', 'confluent_kafka'} & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_no_two_modules_share_a_name() -> None:
    stems: dict[str, list[str]] = {}
    for package in ["alocc", "worker", "model", "search_client", "schemas", "tools"]:
        for path in (REPO_ROOT / package).rglob("*.py"):
            if path.stem not in {"__init__", "__main__"}:
                stems.setdefault(path.stem, []).append(str(path.relative_to(REPO_ROOT)))
    assert {stem: paths for stem, paths in stems.items() if len(paths) > 1} == {}
