"""Quitting while a job runs: ask first, then stop each job cleanly and say what was kept.

The jobs are generators that check ``stop()`` between steps (docs/ARCHITECTURE.md, long jobs);
a finetuning saves ``checkpoints/last.pt`` when it stops, so the run can be resumed on the next
launch. Quitting without waiting would destroy the worker thread mid-step and lose that.
"""

from __future__ import annotations

import logging
import time

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox, QProgressDialog, QWidget

from empanada_desktop.ui.shell import worker

log = logging.getLogger(__name__)

# What stopping each kind of job keeps, in the user's words.
WHAT_IS_KEPT = {
    "finetune": "the finetuning stops after the current step and saves a checkpoint; resume it "
                "next time from Models > Finetune a model (first page)",
    "inference3d": "the volume segmentation stops after the current slice; its partial result is "
                   "not kept and the labels on screen stay as they were",
    "inference2d": "the slice segmentation is stopped",
    "suggest": "the patch suggestion is stopped; the suggestions not yet accepted are dropped",
    "compare": "the before/after comparison is stopped",
    "training-metrics": "the before/after scoring is stopped",
    "estimate": "the speed measurement is stopped",
    "model-import": "the model import is stopped; the model list stays as it was",
}
STOP_TIMEOUT_S = 600.0  # one finetuning step on a slow CPU takes well under this


def describe(jobs: list[worker.Job]) -> str:
    lines = [f"- {WHAT_IS_KEPT.get(job.kind, f'the {job.kind} job is stopped')}." for job in jobs]
    return "Work is still running. If you quit now:\n" + "\n".join(lines)


def confirm_and_stop_jobs(parent: QWidget, ask: bool = True) -> bool:
    """True when the app may quit: nothing runs, or the user agreed and every job has stopped."""
    jobs = worker.running_jobs()
    if not jobs:
        return True
    if ask:
        answer = QMessageBox.question(
            parent, "Quit while work is running?", describe(jobs) + "\n\nQuit anyway?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No)
        if answer != QMessageBox.StandardButton.Yes:
            return False
    stop_jobs(parent, jobs)
    return True


def stop_jobs(parent: QWidget | None, jobs: list[worker.Job], timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """Cancel ``jobs`` and keep the window responsive until each has ended; True if all did."""
    busy = QProgressDialog("Stopping the running work and saving what can be kept ...", "", 0, 0, parent)
    busy.setWindowTitle("Stopping")
    busy.setCancelButton(None)
    busy.setWindowModality(Qt.WindowModality.WindowModal)
    busy.setMinimumDuration(0)
    busy.show()
    for job in jobs:
        job.cancel()
    deadline = time.monotonic() + timeout_s
    try:
        while any(job.is_running for job in jobs) and time.monotonic() < deadline:
            # The jobs end on this thread, through queued signals: let them arrive.
            QApplication.processEvents()
            time.sleep(0.02)
    finally:
        busy.close()
        busy.deleteLater()
    left = [job.kind for job in jobs if job.is_running]
    if left:
        log.warning("quitting although these jobs did not stop in %.0f s: %s", timeout_s, left)
        return False
    log.info("stopped %s before quitting", [job.kind for job in jobs])
    return True
