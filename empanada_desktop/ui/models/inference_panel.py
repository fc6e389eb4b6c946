"""Inference panel: segment the slice on screen (or the visible part of it) and re-run when a
setting or the slice changes; segment the whole volume with progress and cancel; export labels.

Both run in the worker (kinds "inference2d" and "inference3d"; the 3D part is
``volume_segmentation.VolumeSegmentation``). A 2D result is written only into the slice it was
computed for; if the slice changed meanwhile it is dropped (and re-run when "re-run on change" is
on). The model stays loaded between 2D runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from empanada_desktop.core.errors import UserError, user_message
from empanada_desktop.ui.models.form_widgets import LazyComboBox, spin_box
from empanada_desktop.ui.models.inference_jobs import ModelCache, segment2d_job, segment_image
from empanada_desktop.ui.models.volume_segmentation import VolumeSegmentation
from empanada_desktop.ui.shell.messages import show_error
from empanada_desktop.ui.shell.screen_registry import register_screen
from empanada_desktop.ui.shell.worker import Job

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]  # row0, row1, col0, col1
DEBOUNCE_MS = 400


class InferencePanel(QWidget):
    """Mirrors a ``Document``; ``viewport`` returns the visible (row0, row1, col0, col1)."""

    labelsWritten = Signal()

    def __init__(self, document, viewport: Callable[[], Box | None] | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self._devices_listed = False
        self.viewport = viewport or (lambda: None)
        self.cache = ModelCache()
        self.model_combo = QComboBox()
        self.refresh_button = QPushButton("Refresh")
        self.confidence = spin_box(0.01, 0.99, 0.5, 0.05, decimals=2)
        self.confidence.setToolTip("A pixel is foreground at this probability or more; lower "
                                   "finds more, fainter objects.")
        self.center_confidence = spin_box(0.0, 0.99, 0.1, 0.05, decimals=2)
        self.center_confidence.setToolTip("Heatmap values at or below this are not object centers.")
        self.min_distance = spin_box(1, 63, 3, 2)
        self.min_distance.setToolTip("Centers closer than this (on the 1/4-resolution map) merge; "
                                     "larger values merge nearby objects.")
        self.downsample = QComboBox()
        for factor in (1, 2, 4, 8, 16):
            self.downsample.addItem(str(factor), factor)
        self.downsample.setToolTip("Shrink the image first: faster, for large objects. The mask "
                                   "is rendered back at full size.")
        self.fine_boundaries = QCheckBox("Fine boundaries")
        self.fine_boundaries.setToolTip("Group pixels at full resolution: smoother borders "
                                        "between touching objects, more memory.")
        self.semantic_only = QCheckBox("Semantic only (no instances)")
        self.max_objects = spin_box(1, 10_000_000, 100_000, 1000)
        self.max_objects.setToolTip("Maximum objects per class; also the label divisor.")
        self.tile_size = spin_box(64, 16384, 2048, 256)
        self.tile_overlap = spin_box(0, 1024, 128, 16)
        # Listing devices imports torch (about 2 s): done when the list is first opened, so the
        # main window does not wait for it at start-up.
        self.device = LazyComboBox(self.list_devices)
        self.device.addItem("auto", "auto")
        self.int8 = QComboBox()
        for text, value in (("auto: int8 when it pays", "auto"), ("int8", "on"), ("float32", "off")):
            self.int8.addItem(text, value)
        self.int8.setToolTip(
            "On the CPU, run the model in 8-bit integers: several times faster, calibrated on your "
            "image and used only when it agrees with float32 there. Auto uses it for stacks, large "
            "images, and once calibrated for this model."
        )
        options = QFormLayout()
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_combo, 1)
        model_row.addWidget(self.refresh_button)
        options.addRow("Model", model_row)
        options.addRow("Confidence", self.confidence)
        options.addRow("Center confidence", self.center_confidence)
        options.addRow("Centers min. distance", self.min_distance)
        options.addRow("Downsampling", self.downsample)
        options.addRow("", self.fine_boundaries)
        options.addRow("", self.semantic_only)
        options.addRow("Max objects", self.max_objects)
        options.addRow("Tile size", self.tile_size)
        options.addRow("Tile overlap", self.tile_overlap)
        options.addRow("Device", self.device)
        options.addRow("CPU arithmetic", self.int8)

        box2d = QGroupBox("2D: the slice on screen")
        self.viewport_only = QCheckBox("Only the visible part (faster on big images)")
        self.auto_rerun = QCheckBox("Re-run when a setting or the slice changes")
        self.run2d_button = QPushButton("Segment slice")
        layout2d = QVBoxLayout(box2d)
        for widget in (self.viewport_only, self.auto_rerun, self.run2d_button):
            layout2d.addWidget(widget)

        self.volume = VolumeSegmentation(document, lambda: self.model_combo.currentData(),
                                         self.settings, lambda text: self.status.setText(text))
        self.export_button = QPushButton("Export labels to TIFF ...")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(options)
        layout.addWidget(box2d)
        layout.addWidget(self.volume)
        layout.addWidget(self.export_button)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.debounce = QTimer(self)
        self.debounce.setSingleShot(True)
        self.debounce.setInterval(DEBOUNCE_MS)
        self.debounce.timeout.connect(self.run_2d)
        self.job2d: Job | None = None
        self._rerun_pending = False
        self.refresh_button.clicked.connect(lambda: self.refresh_models())
        self.run2d_button.clicked.connect(lambda: self.run_2d())
        self.volume.labelsWritten.connect(self.labelsWritten)
        self.volume.jobEnded.connect(self._update_enabled)
        self.export_button.clicked.connect(lambda: self.export_labels())
        for signal in (self.confidence.valueChanged, self.center_confidence.valueChanged,
                       self.min_distance.valueChanged, self.downsample.currentIndexChanged,
                       self.fine_boundaries.toggled, self.semantic_only.toggled,
                       self.max_objects.valueChanged, self.tile_size.valueChanged,
                       self.tile_overlap.valueChanged, self.model_combo.currentIndexChanged,
                       self.device.currentIndexChanged, self.int8.currentIndexChanged,
                       self.viewport_only.toggled):
            signal.connect(lambda *_: self._changed())
        document.sliceChanged.connect(self._changed)
        document.imageChanged.connect(self._update_enabled)
        self.refresh_models()
        self._update_enabled()

    # -- state -------------------------------------------------------------------------------
    def refresh_models(self, select: str | None = None) -> None:
        from empanada_desktop.core.registry import ModelRegistry

        select = select or self.model_combo.currentData()
        try:
            models = [m for m in ModelRegistry().list() if m.installed]
        except UserError as error:
            models = []
            self.status.setText(str(error))
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for model in models:
            self.model_combo.addItem(model.name, model.name)
        if select is not None and self.model_combo.findData(select) >= 0:
            self.model_combo.setCurrentIndex(self.model_combo.findData(select))
        self.model_combo.blockSignals(False)
        if not models:
            self.status.setText("No model with weights yet: import one in Models > Manage models.")
        self._update_enabled()

    def select_model(self, name: str) -> None:
        self.refresh_models(select=name)
        if self.model_combo.currentData() != name:
            raise UserError(f"Model {name} is not registered or has no weights.")

    def list_devices(self) -> None:
        """Add the machine's devices to the device list (once; "auto" is there from the start)."""
        if self._devices_listed:
            return
        self._devices_listed = True
        try:
            from empanada_desktop.backend.devices import list_devices

            devices = list_devices()
        except Exception:  # noqa: BLE001 - the panel still works with "auto"
            log.exception("listing devices failed")
            devices = []
        for info in devices:
            self.device.addItem(f"{info.id}" + ("" if info.available else " (unavailable)"), info.id)
            index = self.device.count() - 1
            self.device.setItemData(index, info.reason or info.name, 3)  # 3 = ToolTipRole
            if not info.available:
                self.device.model().item(index).setEnabled(False)

    def _update_enabled(self) -> None:
        has_image = self.document.image is not None
        has_model = self.model_combo.count() > 0
        self.run2d_button.setEnabled(has_image and has_model)
        self.volume.update_enabled(has_image and has_model)
        self.export_button.setEnabled(has_image)
        self.volume.target.refresh_default()  # the default output names the model

    def settings(self):
        from empanada_desktop.backend.inference.config import InferenceConfig

        return InferenceConfig(
            confidence_thr=self.confidence.value(),
            center_confidence_thr=self.center_confidence.value(),
            nms_kernel=self.min_distance.value(), downsample=self.downsample.currentData(),
            fine_boundaries=self.fine_boundaries.isChecked(),
            semantic_only=self.semantic_only.isChecked(), max_objects=self.max_objects.value(),
            tile_size=self.tile_size.value(), tile_overlap=self.tile_overlap.value(),
            device=self.device.currentData() or "auto", int8=self.int8.currentData() or "auto",
            **self.volume.options())

    def _changed(self) -> None:
        if self.auto_rerun.isChecked() and self.document.image is not None:
            self.debounce.start()

    # -- 2D ----------------------------------------------------------------------------------
    def _box(self, shape) -> Box:
        full = (0, shape[0], 0, shape[1])
        if not self.viewport_only.isChecked():
            return full
        box = self.viewport()
        if box is None:
            return full
        r0, r1, c0, c1 = (int(v) for v in box)
        r0, c0 = max(r0, 0), max(c0, 0)
        r1, c1 = min(r1, shape[0]), min(c1, shape[1])
        return (r0, r1, c0, c1) if r1 > r0 and c1 > c0 else full

    def run_2d(self) -> Job | None:
        """Segment the slice on screen (or its visible part) in the worker."""
        if self.document.image is None or self.model_combo.count() == 0:
            return None
        if self.job2d is not None and self.job2d.is_running:
            self._rerun_pending = True  # the running one finishes first; then run again
            return self.job2d
        try:
            settings = self.settings()
        except UserError as error:
            self.status.setText(str(error))
            return None
        image = self.document.current_slice()
        box = self._box(image.shape)
        crop = np.ascontiguousarray(image[box[0]:box[1], box[2]:box[3]])
        where = (id(self.document.image), self.document.plane, self.document.index, box)
        job = Job("inference2d", segment2d_job(self.cache, self.model_combo.currentData(),
                                                settings, crop))
        job.finished.connect(lambda result: self._on_2d_done(*result, where))
        job.failed.connect(self._on_2d_failed)
        self.job2d = job
        self.status.setText(f"Segmenting the slice with {self.model_combo.currentData()} ...")
        job.start()
        return job

    def _on_2d_done(self, labels: np.ndarray, precision: str, where) -> None:
        image_id, plane, index, box = where
        doc = self.document
        if (id(doc.image), doc.plane, doc.index) != (image_id, plane, index):
            self.status.setText("The slice changed while segmenting; result dropped.")
        else:
            full = doc.current_labels()
            full = np.zeros(doc.current_slice().shape, np.int32) if full is None else full.copy()
            full[box[0]:box[1], box[2]:box[3]] = labels
            doc.set_slice_labels(full)
            count = len(np.unique(labels)) - (1 if (labels == 0).any() else 0)
            self.status.setText(f"{count} object(s) in this slice ({precision}).")
            self.labelsWritten.emit()
        self._after_2d()

    def _on_2d_failed(self, message: str) -> None:
        self.status.setText("")
        show_error(self, "Segmentation failed", message)
        self._rerun_pending = False

    def _after_2d(self) -> None:
        if self._rerun_pending:
            self._rerun_pending = False
            QTimer.singleShot(0, self.run_2d)

    # -- 3D ----------------------------------------------------------------------------------
    @property
    def job3d(self) -> Job | None:
        return self.volume.job

    def run_3d(self, out_path: str | Path | None = None) -> Job | None:
        """Segment the whole volume in the worker; the labels layer shows it when done."""
        return self.volume.run(out_path)

    def cancel_3d(self) -> None:
        self.volume.cancel()

    # -- export ------------------------------------------------------------------------------
    def export_labels(self, path: str | Path | None = None) -> Path | None:
        from empanada_desktop.core.imageio import write_tiff

        if not self.document.has_labels():
            show_error(self, "Nothing to export", "There are no labels yet: segment or paint first.")
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export labels", "labels.tif",
                                                  "TIFF (*.tif *.tiff)")
            if not path:
                return None
        try:
            write_tiff(Path(path), np.asarray(self.document.labels_array()))
        except (UserError, OSError) as error:
            show_error(self, "Export failed", user_message(error, path))
            return None
        self.status.setText(f"Wrote {path}.")
        return Path(path)

    def prediction_provider(self, image2d: np.ndarray) -> np.ndarray:
        """Segment a patch with the chosen model and settings (for the patch picker).

        Runs on the calling thread; the patch picker calls it from its own worker job.
        """
        name = self.model_combo.currentData()
        if name is None:
            raise UserError("Choose a model in the inference panel first (none has weights yet).")
        return segment_image(self.cache, name, self.settings(), image2d)


def _inference_panel_screen():
    from empanada_desktop.ui.viewer.document import demo_document

    return InferencePanel(demo_document()), (380, 820)


register_screen("inference_panel", _inference_panel_screen)
