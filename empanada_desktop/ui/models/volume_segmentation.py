"""The inference panel's 3D box: segment the whole volume in the worker (kind "inference3d"),
with progress (blocks done / total, ETA) and cancel, on this computer or a Dask cluster
(``volume_target``). TIFF results are shown when done; OME-Zarr results block-wise, lazily, as
the blocks are written. A cancelled block-wise run keeps its finished blocks: running it again
with the same settings and output resumes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
)

from empanada_desktop.backend.events import Message, Progress
from empanada_desktop.core.errors import UserError
from empanada_desktop.ui.models.form_widgets import spin_box
from empanada_desktop.ui.models.inference_jobs import blockwise_input, blockwise_job, segment3d_job
from empanada_desktop.ui.models.volume_target import VolumeTarget
from empanada_desktop.ui.shell.messages import show_error
from empanada_desktop.ui.shell.screen_registry import register_screen
from empanada_desktop.ui.shell.worker import Job, JobBusyError

log = logging.getLogger(__name__)
REFRESH_SECONDS = 1.0  # the lazily shown labels are re-read at most this often while written


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s left"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s left"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min left"


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
        self.target = VolumeTarget(document, model_name)
        self.run_button = QPushButton("Segment volume")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.eta = QLabel("")
        form = QFormLayout(self)
        form.addRow("Plane", self.plane)
        form.addRow("Median slices", self.median_kernel)
        form.addRow("Min size (voxels)", self.min_size)
        form.addRow("Min extent", self.min_extent)
        form.addRow("", self.ortho)
        form.addRow("Vote threshold", self.vote_thr)
        form.addRow("", self.allow_one_view)
        form.addRow(self.target)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button, 1)
        buttons.addWidget(self.cancel_button)
        form.addRow(buttons)
        form.addRow(self.progress)
        form.addRow(self.eta)
        self.job: Job | None = None
        self._shown_at = 0.0
        self._last_progress: Progress | None = None
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
        """Segment the whole volume in the worker (``out_path``: .tif or .zarr, else the chosen
        output); the labels layer shows it as it is written (OME-Zarr) or when done (TIFF)."""
        doc = self.document
        name = self._model_name()
        if not doc.is_3d or name is None:
            return None
        try:
            settings = self._settings()
        except UserError as error:
            show_error(self, "Check the settings", str(error))
            return None
        try:
            if out_path is None:
                out_path = self.target.output_path()
                if not self.target.blockwise and out_path.suffix.lower() not in (".tif", ".tiff"):
                    out_path = out_path.with_name(out_path.name + ".tif")
            out_path = Path(out_path)
            if out_path.suffix.lower() not in (".tif", ".tiff"):
                blocks = self.target.block_settings()
                image = blockwise_input(doc.image, doc.path, doc.dataset, doc.spacing)
                job_fn = blockwise_job(name, image, settings, out_path, blocks)
            else:
                job_fn = segment3d_job(name, doc.image, settings, out_path)
        except UserError as error:
            show_error(self, "Check the settings", str(error))
            return None
        job = Job("inference3d", job_fn)
        job.event.connect(lambda event: self._on_event(event, out_path, id(doc.image)))
        job.finished.connect(lambda result: self._on_done(result, id(doc.image)))
        job.failed.connect(self._on_failed)
        try:
            job.start()
        except JobBusyError as error:
            show_error(self, "Already segmenting", str(error))
            return None
        self.job = job
        self._last_progress = None
        self.eta.setText("")
        self.progress.setValue(0)
        self.cancel_button.setEnabled(True)
        self.run_button.setEnabled(False)
        self.report(f"Segmenting the volume with {name} into {out_path} ...")
        return job

    def cancel(self) -> None:
        if self.job is not None and self.job.is_running:
            self.job.cancel()
            self.report("Cancelling after the current slice ...")

    def _on_event(self, event, out_path: Path, image_id: int) -> None:
        if isinstance(event, Message):
            self.report(event.text)
        if not isinstance(event, Progress):
            return
        self._last_progress = event
        self.progress.setRange(0, event.total)  # total 0: busy, no known end
        self.progress.setValue(event.step)
        self.eta.setText(format_eta(event.eta_seconds))
        if event.message:
            self.report(event.message)
        if event.message.startswith("writing labels") and id(self.document.image) == image_id:
            self._show_lazily(out_path)

    def _show_lazily(self, out_path: Path) -> None:
        """Show the labels being written (opened once, re-read at most once a second)."""
        doc = self.document
        now = time.monotonic()
        shown = doc.lazy_labels is not None and doc.labels_path == out_path
        if shown and now - self._shown_at < REFRESH_SECONDS:
            return
        self._shown_at = now
        if shown:
            doc.refresh_lazy_labels()
            return
        if doc.edited_chunks:
            return  # painted, unsaved labels stay until the run ends
        try:
            doc.set_labels(_open_labels(out_path), out_path, copy=False)
        except (UserError, OSError) as error:
            log.info("labels not shown while written: %s", error)

    def _on_done(self, result, image_id: int) -> None:
        self.cancel_button.setEnabled(False)
        cancelled = self.job is not None and self.job.cancel_requested
        self.jobEnded.emit()
        path, count = result if result is not None else (None, 0)
        if cancelled or path is None:
            self.eta.setText("")
            last = self._last_progress
            if last is not None and last.message.startswith(("segmented", "writing")):
                self.report(f"Cancelled at {last.message}; the finished blocks are kept. Press "
                            "Segment volume again (same settings and output) to resume.")
            else:
                self.report("Cancelled; the labels were not changed.")
            return
        if id(self.document.image) != image_id:
            self.report(f"Another image was opened meanwhile; the result is in {path}.")
            return
        from empanada_desktop.core.imageio import read_image

        try:
            if Path(path).suffix.lower() in (".tif", ".tiff"):
                self.document.set_labels(read_image(path, mmap=True), path)
            else:
                self.document.set_labels(_open_labels(Path(path)), path, copy=False)
        except UserError as error:
            show_error(self, "Cannot show the result", str(error))
            return
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.eta.setText("")
        self.report(f"Done: {count} object(s) found; the labels are also saved in {path}.")
        self.labelsWritten.emit()

    def _on_failed(self, message: str) -> None:
        self.cancel_button.setEnabled(False)
        self.jobEnded.emit()
        self.report("")
        show_error(self, "Volume segmentation failed", message)


def _open_labels(path: Path):
    """OME-Zarr labels as a lazy source (a slice reads only its chunks)."""
    from empanada_desktop.core.volumes import open_image

    return open_image(path)


def _volume_screen():
    """The 3D box running on a Dask cluster, part-way (example numbers)."""
    from empanada_desktop.ui.viewer.document import demo_document

    document = demo_document()
    box = VolumeSegmentation(document, lambda: "MitoNet_v1", lambda: None, lambda text: None)
    box.target.where.setCurrentIndex(box.target.where.findData("cluster"))
    box.target.address.setText("tcp://10.0.0.5:8786")
    box.target.output.setText("/shared/cell.zarr/labels/MitoNet_v1")
    box.run_button.setEnabled(False)
    box.cancel_button.setEnabled(True)
    box._on_event(Progress(step=27, total=80, eta_seconds=754.0, message="segmented 27/40 blocks"),
                  Path("/shared/cell.zarr/labels/MitoNet_v1"), -1)
    return box, (380, 560)


register_screen("volume_segmentation", _volume_screen)
