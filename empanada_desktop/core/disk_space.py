"""Free disk space: is there enough for what is about to be written, and how much is missing.

A finetuning run writes checkpoints (the model, plus the optimiser's two moments of every
trainable weight) and at the end the exported model; registering copies the model into the app
home, which may be another disk. ``run_space_needed`` adds these up from parameter sizes and
``check_free_space`` compares each disk's total with its free space before the run starts,
so a full disk is found before hours of training rather than after.
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from empanada_desktop.core.errors import DiskError, describe_os_error

#: Logs, metrics and configs of a run, plus file-system slack.
RUN_OVERHEAD_BYTES = 8 * 1024 * 1024
#: TorchScript code and archive records around the weights of an exported model.
EXPORT_OVERHEAD_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class SpaceNeed:
    """``bytes`` to be written under ``folder`` (which may not exist yet), for ``what``."""

    folder: Path
    bytes: int
    what: str


def existing_parent(path: str | os.PathLike[str]) -> Path:
    """``path`` itself if it exists, else its nearest existing parent folder."""
    folder = Path(path).expanduser().absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def free_bytes(path: str | os.PathLike[str]) -> int:
    """Free bytes (for this user) on the disk that holds, or will hold, ``path``."""
    return shutil.disk_usage(existing_parent(path)).free


def format_bytes(size: float) -> str:
    """``1536 * 2**20`` -> ``"1.5 GB"``; ``3 * 2**20`` -> ``"3 MB"`` (binary units, short names)."""
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if abs(size) >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 100 and unit == "GB" else f"{value:.0f} {unit}"
    return f"{int(size)} bytes"


def checkpoint_bytes(model_bytes: int, trainable_bytes: int) -> int:
    """A checkpoint: the model's state, plus AdamW's two moments of each trainable weight."""
    return int(model_bytes + 2 * trainable_bytes + 1024 * 1024)  # + pickled config, rng, records (~100 kB measured)


def run_space_needed(
    run_folder: str | os.PathLike[str],
    models_folder: str | os.PathLike[str] | None,
    *,
    model_bytes: int,
    trainable_bytes: int,
    validation: bool,
    already_written: int = 0,
) -> list[SpaceNeed]:
    """What a finetuning run writes, per folder.

    Run folder: ``last.pt`` and, while it is replaced, its temporary twin; with validation also
    ``best.pt``; then the exported ``.pth`` and ``.yaml``. ``already_written`` (bytes of the
    checkpoints a resumed run already has) is subtracted. ``models_folder`` (None: not
    registered) receives a copy of the exported model.
    """
    checkpoint = checkpoint_bytes(model_bytes, trainable_bytes)
    export = int(model_bytes + EXPORT_OVERHEAD_BYTES)
    run_bytes = checkpoint * (3 if validation else 2) + export + RUN_OVERHEAD_BYTES - already_written
    needs = [SpaceNeed(Path(run_folder), max(run_bytes, export), "the run's checkpoints and exported model")]
    if models_folder is not None:
        needs.append(SpaceNeed(Path(models_folder), export, "the registered copy of the model"))
    return needs


def check_free_space(needs: list[SpaceNeed]) -> None:
    """Raise DiskError when a disk has less free space than the needs on it add up to.

    The message says how much is needed, how much is free and how much is missing.
    """
    by_disk: dict[int, list[SpaceNeed]] = {}
    for need in needs:
        check_writable(need.folder)
        try:
            device = existing_parent(need.folder).stat().st_dev
        except OSError:
            continue  # the folder's disk is unreachable: writing will say so
        by_disk.setdefault(device, []).append(need)
    for group in by_disk.values():
        total = sum(need.bytes for need in group)
        try:
            free = free_bytes(group[0].folder)
        except OSError:
            continue
        if free >= total:
            continue
        what = " and ".join(dict.fromkeys(need.what for need in group))
        raise DiskError(
            f"not enough free disk space for {what}: about {format_bytes(total)} are needed on the disk of "
            f"{group[0].folder}, {format_bytes(free)} are free; free {format_bytes(total - free)} more, "
            "or choose a folder on another disk."
        )


def check_writable(path: str | os.PathLike[str]) -> None:
    """Raise DiskError (read-only disk, or no permission) unless files can be made at ``path``."""
    folder = existing_parent(path)
    if os.access(folder, os.W_OK):
        return
    read_only = hasattr(os, "statvfs") and bool(os.statvfs(folder).f_flag & getattr(os, "ST_RDONLY", 1))
    code = errno.EROFS if read_only else errno.EACCES
    raise DiskError(describe_os_error(OSError(code, os.strerror(code), str(folder))))


def ensure_free_space(folder: str | os.PathLike[str], size: int, what: str) -> None:
    """``check_free_space`` for one write of ``size`` bytes into ``folder``."""
    check_free_space([SpaceNeed(Path(folder), int(size), what)])


def preallocate(path: str | os.PathLike[str], size: int) -> None:
    """Reserve ``size`` bytes of disk for the file at ``path`` (extending it with zeros).

    Memory-mapped files are written through the page cache: on a full disk a write to a page of a
    sparse file kills the process (SIGBUS) instead of raising. Reserving the blocks first turns
    that into an OSError (ENOSPC) here. Where the OS or file system cannot reserve (macOS,
    Windows, some network disks) the file is only extended.
    """
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        if hasattr(os, "posix_fallocate"):
            try:
                os.posix_fallocate(fd, 0, int(size))
                return
            except OSError as error:
                if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise
        if os.fstat(fd).st_size < size:
            os.ftruncate(fd, int(size))
    finally:
        os.close(fd)
