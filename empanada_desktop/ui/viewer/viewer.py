"""The image viewer: zoom, pan, slice slider, xy / xz / yz planes, contrast, cursor readout.

Built from pyqtgraph items: a ViewBox holding an ImageItem (the image) and a LabelsLayer, with a
HistogramLUTWidget for contrast. Only the slice on screen is read from the document's image, so
memory-mapped volumes larger than RAM scroll without loading; zoomed out on a multiscale image
(OME-Zarr, N5, OME-TIFF pyramids) it is read from the coarsest pyramid level that still has a
pixel per screen pixel (``core.volumes.pyramid``). 8- and 16-bit data are shown with
contrast limits (levels), never converted. Tools (brush, point picking) plug in through
``set_mouse_handler``; without one, dragging pans and the wheel zooms.
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut, QTransform
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QSlider, QSpinBox,
                               QVBoxLayout, QWidget)

from empanada_desktop.ui.viewer.document import Document
from empanada_desktop.ui.viewer.labels_layer import LabelsLayer
from empanada_desktop.ui.viewer.pyramid_view import PyramidView

log = logging.getLogger(__name__)


class MouseHandler(Protocol):
    """What a tool implements to receive left-button events in slice coordinates (row, col)."""

    def press(self, pos: tuple[float, float], modifiers: Qt.KeyboardModifier) -> bool: ...
    def move(self, pos: tuple[float, float]) -> None: ...
    def release(self, pos: tuple[float, float]) -> None: ...


def default_levels(slice2d: np.ndarray) -> tuple[float, float]:
    """Contrast limits an image opens with: 8-bit EM is shown as it is (0..255, nothing clipped
    to white); other types from wide percentiles (0.05 / 99.95) so bright cytoplasm keeps detail."""
    if slice2d.dtype == np.uint8:
        return 0.0, 255.0
    return auto_levels(slice2d, (0.05, 99.95))


def auto_levels(slice2d: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5)) -> tuple[float, float]:
    """Contrast limits from the 0.5 / 99.5 percentiles of (a subsample of) a slice."""
    step = max(1, int(np.sqrt(slice2d.size / 250_000)))
    sample = np.asarray(slice2d[::step, ::step], dtype=np.float64)
    lo, hi = np.percentile(sample, percentiles)
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
        p = self._viewer.labels_layer.mapFromItem(self, ev.pos())  # full resolution at any level
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
    levelsChanged = Signal(float, float)

    def __init__(self, document: Document, parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self.mouse_handler: MouseHandler | None = None
        self._levels: tuple[float, float] | None = None
        self._slice: np.ndarray | None = None  # the full-resolution slice, read when needed
        self._slice_key: tuple | None = None  # (image, plane, index) that _slice belongs to

        self.graphics = pg.GraphicsLayoutWidget()
        self.view_box = self.graphics.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.image_item = _ToolImageItem(self)
        self.labels_layer = LabelsLayer()
        self.view_box.addItem(self.image_item)
        self.view_box.addItem(self.labels_layer)
        self.pyramid = PyramidView(self)  # which multiscale level is on screen
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
        self.z_scale_spin = QDoubleSpinBox()
        self.z_scale_spin.setRange(0.05, 100.0)
        self.z_scale_spin.setDecimals(2)
        self.z_scale_spin.setValue(1.0)
        self.z_scale_spin.setPrefix("z step ")
        self.z_scale_spin.setSuffix(" px")
        self.z_scale_spin.setToolTip(
            "Slice thickness in xy pixels (e.g. 40 nm slices of 5 nm pixels: 8), so that the xz "
            "and yz planes show the true proportions; read from the file when it says")
        self.z_scale_spin.valueChanged.connect(lambda *_: self._apply_z_scale())
        for key, step in ((Qt.Key.Key_PageDown, 1), (Qt.Key.Key_PageUp, -1)):
            shortcut = QShortcut(QKeySequence(key), self)
            shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
            shortcut.activated.connect(lambda step=step: self.step_slice(step))
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
        bottom.addWidget(self.z_scale_spin)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top, 1)
        layout.addLayout(bottom)
        layout.addWidget(self.readout)

        self.graphics.scene().sigMouseMoved.connect(self._mouse_moved)
        self._wheel_filter = _CtrlWheelFilter(self)
        self.graphics.viewport().installEventFilter(self._wheel_filter)
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
        self.z_scale_spin.setVisible(doc.image is not None and doc.is_3d and not doc.is_stack)
        if len(doc.levels()) > 1:  # pick the first level for the whole image in view, not the old view
            h, w = doc.slice_shape()
            self.view_box.setRange(QRectF(0, 0, w, h), padding=0.02)
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
            self._slice = self._slice_key = None
            self.image_item.clear()
            self.labels_layer.set_labels(None)
            return
        self._slice = None  # reread: an in-memory image may have changed
        self._show_image(self.pyramid.wanted_level())
        self.histogram.item.setLevels(*self._levels)
        self.levelsChanged.emit(*self._levels)
        self.refresh_labels()
        self._apply_z_scale()

    def _show_image(self, level: int) -> None:
        """Show the slice on screen read from pyramid ``level`` over the full-resolution slice's
        extent (contrast limits come from the first slice shown, whatever its level)."""
        shown = self.pyramid.read(level)
        if self._levels is None:
            self._levels = default_levels(shown)
        self.image_item.setImage(shown, autoLevels=False, levels=self._levels)

    def show_level(self, level: int) -> None:
        """Show pyramid ``level`` of the slice on screen (the zoom changed)."""
        self._show_image(level)
        self._apply_z_scale()

    def step_slice(self, step: int) -> None:
        """Next (+1) or previous (-1) slice: Page Down / Page Up and Ctrl+wheel."""
        doc = self.document
        if doc.image is not None:
            doc.set_index(int(np.clip(doc.index + step, 0, doc.n_slices() - 1)))

    def set_z_scale(self, scale: float) -> None:
        """Slice thickness in xy pixels (from the file's voxel size, or entered by the user)."""
        self.z_scale_spin.setValue(float(scale))

    def _apply_z_scale(self) -> None:
        """xz and yz planes have z vertically: stretch it by the slice thickness (and a coarse
        level's image by its downsampling, so it covers the full-resolution slice)."""
        doc = self.document
        scale = self.z_scale_spin.value() if doc.image is not None and doc.plane in ("xz", "yz") else 1.0
        transform = QTransform.fromScale(1.0, scale)
        rows, cols = self.pyramid.scale
        image_transform = QTransform.fromScale(cols, rows * scale)
        if self.image_item.transform() != image_transform:
            self.image_item.setTransform(image_transform)
        if self.labels_layer.transform() != transform:
            self.labels_layer.setTransform(transform)
            self.view_box.autoRange(padding=0.02)

    def slice_transform(self) -> QTransform:
        """Full-resolution slice (col, row) -> view coordinates: the xz / yz stretch. Overlays
        use it, not the image item's transform, which also scales a coarse pyramid level."""
        return QTransform(self.labels_layer.transform())

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
        self.levelsChanged.emit(*self._levels)

    def current_slice(self) -> np.ndarray | None:
        """The full-resolution 2D slice on screen, or None. When a coarse pyramid level is shown
        it is read here on first use (contrast Auto, tools, patches) and kept for this slice."""
        doc = self.document
        if doc.image is None:
            return None
        key = (id(doc.image), doc.plane, doc.index)
        if self._slice is None or self._slice_key != key:
            self._slice, self._slice_key = doc.current_slice(), key
        return self._slice

    def _remember_levels(self) -> None:
        self._levels = tuple(float(v) for v in self.histogram.item.getLevels())
        self.levelsChanged.emit(*self._levels)

    def _plane_chosen(self, plane: str) -> None:
        if plane and self.document.image is not None and plane != self.document.plane:
            self.document.set_plane(plane)

    # -- readout ---------------------------------------------------------------------------
    def readout_at(self, row: int, col: int) -> str:
        """Text for the pixel (row, col) of the slice on screen: position, value, label."""
        doc = self.document
        if doc.image is None:
            return ""
        rows, cols = doc.slice_shape()
        if not (0 <= row < rows and 0 <= col < cols):
            return ""
        labels = doc.current_labels()
        label = int(labels[row, col]) if labels is not None else 0
        z, y, x = {"xy": (doc.index, row, col), "xz": (row, doc.index, col),
                   "yz": (row, col, doc.index)}[doc.plane]
        if self._slice is not None and self._slice_key == (id(doc.image), doc.plane, doc.index):
            value = self._slice[row, col]
        else:  # a coarse level is on screen: one full-resolution pixel from the file
            value = doc.value_at(z, y, x)
        value = "?" if value is None else value
        where = f"x {x}  y {y}" + (f"  z {z}" if doc.is_3d else "")
        if doc.is_stack and doc.stack_names:
            where += f"  ({doc.stack_names[doc.index]})"
        return f"{where}   value {value}   label {label}"

    def _mouse_moved(self, scene_pos: QPointF) -> None:
        if self.document.image is None:
            return
        p = self.labels_layer.mapFromScene(scene_pos)  # full-resolution slice coordinates
        text = self.readout_at(int(np.floor(p.y())), int(np.floor(p.x())))
        self.readout.setText(text or " ")
        self.readoutChanged.emit(text)


class _CtrlWheelFilter(QObject):
    """Ctrl+wheel over the image steps through slices instead of zooming (the ViewBox would)."""

    def __init__(self, viewer: Viewer):
        super().__init__(viewer)
        self._viewer = viewer

    def eventFilter(self, watched, event):  # noqa: N802
        if (event.type() == QEvent.Type.Wheel
                and event.modifiers() & Qt.KeyboardModifier.ControlModifier):
            delta = event.angleDelta().y()
            if delta:
                self._viewer.step_slice(1 if delta > 0 else -1)
            return True
        return False


class _blocked:
    """``with _blocked(widget):`` silences a widget's signals while code updates it."""

    def __init__(self, widget):
        self.widget = widget

    def __enter__(self):
        self._was = self.widget.blockSignals(True)

    def __exit__(self, *exc):
        self.widget.blockSignals(self._was)


if __name__ == "__main__":
    from PySide6.QtWidgets import QApplication

    from empanada_desktop.ui.shell.theme import configure_pyqtgraph

    app = QApplication([])
    configure_pyqtgraph()
    from empanada_desktop.ui.viewer.document import demo_document

    viewer = Viewer(demo_document())
    viewer.resize(900, 700)
    viewer.show()
    app.exec()
