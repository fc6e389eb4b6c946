"""The ui package stays readable: plain imports only, short files, modules named for what they do."""

from __future__ import annotations

import re
from pathlib import Path

import empanada_desktop.ui as ui_package

UI = Path(ui_package.__file__).parent
SOURCES = sorted(UI.rglob("*.py"))
MAX_LINES = 400


def test_no_hidden_imports():
    """Every import is a plain import statement, so import-linter and readers see it."""
    hidden = [f"{path.relative_to(UI)}:{number}" for path in SOURCES
              for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
              if re.search(r"__import__\(|import_module\(|walk_packages\(", line)]
    assert not hidden, hidden


def test_files_stay_short():
    long = {str(path.relative_to(UI)): n for path in SOURCES
            if (n := len(path.read_text(encoding="utf-8").splitlines())) >= MAX_LINES}
    assert not long, long


def test_no_work_item_names():
    named = [f"{path.relative_to(UI)}:{number}" for path in SOURCES
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if re.search(r"\bpart ?[12]\b|\bpart's\b", line, re.IGNORECASE)]
    assert not named, named
