"""Saving the training set: a new folder is created, a validation share is held out by default
and the wizard picks it up, the set comes back after a restart; the patch editor's buttons."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtWidgets import QMessageBox

from empanada_desktop.ui.shell.main_window import MainWindow
from empanada_desktop.ui.training_data.save_set_dialog import SaveSetDialog
from empanada_desktop.ui.wizard.wizard import FinetuneWizard


@pytest.fixture
def window(qtbot, monkeypatch):
    monkeypatch.setattr(QMessageBox, "information", lambda *a, **k: None)
    win = MainWindow()
    qtbot.addWidget(win)
    return win


def annotated_set(window, qtbot, count=5):
    window.document.set_image((np.arange(7 * 64 * 80) % 200).reshape(7, 64, 80).astype(np.uint8),
                              "cells.tif")
    picker = window.patch_picker
    picker.size_spin.setValue(16)
    picker.count_spin.setValue(count)
    picker.rng = np.random.default_rng(0)
    picker.pick()
    view = window.training_panel.open_patch(0)
    qtbot.addWidget(view)
    for _ in range(count):
        view.done_button.setChecked(True)  # marks this one done and moves on to the next
    return view


def test_mark_done_advances_and_close_closes(window, qtbot):
    view = annotated_set(window, qtbot, count=3)
    assert [p.done for p in window.training_set.patches] == [True, True, True]
    assert view.index == 2 and view.isVisible()
    view.close_button.click()
    assert not view.isVisible()


def test_save_dialog_creates_a_new_folder_with_a_default_validation_share(window, qtbot, tmp_path):
    annotated_set(window, qtbot)
    panel = window.training_panel
    assert panel.val_spin.value() == pytest.approx(0.2)
    assert "1 of 5 annotated patches will be held out" in panel.val_note.text()
    dialog = panel.choose_save()
    qtbot.addWidget(dialog)
    target = tmp_path / "new" / "mito_set"
    dialog.path_edit.setText(str(target))
    assert "will be created" in dialog.note.text() and dialog.save_button.isEnabled()
    dialog.save_button.click()
    assert (target / "cells" / "masks").is_dir()
    assert len(list((tmp_path / "new" / "mito_set_val" / "cells" / "masks").iterdir())) == 1
    assert window.training_set_dir() == target

    # The wizard's data page uses the set and its held-out share, and warns on val == train.
    wizard = FinetuneWizard(training_set_dir=window.training_set_dir)
    qtbot.addWidget(wizard)
    page = wizard.data_page
    page.initializePage()
    assert page.app_set_radio.isChecked() and page.val_dir() == tmp_path / "new" / "mito_set_val"
    assert not page.val_problems
    page.set_val_dir(target)
    assert "also a training folder" in page.val_problems[0] and not page.isComplete()

    # After a restart the set is back in the panel and offered to the wizard.
    later = MainWindow()
    qtbot.addWidget(later)
    assert later.training_set_dir() == target and len(later.training_set.patches) == 4


def test_save_dialog_refuses_a_file(qtbot, tmp_path):
    file = tmp_path / "a.txt"
    file.write_text("x")
    dialog = SaveSetDialog(file)
    qtbot.addWidget(dialog)
    assert "is a file" in dialog.note.text() and not dialog.save_button.isEnabled()
