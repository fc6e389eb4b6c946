""""Suggest patches": the model proposes where to annotate next (docs/SUGGEST.md).

A box in the Patches panel. *Suggest* runs ``backend.suggest.suggest_patches`` in the worker
(kind "suggest", with progress and Cancel) with the model chosen in the Inference panel, on this
slice, the stack or all planes, at the panel's patch size, leaving out patches already in the
training set (and in its saved folder) and the ones rejected before. The suggestions are listed
and outlined on the viewer with their rank and score; the combined uncertainty of the slice they
were computed for is a heatmap that can be toggled. Selecting a suggestion moves the viewer to
its slice and plane. *Accept* puts it into the training set with the model's prediction as its
mask (correct it in the gallery instead of drawing); *Reject* drops it. Saving the training set
lists the accepted suggestions' positions and scores in ``suggestions.csv``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                               QListWidget, QListWidgetItem, QProgressBar, QPushButton, QSlider,
                               QSpinBox, QVBoxLayout, QWidget)

from empanada_desktop.backend.events import Message, Progress
from empanada_desktop.core.errors import UserError
from empanada_desktop.core.patches import PatchBox, patch_name
from empanada_desktop.ui.shell.messages import show_error
from empanada_desktop.ui.shell.worker import Job, JobBusyError
from empanada_desktop.ui.training_data.suggestion_outlines import SuggestionOutlines
from empanada_desktop.ui.training_data.training_set import Patch, TrainingSet
from empanada_desktop.ui.viewer.heatmap_overlay import HeatmapOverlay

log = logging.getLogger(__name__)
SCOPES = (("This slice", "slice"), ("The stack (sampled slices)", "stack"), ("All planes: xy, xz, yz", "planes"))
SHORTCUTS = {"accept": "A", "reject": "R", "next": ".", "previous": ",", "heatmap": "H"}


@dataclass(frozen=True)
class ModelChoice:
    """The model to suggest with: its registered name, the inference settings, and optionally
    ``load(device) -> (model, model_config)`` (the inference panel's loaded copy)."""

    name: str
    inference: object  # backend.inference.config.InferenceConfig
    load: Callable[[str], tuple] | None = None


ModelSource = Callable[[], "ModelChoice | None"]


def suggest_job(choice: ModelChoice, settings: dict):
    """Worker job: load the model (through ``choice.load`` when given), then suggest."""

    def job(stop):
        from empanada_desktop.backend.devices import resolve_device
        from empanada_desktop.backend.suggest import SuggestConfig, suggest_patches

        config = SuggestConfig(model=choice.name, inference=choice.inference,
                               device=getattr(choice.inference, "device", "auto"), **settings)
        model = model_config = None
        if choice.load is not None:
            yield Progress(step=0, total=0, message=f"loading {choice.name} ...")
            model, model_config = choice.load(str(resolve_device(config.device)))
        return (yield from suggest_patches(config, stop, model=model, model_config=model_config))

    return job


class SuggestionsBox(QGroupBox):
    """The "Suggest patches" box; ``patch_size()`` and ``stem()`` come from the patch picker."""

    def __init__(self, document, viewer, training_set: TrainingSet, patch_size: Callable[[], int],
                 stem: Callable[[], str], parent: QWidget | None = None):
        super().__init__("Suggest patches (where the model is unsure)", parent)
        self.document = document
        self.viewer = viewer
        self.training_set = training_set
        self.patch_size = patch_size
        self.stem = stem
        self.model_source: ModelSource | None = None
        self.job: Job | None = None
        self.result = None  # the last SuggestResult
        self.pending: list = []  # SuggestedPatch not yet accepted or rejected, best first
        self.rejected: list[PatchBox] = []
        self._image_id: int | None = None
        self._messages: list[str] = []
        self.heatmap = HeatmapOverlay(viewer)
        self.outlines = SuggestionOutlines(viewer)

        self.count_spin = QSpinBox()
        self.count_spin.setRange(1, 200)
        self.count_spin.setValue(8)
        self.count_spin.setToolTip("How many patches to suggest")
        self.scope_combo = QComboBox()
        for text, scope in SCOPES:
            self.scope_combo.addItem(text, scope)
        self.scope_combo.setToolTip("Where to look: the slice on screen, slices sampled over the stack, "
                                    "or slices of all three planes (isotropic volumes)")
        self.run_button = QPushButton("Suggest")
        self.run_button.setToolTip("Rank patches by the uncertainty of the model chosen in the Inference "
                                   "panel, at the patch size above")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(10)
        self.heat_check = QCheckBox(f"Uncertainty heatmap ({SHORTCUTS['heatmap']})")
        self.heat_check.setChecked(True)
        self.heat_check.setToolTip("Colour the slice by the model's uncertainty: bright = unsure")
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(int(self.heatmap.opacity * 100))
        self.opacity.setToolTip("Heatmap opacity")
        self.list = QListWidget()
        self.list.setMinimumHeight(90)
        self.list.setMaximumHeight(170)
        self.scale_label = QLabel("")
        self.scale_label.setToolTip("The heatmap's brightest colour: this uncertainty (0..1) or more")
        self.list.setToolTip("Select a suggestion to go to it; accept (A) or reject (R) it; next / previous: the . / , keys")
        self.accept_action = self._action("Accept", "accept", "Add to the training set with the model's "
                                          "prediction as its mask", self.accept_current)
        self.reject_action = self._action("Reject", "reject", "Drop this suggestion", self.reject_current)
        self._action("Next", "next", "Next suggestion", lambda: self.select_row(self.list.currentRow() + 1))
        self._action("Previous", "previous", "Previous suggestion",
                     lambda: self.select_row(self.list.currentRow() - 1))
        self._action("Heatmap", "heatmap", "Show or hide the uncertainty heatmap", self.heat_check.toggle)
        accept_button, reject_button = QPushButton(), QPushButton()
        accept_button.clicked.connect(self.accept_action.trigger)
        reject_button.clicked.connect(self.reject_action.trigger)
        for button, action in ((accept_button, self.accept_action), (reject_button, self.reject_action)):
            button.setText(f"{action.text()} ({action.shortcut().toString()})")
            button.setToolTip(action.toolTip())
        self.accept_button, self.reject_button = accept_button, reject_button
        self.accept_all_button = QPushButton("Accept all")
        self.accept_all_button.setToolTip("Add every suggestion left to the training set")
        self.accept_all_button.clicked.connect(self.accept_all)
        self.info = QLabel("")
        self.info.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Number", self.count_spin)
        form.addRow("Where", self.scope_combo)
        run_row = QHBoxLayout()
        run_row.addWidget(self.run_button, 1)
        run_row.addWidget(self.cancel_button)
        heat_row = QHBoxLayout()
        heat_row.addWidget(self.heat_check)
        heat_row.addWidget(self.opacity, 1)
        heat_row.addWidget(self.scale_label)
        decide = QHBoxLayout()
        for button in (accept_button, reject_button, self.accept_all_button):
            decide.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(run_row)
        layout.addWidget(self.progress)
        layout.addLayout(heat_row)
        layout.addWidget(self.list, 1)
        layout.addLayout(decide)
        layout.addWidget(self.info)

        self.run_button.clicked.connect(lambda: self.run())
        self.cancel_button.clicked.connect(self.cancel)
        self.heat_check.toggled.connect(self.heatmap.set_visible)
        self.opacity.valueChanged.connect(lambda value: self.heatmap.set_opacity(value / 100))
        self.list.currentRowChanged.connect(self._selected)
        document.imageChanged.connect(self._image_changed)
        document.sliceChanged.connect(self.show_outlines)
        viewer.z_scale_spin.valueChanged.connect(lambda *_: self.show_outlines())
        self._image_changed()

    def _action(self, text: str, key: str, tip: str, slot) -> QAction:
        action = QAction(text, self)
        action.setShortcut(QKeySequence(SHORTCUTS[key]))
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.setToolTip(f"{tip} ({SHORTCUTS[key]})")
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def set_model_source(self, source: ModelSource | None) -> None:
        """``source()`` returns the ``ModelChoice`` to suggest with, or None when there is none."""
        self.model_source = source

    # -- state -----------------------------------------------------------------------------
    def _image_changed(self) -> None:
        doc = self.document
        volume = doc.image is not None and doc.is_3d and not doc.is_stack
        model = self.scope_combo.model()
        model.item(1).setEnabled(doc.image is not None and doc.is_3d)
        model.item(2).setEnabled(volume)
        if not model.item(self.scope_combo.currentIndex()).isEnabled():
            self.scope_combo.setCurrentIndex(0)
        self.pending, self.rejected, self.result = [], [], None
        self.scale_label.setText("")
        self._image_id = id(doc.image)
        self._fill_list()
        self._update_enabled()

    def _update_enabled(self) -> None:
        running = self.job is not None and self.job.is_running
        self.run_button.setEnabled(self.document.image is not None and not running)
        self.cancel_button.setEnabled(running)
        has = bool(self.pending)
        for widget in (self.accept_button, self.reject_button, self.accept_all_button):
            widget.setEnabled(has)
        self.accept_action.setEnabled(has)
        self.reject_action.setEnabled(has)

    def excluded_boxes(self) -> list[PatchBox]:
        """Patches of the open image that are in the training set, or were rejected."""
        path = str(self.document.path or "")
        boxes = [p.box for p in self.training_set.patches if p.box is not None and p.origin.get("path", "") == path]
        return boxes + list(self.rejected)

    # -- running -----------------------------------------------------------------------------
    def run(self) -> Job | None:
        doc = self.document
        if doc.image is None:
            self.info.setText("Open an image first.")
            return None
        try:
            choice = self.model_source() if self.model_source is not None else None
        except UserError as error:  # the inference panel's settings are refused
            self.info.setText(str(error))
            return None
        if choice is None:
            self.info.setText("Choose a model in the Inference panel first (one with weights).")
            return None
        root = self.training_set.root
        settings = dict(image=doc.image, n=self.count_spin.value(), patch_size=self.patch_size(),
                        scope=self.scope_combo.currentData(), plane=doc.plane, index=doc.index,
                        labelled=tuple(self.excluded_boxes()), image_stem=self.stem(),
                        training_sets=(root,) if root is not None else ())
        job = Job("suggest", suggest_job(choice, settings))
        job.event.connect(self._on_event)
        job.finished.connect(lambda result: self._on_done(result, id(doc.image)))
        job.failed.connect(self._on_failed)
        try:
            job.start()
        except JobBusyError as error:
            show_error(self, "Already suggesting", str(error))
            return None
        self.job = job
        self._messages = []
        self.progress.setRange(0, 0)
        self.info.setText(f"Looking for uncertain patches with {choice.name} ...")
        self._update_enabled()
        return job

    def cancel(self) -> None:
        if self.job is not None and self.job.is_running:
            self.job.cancel()
            self.info.setText("Cancelling ...")

    def _on_event(self, event) -> None:
        if isinstance(event, Progress):
            self.progress.setRange(0, event.total)
            self.progress.setValue(event.step)
            if event.message:
                self.info.setText(f"Suggesting: {event.message} ...")
        elif isinstance(event, Message):
            self._messages.append(event.text)

    def _on_done(self, result, image_id: int) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self._update_enabled()
        if result is None or result.stopped:
            self.info.setText("Cancelled; no new suggestions.")
            return
        if image_id != id(self.document.image):
            self.info.setText("Another image was opened meanwhile; the suggestions were dropped.")
            return
        self.progress.setValue(1)
        self.result = dataclasses.replace(result, signal_maps={})  # per-signal maps: not shown, up to 64 MB each
        self.pending = list(result.patches)
        if result.uncertainty is not None:
            self.heatmap.set_map(result.uncertainty, result.plane, result.index, result.map_step)
            self.scale_label.setText(f"max {self.heatmap.top:.2f}")
        self._fill_list()
        notes = " ".join(self._messages)
        self.info.setText(
            f"{len(self.pending)} suggestion(s) from {result.candidates} candidate patches on "
            f"{len(result.analysed)} slice(s) ({result.seconds:.0f} s). Accept (A) or reject (R) each; "
            f"next / previous: the . / , keys; the heatmap shows {result.plane} slice {result.index}. {notes}".strip())
        self._update_enabled()
        if self.pending:
            self.select_row(0)

    def _on_failed(self, message: str) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self._update_enabled()
        self.info.setText("")
        show_error(self, "Suggesting patches failed", message)

    # -- the list and the viewer -------------------------------------------------------------
    def _fill_list(self) -> None:
        was = self.list.blockSignals(True)
        self.list.clear()
        for patch in self.pending:
            box = patch.box
            item = QListWidgetItem(f"#{patch.rank}   {patch.score:.2f}   {box.plane} {box.index}   "
                                   f"row {box.row}, col {box.col}")
            item.setToolTip(", ".join(f"{name} {value:.2f}" for name, value in patch.signals.items()))
            self.list.addItem(item)
        self.list.blockSignals(was)
        self.show_outlines()

    def current(self):
        row = self.list.currentRow()
        return self.pending[row] if 0 <= row < len(self.pending) else None

    def select_row(self, row: int) -> None:
        if self.pending:
            self.list.setCurrentRow(int(np.clip(row, 0, len(self.pending) - 1)))

    def _selected(self, row: int) -> None:
        patch = self.current()
        if patch is not None:
            self.go_to(patch.box)
        self.show_outlines()

    def show_outlines(self) -> None:
        selected = self.current()
        self.outlines.show(self.pending, selected.rank if selected is not None else None)

    def go_to(self, box: PatchBox) -> None:
        """Show the slice (and plane) of ``box`` and bring the patch into view."""
        doc = self.document
        if doc.image is None:
            return
        if box.plane != doc.plane:
            doc.set_plane(box.plane)
        if box.index != doc.index:
            doc.set_index(box.index)
        rect = self.viewer.slice_transform().mapRect(QRectF(box.col, box.row, box.size, box.size))
        view_box = self.viewer.view_box
        (x0, x1), (y0, y1) = view_box.viewRange()
        if QRectF(x0, y0, x1 - x0, y1 - y0).contains(rect):
            return
        if rect.width() < x1 - x0 and rect.height() < y1 - y0:  # keep the zoom, move
            view_box.translateBy(x=rect.center().x() - (x0 + x1) / 2, y=rect.center().y() - (y0 + y1) / 2)
        else:
            view_box.setRange(rect, padding=0.5)

    # -- deciding ------------------------------------------------------------------------------
    def _as_patch(self, suggestion) -> Patch:
        doc, box = self.document, suggestion.box
        stem = self.stem()
        source = doc.stack_names[box.index].rsplit(".", 1)[0] if doc.is_stack and doc.stack_names else stem
        labels = (np.zeros(suggestion.image.shape, np.int32) if suggestion.labels is None
                  else np.array(suggestion.labels, np.int32))
        origin = {"plane": box.plane, "index": int(box.index), "row": int(box.row), "col": int(box.col),
                  "size": int(box.size), "path": str(doc.path or ""),
                  "suggestion": {"rank": int(suggestion.rank), "score": float(suggestion.score),
                                 "signals": {k: float(v) for k, v in suggestion.signals.items()}}}
        box = PatchBox(box.plane, int(box.index), int(box.row), int(box.col), int(box.size))
        return Patch(source, patch_name(stem, box), np.array(suggestion.image, np.uint8), labels, origin)

    def accept_current(self) -> Patch | None:
        """Add the selected suggestion to the training set, its mask the model's prediction."""
        row = self.list.currentRow()
        if not 0 <= row < len(self.pending):
            return None
        patch = self._as_patch(self.pending.pop(row))
        self.training_set.add([patch])
        self._after_decision(row, f"Accepted {patch.name}: correct its mask in the Training set gallery.")
        return patch

    def reject_current(self) -> None:
        row = self.list.currentRow()
        if not 0 <= row < len(self.pending):
            return
        suggestion = self.pending.pop(row)
        self.rejected.append(suggestion.box)
        self._after_decision(row, f"Rejected #{suggestion.rank}; it is not suggested again for this image.")

    def accept_all(self) -> list[Patch]:
        patches = [self._as_patch(s) for s in self.pending]
        self.pending = []
        self.training_set.add(patches)
        self._after_decision(0, f"Accepted {len(patches)} suggestion(s): correct their masks in the "
                                "Training set gallery.")
        return patches

    def _after_decision(self, row: int, text: str) -> None:
        self._fill_list()
        self._update_enabled()
        self.info.setText(f"{text} {self.training_set.count_text()}.")
        if self.pending:
            self.select_row(min(row, len(self.pending) - 1))
