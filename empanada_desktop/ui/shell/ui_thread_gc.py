"""Python's cyclic garbage collector runs on the UI thread only, while the app runs.

Python collects reference cycles in whichever thread is allocating when a generation fills up.
In this app that is often a worker thread (building a model or a finetuning step allocates many
objects), and such a collection also frees Qt objects that the UI thread left in cycles, a closed
window's menus for example. Destroying a QObject outside its own thread can deadlock: seen in the
test suite, a worker's collection freeing a QMenu waited for the interpreter lock while the UI
thread, deleting widgets, waited for a Qt lock that the worker held; the app froze for good.

So automatic collection is switched off while a ``UiThreadCollector`` is installed, and a timer on
the UI thread runs the collections that are due, with the same per-generation thresholds Python
itself would use. Workers still free most objects at once (reference counting); only cycles wait
for the next tick.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

INTERVAL_MS = 250


def due_generation(counts: tuple[int, int, int], thresholds: tuple[int, ...]) -> int | None:
    """The oldest generation whose count passed its threshold (collecting it also collects the
    younger ones), or None when nothing is due; a threshold of 0 means never."""
    due = None
    for generation in range(3):
        threshold = thresholds[generation] if generation < len(thresholds) else 0
        if threshold > 0 and counts[generation] > threshold:
            due = generation
    return due


class UiThreadCollector(QObject):
    """Installed on the QApplication by :func:`install`; :meth:`stop` gives collection back to
    Python."""

    def __init__(self, parent: QObject, interval_ms: int = INTERVAL_MS):
        super().__init__(parent)
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.collect_due)
        self._timer.start()

    def collect_due(self) -> int:
        """Run the collection that is due, if any; returns the number of objects found unreachable."""
        generation = due_generation(gc.get_count(), gc.get_threshold())
        return gc.collect(generation) if generation is not None else 0

    def stop(self) -> None:
        self._timer.stop()
        if self._was_enabled:
            gc.enable()


def install(app: QObject) -> UiThreadCollector:
    """The app's collector (one per QApplication; installing twice returns the first)."""
    existing = app.findChild(UiThreadCollector)
    return existing if existing is not None else UiThreadCollector(app)
