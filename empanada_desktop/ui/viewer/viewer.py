"""The image viewer: zoom, pan, slice slider, xy / xz / yz planes, contrast, cursor readout.

Built from pyqtgraph items: a ViewBox holding an ImageItem (the image) and a LabelsLayer, with a
HistogramLUTWidget for contrast. Only the slice on screen is read from the document's image, so
memory-mapped volumes larger than RAM scroll without loading. 8- and 16-bit data are shown with
contrast limits (levels), never converted. Tools (brush, point picking) plug in through
``set_mouse_handler``; without one, dragging pans and the wheel zooms.
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QSlider, QSpinBox, QVBoxLayout,
                               QWidget)

from empanada_desktop.ui.viewer.document import Document
from empanada_desktop.ui.viewer.labels_layer import LabelsLayer

log = logging.getLogger(__name__)


class MouseHandler(Protocol):
    """What a tool implements to receive left-button events in slice coordinates (row, col)."""

    def press(self, pos: tuple[float, float], modifiers: Qt.KeyboardModifier) -> bool: ...
    def move(self, pos: tuple[float, float]) -> None: ...
    def release(self, pos: tuple[float, float]) -> None: ...


def auto_levels(slice2d: np.ndarray) -> tuple[float, float]:
    """Contrast limits from the 0.5 / 99.5 percentiles of (a subsample of) a slice."""
    step = max(1, int(np.sqrt(slice2d.size / 250_000)))
    sample = np.asarray(slice2d[::step, ::step], dtype=np.float64)
    lo, hi = np.percentile(sample, (0.5, 99.5))
    if hi <= lo:
        lo, hi = float(sample.min()), float(sample.max())
        if hi <= lo:
            hi = lo + 1
    return float(lo), float(hi)


class _ToolImageItem(pg.ImageItem):
    """An ImageItem that hands left-button drags and clicks to the viewer's tool."""

    def __init__(self, viewer: Viewer):
        super().__init__()
        self._viewer = viewer
        self._dragging = False

    def _pos(self, ev) -> tuple[float, float]:
        p = ev.pos()
        return (p.y(), p.x())

    def mouseDragEvent(self, ev):  # noqa: N802 (Qt naming)
        handler = self._viewer.mouse_handler
        if handler is None or ev.button() != Qt.MouseButton.LeftButton:
            ev.ignore()
            return
        if ev.isStart():
            self._dragging = bool(handler.press(self._pos(ev), ev.modifiers()))
            if not self._dragging:
                ev.ignore()
                return
        if not self._dragging:
            ev.ignore()
            return
        ev.accept()
        if ev.isFinish():
            handler.release(self._pos(ev))
            self._dragging = False
        else:
            handler.move(self._pos(ev))

    def mouseClickEvent(self, ev):  # noqa: N802
        handler = self._viewer.mouse_handler
        if handler is None or ev.button() != Qt.MouseButton.LeftButton:
            ev.ignore()
            return
        if handler.press(self._pos(ev), ev.modifiers()):
            handler.release(self._pos(ev))
            ev.accept()
        else:
            ev.ignore()


