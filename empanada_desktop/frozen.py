"""What the frozen (PyInstaller) app needs at start-up, and helpers that work frozen or not.

The bundle's entry script (``packaging/launcher.py``) calls :func:`prepare` first thing, then the
ordinary command line, ``empanada_desktop.cli.main``. :func:`prepare`:

* calls ``multiprocessing.freeze_support()``: a frozen executable that is re-run as a
  multiprocessing worker (DataLoader workers with the "spawn" start method on Windows and macOS)
  must turn into that worker here instead of opening a second app window;
* (the start method is left alone: "fork" on Linux with Python 3.11-3.13, "spawn" on Windows
  and macOS, where freeze_support is what makes workers work in the bundle);
* installs the start-up probe used by ``benchmarks/startup_time.py`` when
  ``EMPANADA_DESKTOP_STARTUP_PROBE`` names a file (it records when the main window is first
  shown, and whether torch was imported by then and from where).

Bundled weights: ``packaging/build.py --models DIR`` copies ``DIR``'s weight files (``*.pth``,
with optional ``*.yaml``) into the bundle's ``resources/models_weights/``
(``core.resources.bundled_weights_dir()``); the model registry treats a built-in model whose
weights file name (the last part of its config's ``model:`` URL, e.g. ``MitoNet_v1.pth``) is found
there as installed (source "bundled"), read-only, without a download.

Self-check of worker processes: with ``EMPANADA_DESKTOP_SELF_CHECK=workers`` the executable
starts a "spawn" multiprocessing pool and a torch DataLoader with two "spawn" workers, prints
the result and exits (0 when the workers ran). ``packaging/smoke_test.py`` runs it on the
frozen bundle, where "spawn" re-executes the bundle itself: the case freeze support is for.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path

logger = logging.getLogger(__name__)

STARTUP_PROBE_ENV = "EMPANADA_DESKTOP_STARTUP_PROBE"
SELF_CHECK_ENV = "EMPANADA_DESKTOP_SELF_CHECK"
# Optional: wait this many milliseconds after the window is shown before recording (the smoke
# test uses it to let the window finish opening the file it was given).
STARTUP_PROBE_DELAY_ENV = "EMPANADA_DESKTOP_STARTUP_PROBE_DELAY_MS"


def is_frozen() -> bool:
    """True inside a PyInstaller bundle."""
    return bool(getattr(sys, "frozen", False)) and hasattr(sys, "_MEIPASS")


def bundle_root() -> Path:
    """The folder that holds ``resources/``: the bundle's ``_internal`` folder, else the repo."""
    if is_frozen():
        return Path(sys._MEIPASS)  # type: ignore[attr-defined]
    return Path(__file__).resolve().parents[1]


def prepare() -> None:
    """Run before anything else in the frozen entry point (safe, and cheap, when not frozen)."""
    import multiprocessing

    # In a worker process started by "spawn" this does not return: it runs the worker and exits.
    multiprocessing.freeze_support()
    if os.environ.get(SELF_CHECK_ENV) == "workers":
        raise SystemExit(self_check_workers())
    probe_file = os.environ.get(STARTUP_PROBE_ENV)
    if probe_file:
        delay_ms = int(os.environ.get(STARTUP_PROBE_DELAY_ENV) or 0)
        install_startup_probe(Path(probe_file), delay_ms=delay_ms)


# --- worker self-check (packaging/smoke_test.py) ---------------------------------------------


def _worker_pid(value: int) -> tuple[int, int]:
    return value * value, os.getpid()


