"""Disks that fail: a small tmpfs filled to the brim or mounted read-only, where the test may mount
one (root on Linux, as in CI), else a folder whose writes fail with ENOSPC / EROFS by patching
``open``, ``os.open`` and ``shutil.disk_usage`` for paths inside it (in-process tests only;
tests that need the real thing, such as a subprocess, skip without it).

``BadDisk.fill()`` makes the disk full now, ``free_up()`` gives the space back, so a test can
make a write fail in the middle of a run and then let the next one succeed.
"""

from __future__ import annotations

import builtins
import errno
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend" / "finetune"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))


def _try_mount(folder: Path, size_mb: int, read_only: bool) -> bool:
    if os.environ.get("EMPANADA_TEST_NO_MOUNT") or not sys.platform.startswith("linux") or shutil.which("mount") is None:
        return False  # EMPANADA_TEST_NO_MOUNT=1 exercises the fallback where mounting is allowed
    options = f"size={size_mb}m,mode=0777" + (",ro" if read_only else "")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                            capture_output=True, text=True)
    return result.returncode == 0


class BadDisk:
    """A folder on a disk that is (or becomes) full or read-only."""

    def __init__(self, path: Path, kind: str, real: bool, monkeypatch):
        self.path = path
        self.kind = kind  # "full" or "read-only"
        self.real = real
        self._monkeypatch = monkeypatch
        self._failing = False
        self._ballast = path / ".ballast"

    @property
    def errno(self) -> int:
        return errno.ENOSPC if self.kind == "full" else errno.EROFS

    def fill(self) -> None:
        """Make every further write here fail (a real disk: fill it up)."""
        if self.real:
            with open(self._ballast, "ab", buffering=0) as handle:
                for size in (1 << 20, 1 << 12, 1):
                    try:
                        while True:
                            handle.write(b"\0" * size)
                    except OSError as error:
                        assert error.errno == errno.ENOSPC
        else:
            self._failing = True

    def free_up(self) -> None:
        if self.real:
            self._ballast.unlink(missing_ok=True)
        else:
            self._failing = False

    def _inside(self, target) -> bool:
        try:
            return Path(os.fspath(target)).absolute().is_relative_to(self.path)
        except TypeError:
            return False

    def install_fallback(self) -> None:
        real_open, real_os_open, real_usage = builtins.open, os.open, shutil.disk_usage
        disk = self

        def failing_open(file, mode="r", *args, **kwargs):
            if disk._failing and isinstance(file, (str, os.PathLike)) and disk._inside(file) and any(
                c in mode for c in "wax+"
            ):
                raise OSError(disk.errno, os.strerror(disk.errno), os.fspath(file))
            return real_open(file, mode, *args, **kwargs)

        def failing_os_open(path, flags, *args, **kwargs):
            writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            if disk._failing and writing and disk._inside(path):
                raise OSError(disk.errno, os.strerror(disk.errno), os.fspath(path))
            return real_os_open(path, flags, *args, **kwargs)

        def usage(path):
            found = real_usage(path)
            if disk._failing and disk.kind == "full" and disk._inside(path):
                return found._replace(free=0)
            return found

        real_access = os.access

        def access(path, mode, *args, **kwargs):
            if disk._failing and disk.kind == "read-only" and mode & os.W_OK and disk._inside(path):
                return False
            return real_access(path, mode, *args, **kwargs)

        self._monkeypatch.setattr(builtins, "open", failing_open)
        self._monkeypatch.setattr(os, "open", failing_os_open)
        self._monkeypatch.setattr(shutil, "disk_usage", usage)
        self._monkeypatch.setattr(os, "access", access)


def _bad_disk(tmp_path, monkeypatch, kind: str, size_mb: int):
    folder = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    real = _try_mount(folder, size_mb, read_only=False)
    disk = BadDisk(folder, kind, real, monkeypatch)
    if not real:
        disk.install_fallback()
    return disk


@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    """A factory: ``small_disk(size_mb=64)`` -> BadDisk of kind "full", not yet filled."""
    mounted: list[BadDisk] = []

    def make(size_mb: int = 64) -> BadDisk:
        disk = _bad_disk(tmp_path, monkeypatch, "full", size_mb)
        mounted.append(disk)
        return disk

    yield make
    for disk in mounted:
        if disk.real:
            subprocess.run(["umount", "-l", str(disk.path)], capture_output=True)


@pytest.fixture
def read_only_disk(tmp_path, monkeypatch):
    """A BadDisk of kind "read-only": a tmpfs remounted read-only (with a file ``existing.txt`` and
    a folder ``folder/`` on it), else the patched fallback with the same contents."""
    disk = _bad_disk(tmp_path, monkeypatch, "read-only", 8)
    (disk.path / "folder").mkdir()
    (disk.path / "existing.txt").write_text("kept\n")
    if disk.real:
        subprocess.run(["mount", "-o", "remount,ro", str(disk.path)], check=True, capture_output=True)
    else:
        disk._failing = True
    yield disk
    if disk.real:
        subprocess.run(["umount", "-l", str(disk.path)], capture_output=True)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A registered resnet18 model folder, built once per session (registering costs seconds)."""
    home = tmp_path_factory.mktemp("tiny_model_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EMPANADA_DESKTOP_HOME", str(home))
        from empanada_desktop.backend.loading import register_native_model

        register_native_model("tiny")
    return home / "models" / "tiny"


@pytest.fixture
def tiny(app_home, tiny_model_dir):
    """The tiny model, registered as "tiny" in this test's app home."""
    from empanada_desktop.core.paths import models_dir

    shutil.copytree(tiny_model_dir, models_dir() / "tiny")
    return "tiny"
