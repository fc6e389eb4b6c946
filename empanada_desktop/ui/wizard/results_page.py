"""Wizard page 5: before/after metrics, both models side by side on validation patches, save and
register the new model, open it in the inference panel."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
    QWizardPage,
)

from empanada_desktop.core.errors import UserError, user_message
from empanada_desktop.ui.shell.messages import show_error
from empanada_desktop.ui.shell.worker import Job, JobBusyError, JobFailed, run_job, spawn
from empanada_desktop.ui.wizard.state import WizardState

log = logging.getLogger(__name__)

METRICS = (("iou", "IoU"), ("pq", "PQ"), ("f1", "F1@0.5"))
MAX_PATCHES = 3
THUMB = 180
GALLERY_TITLE = "<b>Validation patches</b>: image, your labels, the original model, the finetuned model"


def overlay_rgb(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Grey image with each label id in its own colour (stable across models), as HxWx3 uint8."""
    grey = np.repeat(np.asarray(image, dtype=np.float32)[..., None], 3, axis=2)
    ids = np.asarray(labels, dtype=np.int64)
    # A cheap integer hash gives every id a stable, well-spread colour.
    hashed = (ids * 2654435761) & 0xFFFFFF
    colours = np.stack([(hashed >> 16) & 255, (hashed >> 8) & 255, hashed & 255], axis=-1)
    colours = np.maximum(colours, 60).astype(np.float32)
    mask = (ids > 0)[..., None]
    out = np.where(mask, (1 - alpha) * grey + alpha * colours, grey)
    return np.clip(out, 0, 255).astype(np.uint8)


def to_pixmap(rgb: np.ndarray, size: int = THUMB) -> QPixmap:
    rgb = np.ascontiguousarray(rgb)
    height, width, _ = rgb.shape
    image = QImage(rgb.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()
    return QPixmap.fromImage(image).scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio,
                                           Qt.TransformationMode.FastTransformation)


def compare_job(model_name: str, pth: Path, yaml_path: Path, pairs, device: str = "cpu"):
    """Worker job: segment a few validation patches with the original and the finetuned model."""

    def job(stop):
        from empanada_desktop.backend.inference.config import InferenceConfig
        from empanada_desktop.backend.inference.engine2d import Engine2D
        from empanada_desktop.backend.loading import load_registered
        from empanada_desktop.backend.torchscript import load_model
        from empanada_desktop.core.dataset import read_pair
        from empanada_desktop.core.model_config import ModelConfig

        new_model = load_model(pth, device=device)
        new_config = ModelConfig.from_yaml(yaml_path)
        settings = InferenceConfig(device=device)
        base = None  # a new model has no original: its column stays empty
        if model_name is not None:
            base_model, base_config = load_registered(model_name, device=device)
            base = Engine2D(base_model, base_config, settings, device)
        new = Engine2D(new_model, new_config, settings, device)
        rows = []
        for pair in pairs[:MAX_PATCHES]:
            if stop():
                break
            image, mask, _notes = read_pair(pair)
            rows.append((image, mask, base.segment(image) if base else mask * 0, new.segment(image)))
        return rows
        yield  # pragma: no cover - makes this a generator

    return job