class _SquaresDataset:
    """A map-style dataset for the DataLoader check (module level, so spawn can pickle it)."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int):
        import torch

        return torch.tensor([index * index, os.getpid()])


def self_check_workers() -> int:
    """Run work in "spawn" worker processes (a Pool and a torch DataLoader); 0 when it worked."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        results = pool.map(_worker_pid, range(6))
    squares_ok = [r[0] for r in results] == [i * i for i in range(6)]
    pool_pids = {r[1] for r in results} - {os.getpid()}

    import torch
    from torch.utils.data import DataLoader

    loader = DataLoader(_SquaresDataset(), batch_size=2, num_workers=2, multiprocessing_context="spawn")
    rows = torch.cat(list(loader))
    loader_ok = rows[:, 0].tolist() == [i * i for i in range(8)]
    loader_pids = set(rows[:, 1].tolist()) - {os.getpid()}
    ok = squares_ok and bool(pool_pids) and loader_ok and bool(loader_pids)
    print(
        f"workers: pool {'ok' if squares_ok else 'WRONG'} in {len(pool_pids)} process(es), "
        f"DataLoader {'ok' if loader_ok else 'WRONG'} in {len(loader_pids)} process(es), "
        f"frozen={is_frozen()}"
    )
    return 0 if ok else 1


# --- start-up probe (benchmarks/startup_time.py) ---------------------------------------------


class _TorchImportWatcher:
    """A meta path finder that records the stack of the first ``import torch``."""

    def __init__(self) -> None:
        self.stack: list[str] | None = None
        self.at: float | None = None

    def find_spec(self, name, path=None, target=None):  # noqa: D102 - importlib protocol
        if self.stack is None and (name == "torch" or name.startswith("torch.")):
            self.at = time.time()
            frames = traceback.extract_stack()[:-1]
            # Keep our own package's frames: they say which of our modules pulled torch in.
            ours = [f"{f.filename}:{f.lineno} {f.name}" for f in frames if "empanada_desktop" in f.filename]
            self.stack = ours or [f"{f.filename}:{f.lineno} {f.name}" for f in frames[-6:]]
        return None  # never import anything ourselves


def install_startup_probe(result_file: Path, delay_ms: int = 0) -> None:
    """Write ``result_file`` (JSON) when the first main window is shown, then exit.

    Fields: ``visible_at`` (``time.time()`` when the window was shown and the event queue had
    been processed once), ``torch_imported`` (bool), ``torch_imported_at``, ``torch_import_stack``
    (where the first ``import torch`` came from), ``window_title``, ``image_shape`` (of the
    window's open document, if any; recorded after ``delay_ms``, visible_at is not). The process
    then exits at once with status 0 (``os._exit``), so nothing else runs after the measurement.
    """
    watcher = _TorchImportWatcher()
    sys.meta_path.insert(0, watcher)

    from PySide6 import QtCore, QtWidgets

    class _ShowFilter(QtCore.QObject):
        def __init__(self) -> None:
            super().__init__()
            self.fired = False

        def eventFilter(self, obj, event):  # noqa: N802 - Qt naming
            shown = event.type() in (QtCore.QEvent.Type.Show, QtCore.QEvent.Type.Expose)
            if not self.fired and shown and isinstance(obj, QtWidgets.QMainWindow):
                self.fired = True
                # Let the queued show/paint events run once before taking the time.
                QtCore.QTimer.singleShot(0, lambda: _shown(obj))
            return False

    def _shown(window) -> None:
        visible_at = time.time()
        QtCore.QTimer.singleShot(delay_ms, lambda: _finish(window, visible_at))

    def _finish(window, visible_at: float) -> None:
        document = getattr(window, "document", None)
        image = getattr(document, "image", None)
        result = {
            "visible_at": visible_at,
            "image_shape": list(image.shape) if image is not None else None,
            "window_visible": bool(window.isVisible()),
            "window_title": window.windowTitle(),
            "torch_imported": "torch" in sys.modules,
            "torch_imported_at": watcher.at,
            "torch_import_stack": watcher.stack,
            "frozen": is_frozen(),
        }
        result_file.write_text(json.dumps(result, indent=2), encoding="utf-8")
        logging.shutdown()
        os._exit(0)

    show_filter = _ShowFilter()
    original_init = QtWidgets.QApplication.__init__

    def _init_with_filter(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.installEventFilter(show_filter)

    # The app creates its QApplication later, inside run_app(); hook the constructor so the
    # filter sees every event from the very first one.
    QtWidgets.QApplication.__init__ = _init_with_filter
    logger.debug("start-up probe installed, result -> %s", result_file)
