"""Writing torch files so that a full or read-only disk is an error we can report.

``torch.jit.save`` to a file on a full disk does not raise: its C++ writer terminates the
process (exit 134) and leaves the partial temporary file behind. So a TorchScript model is
serialised to memory first, free space is checked against its real size, and the bytes are
written by Python, where ENOSPC, EROFS and EACCES are ordinary ``OSError``s. ``torch.save`` does
raise (a RuntimeError from the same writer); :func:`save_torch` turns that and any OSError
into a ``DiskError`` naming the file. Both write atomically (``core/atomic.py``).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from empanada_desktop.core.atomic import atomic_path, write_bytes
from empanada_desktop.core.disk_space import ensure_free_space
from empanada_desktop.core.errors import DiskError, describe_os_error, is_write_failure


def torchscript_bytes(module: torch.jit.ScriptModule) -> bytes:
    """The TorchScript archive of ``module``, as ``torch.jit.save`` would write it."""
    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    return buffer.getvalue()


def save_torchscript(module: torch.jit.ScriptModule, path: str | os.PathLike[str]) -> Path:
    """Write ``module`` to ``path`` atomically; a disk problem raises DiskError (nothing left)."""
    path = Path(path)
    data = torchscript_bytes(module)
    ensure_free_space(path.parent, len(data) + 1024 * 1024, f"the model file {path.name}")
    write_file_bytes(path, data)
    return path


def write_file_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """``core.atomic.write_bytes``, with OS errors turned into a DiskError naming ``path``."""
    path = Path(path)
    try:
        write_bytes(path, data)
    except OSError as error:
        raise DiskError(describe_os_error(error, path)) from error
    return path


def save_torch(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj)`` to ``path`` atomically; a disk problem raises DiskError (old file kept)."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            torch.save(obj, tmp)
    except (OSError, RuntimeError) as error:
        if not is_write_failure(error):
            raise
        raise DiskError(describe_os_error(error, path)) from error
    return path
