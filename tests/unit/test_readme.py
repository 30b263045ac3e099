"""The README is documentation users act on: keep its settings table and commands true."""

from __future__ import annotations

import re
from pathlib import Path

from worker.settings import settings_markdown

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_lists_every_setting_with_its_default() -> None:
    # Regenerate with `python -m worker.settings` when a setting changes.
    assert settings_markdown() in README.read_text(encoding="utf-8")


def test_readme_quick_start_has_exactly_the_two_make_targets() -> None:
    text = README.read_text(encoding="utf-8")
    quick_start = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    first_block = re.search(r"```sh\n(.*?)```", quick_start, re.DOTALL)
    assert first_block is not None
    commands = [line.split("#", 1)[0].strip() for line in first_block.group(1).splitlines()]
    assert [command for command in commands if command] == ["make demo", "make test"]
    makefile = (README.parent / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo: setup", makefile, re.MULTILINE)
    assert re.search(r"^test: setup", makefile, re.MULTILINE)
