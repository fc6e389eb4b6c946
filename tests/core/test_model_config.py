"""ModelConfig: empanada YAML round trips and validation messages that name field and file."""

from __future__ import annotations

import pytest
import yaml

from empanada_desktop.core.errors import ConfigError
from empanada_desktop.core.model_config import EngineParams, ModelConfig, Norms
from empanada_desktop.core.resources import builtin_config_dir

# empanada-napari's published MitoNet_v1 config, as its users have it on disk.
EMPANADA_MITONET_YAML = """\
class_names:
  1: mito

labels:
- 1

thing_list:
- 1

model: https://zenodo.org/record/6861565/files/MitoNet_v1.pth?download=1
model_quantized: https://zenodo.org/record/6861565/files/MitoNet_v1_quantized.pth?download=1

padding_factor: 16
norms:
  mean: 0.57571
  std: 0.12765

description: >
  MitoNet_v1 generalist.

FINETUNE:
  criterion: PanopticLoss
  criterion_params:
    ce_weight: 1
    l1_weight: 0.01
    mse_weight: 200
    pr_weight: 1
    top_k_percent: 0.2
  dataset_class: SingleClassInstanceDataset
  dataset_params:
    weight_gamma: 0.7
  engine: PanopticDeepLabEngine
  engine_params:
    confidence_thr: 0.5
    label_divisor: 1000
    nms_kernel: 7
    nms_threshold: 0.1
    stuff_area: 64
    thing_list:
    - 1
    void_label: 0
"""


def _minimal(**overrides):
    data = {"class_names": {1: "mito"}, "labels": [1], "thing_list": [1], "model": "m.pth"}
    data.update(overrides)
    return data


def test_reads_empanada_config_and_round_trips(tmp_path):
    source = tmp_path / "MitoNet_v1.yaml"
    source.write_text(EMPANADA_MITONET_YAML)
    config = ModelConfig.from_yaml(source)
    assert config.class_names == {1: "mito"}
    assert config.labels == (1,) and config.thing_list == (1,)
    assert config.padding_factor == 16
    assert config.norms == Norms(0.57571, 0.12765)
    assert config.engine_params.label_divisor == 1000 and config.engine_params.nms_kernel == 7
    assert config.criterion_params.mse_weight == 200 and config.criterion_params.top_k_percent == 0.2
    assert config.weight_gamma == 0.7
    assert config.model_quantized.endswith("MitoNet_v1_quantized.pth?download=1")
    assert config.num_classes == 1 and config.is_instance
    assert config.description == "MitoNet_v1 generalist."

    written = config.to_yaml(tmp_path / "out" / "copy.yaml")
    again = ModelConfig.from_yaml(written)
    assert again == config
    # The written file keeps empanada's structure, key for key.
    original = yaml.safe_load(EMPANADA_MITONET_YAML)
    ours = yaml.safe_load(written.read_text())
    assert ours["FINETUNE"] == original["FINETUNE"]
    for key in ("class_names", "labels", "thing_list", "model", "model_quantized", "padding_factor", "norms"):
        assert ours[key] == original[key], key


def test_unknown_keys_survive_round_trip():
    data = _minimal(
        my_lab_note="keep me",
        FINETUNE={
            "engine_params": {"confidence_thr": 0.4, "coarse_boundaries": True},
            "dataset_params": {"weight_gamma": 0.5, "has_flipbooks": True},
            "something_new": [1, 2],
        },
    )
    config = ModelConfig.from_dict(data)
    assert config.engine_params.confidence_thr == 0.4
    assert config.weight_gamma == 0.5
    out = config.to_dict()
    assert out["my_lab_note"] == "keep me"
    assert out["FINETUNE"]["engine_params"]["coarse_boundaries"] is True
    assert out["FINETUNE"]["dataset_params"] == {"has_flipbooks": True, "weight_gamma": 0.5}
    assert out["FINETUNE"]["something_new"] == [1, 2]
    assert ModelConfig.from_dict(out) == config


