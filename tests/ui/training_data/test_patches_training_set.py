"""Pick patches, paint one in the focused view, save in empanada's layout, reopen, continue."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PySide6.QtWidgets import QMessageBox

from empanada_desktop.ui.shell.main_window import MainWindow


@pytest.fixture
def window(qtbot, monkeypatch):
    monkeypatch.setattr(QMessageBox, "information", lambda *a, **k: None)
    win = MainWindow()
    qtbot.addWidget(win)
    return win


def _volume(window, shape=(7, 64, 80), dtype=np.uint8):
    image = (np.arange(np.prod(shape)) % 200).reshape(shape).astype(dtype)
    window.document.set_image(image, "cells.tif")
    return image


def test_random_patches_are_outlined_and_counted(window):
    _volume(window)
    picker = window.patch_picker
    picker.size_spin.setValue(16)
    picker.count_spin.setValue(4)
    picker.this_slice.setChecked(True)
    patches = picker.pick()
    assert len(patches) == 4 and len(window.training_set.patches) == 4
    assert all(p.image.shape == (16, 16) and p.image.dtype == np.uint8 for p in patches)
    assert len(picker._outlines) == 4  # outlined on the slice on screen
    assert window.training_panel.count_label.text() == "annotated 0 / 4"
    window.document.set_index(0)
    assert picker._outlines == []  # other slices show no outlines


def test_flipbooks_points_and_prefill(window):
    image = _volume(window)
    picker = window.patch_picker
    calls = []

    def provider(image2d):
        calls.append(image2d.shape)
        return (image2d > 100).astype(np.int32)

    window.set_prediction_provider(provider)
    assert picker.prefill.isEnabled()
    picker.prefill.setChecked(True)
    picker.flipbook.setChecked(True)
    picker.size_spin.setValue(16)
    picker.mode_combo.setCurrentIndex(1)
    picker.click_button.setChecked(True)
    assert window.viewer.mouse_handler is picker
    picker.press((20.0, 30.0))
    patch, = picker.pick()
    z = window.document.index
    assert patch.image.shape == (5, 16, 16) and patch.middle == 2
    assert (patch.image[2] == image[z, 12:28, 22:38]).all()
    assert (patch.image[0] == image[z - 2, 12:28, 22:38]).all()
    assert calls == [(16, 16)] and (patch.mask == (patch.image[2] > 100)).all()
    assert patch.labels[0].max() == 0  # only the middle slice is annotated
    assert patch.annotated


def test_16_bit_patches_use_the_contrast_limits(window):
    _volume(window, (1, 32, 32), np.uint16)
    window.viewer.set_levels(50, 150)
    picker = window.patch_picker
    picker.size_spin.setValue(32)
    picker.count_spin.setValue(1)
    patch, = picker.pick()
    source = window.document.current_slice()
    assert patch.image[source <= 50].max() == 0 and patch.image[source >= 150].min() == 255


def test_paint_save_reopen_continue(window, tmp_path, qtbot):
    _volume(window)
    picker = window.patch_picker
    picker.size_spin.setValue(16)
    picker.count_spin.setValue(3)
    picker.rng = np.random.default_rng(0)
    picker.pick()
    view = window.training_panel.open_patch(0)
    qtbot.addWidget(view)
    view.controller.set_brush_size(5)
    view.controller.stroke([(4, 4), (4, 12)], tool="brush")
    assert window.training_set.patches[0].mask[4, 8] == 1  # painted straight into the patch
    assert window.training_panel.count_label.text() == "annotated 1 / 3"
    view.show_patch(1)
    view.done_button.setChecked(True)  # a patch with no objects, accepted as annotated
    counts = window.training_panel.save(tmp_path / "set")
    assert counts == {"train": 2, "val": 0, "skipped": 1}
    assert window.training_set_dir() == tmp_path / "set"
    masks = sorted((tmp_path / "set" / "cells" / "masks").iterdir())
    assert len(masks) == 2 and tifffile.imread(masks[0]).dtype == np.int32
    # reopen in a new window and continue painting
    other = MainWindow()
    qtbot.addWidget(other)
    assert other.training_panel.load(tmp_path / "set")
    assert len(other.training_set.patches) == 2
    painted = [p for p in other.training_set.patches if p.mask.any()]
    assert len(painted) == 1 and painted[0].mask[4, 8] == 1
    # append with a validation share: new files go to set_val, the old ones stay
    other.training_panel.val_spin.setValue(0.5)
    counts = other.training_panel.save(tmp_path / "set")
    assert counts["val"] == 1 and (tmp_path / "set_val" / "cells" / "masks").is_dir()


def test_saving_nothing_annotated_says_what_to_do(window, tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text, *a: shown.append(text))
    import empanada_desktop.ui.training_data.training_gallery as gallery  # saving shows the one error box

    monkeypatch.setattr(gallery, "show_error", lambda parent, title, text: shown.append(text))
    _volume(window)
    window.patch_picker.count_spin.setValue(1)
    window.patch_picker.pick()
    assert window.training_panel.save(tmp_path / "set") is None
    assert "paint" in shown[0]
    assert not window.training_panel.load(tmp_path / "nothing_here")
