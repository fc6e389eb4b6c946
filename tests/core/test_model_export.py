"""core.model_export: the .pth/.yaml pair for empanada-napari, and its ~/.empanada config."""

from __future__ import annotations

import pytest
import yaml

from empanada_desktop.core.errors import UserError
from empanada_desktop.core.model_config import ModelConfig
from empanada_desktop.core.model_export import ExportExistsError, add_to_empanada_napari, export_pair
from empanada_desktop.core.paths import empanada_user_dir
from empanada_desktop.core.registry import ModelRegistry

from test_registry import fake_torchscript


@pytest.fixture
def lab_model(tmp_path):
    source = fake_torchscript(tmp_path / "incoming" / "lab.pth")
    return ModelRegistry().import_weights(
        source, "lab", like="MitoNet_v1", verify=lambda path: {"parameters": 7, "format": "torchscript"}
    )


def test_export_pair_copies_the_weights_and_points_the_yaml_at_the_copy(lab_model, tmp_path):
    out = tmp_path / "for_napari"
    pth, yaml_path = export_pair(lab_model, out)
    assert pth == (out / "lab.pth").resolve() and yaml_path == out / "lab.yaml"
    assert pth.read_bytes() == lab_model.weights_path.read_bytes()
    assert yaml.safe_load(yaml_path.read_text())["model"] == str(pth)
    assert ModelConfig.from_yaml(yaml_path).padding_factor == lab_model.config.padding_factor

    with pytest.raises(ExportExistsError, match="lab.pth") as refused:
        export_pair(lab_model, out)
    assert set(refused.value.existing) == {pth, yaml_path}
    assert export_pair(lab_model, out, overwrite=True) == (pth, yaml_path)


def test_export_pair_refuses_a_file_and_a_model_without_weights(lab_model, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(UserError, match="is a file"):
        export_pair(lab_model, a_file)
    mito = ModelRegistry().get("MitoNet_v1")
    with pytest.raises(UserError, match="MitoNet_v1.pth"):
        export_pair(mito, tmp_path / "out")
    with pytest.raises(UserError, match="MitoNet_v1.pth"):
        add_to_empanada_napari(mito)
    assert not (tmp_path / "out").exists()


def test_add_to_empanada_napari_points_at_the_registered_weights(lab_model):
    target = add_to_empanada_napari(lab_model)
    assert target == empanada_user_dir() / "configs" / "lab.yaml"
    assert yaml.safe_load(target.read_text())["model"] == str(lab_model.weights_path)