class Viewer(QWidget):
    """A slice viewer over a Document."""

    readoutChanged = Signal(str)

    def __init__(self, document: Document, parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self.mouse_handler: MouseHandler | None = None
        self._levels: tuple[float, float] | None = None
        self._slice: np.ndarray | None = None

        self.graphics = pg.GraphicsLayoutWidget()
        self.view_box = self.graphics.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.image_item = _ToolImageItem(self)
        self.labels_layer = LabelsLayer()
        self.view_box.addItem(self.image_item)
        self.view_box.addItem(self.labels_layer)
        self.histogram = pg.HistogramLUTWidget()
        self.histogram.setImageItem(self.image_item)
        self.histogram.setMinimumWidth(110)
        self.histogram.item.sigLevelChangeFinished.connect(self._remember_levels)

        self.plane_combo = QComboBox()
        self.plane_combo.setToolTip("Plane to slice the volume along (xy, xz, yz)")
        self.plane_combo.currentTextChanged.connect(self._plane_chosen)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setToolTip("Slice (Page Up / Page Down, or the mouse wheel with Ctrl)")
        self.slider.valueChanged.connect(self.document.set_index)
        self.spin = QSpinBox()
        self.spin.valueChanged.connect(self.document.set_index)
        self.readout = QLabel(" ")
        self.readout.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        top = QHBoxLayout()
        top.addWidget(self.graphics, 1)
        top.addWidget(self.histogram)
        bottom = QHBoxLayout()
        bottom.addWidget(QLabel("Plane"))
        bottom.addWidget(self.plane_combo)
        bottom.addWidget(self.slider, 1)
        bottom.addWidget(self.spin)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top, 1)
        layout.addLayout(bottom)
        layout.addWidget(self.readout)

        self.graphics.scene().sigMouseMoved.connect(self._mouse_moved)
        document.imageChanged.connect(self._image_changed)
        document.sliceChanged.connect(self.refresh)
        document.labelsChanged.connect(self.refresh_labels)
        document.labelsEdited.connect(self._labels_edited)
        self._image_changed()

    # -- tools and overlays ----------------------------------------------------------------
    def set_mouse_handler(self, handler: MouseHandler | None) -> None:
        """Route left-button drags/clicks to ``handler`` (None: they pan the view again)."""
        self.mouse_handler = handler

    def add_overlay(self, item: pg.GraphicsObject) -> None:
        self.view_box.addItem(item)

    def remove_overlay(self, item: pg.GraphicsObject) -> None:
        self.view_box.removeItem(item)

    # -- document -> screen ----------------------------------------------------------------
    def _image_changed(self) -> None:
        doc = self.document
        self._levels = None
        with _blocked(self.plane_combo):
            self.plane_combo.clear()
            self.plane_combo.addItems(list(doc.available_planes()) if doc.image is not None else ["xy"])
        self.plane_combo.setEnabled(len(doc.available_planes()) > 1)
        self.refresh()
        self.refresh_labels()
        self.view_box.autoRange(padding=0.02)

    def refresh(self) -> None:
        """Show the document's current slice (and its labels)."""
        doc = self.document
        n = doc.n_slices() if doc.image is not None else 1
        for widget in (self.slider, self.spin):
            with _blocked(widget):
                widget.setRange(0, max(n - 1, 0))
                widget.setValue(doc.index)
            widget.setEnabled(n > 1)
        with _blocked(self.plane_combo):
            self.plane_combo.setCurrentText(doc.plane)
        if doc.image is None:
            self._slice = None
            self.image_item.clear()
            self.labels_layer.set_labels(None)
            return
        self._slice = doc.current_slice()
        if self._levels is None:
            self._levels = auto_levels(self._slice)
        self.image_item.setImage(self._slice, autoLevels=False, levels=self._levels)
        self.histogram.item.setLevels(*self._levels)
        self.refresh_labels()

    def refresh_labels(self) -> None:
        self.labels_layer.set_labels(self.document.current_labels())

    def _labels_edited(self, box3d) -> None:
        box = self._box_on_screen(box3d)
        if box is not None:
            if self.labels_layer._labels is None:
                self.refresh_labels()
            else:
                self.labels_layer.update_box(box)

    def _box_on_screen(self, box3d) -> tuple[int, int, int, int] | None:
        z0, z1, y0, y1, x0, x1 = box3d
        doc = self.document
        i = doc.index
        if doc.image is not None and doc.image.ndim == 2:
            return (y0, y1, x0, x1)
        if doc.plane == "xy":
            return (y0, y1, x0, x1) if z0 <= i < z1 else None
        if doc.plane == "xz":
            return (z0, z1, x0, x1) if y0 <= i < y1 else None
        return (z0, z1, y0, y1) if x0 <= i < x1 else None

    def levels(self) -> tuple[float, float] | None:
        return self._levels

    def set_levels(self, low: float, high: float) -> None:
        self._levels = (float(low), float(high))
        self.image_item.setLevels(self._levels)
        self.histogram.item.setLevels(*self._levels)

    def _remember_levels(self) -> None:
        self._levels = tuple(float(v) for v in self.histogram.item.getLevels())

    def _plane_chosen(self, plane: str) -> None:
        if plane and self.document.image is not None and plane != self.document.plane:
            self.document.set_plane(plane)

    # -- readout ---------------------------------------------------------------------------
    def readout_at(self, row: int, col: int) -> str:
        """Text for the pixel (row, col) of the slice on screen: position, value, label."""
        doc = self.document
        if self._slice is None or not (0 <= row < self._slice.shape[0] and 0 <= col < self._slice.shape[1]):
            return ""
        value = self._slice[row, col]
        labels = doc.current_labels()
        label = int(labels[row, col]) if labels is not None else 0
        z, y, x = {"xy": (doc.index, row, col), "xz": (row, doc.index, col),
                   "yz": (row, col, doc.index)}[doc.plane]
        where = f"x {x}  y {y}" + (f"  z {z}" if doc.is_3d else "")
        if doc.is_stack and doc.stack_names:
            where += f"  ({doc.stack_names[doc.index]})"
        return f"{where}   value {value}   label {label}"

    def _mouse_moved(self, scene_pos: QPointF) -> None:
        if self._slice is None:
            return
        p = self.image_item.mapFromScene(scene_pos)
        text = self.readout_at(int(np.floor(p.y())), int(np.floor(p.x())))
        self.readout.setText(text or " ")
        self.readoutChanged.emit(text)

    def wheelEvent(self, event):  # noqa: N802 - Ctrl+wheel steps through slices
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier and self.document.image is not None:
            step = 1 if event.angleDelta().y() > 0 else -1
            self.document.set_index(self.document.index + step)
            event.accept()
            return
        super().wheelEvent(event)


class _blocked:
    """``with _blocked(widget):`` silences a widget's signals while code updates it."""

    def __init__(self, widget):
        self.widget = widget

    def __enter__(self):
        self._was = self.widget.blockSignals(True)

    def __exit__(self, *exc):
        self.widget.blockSignals(self._was)


def demo_document() -> Document:
    """A Document on the demo volume (or a generated one if the demo data is not there)."""
    from empanada_desktop.core.opening import demo_image

    document = Document()
    image, path = demo_image()
    document.set_image(image, path)
    return document


if __name__ == "__main__":
    from PySide6.QtWidgets import QApplication

    from empanada_desktop.ui.shell.theme import configure_pyqtgraph

    app = QApplication([])
    configure_pyqtgraph()
    viewer = Viewer(demo_document())
    viewer.resize(900, 700)
    viewer.show()
    app.exec()
