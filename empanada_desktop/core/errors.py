"""Errors whose message is written for the person using the app.

The CLI prints a ``UserError`` without a traceback and exits with status 2; the UI shows it in a
message box. Each message names the file or field at fault and says what to do about it.

OS errors (disk full, read-only disk, no permission) are user errors too: ``describe_os_error``
turns one into such a line, for the CLI and the UI alike.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path


class UserError(Exception):
    """A problem the user can fix; ``str(error)`` is the whole explanation."""


class ConfigError(UserError):
    """A setting or a config file is invalid."""


class ImageReadError(UserError):
    """An image file cannot be read or has an unsupported shape or type."""


class DatasetError(UserError):
    """A training or validation folder does not follow empanada's layout."""


class ModelLoadError(UserError):
    """A model file cannot be loaded or does not follow empanada's contract."""


class RegistryError(UserError):
    """A model registry operation cannot be done (unknown name, name taken, ...)."""


class DiskError(UserError):
    """A file could not be written or read because of the disk (full, read-only, no permission)."""


# errno values, spelled out so that this module imports nothing beyond the standard library.
_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}
_READ_ONLY = {errno.EROFS}
_DENIED = {errno.EACCES, errno.EPERM}

# torch reports a failed write as a RuntimeError with one of these phrases (its C++ stream
# writer), not as an OSError.
_TORCH_WRITE_PHRASES = ("pytorchstreamwriter failed", "file write failed", "unexpected pos")


def is_write_failure(error: BaseException) -> bool:
    """True for an OSError, or torch's RuntimeError for a failed file write."""
    if isinstance(error, OSError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(phrase in text for phrase in _TORCH_WRITE_PHRASES)


def describe_os_error(error: BaseException, path: str | os.PathLike[str] | None = None) -> str:
    """One line for the user: which path, what went wrong, and what to do about it.

    ``error`` is an OSError (ENOSPC, EROFS, EACCES, ...) or torch's RuntimeError for a failed
    write; ``path`` names the file or folder when the error does not (torch's errors never do).
    """
    if isinstance(error, UserError):
        return str(error)
    where = path if path is not None else getattr(error, "filename", None)
    subject = str(where) if where not in (None, "") else "a file"
    code = getattr(error, "errno", None)
    if code in _FULL or (not isinstance(error, OSError) and _looks_full(where)):
        return (f"cannot write {subject}: the disk is full. Free some space on that disk, or choose "
                "a folder on another disk, and try again.")
    if code in _READ_ONLY:
        return (f"cannot write {subject}: the disk is read-only. Choose a folder on a writable disk "
                "and try again.")
    if code in _DENIED:
        return (f"cannot write {subject}: permission denied. Choose a folder you may write to (for "
                "example in your home folder), or ask the folder's owner for write access.")
    if code == errno.ENOENT:
        return f"{subject} does not exist; check the path (and that its disk is connected)."
    if code == errno.ENOTDIR:
        return f"{subject}: a part of this path is a file, not a folder; check the path."
    if code == errno.EISDIR:
        return f"{subject} is a folder; give a file name."
    text = str(error).strip()
    reason = getattr(error, "strerror", None) or (text.splitlines()[0] if text else type(error).__name__)
    return f"cannot write {subject}: {reason}. Check that the disk is connected, writable and not full."


def user_message(error: BaseException, path: str | os.PathLike[str] | None = None) -> str:
    """The message the user sees for ``error``: a UserError's own text, an OS error described."""
    if isinstance(error, UserError):
        return str(error)
    return describe_os_error(error, path)


def _looks_full(path: object) -> bool:
    """Whether the disk holding ``path`` (or its nearest existing parent) has almost no space."""
    if path in (None, ""):
        return False
    try:
        folder = Path(str(path))
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        return shutil.disk_usage(folder).free < 16 * 1024 * 1024
    except OSError:
        return False
