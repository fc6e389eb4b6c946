"""The uncertainty heatmap over the viewer: its slice only, scaled by the map step and z step."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF

from empanada_desktop.ui.viewer.document import Document
from empanada_desktop.ui.viewer.heatmap_overlay import MIN_TOP, HeatmapOverlay, heat_lut
from empanada_desktop.ui.viewer.viewer import Viewer


def _viewer(qtbot, shape=(6, 40, 60)):
    document = Document()
    document.set_image(np.zeros(shape, np.uint8))
    viewer = Viewer(document)
    qtbot.addWidget(viewer)
    return document, viewer


def test_a_coarse_map_covers_its_slice_and_only_shows_there(qtbot):
    document, viewer = _viewer(qtbot)
    heat = HeatmapOverlay(viewer)
    values = np.linspace(0, 0.4, 10 * 15, dtype=np.float32).reshape(10, 15)
    heat.set_map(values, "xy", document.index, step=4)
    assert heat.shown
    covered = heat.item.mapRectToParent(QRectF(0, 0, 15, 10))
    assert (covered.width(), covered.height()) == (60, 40)  # 4 slice pixels per map pixel
    assert heat.top == float(np.percentile(values, 99.5))
    document.set_index(document.index - 1)
    assert not heat.shown
    document.set_index(document.index + 1)
    heat.set_visible(False)
    assert not heat.shown
    heat.set_visible(True)
    document.set_image(np.zeros((6, 40, 60), np.uint8))  # another image: the map is gone
    assert not heat.shown and heat.values is None


def test_xz_maps_are_stretched_like_the_image(qtbot):
    document, viewer = _viewer(qtbot)
    viewer.set_z_scale(3.0)
    document.set_plane("xz")
    heat = HeatmapOverlay(viewer)
    heat.set_map(np.zeros((6, 60), np.float32), "xz", document.index)
    assert heat.shown and heat.top == MIN_TOP  # a flat map stays dark
    assert heat.item.transform().m22() == 3.0 and heat.item.transform().m11() == 1.0
    viewer.set_z_scale(2.0)
    assert heat.item.transform().m22() == 2.0


def test_low_values_are_transparent_and_opacity_scales_alpha():
    lut = heat_lut(0.5)
    assert lut.shape == (256, 4) and lut[0, 3] == 0
    assert lut[-1, 3] == int(255 * 0.5)
    assert (np.diff(lut[:, 3].astype(int)) >= 0).all()
