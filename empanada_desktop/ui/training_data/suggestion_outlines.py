"""Suggested patches drawn on the viewer: a dashed square per suggestion on the slice on screen,
labelled with its rank and score; the selected one solid and thicker."""

from __future__ import annotations

from collections.abc import Sequence

import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsItem, QGraphicsRectItem

COLOUR = QColor(255, 64, 255)  # magenta: apart from the yellow training-set outlines and the heatmap
SELECTED = QColor(80, 255, 120)


def label_text(rank: int, score: float) -> str:
    return f"#{rank}  {score:.2f}"


class SuggestionOutlines:
    """The outline items of the suggestions on the slice on screen (``items``, ``texts``)."""

    def __init__(self, viewer):
        self.viewer = viewer
        self.items: list[QGraphicsItem] = []
        self.texts: list[str] = []
        self.selected: str | None = None  # the label of the selected one, when on screen

    def clear(self) -> None:
        for item in self.items:
            self.viewer.remove_overlay(item)
        self.items = []
        self.texts = []
        self.selected = None

    def show(self, suggestions: Sequence, selected_rank: int | None = None) -> None:
        """Outline each ``SuggestedPatch`` of ``suggestions`` that lies on the slice on screen."""
        self.clear()
        doc = self.viewer.document
        if doc.image is None:
            return
        transform = self.viewer.slice_transform()  # stretched like the image on xz / yz
        for patch in suggestions:
            box = patch.box
            if box.plane != doc.plane or box.index != doc.index:
                continue
            chosen = patch.rank == selected_rank
            pen = QPen(SELECTED if chosen else COLOUR)
            pen.setCosmetic(True)
            pen.setWidth(3 if chosen else 2)
            if not chosen:
                pen.setStyle(Qt.PenStyle.DashLine)
            rect = QGraphicsRectItem(QRectF(box.col, box.row, box.size, box.size))
            rect.setPen(pen)
            rect.setTransform(transform)
            rect.setZValue(23 if chosen else 22)
            text = label_text(patch.rank, patch.score)
            label = pg.TextItem(text, color=(SELECTED if chosen else COLOUR), fill=pg.mkBrush(0, 0, 0, 170),
                                anchor=(0, 0))  # inside the box: never cut off at the image's edge
            label.setPos(transform.map(QPointF(box.col, box.row)))
            label.setZValue(24)
            for item in (rect, label):
                self.viewer.add_overlay(item)
                self.items.append(item)
            self.texts.append(text)
            if chosen:
                self.selected = text
