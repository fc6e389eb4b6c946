"""Viewer: slices and planes, contrast without conversion, readout, big memory-mapped volumes."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile

from empanada_desktop.ui.viewer.document import Document
from empanada_desktop.ui.viewer.viewer import Viewer, auto_levels


@pytest.fixture
def viewer(qtbot):
    document = Document()
    v = Viewer(document)
    qtbot.addWidget(v)
    return v


def test_slices_planes_and_readout(viewer):
    doc = viewer.document
    volume = np.arange(4 * 5 * 6, dtype=np.uint16).reshape(4, 5, 6) * 100
    doc.set_image(volume, "v.tif")
    assert doc.index == 2 and (viewer.image_item.image == volume[2]).all()
    assert viewer.image_item.image.dtype == np.uint16  # shown with levels, not converted
    viewer.slider.setValue(3)
    assert doc.index == 3 and (viewer.image_item.image == volume[3]).all()
    viewer.plane_combo.setCurrentText("xz")
    assert doc.plane == "xz" and viewer.image_item.image.shape == (4, 6)
    assert viewer.slider.maximum() == 4
    doc.set_index(1)
    assert (viewer.image_item.image == volume[:, 1, :]).all()
    doc.ensure_labels()[3, 1, 5] = 9
    viewer.refresh_labels()
    assert viewer.readout_at(3, 5) == f"x 5  y 1  z 3   value {volume[3, 1, 5]}   label 9"
    assert viewer.readout_at(99, 0) == ""
    doc.set_plane("yz")
    assert viewer.image_item.image.shape == (4, 5)


def test_contrast_levels_follow_percentiles_and_user(viewer):
    image = np.zeros((50, 50), np.uint16)
    image[:, 25:] = 4000
    viewer.document.set_image(image)
    assert viewer.levels() == auto_levels(image) == (0.0, 4000.0)
    viewer.set_levels(10, 20)
    viewer.document.set_image(image + 1)  # a new image gets its own levels
    assert viewer.levels() == (1.0, 4001.0)


def test_labels_layer_outline_and_opacity(viewer):
    from empanada_desktop.ui.viewer.labels_layer import LabelsControls

    doc = viewer.document
    doc.set_image(np.zeros((20, 20), np.uint8))
    labels = np.zeros((20, 20), np.int32)
    labels[5:15, 5:15] = 300  # ids above 255 still get a colour
    doc.set_labels(labels)
    rgba = viewer.labels_layer.rgba()
    assert rgba[10, 10, 3] == 255 and rgba[0, 0, 3] == 0
    controls = LabelsControls(viewer.labels_layer)
    controls.outline_box.setChecked(True)
    rgba = viewer.labels_layer.rgba()
    assert rgba[10, 10, 3] == 0 and rgba[5, 10, 3] == 255
    controls.opacity.setValue(30)
    assert viewer.labels_layer.opacity() == pytest.approx(0.3)
    controls.visible_box.setChecked(False)
    assert not viewer.labels_layer.isVisible()


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_2gb_bigtiff_opens_and_scrolls_in_little_memory(qtbot, tmp_path):
    """A 2 GB BigTIFF, memory-mapped: opening and scrolling keeps the process under +500 MB."""
    shape = (2048, 1024, 1024)
    if shutil.disk_usage(tmp_path).free < 3 * 2**30:
        pytest.skip("needs 3 GB of free disk")
    path = tmp_path / "big.tif"
    volume = tifffile.memmap(path, shape=shape, dtype=np.uint8, bigtiff=True, photometric="minisblack")
    for z in (0, 1000, 1001, 1024, 2047):  # a few slices with content; the rest stays sparse
        volume[z, ::7, ::5] = z % 251
    volume.flush()
    del volume
    from empanada_desktop.ui.shell.main_window import MainWindow

    before = _rss_mb()
    window = MainWindow()
    qtbot.addWidget(window)
    assert window.open_path(path)
    doc = window.document
    assert doc.image.shape == shape and isinstance(doc.image, np.memmap)
    for z in (1000, 1001, 1024, 2047, 0):
        window.viewer.slider.setValue(z)
    assert doc.index == 0 and window.viewer.image_item.image.shape == (1024, 1024)
    grown = _rss_mb() - before
    assert grown < 500, f"memory grew by {grown:.0f} MB"
    window.close()
