"""Probe 6 in the app: an OS error in a job or a GUI action (save labels, save the training set,
export, import) is one line naming the path and the remedy in the one error box; the wizard
checks the name and the free disk space before a run starts."""

from __future__ import annotations

import errno

import numpy as np
import pytest
from PySide6.QtWidgets import QMessageBox

from empanada_desktop.ui.shell.worker import Job, detach_loop


@pytest.fixture(autouse=True)
def _pyqtgraph(pyqtgraph_options):
    yield
    detach_loop()


def _error_box(parent) -> str:
    boxes = [box for box in parent.findChildren(QMessageBox, "errorBox") if box.isVisible()]
    assert len(boxes) == 1
    text = boxes[0].text()
    assert "\n" not in text and "Traceback" not in text
    return text


@pytest.mark.parametrize("error, expected", [
    (OSError(errno.ENOSPC, "No space left on device", "/data/run/checkpoints/last.pt"), "disk is full"),
    (OSError(errno.EROFS, "Read-only file system", "/data/run/checkpoints/last.pt"), "read-only"),
    (PermissionError(errno.EACCES, "Permission denied", "/data/run/checkpoints/last.pt"), "permission denied"),
])
def test_a_job_failing_on_the_disk_reports_one_line(qtbot, error, expected):
    def job_fn(stop):
        raise error
        yield  # a generator

    job = Job("reliability-test", job_fn)
    with qtbot.waitSignal(job.failed, timeout=10000) as failed:
        job.start()
    message = failed.args[0]
    assert "/data/run/checkpoints/last.pt" in message and expected in message
    assert "unexpected" not in message and "\n" not in message


def test_torchs_write_error_in_a_job_is_a_disk_message(qtbot):
    def job_fn(stop):
        raise RuntimeError("[enforce fail at inline_container.cc:778] PytorchStreamWriter failed writing file data/0: file write failed")
        yield

    job = Job("reliability-test-torch", job_fn)
    with qtbot.waitSignal(job.failed, timeout=10000) as failed:
        job.start()
    assert "cannot write" in failed.args[0] and "unexpected" not in failed.args[0]


def test_save_labels_on_a_read_only_disk(qtbot, read_only_disk):
    from empanada_desktop.ui.shell.main_window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    window.open_demo()
    window.document.set_labels(np.zeros(window.document.image.shape, np.int32))
    target = read_only_disk.path / "folder" / "labels.tif"
    assert window.save_labels(target) is False
    text = _error_box(window)
    assert str(read_only_disk.path) in text and ("read-only" in text or "cannot write" in text)
    assert not target.exists()


def test_save_training_set_on_a_full_disk(qtbot, small_disk):
    from empanada_desktop.ui.training_data.training_gallery import TrainingSetPanel, demo_training_set

    gallery = TrainingSetPanel(demo_training_set(4))
    qtbot.addWidget(gallery)
    for patch in gallery.training_set.patches:
        patch.done = True
    disk = small_disk(8)
    disk.fill()
    assert gallery.save(disk.path / "set") is None
    text = _error_box(gallery)
    assert str(disk.path) in text and ("disk is full" in text)


def test_model_manager_export_and_import_on_bad_disks(qtbot, tiny, tmp_path, small_disk, read_only_disk, monkeypatch):
    from empanada_desktop.core.registry import ModelRegistry
    from empanada_desktop.ui.models.model_manager import ModelManagerDialog

    dialog = ModelManagerDialog()
    qtbot.addWidget(dialog)
    dialog.refresh(select="tiny")
    assert dialog.export_selected(read_only_disk.path / "folder", overwrite=False) is None
    text = _error_box(dialog)
    assert str(read_only_disk.path) in text
    for box in dialog.findChildren(QMessageBox, "errorBox"):
        box.close()

    source = tmp_path / "copy.pth"
    source.write_bytes(ModelRegistry().get("tiny").weights_path.read_bytes())
    disk = small_disk(128)
    home = disk.path / "home"
    (home / "models").mkdir(parents=True)
    monkeypatch.setenv("EMPANADA_DESKTOP_HOME", str(home))
    disk.fill()
    task = dialog.import_model(source, "copy", like="MitoNet_v1")
    qtbot.waitUntil(lambda: task is None or task.done(), timeout=60000)
    text = _error_box(dialog)
    assert str(home) in text and "disk is full" in text


def test_the_wizard_checks_name_and_disk_space_before_the_run(qtbot, tiny, tmp_path):
    from empanada_desktop.ui.wizard.wizard import FinetuneWizard

    wizard = FinetuneWizard(training_set_dir=lambda: None)
    qtbot.addWidget(wizard)
    wizard.state.model_name = "tiny"
    wizard.state.train_dirs = [tmp_path]
    page = wizard.settings_page
    page.patch_size.setValue(64)
    page.new_name.setText("TINY")
    assert page.validatePage() is False
    assert "already registered" in page.estimate_label.text() and "already registered" in _error_box(page)
    for box in page.findChildren(QMessageBox, "errorBox"):
        box.close()
    page.new_name.setText("tiny_v2")
    page.counts = {"all": 10**13, "none": 10**12, "stage4": 10**12, "stage3": 10**12, "stage2": 10**12,
                   "stage1": 10**12}
    assert page.validatePage() is False
    text = page.estimate_label.text()
    assert "not enough free disk space" in text and "more" in text
    assert "not enough free disk space" in _error_box(page)  # the whole message, in the error box
    page.counts = {"all": 1000, "none": 10, "stage4": 10, "stage3": 10, "stage2": 10, "stage1": 10}
    assert page.validatePage() is True


def test_autosave_on_a_full_disk_keeps_the_work_and_retries(qtbot, small_disk, caplog):
    from empanada_desktop.ui.training_data.autosave import Autosaver
    from empanada_desktop.ui.training_data.training_gallery import demo_training_set
    from empanada_desktop.ui.viewer.document import demo_document

    disk = small_disk(8)
    saver = Autosaver(demo_document(), demo_training_set(2), directory=disk.path / "autosave")
    disk.fill()
    saver.dirty = True
    assert saver.save_if_dirty() is True
    assert saver.dirty and "autosave failed" in caplog.text and "disk is full" in caplog.text
    disk.free_up()
    saver.save_if_dirty()
    assert not saver.dirty and (disk.path / "autosave" / "session.json").is_file()
