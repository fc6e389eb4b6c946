"""Zoomed out on an OME-Zarr pyramid the viewer shows (and reads) a coarser level; zoomed in, the
full resolution; everything that needs full-resolution data still gets it."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, QRectF, Qt

from empanada_desktop.core.volumes import open_image
from empanada_desktop.ui.shell.volume_screens import write_ome_zarr_image
from empanada_desktop.ui.viewer.document import Document
from empanada_desktop.ui.viewer.pyramid_view import LEVEL_DELAY_MS
from empanada_desktop.ui.viewer.viewer import Viewer

VOLUME = (np.arange(5 * 512 * 640) % 4093).astype(np.uint16).reshape(5, 512, 640)


class CountingArray:
    """Wraps a level's array and records every key read from it."""

    def __init__(self, array):
        self.array, self.keys = array, []
        self.shape, self.dtype, self.chunks = array.shape, array.dtype, array.chunks

    def __getitem__(self, key):
        self.keys.append(key)
        return self.array[key]


@pytest.fixture
def viewer(qtbot):
    v = Viewer(Document())
    qtbot.addWidget(v)
    v.resize(700, 560)
    v.show()
    qtbot.waitExposed(v)
    return v


@pytest.fixture
def pyramid(tmp_path):
    """The OME-Zarr volume (levels 1x and 2x in y, x) and read counters on both levels."""
    source = open_image(write_ome_zarr_image(tmp_path / "cell.ome.zarr", VOLUME))
    full, half = source.levels
    full._array, half._array = CountingArray(full._array), CountingArray(half._array)
    return source, full._array, half._array


def settle(qtbot):
    qtbot.wait(LEVEL_DELAY_MS * 2 + 100)


def zoom_out(viewer, qtbot, factor=4):
    viewer.view_box.setRange(QRectF(0, 0, 640 * factor, 512 * factor), padding=0)
    settle(qtbot)


def shown_extent(viewer) -> QRectF:
    return viewer.image_item.mapRectToParent(viewer.image_item.boundingRect())


def test_zoomed_out_shows_and_reads_only_the_coarse_level(viewer, pyramid, qtbot):
    source, full, half = pyramid
    doc = viewer.document
    doc.set_image(source)
    settle(qtbot)
    assert viewer.image_item.image.shape == (512, 640)  # whole slice in ~600 pixels: level 0
    np.testing.assert_array_equal(viewer.image_item.image, VOLUME[2])
    full.keys.clear()
    zoom_out(viewer, qtbot)
    assert viewer.image_item.image.shape == (256, 320)
    np.testing.assert_array_equal(viewer.image_item.image, VOLUME[2, ::2, ::2])
    assert shown_extent(viewer) == QRectF(0, 0, 640, 512)  # stretched back over the full slice
    assert viewer.labels_layer.transform().isIdentity()  # labels and overlays stay full resolution
    doc.set_index(3)  # a new slice while zoomed out: level 1 only
    np.testing.assert_array_equal(viewer.image_item.image, VOLUME[3, ::2, ::2])
    assert full.keys == [] and half.keys[-1] == (3, slice(None), slice(None))
    assert viewer.readout_at(101, 203) == f"x 203  y 101  z 3   value {VOLUME[3, 101, 203]}   label 0"
    assert full.keys == [(3, 101, 203)]  # the readout read one full-resolution pixel
    np.testing.assert_array_equal(viewer.current_slice(), VOLUME[3])  # tools get full resolution
    np.testing.assert_array_equal(viewer.current_slice(), VOLUME[3])
    assert len(full.keys) == 2  # read once on demand, then kept
    assert viewer.image_item.image.shape == (256, 320)


def test_zooming_back_in_shows_full_resolution(viewer, pyramid, qtbot):
    source, full, _ = pyramid
    viewer.document.set_image(source)
    zoom_out(viewer, qtbot)
    assert viewer.image_item.image.shape == (256, 320)
    viewer.view_box.setRange(QRectF(100, 100, 300, 240), padding=0)
    settle(qtbot)
    assert viewer.image_item.image.shape == (512, 640)
    assert viewer.image_item.transform().isIdentity()
    assert full.keys[-1] == (2, slice(None), slice(None))


def test_panning_rereads_once_it_pauses(viewer, pyramid, qtbot):
    source, _, half = pyramid
    viewer.document.set_image(source)
    viewer.view_box.setRange(QRectF(0, 0, 640 * 4, 512 * 4), padding=0)
    assert viewer.pyramid.timer.isActive()  # not yet: the view may still be moving
    assert viewer.image_item.image.shape == (512, 640)
    settle(qtbot)
    reads = len(half.keys)
    for step in range(5):
        viewer.view_box.translateBy(x=10 * step)
    settle(qtbot)
    assert len(half.keys) == reads and viewer.image_item.image.shape == (256, 320)


def test_xz_plane_uses_the_level_and_z_stretch(viewer, pyramid, qtbot):
    source, full, _ = pyramid
    doc = viewer.document
    doc.set_image(source)
    zoom_out(viewer, qtbot)
    full.keys.clear()
    doc.set_plane("xz")  # y index 256 -> 128 in level 1, which keeps all 5 slices
    viewer.set_z_scale(4.0)
    viewer.view_box.setRange(QRectF(0, 0, 640 * 4, 20 * 4), padding=0)
    settle(qtbot)
    np.testing.assert_array_equal(viewer.image_item.image, VOLUME[:, 256, ::2])
    assert shown_extent(viewer) == QRectF(0, 0, 640, 20)  # 5 slices x 4, 320 columns x 2
    assert viewer.slice_transform().m22() == 4.0 and viewer.slice_transform().m11() == 1.0
    assert full.keys == []


def test_tools_get_full_resolution_positions(viewer, pyramid, qtbot):
    source, _, _ = pyramid
    viewer.document.set_image(source)
    zoom_out(viewer, qtbot)
    pressed = []

    class Handler:
        def press(self, pos, modifiers):
            pressed.append(pos)
            return True

        def release(self, pos):
            pass

    class Click:
        def button(self):
            return Qt.MouseButton.LeftButton

        def pos(self):
            return QPointF(10, 20)  # in the level-1 image

        def modifiers(self):
            return Qt.KeyboardModifier.NoModifier

        def accept(self):
            pass

        ignore = accept

    viewer.set_mouse_handler(Handler())
    viewer.image_item.mouseClickEvent(Click())
    assert pressed == [(40.0, 20.0)]  # (row, col) of the full-resolution slice
    viewer._mouse_moved(viewer.labels_layer.mapToScene(QPointF(300.5, 400.5)))
    assert viewer.readout.text().startswith("x 300  y 400  z 2")


def test_plain_arrays_always_show_full_resolution(viewer, qtbot):
    doc = viewer.document
    doc.set_image(VOLUME)
    zoom_out(viewer, qtbot)
    assert not viewer.pyramid.timer.isActive()
    assert viewer.image_item.image.shape == (512, 640) and viewer.image_item.transform().isIdentity()
    np.testing.assert_array_equal(viewer.current_slice(), VOLUME[2])
