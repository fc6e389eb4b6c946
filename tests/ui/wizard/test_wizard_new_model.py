"""The wizard's "Train a new model" path, the CEM import on its page, and "all N GPUs"."""

from __future__ import annotations

import pytest
import torch
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QLabel

from empanada_desktop.core.registry import ModelRegistry
from empanada_desktop.ui.wizard.page_ids import PAGE_DATA, PAGE_NEW_MODEL, PAGE_RESULTS, PAGE_RUN, PAGE_SETTINGS

RUN_TIMEOUT_MS = 240_000


def test_train_a_new_model_from_the_first_page_to_the_results(wizard, qtbot, tmp_path, make_set):
    train, val = make_set(tmp_path / "train", 4, 0), make_set(tmp_path / "val", 2, 1)
    wizard.model_page.train_radio.setChecked(True)
    assert wizard.model_page.isComplete()
    wizard.next()
    assert wizard.currentId() == PAGE_NEW_MODEL
    page = wizard.new_model_page
    page.encoder.setCurrentText("resnet18")
    assert page.isComplete() and page.classes.rowCount() == 1
    wizard.next()
    assert wizard.currentId() == PAGE_DATA
    assert wizard.state.new_model["encoder"] == "resnet18" and wizard.state.new_model["init"] == "random"
    data = wizard.data_page
    data.add_folder(train)
    data.set_val_dir(val)
    data.choose_remedy("smaller_batch")
    wizard.next()
    assert wizard.currentId() == PAGE_SETTINGS
    settings = wizard.settings_page
    qtbot.waitUntil(lambda: settings.counts_task is not None and settings.counts_task.done(), timeout=60000)
    assert settings.iterations.value() == 500  # a new model's default
    assert settings.layer_buttons["all"].isChecked() and not settings.layer_buttons["none"].isEnabled()
    assert settings.counts["all"] > settings.counts["none"] > 0
    settings.iterations.setValue(2)
    settings.patch_size.setValue(64)
    settings.batch_size.setValue(2)
    settings.device.setCurrentIndex(settings.device.findData("cpu"))
    grab = tmp_path / "settings.png"
    assert wizard.grab().save(str(grab))

    wizard.next()
    assert wizard.currentId() == PAGE_RUN
    run = wizard.run_page
    # a new model: baseline, 2 steps, 2 validations, export; slow when the shared machine is busy
    qtbot.waitUntil(lambda: run.outcome in ("finished", "failed"), timeout=2 * RUN_TIMEOUT_MS)
    assert run.outcome == "finished", run.status.text()
    assert type(wizard.state.config).__name__ == "TrainConfig"
    wizard.next()
    assert wizard.currentId() == PAGE_RESULTS
    results = wizard.results_page
    qtbot.waitUntil(lambda: results.compare_task is not None and results.compare_task.done(), timeout=60000)
    pixmaps = [w for w in results.gallery.findChildren(QLabel) if isinstance(w.pixmap(), QPixmap)
               and not w.pixmap().isNull()]
    assert len(pixmaps) == 2 * 4  # the "original" column is empty for a new model
    assert results.save_and_register("my_new")
    assert ModelRegistry().get("my_new").config.architecture == "PanopticDeepLabPR"


def test_new_model_page_needs_imported_cem_weights_and_valid_classes(wizard, tmp_path):
    from empanada_desktop.backend.models.encoders import build_encoder

    page = wizard.new_model_page
    page.encoder.setCurrentText("resnet18")
    page.cem_radio.setChecked(True)
    assert page.encoder.currentText() == "resnet50" and not page.encoder.isEnabled()
    assert not page.isComplete() and "Import the CEM1.5M weights" in page.error.text()
    cem = tmp_path / "cem1.5m_swav_resnet50_200ep_balanced.pth.tar"
    torch.save({"state_dict": {f"module.{k}": v for k, v in build_encoder("resnet50").state_dict().items()},
                "norms": [0.5, 0.2]}, cem)
    assert page.import_cem(cem)
    assert page.isComplete() and "Imported:" in page.cem_status.text()
    page.add_class("er", "semantic")
    assert page.label_divisor.isEnabled() and page.settings()["classes"] == ("1,mito,instance", "2,er,semantic")
    page.classes.item(1, 1).setText("mito")
    assert not page.isComplete() and "own name" in page.error.text()


def test_all_gpus_is_offered_with_two_gpus_and_runs_through_the_launcher(wizard, monkeypatch, tmp_path, make_set):
    from empanada_desktop.backend import devices
    from empanada_desktop.backend.finetune import launch
    from empanada_desktop.ui.wizard.run_page import finetune_job

    fake = [devices.DeviceInfo(id=f"cuda:{i}", name="Fake GPU", kind="cuda", available=True, reason="",
                               memory_bytes=8 << 30, bf16=True, threads=None) for i in range(2)]
    cpu = [d for d in devices.list_devices() if d.kind == "cpu"]
    monkeypatch.setattr(devices, "list_devices", lambda: [*fake, *cpu])
    settings = wizard.settings_page
    settings._fill_devices()
    index = settings.device.findData("all:2")
    assert index > 0 and "all 2 GPUs" in settings.device.itemText(index)
    settings.device.setCurrentIndex(index)
    wizard.state.new_model = {"architecture": "PanopticDeepLabPR", "encoder": "resnet18", "init": "random",
                              "classes": ("1,mito,instance",), "label_divisor": 1000}
    wizard.state.train_dirs = [make_set(tmp_path / "train", 4, 0)]
    settings.new_name.setText("gpus")
    settings.layer_buttons["all"].setChecked(True)  # what the page sets for a random encoder
    config = settings.build_config()
    assert config.device == "cuda" and wizard.state.processes == 2

    calls = []

    def fake_launcher(run_config, processes, stop):
        calls.append((run_config, processes))
        return "launched"
        yield  # pragma: no cover

    monkeypatch.setattr(launch, "run_in_processes", fake_launcher)
    job = finetune_job(config, processes=2)(lambda: False)
    with pytest.raises(StopIteration) as done:
        next(job)
    assert done.value.value == "launched" and calls == [(config, 2)]
