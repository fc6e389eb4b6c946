"""Stage maps and freezing by stage, on native and TorchScript models."""

from __future__ import annotations

import pytest
import torch

from empanada_desktop.backend.models import build_model
from empanada_desktop.backend.models.stages import (
    LAYER_CHOICES,
    STAGES,
    freeze_batchnorm_eval,
    set_finetunable,
    stage_map,
    trainable_parameter_counts,
)
from empanada_desktop.backend.torchscript import load_model
from empanada_desktop.core.errors import ConfigError
from tests.backend.conftest import build_tiny


def _covers_every_parameter_once(model):
    mapping = stage_map(model)
    listed = [name for names in mapping.values() for name in names]
    all_names = [name for name, _ in model.named_parameters()]
    assert sorted(listed) == sorted(all_names)
    assert len(set(listed)) == len(listed)
    encoder = [n for n in all_names if n.startswith("encoder.")]
    assert sorted(n for s in STAGES for n in mapping[s]) == sorted(encoder)
    assert all(not n.startswith("encoder.") for n in mapping["decoder_and_heads"])
    assert all(mapping[s] for s in STAGES)
    return mapping


@pytest.mark.parametrize("architecture", ["PanopticDeepLabPR", "PanopticBiFPNPR"])
@pytest.mark.parametrize("encoder", ["resnet18", "resnet34", "resnet50"])
@pytest.mark.parametrize("fused", [False, True])
def test_stage_map_covers_every_encoder_parameter_once(architecture, encoder, fused):
    with torch.device("meta"):
        model = build_model(architecture, encoder=encoder, fused_encoder=fused)
    mapping = _covers_every_parameter_once(model)
    assert all(n.startswith(("encoder.conv1", "encoder.bn1")) for n in mapping["stem"])
    for k in range(1, 5):
        assert all(n.startswith(f"encoder.layer{k}.") for n in mapping[f"stage{k}"])


def test_regnet_style_names_map_to_stages():
    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = torch.nn.Conv2d(1, 4, 3)
            for k in range(1, 5):
                setattr(self, f"stage{k}", torch.nn.Conv2d(4, 4, 3))

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = Encoder()
            self.head = torch.nn.Conv2d(4, 1, 1)

    mapping = _covers_every_parameter_once(Model())
    assert mapping["stem"] == ["encoder.stem.weight", "encoder.stem.bias"]
    assert mapping["stage3"] == ["encoder.stage3.weight", "encoder.stage3.bias"]
    assert mapping["decoder_and_heads"] == ["head.weight", "head.bias"]


def test_later_stages_train_more_and_counts_match_set_finetunable():
    model = build_tiny()
    counts = trainable_parameter_counts(model)
    ordered = [counts[c] for c in LAYER_CHOICES]
    assert ordered == sorted(ordered) and len(set(ordered)) == len(ordered)
    for layers in LAYER_CHOICES:
        trained = set_finetunable(model, layers)
        assert trained == counts[layers]
        assert trained == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert counts["all"] == sum(p.numel() for p in model.parameters())


def test_stage4_unfreezes_layer4_only_and_decoders_always_train():
    model = build_tiny()
    set_finetunable(model, "stage4")
    grads = {name: p.requires_grad for name, p in model.named_parameters()}
    assert all(v for n, v in grads.items() if n.startswith("encoder.layer4."))
    assert not any(v for n, v in grads.items() if n.startswith(("encoder.layer3.", "encoder.conv1")))
    assert all(v for n, v in grads.items() if not n.startswith("encoder."))
    set_finetunable(model, "stage2")
    assert model.encoder.layer2[0].conv1.weight.requires_grad
    assert not model.encoder.layer1[0].conv1.weight.requires_grad
    set_finetunable(model, "all")
    assert model.encoder.conv1.weight.requires_grad


def test_unknown_layers_choice_is_a_config_error():
    with pytest.raises(ConfigError, match="stage4"):
        set_finetunable(build_tiny(), "layer4")


def test_stage4_trains_more_than_none_on_an_empanada_style_torchscript_file(empanada_style_file):
    # empanada's own finetuning trains the same parameters for "stage4" and "none" on MitoNet.
    model = load_model(empanada_style_file)
    assert "encoder.conv1.0.weight" in dict(model.named_parameters())
    _covers_every_parameter_once(model)
    none = set_finetunable(model, "none")
    stage4 = set_finetunable(model, "stage4")
    assert stage4 > none
    layer4 = sum(p.numel() for n, p in model.named_parameters() if n.startswith("encoder.layer4."))
    assert stage4 - none == layer4


@pytest.mark.parametrize("scripted", [False, True])
def test_frozen_batchnorm_stays_in_eval_mode(scripted):
    from empanada_desktop.backend.torchscript import script_model

    model = build_tiny()
    if scripted:
        model = script_model(model)
    set_finetunable(model, "stage4")
    model.train()
    switched = freeze_batchnorm_eval(model)
    assert switched > 0
    # Look modules up by name: indexing a scripted Sequential returns a stale wrapper.
    modules = dict(model.named_modules())
    assert not modules["encoder.bn1"].training
    assert not modules["encoder.layer3.0.bn1"].training
    assert modules["encoder.layer4.0.bn1"].training
    assert modules["semantic_decoder.aspp.project.1"].training
    # In a training forward pass, frozen layers keep their running statistics, trained ones update.
    frozen_before = modules["encoder.layer1.0.bn1"].running_mean.clone()
    trained_before = modules["encoder.layer4.0.bn1"].running_mean.clone()
    model(torch.randn(2, 1, 64, 64))
    torch.testing.assert_close(modules["encoder.layer1.0.bn1"].running_mean, frozen_before)
    assert not torch.equal(modules["encoder.layer4.0.bn1"].running_mean, trained_before)
