"""TorchScript interop: load, verify, round trips, empanada-style files, export pairs."""

from __future__ import annotations

import zipfile

import pytest
import torch
import yaml

from empanada_desktop.backend.models import build_model
from empanada_desktop.backend.torchscript import (
    export_empanada,
    load_model,
    plain_execution,
    script_model,
    verify_model_file,
)
from empanada_desktop.core.errors import ConfigError, ModelLoadError
from empanada_desktop.core.model_config import ModelConfig
from tests.backend.conftest import make_empanada_style_file


def _config() -> ModelConfig:
    return ModelConfig(class_names={1: "mito"}, labels=(1,), thing_list=(1,), model="unused.pth")


def test_script_save_load_round_trip(tmp_path, tiny_native_model):
    path = tmp_path / "model.pth"
    script_model(tiny_native_model).save(str(path))
    loaded = load_model(path)
    assert not loaded.training
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad(), plain_execution():
        expected, got = tiny_native_model(x), loaded(x)
    assert set(got) == {"sem_logits", "ctr_hmp", "offsets"}
    for key in expected:
        torch.testing.assert_close(got[key], expected[key])


def test_verify_reports_parameters_and_outputs(tmp_path, tiny_model):
    path = tmp_path / "model.pth"
    tiny_model.save(str(path))
    info = verify_model_file(path)
    assert info["format"] == "torchscript"
    assert info["parameters"] == sum(p.numel() for p in tiny_model.parameters())
    assert info["num_classes"] == 1
    assert info["outputs"] == ["ctr_hmp", "offsets", "sem_logits"]


def test_non_model_file_is_refused_with_its_name(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("these are not weights")
    with pytest.raises(ModelLoadError, match="notes.pth"):
        verify_model_file(path)


def test_truncated_file_is_refused_as_truncated(tmp_path, tiny_model):
    whole = tmp_path / "whole.pth"
    tiny_model.save(str(whole))
    cut = tmp_path / "cut.pth"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match=r"cut\.pth.*truncated"):
        load_model(cut)


def test_plain_state_dict_checkpoint_is_refused(tmp_path, tiny_native_model):
    path = tmp_path / "state.pth"
    torch.save(tiny_native_model.state_dict(), path)
    with pytest.raises(ModelLoadError, match="checkpoint"):
        verify_model_file(path)


def test_torchscript_that_is_not_a_segmentation_model_is_refused(tmp_path):
    path = tmp_path / "linear.pth"
    torch.jit.script(torch.nn.Linear(3, 2)).save(str(path))
    with pytest.raises(ModelLoadError, match="linear.pth"):
        verify_model_file(path)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "absent.pth")


def test_empanada_style_file_infers_trains_and_exports(tmp_path, empanada_style_file):
    native = make_empanada_style_file(tmp_path / "again.pth")  # same seed: same weights
    model = load_model(empanada_style_file)
    names = dict(model.named_parameters())
    assert "encoder.conv1.0.weight" in names and "encoder.layer1.0.conv1.0.bias" in names
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad(), plain_execution():
        expected = native(x, 2, False)
        got = model(x, 2, False)
    for key in ("ctr_hmp", "offsets"):  # fusion keeps the outputs
        torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-5)
    # It trains: a gradient step on it changes its outputs.
    model.train()
    with plain_execution():
        out = model(torch.randn(2, 1, 64, 64))
    assert {"sem_points", "point_coords"} <= set(out)
    loss = out["sem_logits"].mean() + out["sem_points"].mean() + out["ctr_hmp"].mean()
    loss.backward()
    assert names["encoder.layer4.1.conv2.bias"].grad is not None
    # Its state dict loads into the native architecture built fused.
    fused = build_model("PanopticDeepLabPR", encoder="resnet18", fused_encoder=True)
    fused.load_state_dict(model.state_dict(), strict=True)
    # And it exports as an empanada pair that loads again.
    pth, yml = export_empanada(model, _config(), tmp_path / "out", "Tiny_ft")
    assert verify_model_file(pth)["parameters"] == sum(p.numel() for p in model.parameters())
    assert model.training  # the caller's model is left as it was


def test_export_writes_the_empanada_pair(tmp_path, tiny_native_model):
    tiny_native_model.train()
    pth, yml = export_empanada(tiny_native_model, _config(), tmp_path / "export", "My_model")
    assert pth.name == "My_model.pth" and yml.name == "My_model.yaml"
    assert tiny_native_model.training
    data = yaml.safe_load(yml.read_text())
    assert data["model"] == str(pth.resolve())
    assert data["model_quantized"] is None
    assert data["architecture"] == "PanopticDeepLabPR" and data["encoder"] == "resnet18"
    assert zipfile.is_zipfile(pth)
    loaded = torch.jit.load(str(pth))
    assert not loaded.training
    with torch.no_grad(), plain_execution():
        out = loaded(torch.zeros(1, 1, 256, 256))
    assert out["sem_logits"].shape == (1, 1, 256, 256) and out["offsets"].shape == (1, 2, 256, 256)
    assert ModelConfig.from_yaml(yml).model == str(pth.resolve())
    assert not list((tmp_path / "export").glob("*.tmp"))


def test_export_sets_padding_for_bifpn(tmp_path):
    model = build_model("PanopticBiFPNPR", encoder="resnet18")
    _, yml = export_empanada(model, _config(), tmp_path, "bifpn")
    assert yaml.safe_load(yml.read_text())["padding_factor"] == 128


def test_export_refuses_a_bad_name(tmp_path, tiny_model):
    with pytest.raises(ConfigError, match="file name"):
        export_empanada(tiny_model, _config(), tmp_path, "../escape")


def test_scripting_retries_once_with_fresh_type_caches(monkeypatch):
    """A scripting failure from state left in TorchScript's caches gets one clean second try;
    a model that really cannot be scripted still gets the readable error."""
    import torch.jit._recursive as recursive

    from empanada_desktop.backend import torchscript

    real_script, calls = torch.jit.script, []

    def flaky(obj, *args, **kwargs):
        if isinstance(obj, torch.nn.Module):  # not the functions TorchScript compiles on the way
            calls.append(obj)
            if len(calls) == 1:
                raise RuntimeError("builtin cannot be used as a value:")
        return real_script(obj, *args, **kwargs)

    store = recursive.concrete_type_store
    monkeypatch.setattr(recursive, "concrete_type_store", store)  # restored after the test
    monkeypatch.setattr(torch.jit, "script", flaky)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU())
    scripted = torchscript.script_model(model)
    assert isinstance(scripted, torch.jit.ScriptModule) and len(calls) == 2
    assert calls[1] is not model  # a fresh copy
    assert recursive.concrete_type_store is not store  # caches emptied

    class Unscriptable(torch.nn.Module):
        def forward(self, x):
            return x.numpy()  # tensors have no numpy() in TorchScript

    calls.clear()
    with pytest.raises(ModelLoadError, match="Unscriptable.*cannot be converted to TorchScript"):
        torchscript.script_model(Unscriptable())
    assert len(calls) == 2
