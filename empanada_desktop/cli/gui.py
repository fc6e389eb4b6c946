"""Start the desktop app from the command line."""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence


def launch_gui(files: Sequence[str]) -> int:
    # Frozen (PyInstaller) builds re-execute this entry point in worker processes.
    multiprocessing.freeze_support()
    from empanada_desktop.ui.shell.app import run_app

    return run_app(list(files))
