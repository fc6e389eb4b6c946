"""Click points: clicking switches the picker to clicked points, each point gets a marker, and
overlapping patches are flagged."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtWidgets import QGraphicsEllipseItem

from empanada_desktop.ui.shell.main_window import MainWindow


@pytest.fixture
def window(qtbot):
    win = MainWindow()
    qtbot.addWidget(win)
    win.document.set_image((np.arange(3 * 64 * 80) % 200).reshape(3, 64, 80).astype(np.uint8), "c.tif")
    return win


def test_click_points_are_used_without_changing_where(window):
    picker = window.patch_picker
    picker.size_spin.setValue(16)
    assert picker.mode_combo.currentIndex() == 0  # "Random"
    picker.click_button.setChecked(True)
    picker.press((20.0, 30.0))
    picker.press((40.0, 60.0))
    assert picker.mode_combo.currentIndex() == 1
    dots = [m for m in picker._markers if isinstance(m, QGraphicsEllipseItem)]
    assert len(dots) == 2 and len(picker._markers) == 4  # a dot and a dashed square each
    patches = picker.pick()
    assert [(p.origin["row"], p.origin["col"]) for p in patches] == [(12, 22), (32, 52)]
    assert "overlap" not in picker.info.text()
    assert picker.points == [] and picker._markers == []  # used; the next clicks start afresh


def test_overlapping_patches_are_flagged(window):
    picker = window.patch_picker
    picker.size_spin.setValue(16)
    picker.click_button.setChecked(True)
    picker.press((20.0, 30.0))
    picker.press((24.0, 34.0))
    picker.pick()
    assert "2 of them overlap another patch" in picker.info.text()
    orange = [item for item in picker._outlines if item.pen().color().red() == 255
              and item.pen().color().green() == 140]
    assert len(orange) == 2


def test_markers_follow_the_slice(window):
    picker = window.patch_picker
    picker.click_button.setChecked(True)
    picker.press((20.0, 30.0))
    assert picker._markers
    window.document.set_index((window.document.index + 1) % 3)
    assert picker._markers == []
