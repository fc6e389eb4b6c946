"""Main window: extension points, opening data, bad files as message boxes, settings."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QLabel

from empanada_desktop.ui.shell import main_window as main_window_module
from empanada_desktop.ui.shell.main_window import MainWindow


@pytest.fixture
def messages(monkeypatch):
    """Capture the window's error messages (title, text) instead of showing them."""
    shown = []
    monkeypatch.setattr(main_window_module, "show_error",
                        lambda parent, title, text: shown.append((title, text)))
    return shown


@pytest.fixture
def window(qtbot):
    win = MainWindow()
    qtbot.addWidget(win)
    return win


def test_add_panel_and_menu_action(window):
    # Names no built-in panel or menu uses (the window has "Inference" and "&Models" already).
    dock = window.add_panel("Extra panel", QLabel("hello"), "right")
    assert window.docks["Extra panel"] is dock
    action = QAction("Run extra")
    window.add_menu_action("Extras", action)
    menus = {a.text(): a.menu() for a in window.menuBar().actions()}
    assert action in menus["Extras"].actions()
    assert list(menus)[-1] == "&Help"  # new menus go before Help
    assert action.parent() is window
    assert window.training_set_dir() is None


def test_open_demo_shows_a_volume(window):
    window.open_demo()
    doc = window.document
    assert doc.image is not None and doc.image.ndim == 3
    assert window.viewer.image_item.image.shape == doc.current_slice().shape


def test_open_tiff_records_recent_file(window, tmp_path, messages):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.arange(3 * 20 * 30, dtype=np.uint16).reshape(3, 20, 30), photometric="minisblack")
    assert window.open_path(path)
    assert not messages
    assert window.document.image.dtype == np.uint16  # shown with levels, not converted
    assert str(path.resolve()) in window.recent_files()
    again = MainWindow()
    assert str(path.resolve()) in again.recent_files()  # remembered between sessions
    again.close()


@pytest.mark.parametrize("kind", ["truncated", "4d", "empty", "missing", "not_an_image"])
def test_bad_files_show_a_message_not_a_traceback(window, tmp_path, messages, kind):
    path = tmp_path / f"{kind}.tif"
    if kind == "truncated":
        tifffile.imwrite(path, np.ones((4, 64, 64), np.uint8), photometric="minisblack")
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "4d":
        tifffile.imwrite(path, np.ones((2, 4, 8, 8), np.uint8), photometric="minisblack")
    elif kind == "empty":
        tifffile.imwrite(path, np.ones((0, 8), np.uint8))
    elif kind == "not_an_image":
        path.write_text("hello")
    assert not window.open_path(path)
    assert len(messages) == 1
    title, text = messages[0]
    assert path.name in text or str(path) in text
    assert window.document.image is None


def test_labels_of_another_shape_are_refused(window, tmp_path, messages):
    image, labels = tmp_path / "im.tif", tmp_path / "lab.tif"
    tifffile.imwrite(image, np.zeros((2, 16, 16), np.uint8))
    tifffile.imwrite(labels, np.zeros((2, 16, 17), np.int32))
    assert window.open_path(image)
    assert not window.open_labels(labels)
    assert "shape" in messages[0][1]
    tifffile.imwrite(labels, np.full((2, 16, 16), 3, np.uint16))
    assert window.open_labels(labels)
    assert window.document.labels.dtype == np.int32


def test_folder_opens_as_2d_stack(window, tmp_path, messages):
    from PIL import Image

    Image.fromarray(np.full((10, 12), 5, np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.full((14, 8), 9, np.uint8)).save(tmp_path / "b.png")
    (tmp_path / "Thumbs.db").write_bytes(b"junk")
    assert window.open_path(tmp_path), messages
    doc = window.document
    assert doc.is_stack and doc.image.shape == (2, 14, 12)
    assert doc.available_planes() == ("xy",)
    assert doc.stack_names == ["a.png", "b.png"]


def test_errors_show_a_message_box_that_does_not_block(window, tmp_path):
    from PySide6.QtWidgets import QMessageBox

    assert not window.open_path(tmp_path / "missing.tif")  # returns while the box is open
    boxes = [box for box in window.findChildren(QMessageBox) if box.isVisible()]
    assert len(boxes) == 1 and boxes[0].objectName() == "errorBox"
    assert boxes[0].windowTitle() == "Cannot open image" and "missing.tif" in boxes[0].text()
    boxes[0].close()
