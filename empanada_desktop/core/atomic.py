"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Write to a temporary file in the same folder, flush and fsync it, then ``os.replace`` it over the
target. A crash or a full disk leaves the previous file untouched and removes the temporary one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it replaces ``target``.

    For writers that want a file name rather than a file object (``torch.save``,
    ``tifffile.imwrite``). The writer must close the file before the block ends.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, _mode_for(target))
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(error, OSError) and error.errno is not None and not error.filename:
            # A failed write or flush does not say which file; the user needs to know.
            raise type(error)(error.errno, error.strerror, str(target)) from error
        raise


@contextlib.contextmanager
def atomic_open(target: str | os.PathLike[str], mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file for writing that atomically replaces ``target`` on success."""
    if "w" not in mode:
        raise ValueError("atomic_open is for writing; use mode 'w' or 'wb'")
    with atomic_path(target) as tmp:
        with open(tmp, mode, **kwargs) as handle:
            yield handle
            handle.flush()


def write_text(target: str | os.PathLike[str], text: str) -> None:
    with atomic_open(target, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(target, "wb") as handle:
        handle.write(data)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not supported on Windows, where replace is durable enough.
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux ``/proc``)."""
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("Umask:"):
                        return int(line.split()[1], 8)
        except (OSError, ValueError):
            pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once (a process-wide setting)
    os.umask(mask)
    return mask


def _mode_for(target: Path) -> int:
    """The permission bits ``target`` keeps (if it exists) or gets (0o666 minus the umask)."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        return 0o666 & ~current_umask()


def remove_stale_temporaries(folder: str | os.PathLike[str], older_than: float = 0.0) -> list[Path]:
    """Delete the temporary files of writes that never finished (``.<name>.*.tmp``) in ``folder``.

    ``older_than`` (seconds) spares files that another process may still be writing. Returns what
    was removed; files that cannot be removed are left (and logged).
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    now = time.time()
    for stray in folder.glob(".*.tmp"):
        try:
            if older_than and now - stray.stat().st_mtime < older_than:
                continue
            stray.unlink()
        except OSError as error:
            log.info("could not remove the unfinished write %s: %s", stray, error)
            continue
        log.info("removed the unfinished write %s", stray)
        removed.append(stray)
    return removed
