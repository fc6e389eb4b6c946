"""The patch picker: random patches or patches at clicked points, added to the training set.

Patches are cut from the document (only the patch is read from a memory-mapped volume), turned
into uint8 with the viewer's contrast limits (what the user sees), optionally pre-filled with the
current model's prediction (``set_prediction_provider``), and outlined on the image.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QGraphicsEllipseItem,
                               QGraphicsItem, QGraphicsRectItem, QLabel, QPushButton, QSpinBox,
                               QVBoxLayout, QWidget)

from empanada_desktop.core import patches as geometry
from empanada_desktop.ui.shell.screen_registry import register_screen
from empanada_desktop.ui.training_data.suggestions_panel import ModelSource, SuggestionsBox
from empanada_desktop.ui.training_data.training_set import Patch, TrainingSet
from empanada_desktop.ui.viewer.document import Document
from empanada_desktop.ui.viewer.viewer import Viewer

log = logging.getLogger(__name__)
PredictionProvider = Callable[[np.ndarray], np.ndarray]  # uint8 (h, w) -> int labels (h, w)


def to_display_uint8(array: np.ndarray, levels: tuple[float, float] | None) -> np.ndarray:
    """uint8 as shown on screen: uint8 stays as is, other types are scaled by the contrast limits."""
    if array.dtype == np.uint8:
        return np.array(array)
    lo, hi = levels if levels is not None else (float(array.min()), float(array.max()))
    scaled = (np.asarray(array, np.float32) - lo) / max(hi - lo, 1e-6)
    return (np.clip(scaled, 0, 1) * 255 + 0.5).astype(np.uint8)


class PatchPicker(QWidget):
    """Controls for picking patches from the viewer's document into a TrainingSet."""

    def __init__(self, document: Document, viewer: Viewer, training_set: TrainingSet,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self.viewer = viewer
        self.training_set = training_set
        self.points: list[tuple[str, int, float, float]] = []
        self.prediction_provider: PredictionProvider | None = None
        self._outlines: list[QGraphicsRectItem] = []
        self._markers: list[QGraphicsItem] = []
        self._previous_handler = None
        self.rng = np.random.default_rng()

        self.size_spin = QSpinBox()
        self.size_spin.setRange(16, 2048)
        self.size_spin.setSingleStep(16)
        self.size_spin.setValue(256)
        self.size_spin.setSuffix(" px")
        self.size_spin.setToolTip("Patch width and height (empanada trains on 256 px by default)")
        self.count_spin = QSpinBox()
        self.count_spin.setRange(1, 500)
        self.count_spin.setValue(16)
        self.count_spin.setToolTip("How many patches to pick (16 is a good start for finetuning)")
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(["Random", "At clicked points (all)", "At clicked points (N random)"])
        self.this_slice = QCheckBox("Only this slice")
        self.any_plane = QCheckBox("Any plane (isotropic volume)")
        self.any_plane.setToolTip("Draw random patches from xy, xz and yz slices")
        self.flipbook = QCheckBox("Flipbooks (5 slices, middle annotated)")
        self.flipbook.setToolTip("For 3D: keep 2 slices above and below as context, like empanada")
        self.prefill = QCheckBox("Pre-fill with the model's prediction")
        self.prefill.setToolTip("Start each patch from the current model's segmentation")
        self.click_button = QPushButton("Click points")
        self.click_button.setCheckable(True)
        self.click_button.setToolTip("While on, clicks on the image add patch centres (C)")
        self.click_button.setShortcut("C")
        self.click_button.toggled.connect(self._clicking)
        clear = QPushButton("Clear points")
        clear.clicked.connect(self.clear_points)
        self.pick_button = QPushButton("Pick patches")
        self.pick_button.setToolTip("Add the patches to the training set")
        self.pick_button.clicked.connect(self.pick)
        self.info = QLabel("")
        self.info.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Patch size", self.size_spin)
        form.addRow("Number", self.count_spin)
        form.addRow("Where", self.mode_combo)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        for widget in (self.this_slice, self.any_plane, self.flipbook, self.prefill, self.click_button,
                       clear, self.pick_button, self.info):
            layout.addWidget(widget)
        self.suggestions = SuggestionsBox(document, viewer, training_set, self.size_spin.value, self._stem)
        layout.addWidget(self.suggestions)
        layout.addStretch(1)
        document.imageChanged.connect(self._image_changed)
        document.sliceChanged.connect(self.show_outlines)
        document.sliceChanged.connect(self.show_markers)
        self.size_spin.valueChanged.connect(lambda *_: self.show_markers())
        training_set.changed.connect(self.show_outlines)
        self._image_changed()

    # -- hooks -----------------------------------------------------------------------------
    def set_prediction_provider(self, provider: PredictionProvider | None) -> None:
        """``provider(image2d_uint8) -> labels2d`` segments a patch (None: no pre-fill)."""
        self.prediction_provider = provider
        self.prefill.setEnabled(provider is not None)
        self.prefill.setChecked(provider is not None and self.prefill.isChecked())

    def set_model_source(self, source: ModelSource | None) -> None:
        """``source()`` gives the model "Suggest patches" uses (``suggestions_panel.ModelChoice``)."""
        self.suggestions.set_model_source(source)

    # -- clicking points (the viewer's mouse handler while on) -----------------------------
    def _clicking(self, on: bool) -> None:
        if on:
            self._previous_handler = self.viewer.mouse_handler
            self.viewer.set_mouse_handler(self)
            if self.mode_combo.currentIndex() == 0:
                self.mode_combo.setCurrentIndex(1)  # clicking means: patches at these points
            self.info.setText("Click on the image to add patch centres; the dashed squares show "
                              "the patches. Then Pick patches.")
        elif self.viewer.mouse_handler is self:
            self.viewer.set_mouse_handler(self._previous_handler)

    def press(self, pos, modifiers=Qt.KeyboardModifier.NoModifier) -> bool:
        self.add_point(pos[0], pos[1])
        return True

    def move(self, pos) -> None:
        pass

    def release(self, pos) -> None:
        pass

    def add_point(self, row: float, col: float) -> None:
        self.points.append((self.document.plane, self.document.index, float(row), float(col)))
        if self.mode_combo.currentIndex() == 0:
            self.mode_combo.setCurrentIndex(1)
        self.info.setText(f"{len(self.points)} point(s) clicked; Pick patches adds a patch at each.")
        self.show_markers()

    def clear_points(self) -> None:
        self.points = []
        self.info.setText("")
        self.show_markers()

    def show_markers(self) -> None:
        """A dot at each clicked point of the slice on screen and a dashed square for its patch."""
        for item in self._markers:
            self.viewer.remove_overlay(item)
        self._markers = []
        doc, size = self.document, self.size_spin.value()
        if doc.image is None:
            return
        pen = QPen(Qt.GlobalColor.cyan)
        pen.setCosmetic(True)
        pen.setWidth(2)
        dashed = QPen(pen)
        dashed.setStyle(Qt.PenStyle.DashLine)
        for plane, index, row, col in self.points:
            if plane != doc.plane or index != doc.index:
                continue
            dot = QGraphicsEllipseItem(QRectF(col - 3, row - 3, 6, 6))
            box = QGraphicsRectItem(QRectF(col - size / 2, row - size / 2, size, size))
            dot.setPen(pen)
            dot.setBrush(Qt.GlobalColor.cyan)
            box.setPen(dashed)
            for item in (dot, box):
                item.setZValue(21)
                self.viewer.add_overlay(item)
                self._markers.append(item)
    # -- picking ---------------------------------------------------------------------------
    def _image_changed(self) -> None:
        doc = self.document
        volume = doc.is_3d and not doc.is_stack
        self.flipbook.setEnabled(volume)
        self.flipbook.setChecked(volume and self.flipbook.isChecked())
        self.any_plane.setEnabled(volume)
        self.this_slice.setEnabled(doc.is_3d)
        self.prefill.setEnabled(self.prediction_provider is not None)
        self.clear_points()
        self.show_outlines()

    def _valid_shapes(self) -> list[tuple[int, int]] | None:
        """For a 2D stack, the real size of each image (the rest is padding)."""
        return self.document.stack_shapes if self.document.is_stack else None

    def boxes(self) -> list[geometry.PatchBox]:
        """The patch boxes the current settings pick (random ones change each call)."""
        doc = self.document
        if doc.image is None:
            return []
        size, n = self.size_spin.value(), self.count_spin.value()
        mode = self.mode_combo.currentIndex()
        if mode > 0:
            if not self.points:
                return []
            return geometry.patches_at_points(doc.shape3d, self.points, size,
                                              n=n if mode == 2 else None, rng=self.rng,
                                              valid_shapes=self._valid_shapes())
        planes = doc.available_planes() if self.any_plane.isChecked() else (doc.plane,)
        index = doc.index if (self.this_slice.isChecked() or not doc.is_3d) else None
        existing = [geometry.PatchBox(**{k: p.origin[k] for k in ("plane", "index", "row", "col", "size")})
                    for p in self.training_set.patches if _has_box(p, doc)]
        return geometry.random_patches(doc.shape3d, n, size, self.rng, planes=planes, index=index,
                                       valid_shapes=self._valid_shapes(), avoid=existing)

    def pick(self) -> list[Patch]:
        """Cut the patches and add them to the training set."""
        doc = self.document
        boxes = self.boxes()
        if not boxes:
            self.info.setText("Nothing to pick: open an image, or click points first." if doc.image is not None
                              else "Open an image first.")
            return []
        volume = doc.image if doc.image.ndim == 3 else doc.image[np.newaxis]
        labels = doc.labels_array()  # painted, or a segmentation shown lazily
        labels = labels if labels is None or labels.ndim == 3 else labels[np.newaxis]
        levels = self.viewer.levels()
        use_flipbook = self.flipbook.isChecked() and self.flipbook.isEnabled()
        stem = self._stem()
        patches = []
        prefill = self.prefill.isChecked() and self.prediction_provider is not None
        if prefill:
            self._say(f"Pre-filling {len(boxes)} patch(es) with the model's prediction ...")
        for number, box in enumerate(boxes, start=1):
            if prefill and number > 1:
                self._say(f"Pre-filling patch {number} of {len(boxes)} with the model's prediction ...")
            image = geometry.crop_flipbook(volume, box) if use_flipbook else geometry.crop(volume, box)
            image = to_display_uint8(image, levels)
            mask = np.zeros(image.shape, np.int32)
            middle = mask[mask.shape[0] // 2] if use_flipbook else mask
            if labels is not None:
                middle[...] = geometry.crop(labels, box)
            if self.prefill.isChecked() and self.prediction_provider is not None and not middle.any():
                middle[...] = self._predict(image[image.shape[0] // 2] if use_flipbook else image)
            source = doc.stack_names[box.index].rsplit(".", 1)[0] if doc.is_stack else stem
            patches.append(Patch(source, geometry.patch_name(stem, box), image, mask,
                                 {**box.to_dict(), "path": str(doc.path or "")}))
        overlapping = self._count_overlaps(boxes)
        self.training_set.add(patches)
        text = f"Added {len(patches)} patch(es); {self.training_set.count_text()}."
        if overlapping:
            text += (f" {overlapping} of them overlap another patch (outlined in orange): the shared "
                     "pixels are trained on twice; move the points apart if that is not intended.")
        self.info.setText(text)
        if self.mode_combo.currentIndex() > 0:
            self.points = []  # used: the next clicks start a new batch
            self.show_markers()
        return patches

    def _count_overlaps(self, boxes: list[geometry.PatchBox]) -> int:
        existing = [_box(p) for p in self.training_set.patches if _has_box(p, self.document)]
        return sum(1 for i, box in enumerate(boxes)
                   if any(box.overlaps(other) for other in existing + boxes[:i] + boxes[i + 1:]))

    def _say(self, text: str) -> None:
        """Show progress now: pre-filling runs the model here, between repaints."""
        from PySide6.QtWidgets import QApplication

        self.info.setText(text)
        QApplication.processEvents()

    def _predict(self, image2d: np.ndarray) -> np.ndarray:
        try:
            prediction = np.asarray(self.prediction_provider(image2d))
        except Exception as error:  # a failing model must not lose the picked patches
            log.exception("prediction for pre-fill failed")
            self.info.setText(f"Pre-fill failed ({error}); patches start empty.")
            return np.zeros(image2d.shape, np.int32)
        if prediction.shape != image2d.shape:
            return np.zeros(image2d.shape, np.int32)
        return prediction.astype(np.int32)

    def _stem(self) -> str:
        path = self.document.path
        if path is None:
            return "image"
        if path.is_dir() and path.suffix.lower() not in (".zarr", ".n5"):
            return path.name  # a 2D stack or a folder of TIFF slices
        return Path(path.name).stem.replace(".ome", "")

    # -- outlines --------------------------------------------------------------------------
    def show_outlines(self) -> None:
        """Outline the training set's patches that lie on the slice on screen."""
        for item in self._outlines:
            self.viewer.remove_overlay(item)
        self._outlines = []
        doc = self.document
        if doc.image is None:
            return
        pen = QPen(Qt.GlobalColor.yellow)
        pen.setCosmetic(True)
        pen.setWidth(2)
        overlap_pen = QPen(pen)
        overlap_pen.setColor(QColor(255, 140, 0))
        boxes = [_box(p) for p in self.training_set.patches if _has_box(p, doc)]
        for box in boxes:
            if box.plane == doc.plane and box.index == doc.index:
                item = QGraphicsRectItem(QRectF(box.col, box.row, box.size, box.size))
                overlaps = sum(box.overlaps(other) for other in boxes) > 1  # itself, and another
                item.setPen(overlap_pen if overlaps else pen)
                item.setZValue(20)
                self.viewer.add_overlay(item)
                self._outlines.append(item)


def _box(patch: Patch) -> geometry.PatchBox:
    return geometry.PatchBox(**{k: patch.origin[k] for k in ("plane", "index", "row", "col", "size")})


def _has_box(patch: Patch, document: Document) -> bool:
    o = patch.origin
    return "plane" in o and o.get("path", "") == str(document.path or "")


def _demo():
    from PySide6.QtWidgets import QHBoxLayout

    from empanada_desktop.ui.viewer.document import demo_document

    document = demo_document()
    viewer = Viewer(document)
    training_set = TrainingSet()
    picker = PatchPicker(document, viewer, training_set)
    picker.size_spin.setValue(64)
    picker.count_spin.setValue(6)
    picker.this_slice.setChecked(True)
    picker.rng = np.random.default_rng(3)
    picker.pick()
    container = QWidget()
    layout = QHBoxLayout(container)
    layout.addWidget(picker)
    layout.addWidget(viewer, 1)
    container._keep = (training_set, document)
    return container, (1100, 700)


register_screen("patch_picker", _demo)

if __name__ == "__main__":
    from PySide6.QtWidgets import QApplication

    from empanada_desktop.ui.shell.theme import configure_pyqtgraph

    app = QApplication([])
    configure_pyqtgraph()
    window, size = _demo()
    window.resize(*size)
    window.show()
    app.exec()