class ResultsPage(QWizardPage):
    def __init__(self, state: WizardState, parent=None):
        super().__init__(parent)
        self.state = state
        self.setTitle("Results")
        self.setSubTitle("How the finetuned model compares with the one you started from, on the "
                         "validation set. Save it under a name to use it here and in "
                         "empanada-napari.")
        self.table = QTableWidget(len(METRICS), 3)
        self.table.setHorizontalHeaderLabels(["before", "after", "change"])
        self.table.setVerticalHeaderLabels([label for _, label in METRICS])
        self.table.horizontalHeader().setDefaultSectionSize(80)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setFixedSize(330, 124)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.gallery = QWidget()
        self.gallery_layout = QGridLayout(self.gallery)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.gallery)
        self.name_edit = QLineEdit()
        self.register_button = QPushButton("Save and register")
        self.open_button = QPushButton("Open in inference panel")
        self.open_button.setEnabled(False)
        self.saved_label = QLabel("")
        self.saved_label.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(self.table)
        top.addWidget(self.note, 1)
        save_row = QHBoxLayout()
        save_row.addWidget(QLabel("Model name"))
        save_row.addWidget(self.name_edit, 1)
        save_row.addWidget(self.register_button)
        save_row.addWidget(self.open_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        self.gallery_title = QLabel(GALLERY_TITLE)
        self.gallery_title.setWordWrap(True)
        layout.addWidget(self.gallery_title)
        layout.addWidget(scroll, 1)
        layout.addLayout(save_row)
        layout.addWidget(self.saved_label)
        self.register_button.clicked.connect(lambda: self.save_and_register())
        self.open_button.clicked.connect(self._open_in_inference)
        self.registered_name: str | None = None
        self.compare_task = None
        self.metrics_task = None

    def nextId(self) -> int:
        return -1  # the last page (Finish), although the new-model page has a higher id

    def initializePage(self) -> None:
        result = self.state.result
        self.gallery_title.setText(GALLERY_TITLE)
        self.table.setHorizontalHeaderLabels(["before", "after", "change"])
        self.show_metrics(result.baseline_metrics or {}, result.final_metrics or {})
        config = self.state.config
        self.name_edit.setText(result.model_name or (config.new_name if config else ""))
        self.registered_name = None
        self.open_button.setEnabled(False)
        self.saved_label.setText(f"The model files are in {result.run_dir}. Until you save it, "
                                 "the model is not in your model list.")
        if result.exported_pth is not None:
            self._start_comparison(result)
            if not result.baseline_metrics and not result.final_metrics:
                self._score_on_training_patches(result)
        else:
            self._clear_gallery()
            self.register_button.setEnabled(False)

    def show_metrics(self, before: dict, after: dict) -> None:
        for row, (key, _label) in enumerate(METRICS):
            b, a = before.get(key), after.get(key)
            cells = [f"{b:.3f}" if b is not None else "-", f"{a:.3f}" if a is not None else "-",
                     f"{a - b:+.3f}" if a is not None and b is not None else "-"]
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, column, item)
        if not before and not after:
            self.note.setText("No validation set was given, so there are no metrics. Check the "
                              "model on your images in the inference panel.")
        else:
            self.note.setText("IoU: overlap of the foreground. PQ: panoptic quality (segmentation "
                              "x detection, matches at IoU > 0.5). F1@0.5: detected objects. "
                              "Higher is better for all three.")

    def _score_on_training_patches(self, result) -> None:
        """No validation set: score both models on training patches, labelled as optimistic."""
        from empanada_desktop.ui.wizard.training_comparison import (
            OPTIMISTIC_NOTE, training_metrics_job, training_pairs)

        pairs = training_pairs(self.state.config.train_dirs if self.state.config else ())
        if not pairs:
            return
        self.note.setText(f"Scoring both models on {len(pairs)} training patches ...")
        job = Job("training-metrics", training_metrics_job(
            self.state.config.model, Path(result.exported_pth), Path(result.exported_yaml), pairs))

        async def flow():
            try:
                scores = await run_job(job)
            except (JobFailed, JobBusyError) as error:
                self.note.setText(f"No validation set, and scoring on the training patches failed: {error}")
                return
            if scores:
                self.show_metrics(*scores)
                self.table.setHorizontalHeaderLabels(["before*", "after*", "change"])
                self.note.setText("* " + OPTIMISTIC_NOTE.format(n=len(pairs)))

        self.metrics_task = spawn(flow())

    def _validation_pairs(self) -> list:
        from empanada_desktop.core.dataset import scan_dataset

        val_dir = self.state.config.val_dir if self.state.config else None
        if val_dir is None or not Path(val_dir).is_dir():
            return []
        report = scan_dataset(val_dir)
        return [pair for pairs in report.sources.values() for pair in pairs]

    def _start_comparison(self, result) -> None:
        self._clear_gallery()
        pairs = self._validation_pairs()
        if not pairs and result.exported_pth is not None:
            from empanada_desktop.ui.wizard.training_comparison import training_pairs

            pairs = training_pairs(self.state.config.train_dirs if self.state.config else ())
            self.gallery_title.setText("<b>Training patches</b> (no validation set; the finetuned "
                                       "model learned from these): image, your labels, the original "
                                       "model, the finetuned model")
        if not pairs or result.exported_pth is None:
            self.gallery_layout.addWidget(QLabel("No patches to compare."), 0, 0)
            return
        self.gallery_layout.addWidget(QLabel("Segmenting validation patches with both models ..."),
                                      0, 0)
        config = self.state.config
        base_name = None if getattr(config, "SECTION", "finetune") == "train" else config.model
        job = Job("compare", compare_job(base_name, Path(result.exported_pth),
                                         Path(result.exported_yaml), pairs))

        async def flow():
            try:
                rows = await run_job(job)
            except (JobFailed, JobBusyError) as error:
                self._clear_gallery()
                self.gallery_layout.addWidget(QLabel(f"Comparison not available: {error}"), 0, 0)
                return
            self.show_gallery(rows)

        self.compare_task = spawn(flow())

    def _clear_gallery(self) -> None:
        while self.gallery_layout.count():
            item = self.gallery_layout.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()

    def show_gallery(self, rows) -> None:
        self._clear_gallery()
        for column, title in enumerate(("image", "ground truth", "original model", "finetuned")):
            self.gallery_layout.addWidget(QLabel(f"<b>{title}</b>"), 0, column)
        for row, (image, mask, base, new) in enumerate(rows, start=1):
            for column, rgb in enumerate((np.repeat(image[..., None], 3, axis=2),
                                          overlay_rgb(image, mask), overlay_rgb(image, base),
                                          overlay_rgb(image, new))):
                label = QLabel()
                label.setPixmap(to_pixmap(rgb))
                self.gallery_layout.addWidget(label, row, column)

    def save_and_register(self, name: str | None = None) -> bool:
        from empanada_desktop.core.model_config import ModelConfig
        from empanada_desktop.core.registry import ModelRegistry

        result = self.state.result
        name = (name or self.name_edit.text()).strip()
        self.name_edit.setText(name)
        try:
            config = ModelConfig.from_yaml(result.exported_yaml)
            model = ModelRegistry().register(name, config, Path(result.exported_pth), copy=True)
        except (UserError, OSError) as error:
            show_error(self, "Cannot save the model", user_message(error))
            return False
        self.registered_name = model.name
        self.open_button.setEnabled(True)
        self.saved_label.setText(f"Saved as {model.name}; it is now in your model list (and can "
                                 "be exported for empanada-napari from the model manager).")
        self.wizard().modelRegistered.emit(model.name)
        return True

    def _open_in_inference(self) -> None:
        if self.registered_name:
            self.wizard().openInInference.emit(self.registered_name)
