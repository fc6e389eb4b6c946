"""The labels layer: instance colours from a lookup table, opacity, show/hide, outline mode.

Colouring is a table lookup (``palette[label mod 255]``), so a 1024 x 1024 slice recolours in a
few milliseconds; during a brush stroke only the changed box is recoloured.
"""

from __future__ import annotations

import colorsys

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QFormLayout, QSlider, QWidget


def make_palette(n: int = 256, seed: int = 7) -> np.ndarray:
    """An (n, 4) uint8 RGBA table: entry 0 transparent, the others bright, well-separated hues."""
    rng = np.random.default_rng(seed)
    palette = np.zeros((n, 4), dtype=np.uint8)
    golden = 0.618033988749895
    hue = rng.random()
    for i in range(1, n):
        hue = (hue + golden) % 1.0
        sat = 0.65 + 0.35 * rng.random()
        val = 0.85 + 0.15 * rng.random()
        r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
        palette[i] = (int(r * 255), int(g * 255), int(b * 255), 255)
    return palette


PALETTE = make_palette()


def colour_index(labels: np.ndarray) -> np.ndarray:
    """Map label ids to palette rows: 0 stays 0, ids 1.. cycle through rows 1..255."""
    labels = np.asarray(labels)
    index = np.zeros(labels.shape, dtype=np.uint8)
    positive = labels > 0
    index[positive] = ((labels[positive] - 1) % (len(PALETTE) - 1) + 1).astype(np.uint8)
    return index


def label_colour(label: int) -> tuple[int, int, int]:
    if label <= 0:
        return (0, 0, 0)
    r, g, b, _ = PALETTE[(label - 1) % (len(PALETTE) - 1) + 1]
    return int(r), int(g), int(b)


def boundaries(labels: np.ndarray) -> np.ndarray:
    """Pixels of an object that touch a different label (4-neighbourhood)."""
    labels = np.asarray(labels)
    edge = np.zeros(labels.shape, dtype=bool)
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    return edge & (labels > 0)


def render_rgba(labels: np.ndarray, *, outline: bool = False,
                selected: frozenset[int] = frozenset()) -> np.ndarray:
    """(H, W, 4) uint8 colours of a label slice; selected labels are drawn opaque white-edged."""
    rgba = PALETTE[colour_index(labels)]
    if outline:
        rgba[~boundaries(labels)] = 0
    if selected:
        chosen = np.isin(labels, list(selected))
        rgba[chosen & boundaries(labels)] = (255, 255, 255, 255)
    return rgba


class LabelsLayer(pg.ImageItem):
    """An ImageItem showing a label slice in instance colours."""

    def __init__(self):
        super().__init__()
        self.outline = False
        self.selected: frozenset[int] = frozenset()
        self._labels: np.ndarray | None = None
        self._rgba: np.ndarray | None = None
        self.setOpacity(0.5)
        self.setZValue(10)

    def set_labels(self, labels: np.ndarray | None) -> None:
        """Show a whole 2D label slice (None hides the layer's content)."""
        self._labels = labels
        if labels is None:
            self._rgba = None
            self.clear()
            return
        self._rgba = render_rgba(labels, outline=self.outline, selected=self.selected)
        self.setImage(self._rgba, autoLevels=False, levels=(0, 255))

    def update_box(self, box: tuple[int, int, int, int]) -> None:
        """Recolour rows r0:r1, cols c0:c1 (plus a 1-pixel ring for outlines) of the slice."""
        if self._labels is None or self._rgba is None or self._rgba.shape[:2] != self._labels.shape:
            self.set_labels(self._labels)
            return
        h, w = self._labels.shape
        r0, r1, c0, c1 = box
        r0, c0 = max(r0 - 2, 0), max(c0 - 2, 0)
        r1, c1 = min(r1 + 2, h), min(c1 + 2, w)
        if r1 <= r0 or c1 <= c0:
            return
        # Render with a 1-pixel margin so outline pixels at the box edge are judged correctly.
        m0, m1 = max(r0 - 1, 0), min(r1 + 1, h)
        n0, n1 = max(c0 - 1, 0), min(c1 + 1, w)
        patch = render_rgba(self._labels[m0:m1, n0:n1], outline=self.outline, selected=self.selected)
        self._rgba[r0:r1, c0:c1] = patch[r0 - m0:r1 - m0, c0 - n0:c1 - n0]
        self.setImage(self._rgba, autoLevels=False, levels=(0, 255))

    def set_outline(self, outline: bool) -> None:
        self.outline = bool(outline)
        self.set_labels(self._labels)

    def set_selected(self, labels: set[int] | frozenset[int]) -> None:
        self.selected = frozenset(int(v) for v in labels)
        self.set_labels(self._labels)

    def rgba(self) -> np.ndarray | None:
        return self._rgba


class LabelsControls(QWidget):
    """Opacity, show/hide and outline mode of a viewer's labels layer."""

    def __init__(self, layer: LabelsLayer, parent: QWidget | None = None):
        super().__init__(parent)
        self.layer = layer
        self.visible_box = QCheckBox("Show labels")
        self.visible_box.setChecked(True)
        self.visible_box.setToolTip("Show or hide the labels layer (V)")
        self.visible_box.toggled.connect(layer.setVisible)
        self.outline_box = QCheckBox("Outlines only")
        self.outline_box.setToolTip("Draw only the edges of objects (O)")
        self.outline_box.toggled.connect(layer.set_outline)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(int(round(layer.opacity() * 100)))
        self.opacity.setToolTip("Opacity of the labels layer")
        self.opacity.valueChanged.connect(lambda v: layer.setOpacity(v / 100.0))
        form = QFormLayout(self)
        form.addRow(self.visible_box)
        form.addRow(self.outline_box)
        form.addRow("Opacity", self.opacity)
        self.setMaximumHeight(self.sizeHint().height())
