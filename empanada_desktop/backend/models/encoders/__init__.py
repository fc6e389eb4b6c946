"""Encoders (backbones) for the native models: ResNet-18/34/50 with a one-channel input."""

from empanada_desktop.backend.models.encoders.resnet import ENCODERS, ResNet, build_encoder

__all__ = ["ENCODERS", "ResNet", "build_encoder"]
