"""Native model zoo: a registry of architectures and encoders, built by name.

``build_model("PanopticDeepLabPR", encoder="resnet50")`` is MitoNet_v1's architecture and
``build_model("PanopticBiFPNPR", encoder="resnet50")`` MitoNet_v1_mini's. Unknown names raise
``ConfigError`` listing the known ones.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from empanada_desktop.backend.models.encoders import ENCODERS, ResNet
from empanada_desktop.backend.models.panoptic import PanopticBiFPNPR, PanopticDeepLabPR
from empanada_desktop.core.errors import ConfigError

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "PanopticDeepLabPR": PanopticDeepLabPR,
    "PanopticBiFPNPR": PanopticBiFPNPR,
}

# Input H and W must be divisible by this (docs/EMPANADA_FORMATS.md section 2).
PADDING_FACTORS: dict[str, int] = {"PanopticDeepLabPR": 16, "PanopticBiFPNPR": 128}


def build_model(architecture: str, *, encoder: str = "resnet50", num_classes: int = 1, **kwargs) -> nn.Module:
    """Build a native model with random weights.

    Args:
        architecture: one of ``ARCHITECTURES``.
        encoder: one of ``ENCODERS`` ("resnet18", "resnet34", "resnet50").
        num_classes: 1 for a binary model (sigmoid), more for multi-class (softmax).
        **kwargs: architecture options, e.g. ``fused_encoder=True`` for the batch-norm-fused
            encoder of empanada's released files, ``decoder_channels``, ``fpn_dim``.
    """
    if architecture not in ARCHITECTURES:
        raise ConfigError(
            f"Unknown model architecture {architecture!r}; known architectures: {', '.join(ARCHITECTURES)}."
        )
    if encoder not in ENCODERS:
        raise ConfigError(f"Unknown encoder {encoder!r}; known encoders: {', '.join(ENCODERS)}.")
    if int(num_classes) < 1:
        raise ConfigError(f"num_classes must be at least 1, got {num_classes}.")
    return ARCHITECTURES[architecture](encoder=encoder, num_classes=int(num_classes), **kwargs)


def build_model_for_weights(architecture: str, **kwargs) -> nn.Module:
    """``build_model`` without random initialisation, for a model whose every parameter and buffer
    a strict ``load_state_dict`` fills next (the tensors are uninitialised until then).

    Built on the meta device, then given empty CPU storage: 0.06 s instead of 0.5 s for MitoNet_v1
    (random numbers for 55 M parameters), paid by each int8 calibration and finetune start.
    """
    with torch.device("meta"):
        model = build_model(architecture, **kwargs)
    return model.to_empty(device="cpu")


def fuse_encoder_batchnorm(model: nn.Module) -> nn.Module:
    """Fold the encoder's batch norms into its convolutions, in place, and return ``model``.

    Gives the structure and parameter names of empanada's released files
    (``encoder.conv1.0.weight``, ``encoder.layer1.0.conv1.0.bias``, ...). Uses the running
    statistics, so outputs in eval mode are unchanged (up to float rounding).
    """
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, ResNet):
        raise ConfigError("fuse_encoder_batchnorm needs a native model with a ResNet encoder.")
    encoder.fuse_batchnorm()
    return model


__all__ = [
    "ARCHITECTURES",
    "ENCODERS",
    "PADDING_FACTORS",
    "PanopticBiFPNPR",
    "PanopticDeepLabPR",
    "build_model",
    "fuse_encoder_batchnorm",
]
