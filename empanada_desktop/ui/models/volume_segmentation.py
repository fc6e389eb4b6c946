"""The inference panel's 3D box: segment the whole volume in the worker (kind "inference3d"),
with progress and cancel; the result is saved as a TIFF and shown as the document's labels."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QProgressBar,
    QPushButton,
)

from empanada_desktop.backend.events import Progress
from empanada_desktop.core.errors import UserError
from empanada_desktop.ui.models.form_widgets import spin_box
from empanada_desktop.ui.models.inference_jobs import segment3d_job
from empanada_desktop.ui.shell.messages import show_error
from empanada_desktop.ui.shell.worker import Job, JobBusyError

log = logging.getLogger(__name__)


class VolumeSegmentation(QGroupBox):
    """The 3D options and the run / cancel buttons.

    ``model_name()`` and ``settings()`` come from the panel (the settings include this box's
    :meth:`options`); ``report(text)`` shows a message in the panel's status line. ``jobEnded``
    tells the panel to update which buttons are enabled.
    """

    labelsWritten = Signal()
    jobEnded = Signal()

    def __init__(self, document, model_name: Callable[[], str | None], settings: Callable[[], object],
                 report: Callable[[str], None]):
        super().__init__("3D: the whole volume")
        self.document = document
        self._model_name = model_name
        self._settings = settings
        self.report = report
        self.plane = QComboBox()
        self.plane.addItems(["xy", "xz", "yz"])
        self.median_kernel = spin_box(1, 11, 3, 2)
        self.median_kernel.setToolTip("Median over this many neighbouring slices (odd; 1 = off).")
        self.min_size = spin_box(0, 10_000_000, 500, 100)
        self.min_extent = spin_box(0, 1000, 4, 1)
        self.ortho = QCheckBox("Ortho-planes (xy, xz and yz vote)")
        self.vote_thr = spin_box(1, 3, 2, 1)
        self.allow_one_view = QCheckBox("Keep objects seen in one plane only")
        self.run_button = QPushButton("Segment volume")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        form = QFormLayout(self)
        form.addRow("Plane", self.plane)
        form.addRow("Median slices", self.median_kernel)
        form.addRow("Min size (voxels)", self.min_size)
        form.addRow("Min extent", self.min_extent)
        form.addRow("", self.ortho)
        form.addRow("Vote threshold", self.vote_thr)
        form.addRow("", self.allow_one_view)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button, 1)
        buttons.addWidget(self.cancel_button)
        form.addRow(buttons)
        form.addRow(self.progress)
        self.job: Job | None = None
        self.run_button.clicked.connect(lambda: self.run())
        self.cancel_button.clicked.connect(self.cancel)

    def options(self) -> dict:
        """This box's settings, as ``InferenceConfig`` keyword arguments."""
        return dict(plane=self.plane.currentText(), median_kernel=self.median_kernel.value(),
                    min_size=self.min_size.value(), min_extent=self.min_extent.value(),
                    ortho=self.ortho.isChecked(), vote_thr=self.vote_thr.value(),
                    allow_one_view=self.allow_one_view.isChecked())

    def update_enabled(self, has_image_and_model: bool) -> None:
        running = self.job is not None and self.job.is_running
        self.run_button.setEnabled(has_image_and_model and self.document.is_3d and not running)

    def run(self, out_path: str | Path | None = None) -> Job | None:
        """Segment the whole volume in the worker; the labels layer shows it when done."""
        from empanada_desktop.core.paths import subdir

        doc = self.document
        name = self._model_name()
        if not doc.is_3d or name is None:
            return None
        try:
            settings = self._settings()
        except UserError as error:
            show_error(self, "Check the settings", str(error))
            return None
        stem = doc.path.stem if doc.path is not None else "volume"
        out_path = Path(out_path) if out_path else subdir("inference") / f"{stem}_{name}_labels.tif"
        job = Job("inference3d", segment3d_job(name, doc.image, settings, out_path))
        job.event.connect(self._on_event)
        job.finished.connect(lambda result: self._on_done(result, id(doc.image)))
        job.failed.connect(self._on_failed)
        try:
            job.start()
        except JobBusyError as error:
            show_error(self, "Already segmenting", str(error))
            return None
        self.job = job
        self.progress.setValue(0)
        self.cancel_button.setEnabled(True)
        self.run_button.setEnabled(False)
        self.report(f"Segmenting the volume with {name} ...")
        return job

    def cancel(self) -> None:
        if self.job is not None and self.job.is_running:
            self.job.cancel()
            self.report("Cancelling after the current slice ...")

    def _on_event(self, event) -> None:
        if isinstance(event, Progress):
            self.progress.setRange(0, event.total)  # total 0: busy, no known end
            self.progress.setValue(event.step)
            if event.message:
                self.report(event.message)

    def _on_done(self, result, image_id: int) -> None:
        self.cancel_button.setEnabled(False)
        cancelled = self.job is not None and self.job.cancel_requested
        self.jobEnded.emit()
        path, count = result if result is not None else (None, 0)
        if cancelled or path is None:
            self.report("Cancelled; the labels were not changed.")
            return
        if id(self.document.image) != image_id:
            self.report(f"Another image was opened meanwhile; the result is in {path}.")
            return
        from empanada_desktop.core.imageio import read_image

        try:
            self.document.set_labels(read_image(path, mmap=True), path)
        except UserError as error:
            show_error(self, "Cannot show the result", str(error))
            return
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.report(f"Done: {count} object(s) found; the labels are also saved in {path}.")
        self.labelsWritten.emit()

    def _on_failed(self, message: str) -> None:
        self.cancel_button.setEnabled(False)
        self.jobEnded.emit()
        self.report("")
        show_error(self, "Volume segmentation failed", message)
