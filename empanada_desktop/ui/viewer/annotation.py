"""Annotation tools: brush, eraser, flood fill, label picker, proofreading, undo/redo.

``AnnotationController`` does the work on a Document (it is the viewer's mouse handler while a
painting tool is active); ``AnnotationPanel`` is its tool bar. Strokes, fills, merges, deletes
and splits are recorded in an ``UndoStack`` as changed boxes only. Label operations live in
``core/labels.py``.
"""

from __future__ import annotations

import logging

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, Signal

from empanada_desktop.core import labels as label_ops
from empanada_desktop.core.errors import UserError
from empanada_desktop.core.undo import UndoStack, box_slices, mask_box3d
from empanada_desktop.ui.viewer.document import Document
from empanada_desktop.ui.viewer.viewer import Viewer

log = logging.getLogger(__name__)

TOOLS = ("pan", "brush", "eraser", "fill", "picker", "split")


class AnnotationController(QObject):
    """Paints into a Document's labels on behalf of the viewer's mouse events."""

    changed = Signal()  # tool, label, brush size, selection, markers or undo state changed
    strokeFinished = Signal()  # an edit is complete (autosave listens)
    message = Signal(str)

    def __init__(self, document: Document, viewer: Viewer | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.document = document
        self.viewer = viewer
        self.tool = "pan"
        self.brush_size = 9
        self.label = 1
        self.selected: set[int] = set()
        self.markers: list[tuple[int, int]] = []
        self.undo_stack = UndoStack()
        self._stroke_before: np.ndarray | None = None
        self._stroke_box = None
        self._last_pos: tuple[float, float] | None = None
        self._marker_item = pg.ScatterPlotItem(size=12, pen=pg.mkPen("w", width=2),
                                               brush=pg.mkBrush(255, 60, 60, 220), symbol="x")
        self._marker_item.setZValue(30)
        if viewer is not None:
            viewer.add_overlay(self._marker_item)
        document.imageChanged.connect(self._image_changed)
        document.sliceChanged.connect(self._slice_changed)

    # -- state -----------------------------------------------------------------------------
    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}; known: {', '.join(TOOLS)}")
        self.tool = tool
        if self.viewer is not None:
            self.viewer.set_mouse_handler(None if tool == "pan" else self)
        if tool != "split":
            self.clear_markers()
        self.changed.emit()

    def set_label(self, label: int) -> None:
        self.label = max(1, int(label))
        self.changed.emit()

    def set_brush_size(self, size: int) -> None:
        self.brush_size = int(np.clip(size, 1, 255))
        self.changed.emit()

    def next_free_label(self) -> int:
        """Switch to a label no object uses yet."""
        labels = self.document.labels
        self.set_label(label_ops.next_free_label(labels) if labels is not None else 1)
        return self.label

    def set_selected(self, labels) -> None:
        self.selected = {int(v) for v in labels if int(v) != 0}
        if self.viewer is not None:
            self.viewer.labels_layer.set_selected(self.selected)
        self.changed.emit()

    # -- mouse handler ---------------------------------------------------------------------
    def press(self, pos, modifiers=Qt.KeyboardModifier.NoModifier) -> bool:
        if self.tool == "pan" or self.document.image is None:
            return False
        if not self.document.can_paint():
            self.message.emit("Only the middle slice of a flipbook is annotated; go back to it to paint.")
            return False
        try:
            view = self.document.labels_view()
        except UserError as error:  # labels too large to paint in memory
            self.message.emit(str(error))
            return False
        r, c = int(np.floor(pos[0])), int(np.floor(pos[1]))
        inside = 0 <= r < view.shape[0] and 0 <= c < view.shape[1]
        if self.tool in ("brush", "eraser"):
            self._stroke_before = view.copy()
            self._stroke_box = None
            self._last_pos = (pos[0], pos[1])
            self._paint(pos, pos)
            return True
        if not inside:
            return False
        if self.tool == "fill":
            self.fill_at((r, c))
        elif self.tool == "picker":
            add = bool(modifiers & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier))
            self.pick_at((r, c), add=add)
        elif self.tool == "split":
            self.add_marker((r, c))
        return True

    def move(self, pos) -> None:
        if self._stroke_before is not None and self._last_pos is not None:
            self._paint(self._last_pos, pos)
            self._last_pos = (pos[0], pos[1])

    def release(self, pos) -> None:
        if self._stroke_before is None:
            return
        if self._stroke_box is not None:
            r0, r1, c0, c1 = self._stroke_box
            self._record(self.document.box3d(self._stroke_box), self._stroke_before[r0:r1, c0:c1])
        self._stroke_before = None
        self._stroke_box = None
        self._last_pos = None

    def _paint(self, start, end) -> None:
        value = 0 if self.tool == "eraser" else self.label
        box = label_ops.paint_line(self.document.labels_view(), (start[0] - 0.5, start[1] - 0.5),
                                   (end[0] - 0.5, end[1] - 0.5), self.brush_size, value)
        if box is not None:
            self._stroke_box = label_ops.union_box(self._stroke_box, box)
            self.document.mark_edited(box)

    # -- one-click edits -------------------------------------------------------------------
    def stroke(self, points, *, tool: str | None = None) -> None:
        """Paint a whole stroke through pixels ``points`` [(row, col), ...] (tests, scripts)."""
        points = [(r + 0.5, c + 0.5) for r, c in points]  # pixel centres, as the mouse gives
        previous = self.tool
        self.tool = tool or self.tool
        try:
            if self.press(points[0]):
                for point in points[1:]:
                    self.move(point)
                self.release(points[-1])
        finally:
            self.tool = previous

    def fill_at(self, pos) -> None:
        view = self.document.labels_view()
        before = view.copy()
        box = label_ops.flood_fill(view, pos, self.label)
        if box is not None:
            r0, r1, c0, c1 = box
            self.document.mark_edited(box)
            self._record(self.document.box3d(box), before[r0:r1, c0:c1])

    def pick_at(self, pos, *, add: bool = False) -> int:
        """Make the label under ``pos`` the current one; with add, extend the selection."""
        labels = self.document.current_labels()
        value = int(labels[pos[0], pos[1]]) if labels is not None else 0
        if value:
            self.set_label(value)
        if add:
            self.set_selected(self.selected ^ {value} if value else self.selected)
        else:
            self.set_selected({value} if value else set())
        return value

    def merge_selected(self) -> int:
        """Merge the selected labels (in the whole image or volume) into the smallest."""
        labels3d = self.document.labels3d()
        chosen = sorted(self.selected)
        if len(chosen) < 2:
            raise UserError("Select at least two labels to merge: Ctrl+click them with the picker (P).")
        mask = np.isin(labels3d, chosen)
        self._apply_global(mask, lambda region: label_ops.merge_labels(region, chosen))
        self.set_selected({chosen[0]})
        self.set_label(chosen[0])
        return chosen[0]

    def delete_label(self, label: int | None = None) -> int:
        """Delete one label (default: the selected one, else the current one) everywhere."""
        if label is None:
            label = min(self.selected) if len(self.selected) == 1 else self.label
        labels3d = self.document.labels3d()
        mask = labels3d == int(label)
        if not mask.any():
            raise UserError(f"There is no object with label {label} to delete.")
        self._apply_global(mask, lambda region: label_ops.delete_label(region, int(label)))
        self.set_selected(self.selected - {int(label)})
        return int(label)

    def add_marker(self, pos) -> None:
        self.markers.append((int(pos[0]), int(pos[1])))
        self._show_markers()

    def clear_markers(self) -> None:
        self.markers = []
        self._show_markers()

    def split(self) -> list[int]:
        """Split the object under the markers on this slice (watershed on distance)."""
        view = self.document.labels_view()
        if len(self.markers) < 2:
            raise UserError("Click at least two markers inside the object (split tool, S), then split.")
        r, c = self.markers[0]
        before = view.copy()
        ids, box = label_ops.split_label(view, int(view[r, c]), self.markers,
                                         label_ops.next_free_label(self.document.labels))
        r0, r1, c0, c1 = box
        self.document.mark_edited(box)
        self._record(self.document.box3d(box), before[r0:r1, c0:c1])
        self.clear_markers()
        return ids

    def _apply_global(self, mask: np.ndarray, operation) -> None:
        box = mask_box3d(mask)
        if box is None:
            return
        labels3d = self.document.labels3d()
        region = labels3d[box_slices(box)]
        before = region.copy()
        operation(region)
        self.document.mark_edited3d(box)
        self._record(box, before)

    def _record(self, box3d, before) -> None:
        if self.undo_stack.record(self.document.labels3d(), box3d, before):
            self.changed.emit()
            self.strokeFinished.emit()

    # -- undo ------------------------------------------------------------------------------
    def undo(self) -> bool:
        return self._step(self.undo_stack.undo)

    def redo(self) -> bool:
        return self._step(self.undo_stack.redo)

    def _step(self, operation) -> bool:
        if self.document.labels is None:
            return False
        box = operation(self.document.labels3d())
        if box is None:
            return False
        self.document.mark_edited3d(box)
        self.changed.emit()
        self.strokeFinished.emit()
        return True

    # -- housekeeping ----------------------------------------------------------------------
    def _image_changed(self) -> None:
        self.undo_stack.clear()
        self.selected = set()
        self.clear_markers()
        self.changed.emit()

    def _slice_changed(self) -> None:
        self.clear_markers()

    def _show_markers(self) -> None:
        self._marker_item.setData([c + 0.5 for _, c in self.markers], [r + 0.5 for r, _ in self.markers])
        self.changed.emit()
