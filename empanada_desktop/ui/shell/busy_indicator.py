"""The status bar says what runs in the background, and for how long, whatever panel started it.

A job's own panel may be scrolled away or hidden behind a tab on a small screen; this line is
always visible at the bottom of the window.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QWidget

from empanada_desktop.ui.shell import worker

JOB_WORDS = {
    "finetune": "finetuning",
    "inference2d": "segmenting the slice",
    "inference3d": "segmenting the volume",
    "suggest": "suggesting patches",
    "compare": "comparing the models",
    "training-metrics": "scoring the models",
    "estimate": "measuring the speed",
    "model-import": "importing a model",
}


class BusyIndicator(QWidget):
    """A moving bar and "Working: segmenting the slice (12 s)" while any job runs."""

    def __init__(self, parent: QWidget | None = None, interval_ms: int = 250):
        super().__init__(parent)
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)  # busy: no known end
        self.bar.setMaximumWidth(120)
        self.bar.setMaximumHeight(14)
        self.label = QLabel()
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        layout.addWidget(self.bar)
        self._started: dict[int, float] = {}
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.update_now)
        self.timer.start()
        self.hide()

    def update_now(self) -> None:
        jobs = worker.running_jobs()
        now = time.monotonic()
        self._started = {id(job): self._started.get(id(job), now) for job in jobs}
        if not jobs:
            self.hide()
            return
        parts = []
        for job in jobs:
            seconds = int(now - self._started[id(job)])
            stopping = ", stopping" if job.cancel_requested else ""
            parts.append(f"{JOB_WORDS.get(job.kind, job.kind)} ({seconds} s{stopping})")
        self.label.setText("Working: " + "; ".join(parts))
        self.show()
