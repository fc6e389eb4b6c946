"""A heatmap drawn over the viewer's image: the model's uncertainty of one slice.

The map belongs to one slice ``(plane, index)`` of one image and is shown only while the viewer
shows that slice. It may be coarser than the slice (``step`` pixels of the slice per map pixel,
for huge slices); the item is scaled to cover the slice, and stretched like the image on the xz
and yz planes (the viewer's z step). Colours: the "inferno" colour map, transparent where the
value is low and more opaque towards the top of the scale, times ``opacity``; the scale runs
from 0 to the map's 99.5th percentile (at least ``MIN_TOP``), so the most uncertain places
stand out on every map.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QTransform

MIN_TOP = 0.05  # the colour scale's top is never below this (a flat, certain map stays dark)
Z_VALUE = 15  # above the labels layer (10), below patch outlines (20+)


def heat_lut(opacity: float, colormap: str = "inferno") -> np.ndarray:
    """(256, 4) uint8 RGBA lookup table: the colour map, alpha rising from 0 with the value."""
    colours = pg.colormap.get(colormap).getLookupTable(0.0, 1.0, 256, alpha=False)
    ramp = np.clip(np.linspace(0.0, 1.0, 256) * 1.5, 0.0, 1.0)  # the top third fully opaque
    alpha = (ramp * 255 * float(np.clip(opacity, 0.0, 1.0))).astype(np.uint8)
    return np.concatenate([np.asarray(colours, np.uint8)[:, :3], alpha[:, None]], axis=1)


class HeatmapOverlay(QObject):
    """The heatmap item of a ``Viewer``: ``set_map``, ``clear``, ``set_visible``, ``set_opacity``.

    ``changed`` is emitted when what is shown changes (a map set or cleared, visibility, or the
    slice on screen), so a panel can say whether the heatmap is on screen.
    """

    changed = Signal()

    def __init__(self, viewer, opacity: float = 0.6):
        super().__init__(viewer)
        self.viewer = viewer
        self.item = pg.ImageItem()
        self.item.setZValue(Z_VALUE)
        self.item.setVisible(False)
        viewer.add_overlay(self.item)
        self.values: np.ndarray | None = None
        self.where: tuple[int, str, int] | None = None  # id(image), plane, index
        self.step = 1
        self.top = 1.0
        self.visible = True
        self.opacity = float(opacity)
        viewer.document.sliceChanged.connect(self.update)
        viewer.document.imageChanged.connect(self.clear)
        viewer.z_scale_spin.valueChanged.connect(lambda *_: self.update())

    def set_map(self, values: np.ndarray, plane: str, index: int, step: int = 1) -> None:
        """Show ``values`` (rows, cols), 0..1, for slice ``index`` of ``plane`` of the open image."""
        values = np.asarray(values, np.float32)
        self.values = values
        self.where = (id(self.viewer.document.image), str(plane), int(index))
        self.step = max(1, int(step))
        finite = values[np.isfinite(values)]
        self.top = max(float(np.percentile(finite, 99.5)) if finite.size else 0.0, MIN_TOP)
        self.item.setImage(values, autoLevels=False, levels=(0.0, self.top),
                           lut=heat_lut(self.opacity))
        self.update()

    def clear(self) -> None:
        self.values = None
        self.where = None
        self.item.clear()
        self.update()

    def set_visible(self, visible: bool) -> None:
        self.visible = bool(visible)
        self.update()

    def set_opacity(self, opacity: float) -> None:
        self.opacity = float(np.clip(opacity, 0.0, 1.0))
        if self.values is not None:
            self.item.setLookupTable(heat_lut(self.opacity))

    def on_this_slice(self) -> bool:
        """The map belongs to the slice on screen."""
        doc = self.viewer.document
        return self.where is not None and self.where == (id(doc.image), doc.plane, doc.index)

    @property
    def shown(self) -> bool:
        return self.item.isVisible()

    def update(self) -> None:
        """Show the item when it is on, has a map, and the map's slice is on screen."""
        show = self.visible and self.values is not None and self.on_this_slice()
        if show:
            z_scale = self.viewer.slice_transform().m22()  # the image's stretch on xz / yz
            transform = QTransform.fromScale(self.step, self.step * z_scale)
            if self.item.transform() != transform:
                self.item.setTransform(transform)
        if self.item.isVisible() != show:
            self.item.setVisible(show)
        self.changed.emit()
