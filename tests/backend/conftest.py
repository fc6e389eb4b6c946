"""Small real models for backend tests (and for other parts' tests): nothing is downloaded.

- ``tiny_native_model``: a native PanopticDeepLabPR with a ResNet-18 encoder, seeded, eval mode.
- ``tiny_model``: the same, scripted (TorchScript, like an empanada file).
- ``registered_tiny_model``: ``register_native_model("tiny")`` in the test's app home; returns
  the RegisteredModel.
- ``empanada_style_file``: a TorchScript file built like MitoNet_v1's release (batch norm fused
  into the encoder, ``encoder.conv1.0.weight`` names) but with a ResNet-18 encoder.
"""

from __future__ import annotations

import pytest
import torch


def build_tiny(architecture: str = "PanopticDeepLabPR", seed: int = 0, **kwargs) -> torch.nn.Module:
    from empanada_desktop.backend.models import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(architecture, encoder="resnet18", **kwargs)
    return model.eval()


@pytest.fixture
def tiny_native_model() -> torch.nn.Module:
    return build_tiny()


@pytest.fixture
def tiny_model(tiny_native_model) -> torch.jit.ScriptModule:
    from empanada_desktop.backend.torchscript import script_model

    return script_model(tiny_native_model)


@pytest.fixture
def registered_tiny_model():
    from empanada_desktop.backend.loading import register_native_model

    return register_native_model("tiny", architecture="PanopticDeepLabPR", encoder="resnet18", seed=0)


def make_empanada_style_file(path, seed: int = 0) -> torch.nn.Module:
    """Save a fused-encoder TorchScript model at ``path``; return the unfused native original.

    Batch-norm statistics are randomised first so that fusing really changes the weights.
    """
    from empanada_desktop.backend.models import fuse_encoder_batchnorm
    from empanada_desktop.backend.torchscript import script_model

    native = build_tiny(seed=seed)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        for module in native.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
    import copy

    fused = fuse_encoder_batchnorm(copy.deepcopy(native))
    script_model(fused).save(str(path))
    return native


@pytest.fixture
def empanada_style_file(tmp_path):
    path = tmp_path / "Tiny_v1.pth"
    make_empanada_style_file(path)
    return path
