"""Model manager dialog: list, info, import, rename, remove, export for empanada-napari."""

from __future__ import annotations

import shutil

import pytest
import yaml
from PySide6.QtWidgets import QMessageBox

from empanada_desktop.core.model_config import ModelConfig
from empanada_desktop.core.paths import empanada_user_dir, models_dir
from empanada_desktop.core.registry import ModelRegistry
from empanada_desktop.ui.models.model_manager import ModelManagerDialog
from empanada_desktop.ui.shell.worker import detach_loop


@pytest.fixture
def dialog(qtbot):
    dialog = ModelManagerDialog()
    qtbot.addWidget(dialog)
    yield dialog
    detach_loop()


def names(dialog):
    return [dialog.models_list.item(i).text().split("  ")[0] for i in range(dialog.models_list.count())]


def select(dialog, name):
    index = names(dialog).index(name)
    dialog.models_list.setCurrentRow(index)


def error_boxes(widget):
    return [box for box in widget.findChildren(QMessageBox) if box.isVisible()]


def test_lists_builtins_and_says_which_file_to_import(dialog):
    assert "MitoNet_v1" in names(dialog)
    select(dialog, "MitoNet_v1")
    text = dialog.info.toPlainText()
    assert "Weights missing" in text and "MitoNet_v1.pth" in text
    assert not dialog.export_button.isEnabled()  # nothing to export without weights
    assert not dialog.rename_button.isEnabled()  # built-ins keep their names


def test_import_rename_export_remove(dialog, qtbot, tiny_model_dir, tmp_path):
    source = tmp_path / "my_mito_model.pth"
    shutil.copyfile(tiny_model_dir / "tiny.pth", source)
    task = dialog.import_model(source, name="lab_model", like="MitoNet_v1")
    qtbot.waitUntil(task.done, timeout=60000)
    assert task.result() is not None, error_boxes(dialog)
    assert "lab_model" in names(dialog) and dialog.selected_name() == "lab_model"
    assert "lab_model" in ModelRegistry().names()
    assert "parameters" in dialog.info.toPlainText()

    assert dialog.rename_selected("lab_model_v2")
    assert "lab_model_v2" in names(dialog) and "lab_model" not in names(dialog)

    out = tmp_path / "for_napari"
    pth, yaml_path = dialog.export_selected(out)
    assert pth == out / "lab_model_v2.pth" and pth.stat().st_size == source.stat().st_size
    config = yaml.safe_load(yaml_path.read_text())
    assert config["model"] == str(pth)
    assert ModelConfig.from_yaml(yaml_path).padding_factor == 16

    napari_yaml = dialog.add_selected_to_napari()
    assert napari_yaml == empanada_user_dir() / "configs" / "lab_model_v2.yaml"
    assert yaml.safe_load(napari_yaml.read_text())["model"].endswith("lab_model_v2.pth")

    assert dialog.remove_selected(confirm=False)
    assert not (models_dir() / "lab_model_v2").exists()
    # empanada-napari's config still names it, so it stays listed, without weights
    leftover = ModelRegistry().get("lab_model_v2")
    assert leftover.source == "empanada" and not leftover.installed
    napari_yaml.unlink()
    dialog.refresh()
    assert "lab_model_v2" not in names(dialog)


def test_importing_a_non_model_file_shows_a_message_and_adds_nothing(dialog, qtbot, tmp_path):
    bogus = tmp_path / "notes.pth"
    bogus.write_bytes(b"this is not a TorchScript archive")
    before = names(dialog)
    task = dialog.import_model(bogus, name="bogus", like="MitoNet_v1")
    qtbot.waitUntil(task.done, timeout=30000)
    assert task.result() is None
    boxes = error_boxes(dialog)
    assert boxes and "notes.pth" in boxes[0].text() and "Traceback" not in boxes[0].text()
    assert names(dialog) == before


def test_rename_to_a_taken_name_is_refused_with_a_message(dialog, tiny_model_dir):
    for name in ("first", "second"):
        shutil.copytree(tiny_model_dir, models_dir() / name)
        (models_dir() / name / "tiny.pth").rename(models_dir() / name / f"{name}.pth")
        (models_dir() / name / "tiny.yaml").rename(models_dir() / name / f"{name}.yaml")
        entry = models_dir() / name / "registry.json"
        entry.write_text(entry.read_text().replace('"tiny', f'"{name}'))
    dialog.refresh()
    assert {"first", "second"} <= set(names(dialog))
    select(dialog, "first")
    assert not dialog.rename_selected("second")
    assert error_boxes(dialog)
    assert {"first", "second"} <= set(names(dialog))


def test_export_over_existing_files_asks_first(qtbot, tiny_model_dir, tmp_path, monkeypatch):
    shutil.copytree(tiny_model_dir, models_dir() / "tiny")
    dialog = ModelManagerDialog()
    qtbot.addWidget(dialog)
    select(dialog, "tiny")
    out = tmp_path / "export"
    pth, yaml_path = dialog.export_selected(out)
    yaml_path.write_text("kept: yes\n")

    asked = []
    answer = QMessageBox.StandardButton.No
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or answer)
    assert dialog.export_selected(out) is None  # declined: nothing replaced, no error box
    assert yaml_path.read_text() == "kept: yes\n" and str(yaml_path) in asked[0]
    assert not error_boxes(dialog)
    answer = QMessageBox.StandardButton.Yes
    assert dialog.export_selected(out) == (pth, yaml_path)
    assert "kept" not in yaml_path.read_text()
    assert dialog.export_selected(out, overwrite=False) is None  # told not to: says why
    assert len(asked) == 2 and "already exists" in error_boxes(dialog)[0].text()
