"""Suggest patches in the Patches panel: run with the inference panel's model, heatmap, outlines
with ranks, accept (prediction as the mask) / reject, keyboard, navigation, cancel, exclusions."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox

from empanada_desktop.core.opening import synthetic_em
from empanada_desktop.core.paths import models_dir
from empanada_desktop.core.suggest_ranking import overlap_fraction
from empanada_desktop.ui.shell.main_window import MainWindow
from empanada_desktop.ui.shell.worker import detach_loop
from empanada_desktop.ui.training_data.training_set import Patch

TIMEOUT_MS = 60000


@pytest.fixture
def window(qtbot, monkeypatch, tiny_model_dir):
    shutil.copytree(tiny_model_dir, models_dir() / "tiny")
    monkeypatch.setattr(QMessageBox, "information", lambda *a, **k: None)
    win = MainWindow()
    qtbot.addWidget(win)
    panel = win.inference_panel
    panel.select_model("tiny")
    # A semantic-only model at a low threshold labels the foreground: predictions are not empty.
    panel.confidence.setValue(0.01)
    panel.semantic_only.setChecked(True)
    _unsure(panel.cache.get("tiny", "cpu")[0])  # the copy the suggestions use
    yield win
    job = win.patch_picker.suggestions.job
    if job is not None and job.is_running:
        job.cancel()
        job.wait()
    detach_loop()


def _unsure(model) -> None:
    """A fresh model's outputs hardly depend on the image; noise on its weights makes flipped
    and rotated views disagree a little, so the uncertainty map is not flat."""
    import torch

    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            noise = torch.randn(p.shape, generator=generator, dtype=p.dtype)
            p.add_(noise * (p.std().clamp(min=0.02) if p.dim() > 1 else 0.1))


def _open(window, shape=(4, 96, 96)):
    image, _ = synthetic_em(shape, seed=3) if len(shape) == 3 else synthetic_em((1, *shape), seed=3)
    image = image if len(shape) == 3 else image[0]
    window.document.set_image(np.ascontiguousarray(image), "cells.tif")
    return image


def _box(window, n=3, size=32, scope=0):
    window.patch_picker.size_spin.setValue(size)
    box = window.patch_picker.suggestions
    box.count_spin.setValue(n)
    box.scope_combo.setCurrentIndex(scope)
    return box


def _run(box, qtbot):
    job = box.run()
    assert job is not None, box.info.text()
    with qtbot.waitSignal(job.done, timeout=TIMEOUT_MS):
        pass
    assert job.state == "finished", job.error
    return job


def test_suggests_outlines_ranks_and_heatmap(window, qtbot):
    _open(window)
    box = _box(window)
    assert box.run_button.isEnabled() and not box.accept_button.isEnabled()
    _run(box, qtbot)
    assert [p.rank for p in box.pending] == [1, 2, 3] and box.list.count() == 3
    assert box.list.item(0).text().startswith("#1")
    assert all(p.labels is not None and p.labels.shape == (32, 32) for p in box.pending)
    on_slice = [p for p in box.pending if (p.box.plane, p.box.index) == ("xy", window.document.index)]
    assert len(box.outlines.texts) == len(on_slice) == 3  # "This slice": all on screen
    assert box.outlines.texts[0] == f"#1  {box.pending[0].score:.2f}"
    assert box.list.currentRow() == 0  # the best one is selected
    heat = box.heatmap
    assert heat.shown and heat.values.shape == (96, 96) and float(heat.values.max()) > 0
    box.heat_check.setChecked(False)
    assert not heat.shown
    box.heat_check.setChecked(True)
    assert heat.shown
    window.document.set_index(window.document.index - 1)
    assert not heat.shown and box.outlines.texts == []  # other slice: neither map nor outlines
    window.document.set_index(window.document.index + 1)
    assert heat.shown and len(box.outlines.texts) == 3
    assert "3 suggestion(s)" in box.info.text()


def test_accept_puts_the_prediction_into_the_training_set_and_reject_drops(window, qtbot, tmp_path):
    _open(window)
    box = _box(window)
    _run(box, qtbot)
    first, second, third = box.pending
    patch = box.accept_current()
    assert window.training_set.patches == [patch]
    assert patch.labels.any()
    np.testing.assert_array_equal(patch.labels, first.labels)  # the model's prediction, to correct
    np.testing.assert_array_equal(patch.image, first.image)
    assert patch.box == first.box and patch.origin["suggestion"]["rank"] == 1
    assert patch.name.startswith("cells-xy")
    assert [p.rank for p in box.pending] == [2, 3] and box.list.count() == 2
    assert box.outlines.texts[0].startswith("#2")  # accepted: no longer a suggestion
    assert len(window.patch_picker._outlines) == 1  # ... but a training-set patch
    box.reject_current()
    assert [p.rank for p in box.pending] == [3] and box.rejected == [second.box]
    assert len(window.training_set.patches) == 1
    box.accept_all()
    assert box.pending == [] and len(window.training_set.patches) == 2
    assert not box.accept_button.isEnabled()
    counts = window.training_panel.save(tmp_path / "set")
    assert counts["suggestions"] == tmp_path / "set" / "suggestions.csv"
    rows = list(csv.DictReader(counts["suggestions"].open()))
    saved = [p for p in window.training_set.patches if p.annotated]
    assert sorted(int(r["rank"]) for r in rows) == sorted(p.origin["suggestion"]["rank"] for p in saved)
    assert {r["name"] for r in rows} == {f"{p.name}.tiff" for p in saved}
    assert "suggestions" not in window.training_panel.save(tmp_path / "set")  # listed once


def test_keyboard_accepts_rejects_and_moves(window, qtbot):
    _open(window)
    box = _box(window, n=3)
    _run(box, qtbot)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)
    target = window.viewer.graphics
    qtbot.keyClick(target, Qt.Key.Key_Period)  # .: next
    assert box.list.currentRow() == 1
    qtbot.keyClick(target, Qt.Key.Key_R)  # reject #2
    assert [p.rank for p in box.pending] == [1, 3]
    qtbot.keyClick(target, Qt.Key.Key_Comma)  # ,: previous
    qtbot.keyClick(target, Qt.Key.Key_A)  # accept #1
    assert [p.origin["suggestion"]["rank"] for p in window.training_set.patches] == [1]
    qtbot.keyClick(target, Qt.Key.Key_H)
    assert not box.heat_check.isChecked() and not box.heatmap.shown


def test_suggestions_on_other_slices_and_planes_move_the_viewer_there(window, qtbot):
    _open(window, shape=(48, 48, 48))
    box = _box(window, n=6, size=16, scope=2)  # all planes
    _run(box, qtbot)
    doc = window.document
    assert {plane for plane, _ in box.result.analysed} == {"xy", "xz", "yz"}
    elsewhere = [i for i, p in enumerate(box.pending) if (p.box.plane, p.box.index) != (doc.plane, doc.index)]
    assert elsewhere, [p.box for p in box.pending]
    for row in elsewhere:
        box.select_row(row)
        target = box.pending[row].box
        assert (doc.plane, doc.index) == (target.plane, target.index)
        assert window.viewer.plane_combo.currentText() == target.plane
        assert box.outlines.selected == f"#{box.pending[row].rank}  {box.pending[row].score:.2f}"


def test_cancel_stops_the_job(window, qtbot):
    _open(window)
    box = _box(window)
    job = box.run()
    assert box.cancel_button.isEnabled() and not box.run_button.isEnabled()
    box.cancel()
    with qtbot.waitSignal(job.done, timeout=TIMEOUT_MS):
        pass
    assert job.result.stopped and box.pending == [] and box.list.count() == 0
    assert "Cancelled" in box.info.text()
    assert box.run_button.isEnabled() and not box.cancel_button.isEnabled()


def test_patches_already_in_the_training_set_are_excluded(window, qtbot):
    image = _open(window, shape=(64, 64))
    corners = [(0, 0), (0, 32), (32, 0), (32, 32)]
    window.training_set.add([
        Patch("cells", f"c{r}-{c}", image[r:r + 32, c:c + 32].copy(), np.zeros((32, 32), np.int32),
              {"plane": "xy", "index": 0, "row": r, "col": c, "size": 32, "path": str(window.document.path)})
        for r, c in corners])
    box = _box(window, n=3)
    assert not box.scope_combo.model().item(1).isEnabled()  # a 2D image: this slice only
    _run(box, qtbot)
    labelled = [p.box for p in window.training_set.patches]
    assert box.result.excluded == 4
    # Only the centre position overlaps no labelled corner by more than a quarter.
    assert [(p.box.row, p.box.col) for p in box.pending] == [(16, 16)]
    assert all(overlap_fraction(p.box, other) <= 0.25 for p in box.pending for other in labelled)


def test_without_a_model_the_panel_says_what_to_do(qtbot):
    win = MainWindow()
    qtbot.addWidget(win)
    _open(win)
    assert win.patch_picker.suggestions.run() is None
    assert "Inference panel" in win.patch_picker.suggestions.info.text()
