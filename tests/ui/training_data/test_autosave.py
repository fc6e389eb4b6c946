"""Autosave after strokes, restore after a crash, nothing left after a clean quit."""

from __future__ import annotations

import numpy as np
import tifffile
from PySide6.QtWidgets import QMessageBox

from empanada_desktop.core.paths import autosave_dir
from empanada_desktop.ui.shell.app import offer_restore
from empanada_desktop.ui.shell.main_window import MainWindow
from empanada_desktop.ui.training_data import autosave


def test_stroke_autosaves_and_a_new_window_restores(qtbot, tmp_path, monkeypatch):
    path = tmp_path / "vol.tif"
    tifffile.imwrite(path, np.zeros((3, 100, 90), np.uint8), photometric="minisblack")
    window = MainWindow()
    qtbot.addWidget(window)
    assert window.open_path(path)
    controller = window.annotation
    controller.set_brush_size(3)
    controller.set_label(5)
    controller.stroke([(80, 70), (80, 85)], tool="brush")
    window.patch_picker.count_spin.setValue(2)
    window.patch_picker.size_spin.setValue(16)
    window.patch_picker.pick()
    qtbot.waitUntil(lambda: autosave.pending() is not None and not window.autosaver.dirty)
    session = autosave.pending()
    assert session["image_path"] == str(path.resolve()) and session["patches"] == 2
    # the crash: the window goes away without its close handler
    window.autosaver.timer.stop()
    window.deleteLater()

    asked = []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.Yes)
    again = MainWindow()
    qtbot.addWidget(again)
    assert offer_restore(again)
    assert "vol.tif" in asked[0]
    labels = again.document.labels
    assert labels[1, 80, 70:86].tolist() == [5] * 16 and labels.sum() == 5 * (labels > 0).sum()
    assert len(again.training_set.patches) == 2
    # painted blocks are remembered again, so a second crash keeps them too
    assert again.document.edited_chunks


def test_clean_quit_without_unsaved_work_leaves_nothing(qtbot, monkeypatch):
    window = MainWindow()
    qtbot.addWidget(window)
    window.open_demo()
    window.autosaver.save_now()
    assert autosave.pending() is not None
    window.close()
    assert autosave.pending() is None
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a))
    assert not offer_restore(MainWindow())
    assert asked == []


def test_quit_with_unsaved_paint_keeps_the_autosave_and_no_discards(qtbot, monkeypatch):
    window = MainWindow()
    qtbot.addWidget(window)
    window.open_demo()
    window.annotation.stroke([(5, 5)], tool="brush")
    window.close()
    assert autosave.pending() is not None and (autosave_dir() / autosave.LABELS).is_file()
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    fresh = MainWindow()
    qtbot.addWidget(fresh)
    assert not offer_restore(fresh)
    assert autosave.pending() is None  # declined: deleted


def test_unreadable_session_is_ignored(app_home):
    (autosave_dir() / autosave.SESSION).write_text("{not json")
    assert autosave.pending() is None