def test_multiclass_semantic_and_panoptic_properties():
    config = ModelConfig.from_dict(
        _minimal(class_names={1: "mito", 2: "er", 3: "nucleus"}, labels=[1, 2, 3], thing_list=[1, 3])
    )
    assert config.num_classes == 4 and config.is_instance  # 3 classes + background
    semantic = ModelConfig.from_dict(_minimal(thing_list=[]))
    assert not semantic.is_instance and semantic.num_classes == 1


def test_thing_list_defaults_to_engine_thing_list():
    config = ModelConfig.from_dict(
        {"class_names": {1: "lipid"}, "labels": [1], "model": "x.pth",
         "FINETUNE": {"engine_params": {"thing_list": [1]}}}
    )
    assert config.thing_list == (1,)


def test_with_model_path_changes_only_the_model():
    config = ModelConfig.from_dict(_minimal(model_quantized="q.pth", architecture="PanopticDeepLabPR"))
    moved = config.with_model_path("/models/new.pth")
    assert moved.model == "/models/new.pth" and moved.model_quantized is None
    assert moved.architecture == "PanopticDeepLabPR" and moved.labels == config.labels


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"class_names": None}, "class_names"),
        ({"labels": [1, 2]}, "labels"),
        ({"labels": "one"}, "labels"),
        ({"thing_list": [5]}, "thing_list"),
        ({"padding_factor": 0}, "padding_factor"),
        ({"padding_factor": "big"}, "padding_factor"),
        ({"norms": {"mean": 0.5, "std": 0}}, "norms.std"),
        ({"norms": {"mean": 0.5, "sd": 1}}, "norms"),
        ({"FINETUNE": {"engine_params": {"confidence_thr": 3}}}, "confidence_thr"),
        ({"FINETUNE": {"engine_params": {"label_divisor": 0}}}, "label_divisor"),
        ({"FINETUNE": {"criterion_params": {"top_k_percent": 0}}}, "top_k_percent"),
        ({"FINETUNE": {"dataset_params": {"weight_gamma": -1}}}, "weight_gamma"),
        ({"model": ""}, "model"),
    ],
)
def test_invalid_fields_are_named_with_the_file(tmp_path, overrides, field):
    path = tmp_path / "bad_config.yaml"
    path.write_text(yaml.safe_dump(_minimal(**overrides)))
    with pytest.raises(ConfigError) as info:
        ModelConfig.from_yaml(path)
    message = str(info.value)
    assert field in message
    assert str(path) in message


def test_unreadable_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        ModelConfig.from_yaml(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("class_names: {1: mito\nlabels: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        ModelConfig.from_yaml(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        ModelConfig.from_yaml(listing)


def test_direct_construction_is_validated():
    with pytest.raises(ConfigError, match="thing_list"):
        ModelConfig(class_names={1: "mito"}, labels=(1,), thing_list=(2,), model="m.pth")
    with pytest.raises(ConfigError, match="nms_kernel"):
        EngineParams(nms_kernel=0)


@pytest.mark.parametrize(
    "name, padding, architecture",
    [
        ("MitoNet_v1", 16, "PanopticDeepLabPR"),
        ("MitoNet_v1_mini", 128, "PanopticBiFPNPR"),
        ("NucleoNet_base_v2", 512, "PanopticDeepLabPR"),
        ("DropNet_base_v1", 512, "PanopticDeepLabPR"),
    ],
)
def test_builtin_configs_are_valid(name, padding, architecture):
    config = ModelConfig.from_yaml(builtin_config_dir() / f"{name}.yaml")
    assert config.padding_factor == padding
    assert config.architecture == architecture
    assert config.model.startswith("https://zenodo.org/")
    assert config.is_instance and config.num_classes == 1
    assert ModelConfig.from_dict(config.to_dict()) == config
