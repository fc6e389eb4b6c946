"""Slices with Page Up/Down and Ctrl+wheel, xz/yz at true proportions, contrast controls."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from empanada_desktop.core.voxel_size import read_voxel_size, z_scale
from empanada_desktop.ui.shell.main_window import MainWindow


@pytest.fixture
def window(qtbot):
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    return win


def test_page_keys_and_ctrl_wheel_change_the_slice(window, qtbot):
    doc = window.document
    doc.set_image(np.zeros((6, 40, 50), np.uint8), "v.tif")
    start = doc.index
    window.viewer.graphics.setFocus()
    QTest.keyClick(window.viewer.graphics, Qt.Key.Key_PageDown)
    assert doc.index == start + 1
    QTest.keyClick(window.viewer.graphics, Qt.Key.Key_PageUp)
    assert doc.index == start
    zoom = window.viewer.view_box.viewRange()
    viewport = window.viewer.graphics.viewport()
    event = QWheelEvent(QPointF(20, 20), QPointF(viewport.mapToGlobal(QPoint(20, 20))), QPoint(0, 0),
                        QPoint(0, 120), Qt.MouseButton.NoButton, Qt.KeyboardModifier.ControlModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(viewport, event)
    assert doc.index == start + 1 and window.viewer.view_box.viewRange() == zoom  # no zoom


def test_anisotropic_stack_is_stretched_in_xz_from_the_file(window, tmp_path):
    path = tmp_path / "aniso.tif"
    tifffile.imwrite(path, np.zeros((8, 64, 64), np.uint8), imagej=True,
                     resolution=(1 / 0.005, 1 / 0.005), metadata={"spacing": 0.04, "unit": "um", "axes": "ZYX"})
    assert read_voxel_size(path) == pytest.approx((0.04, 0.005, 0.005))
    assert z_scale(read_voxel_size(path)) == pytest.approx(8.0)
    assert window.open_path(path)
    assert window.viewer.z_scale_spin.value() == pytest.approx(8.0)
    window.document.set_plane("xz")
    rect = window.viewer.image_item.mapRectToParent(window.viewer.image_item.boundingRect())
    assert rect.height() == pytest.approx(64) and rect.width() == pytest.approx(64)
    window.viewer.set_z_scale(4.0)  # entered by the user: remembered for this image
    other = MainWindow()
    other.open_path(path)
    assert other.viewer.z_scale_spin.value() == pytest.approx(4.0)
    other.close()


def test_contrast_boxes_auto_and_reset(window):
    image = np.full((50, 50), 100, np.uint8)
    image[:, 40:] = 250
    window.document.set_image(image)
    viewer, controls = window.viewer, window.docks["Contrast"].widget().widget()
    assert viewer.levels() == (0.0, 255.0)  # 8-bit opens unclipped
    controls.min_spin.setValue(50)
    controls.max_spin.setValue(200)
    assert viewer.levels() == (50.0, 200.0)
    controls.auto()
    assert viewer.levels() == (100.0, 250.0)
    assert controls.max_spin.value() == 250.0
    controls.reset()
    assert viewer.levels() == (0.0, 255.0)
