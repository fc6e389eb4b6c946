"""Start the desktop app from the command line."""

from __future__ import annotations

import difflib
import multiprocessing
from collections.abc import Collection, Sequence
from pathlib import Path


def gui_problem(first: str | None, commands: Collection[str]) -> str | None:
    """Why ``empanada-desktop FIRST ...`` should not open the window, in one line, or None.

    A word that is neither a command nor an existing file is a mistyped command; otherwise
    the window needs a display and Qt's libraries (``cli/display.py``).
    """
    if first is not None and first != "--demo" and not Path(first).exists() and not _dataset_exists(first):
        close = difflib.get_close_matches(first, sorted(commands), n=1, cutoff=0.6)
        if close:
            return f"unknown command '{first}'; did you mean '{close[0]}'?"
        if Path(first).suffix or "/" in first or "\\" in first:
            return f"{first} does not exist; give an existing image, stack or folder to open"
        return f"unknown command '{first}'; the commands are: {', '.join(sorted(commands))}"
    from empanada_desktop.cli.display import display_problem

    return display_problem()


def _dataset_exists(text: str) -> bool:
    """``volume.h5:/raw``: an existing container followed by a dataset name."""
    if ":" not in text:
        return False
    from empanada_desktop.core.volumes.opening import split_dataset

    return split_dataset(text)[1] is not None


def launch_gui(files: Sequence[str]) -> int:
    # Frozen (PyInstaller) builds re-execute this entry point in worker processes.
    multiprocessing.freeze_support()
    from empanada_desktop.ui.shell.app import run_app

    return run_app(list(files))
