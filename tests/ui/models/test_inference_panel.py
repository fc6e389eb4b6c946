"""Inference panel: 2D on the slice and the viewport, debounced re-run, 3D with cancel, export."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile

from empanada_desktop.core.paths import models_dir
from empanada_desktop.ui.models.inference_panel import InferencePanel
from empanada_desktop.ui.shell.worker import detach_loop
from empanada_desktop.ui.viewer.document import Document


@pytest.fixture
def panel(qtbot, tiny_model_dir):
    shutil.copytree(tiny_model_dir, models_dir() / "tiny")
    document = Document()
    rng = np.random.default_rng(0)
    document.set_image(rng.integers(0, 255, (4, 64, 96), dtype=np.uint8))
    panel = InferencePanel(document, viewport=lambda: (10, 40, 20, 60))
    qtbot.addWidget(panel)
    assert panel.device.findData("cpu") == -1  # devices are listed when the list first opens
    panel.device.showPopup()
    panel.device.hidePopup()
    panel.device.setCurrentIndex(panel.device.findData("cpu"))
    assert panel.device.currentData() == "cpu"
    # A random model outputs logits of about 0 and no centers: semantic-only at a low
    # threshold makes it label the foreground.
    panel.confidence.setValue(0.01)
    panel.semantic_only.setChecked(True)
    yield panel
    for job in (panel.job2d, panel.job3d):
        if job is not None and job.is_running:
            job.cancel()
            job.wait()
    detach_loop()


def test_lists_models_with_weights_only(panel):
    names = [panel.model_combo.itemData(i) for i in range(panel.model_combo.count())]
    assert names == ["tiny"]  # built-ins without weights cannot run
    assert panel.run2d_button.isEnabled() and panel.volume.run_button.isEnabled()


def test_segments_the_slice_into_the_labels_of_that_slice(panel, qtbot):
    document = panel.document
    document.set_index(2)
    with qtbot.waitSignal(panel.labelsWritten, timeout=60000):
        panel.run_2d()
    assert document.labels is not None and document.labels.dtype == np.int32
    assert document.labels[2].any()
    assert not document.labels[[0, 1, 3]].any()  # other slices untouched
    assert "object(s)" in panel.status.text()


def test_viewport_only_writes_only_the_visible_box(panel, qtbot):
    panel.viewport_only.setChecked(True)
    with qtbot.waitSignal(panel.labelsWritten, timeout=60000):
        panel.run_2d()
    labels = panel.document.labels[panel.document.index]
    outside = labels.copy()
    outside[10:40, 20:60] = 0
    assert labels[10:40, 20:60].any() and not outside.any()


def test_changing_a_setting_reruns_once_after_a_pause(panel, qtbot):
    panel.auto_rerun.setChecked(True)
    runs = []
    original = panel.run_2d
    panel.debounce.timeout.disconnect()
    panel.debounce.timeout.connect(lambda: runs.append(original()))
    for value in (0.02, 0.03, 0.04):  # quick successive edits
        panel.confidence.setValue(value)
    qtbot.waitUntil(lambda: len(runs) == 1, timeout=5000)
    qtbot.waitUntil(lambda: not runs[0].is_running, timeout=60000)
    assert len(runs) == 1 and runs[0].state == "finished"


def test_a_result_for_a_slice_no_longer_shown_is_dropped(panel, qtbot):
    job = panel.run_2d()
    panel.document.set_index(0)  # the user moved on while it ran
    qtbot.waitUntil(lambda: not job.is_running, timeout=60000)
    qtbot.wait(10)
    assert panel.document.labels is None
    assert "dropped" in panel.status.text()


def test_volume_segmentation_fills_the_labels_and_export_writes_tiff(panel, qtbot, tmp_path):
    panel.volume.min_size.setValue(0)
    panel.volume.min_extent.setValue(0)
    job = panel.run_3d(tmp_path / "out.tif")
    with qtbot.waitSignal(panel.labelsWritten, timeout=120000):
        pass
    assert job.state == "finished"
    assert panel.document.labels.shape == (4, 64, 96) and panel.document.labels.any()
    assert panel.volume.progress.value() == panel.volume.progress.maximum()
    exported = panel.export_labels(tmp_path / "labels.tif")
    np.testing.assert_array_equal(tifffile.imread(exported), panel.document.labels)


def test_cancelling_the_volume_leaves_the_labels_alone(panel, qtbot, tmp_path):
    job = panel.run_3d(tmp_path / "out.tif")
    panel.cancel_3d()
    qtbot.waitUntil(lambda: not job.is_running, timeout=120000)
    assert job.state in ("finished", "failed")
    assert panel.document.labels is None
    assert panel.volume.run_button.isEnabled()


def test_prediction_provider_segments_a_patch(panel):
    patch = panel.document.current_slice()[:64, :64]
    labels = panel.prediction_provider(patch)
    assert labels.shape == (64, 64) and labels.dtype == np.int32


def test_cpu_arithmetic_choice_reaches_the_engine_and_the_status_names_it(panel, qtbot):
    assert panel.settings().int8 == "auto"
    panel.int8.setCurrentIndex(panel.int8.findData("off"))
    assert panel.settings().int8 == "off"
    with qtbot.waitSignal(panel.labelsWritten, timeout=60000):
        panel.run_2d()
    assert "(float32)" in panel.status.text()
