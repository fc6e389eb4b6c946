"""Which multiscale pyramid level the viewer shows, re-picked as the user zooms.

Zoomed out on an image with coarser levels (OME-Zarr, N5, OME-TIFF pyramids), the slice on
screen is read from the coarsest level that still gives a pixel per screen pixel
(``core.volumes.pyramid.choose_level``), so a 20k x 20k slice shown in 1000 screen pixels reads
a level 16 times smaller instead of ~400 MB. Zoomed in (under 2 image pixels per screen pixel)
the full resolution is shown. Images without levels always show level 0.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QWidget

from empanada_desktop.core.volumes.pyramid import choose_level, slice_scale

# Zooming and panning re-pick the level once the view has been still this long, so a drag does
# not reread the slice on every step.
LEVEL_DELAY_MS = 150


class PyramidView(QObject):
    """The pyramid level on screen (``level``) and its (row, column) stretch back to full
    resolution (``scale``); calls ``viewer.show_level`` when the zoom wants another level.
    ``viewer`` is the ``Viewer`` that owns it (not imported here: the viewer imports this)."""

    def __init__(self, viewer: QWidget):
        super().__init__(viewer)
        self.viewer = viewer
        self.level = 0
        self.scale = (1.0, 1.0)
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(LEVEL_DELAY_MS)
        self.timer.timeout.connect(self._update)
        viewer.view_box.sigRangeChanged.connect(self._view_changed)
        viewer.view_box.sigResized.connect(self._view_changed)

    def read(self, level: int) -> np.ndarray:
        """The slice on screen at ``level`` (full resolution through the viewer's cache)."""
        doc = self.viewer.document
        if level == 0:
            shown, scale = self.viewer.current_slice(), (1.0, 1.0)
        else:
            shown = doc.level_slice(level)
            scale = slice_scale(doc.shape3d, doc.levels()[level].shape, doc.plane)
        self.level, self.scale = level, scale
        return shown

    def wanted_level(self) -> int:
        """The level for the current zoom: 0 unless the image has coarser levels and a screen
        pixel covers at least 2 image pixels."""
        viewer, doc = self.viewer, self.viewer.document
        shapes = [level.shape for level in doc.levels()]
        if len(shapes) < 2:
            return 0
        width, height = viewer.view_box.viewPixelSize()  # view units per (logical) screen pixel
        physical = viewer.graphics.devicePixelRatioF() or 1.0  # HiDPI screens show more pixels
        z_scale = viewer.z_scale_spin.value() if doc.plane in ("xz", "yz") else 1.0
        cols, rows = width / physical, height / z_scale / physical
        if not (np.isfinite(cols) and np.isfinite(rows)):
            return 0
        return choose_level(shapes, doc.plane, rows, cols)

    def _view_changed(self, *_) -> None:
        doc = self.viewer.document
        if doc.image is not None and len(doc.levels()) > 1:
            self.timer.start()  # restarts: re-picked once zooming or panning pauses

    def _update(self) -> None:
        if self.viewer.document.image is None:
            return
        level = self.wanted_level()
        if level != self.level:
            self.viewer.show_level(level)
