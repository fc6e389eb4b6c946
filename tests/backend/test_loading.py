"""Registered models as modules: native registration, loading by name, built-in weights."""

from __future__ import annotations

import pytest
import torch

from empanada_desktop.backend.loading import create_builtin_weights, load_registered, register_native_model
from empanada_desktop.backend.torchscript import export_empanada, plain_execution, verify_model_file
from empanada_desktop.core.errors import ModelLoadError, RegistryError
from empanada_desktop.core.registry import ModelRegistry
from tests.backend.conftest import build_tiny


def test_registered_native_model_loads_by_name(registered_tiny_model):
    assert registered_tiny_model.installed
    assert registered_tiny_model.config.architecture == "PanopticDeepLabPR"
    assert registered_tiny_model.config.encoder == "resnet18"
    model, config = load_registered("tiny")
    assert isinstance(model, torch.jit.ScriptModule) and not model.training
    assert config.padding_factor == 16 and config.num_classes == 1
    with torch.no_grad():
        out = model(torch.zeros(1, 1, 64, 64))
    assert out["sem_logits"].shape == (1, 1, 64, 64)
    assert ModelRegistry().get("tiny").parameters == sum(p.numel() for p in model.parameters())


def test_registered_weights_come_from_the_seed():
    register_native_model("seeded", seed=3)
    registered = dict(load_registered("seeded")[0].named_parameters())
    key = "encoder.layer1.0.conv1.weight"
    assert torch.equal(registered[key], dict(build_tiny(seed=3).named_parameters())[key])
    assert not torch.equal(registered[key], dict(build_tiny(seed=4).named_parameters())[key])


def test_bifpn_native_model_gets_its_padding():
    registered = register_native_model("mini", architecture="PanopticBiFPNPR", like="MitoNet_v1_mini")
    assert registered.config.padding_factor == 128
    assert registered.config.architecture == "PanopticBiFPNPR"
    assert load_registered(registered)[0].original_name == "PanopticBiFPNPR"


def test_builtin_without_weights_names_the_file_to_import():
    with pytest.raises(ModelLoadError, match="MitoNet_v1"):
        load_registered("MitoNet_v1")


def test_unknown_name_lists_known_models():
    with pytest.raises(RegistryError, match="MitoNet_v1"):
        load_registered("NoSuchNet")


def test_builtin_weights_have_the_released_structure(tmp_path):
    model = create_builtin_weights("MitoNet_v1", seed=0)
    names = dict(model.named_parameters())
    assert "encoder.conv1.0.weight" in names and "encoder.layer4.2.conv3.bias" in names
    assert 55.0e6 < sum(p.numel() for p in names.values()) < 55.2e6
    # Exported, imported and loaded like a downloaded MitoNet_v1.pth.
    pth, _ = export_empanada(model, ModelRegistry().get("MitoNet_v1").config, tmp_path, "MitoNet_v1")
    ModelRegistry().import_weights(pth, "MitoNet_v1", verify=verify_model_file)
    loaded, config = load_registered("MitoNet_v1")
    assert config.architecture == "PanopticDeepLabPR"
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in names.values())
    with torch.no_grad(), plain_execution():
        out = loaded(torch.zeros(1, 1, 64, 64))
    assert out["sem_logits"].shape == (1, 1, 64, 64) and out["offsets"].shape == (1, 2, 64, 64)


def test_dilated_stage_starts_dilated_as_in_empanada():
    """empanada's ResNet gives the first block of the dilated layer4 dilation 2 (MitoNet_v1)."""
    from empanada_desktop.backend.models import build_model

    model = build_model("PanopticDeepLabPR", encoder="resnet50")
    assert model.encoder.layer4[0].conv2.dilation == (2, 2)
    assert model.encoder.layer4[0].conv2.padding == (2, 2)


def test_to_native_takes_conv_geometry_from_the_file_and_checks_outputs():
    """A file whose convolutions differ from today's architecture code (e.g. made before the
    dilation fix) still gets a native module that computes what the file computes."""
    import torch

    from empanada_desktop.backend.loading import to_native
    from empanada_desktop.backend.models import build_model
    from empanada_desktop.backend.torchscript import script_model
    from empanada_desktop.core.model_config import ModelConfig

    torch.manual_seed(0)
    old = build_model("PanopticDeepLabPR", encoder="resnet18").eval()
    conv = old.encoder.layer4[0].conv1  # BasicBlock: its first conv carries the block's dilation
    conv.dilation, conv.padding = (1, 1), (1, 1)
    scripted = script_model(old)
    config = ModelConfig(class_names={1: "mito"}, labels=(1,), thing_list=(1,), model="x.pth",
                         padding_factor=16, architecture="PanopticDeepLabPR", encoder="resnet18")
    native = to_native(scripted, config)
    assert native is not None and native.encoder.layer4[0].conv1.dilation == (1, 1)
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        a = scripted(x, render_steps=1, interpolate_ins=False)["ctr_hmp"]
        b = native(x, render_steps=1, interpolate_ins=False)["ctr_hmp"]
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
