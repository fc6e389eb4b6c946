"""One window per app home: a second one is told, and autosaves to its own folder.

Two windows on the same app home would write the same autosave files and the second would
offer to "restore" the first one's unsaved work. A lock file in the app home tells them apart;
a lock left by a crashed window is stale and taken over (QLockFile checks the process).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from PySide6.QtCore import QLockFile

from empanada_desktop.core.paths import app_home

log = logging.getLogger(__name__)
LOCK_NAME = "window.lock"


def claim_app_home(home: Path | None = None) -> tuple[QLockFile, int | None]:
    """``(lock, None)`` when this is the only window on the app home, else ``(lock, other pid)``.

    Keep the lock object alive as long as the window: it is released when it is destroyed.
    """
    home = Path(home) if home else app_home()
    home.mkdir(parents=True, exist_ok=True)
    lock = QLockFile(str(home / LOCK_NAME))
    lock.setStaleLockTime(0)  # never stale by age: only a dead process frees it
    if lock.tryLock(100):
        return lock, None
    pid = _lock_pid(home / LOCK_NAME)
    log.warning("another empanada-desktop window (pid %s) uses the app home %s", pid, home)
    return lock, pid


def second_window_note(other_pid: int, home: Path | None = None) -> str:
    home = Path(home) if home else app_home()
    who = f" (process {other_pid})" if other_pid > 0 else ""
    return (f"empanada-desktop is already open on this computer{who} with the same app home, "
            f"{home}. This window keeps its unsaved annotations in its own autosave folder "
            f"(autosave/window-{os.getpid()}) so the two cannot overwrite each other; after a "
            "crash of this window they are not offered back automatically. Close one of the "
            "windows to avoid confusion, or set EMPANADA_DESKTOP_HOME to use another app home.")


def _lock_pid(path: Path) -> int:
    """The process id written on the first line of a QLockFile, or -1."""
    try:
        return int(path.read_text(encoding="utf-8", errors="replace").split()[0])
    except (OSError, ValueError, IndexError):
        return -1
