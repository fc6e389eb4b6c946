"""Panoptic-DeepLab decoder: ASPP on the deepest features, then fusion with low-level stages."""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from empanada_desktop.backend.models.blocks import conv_bn_act, on_meta, resize_bilinear, separable_conv_bn_act


class ASPPPooling(nn.Module):
    """Image-level context: global average, 1x1 conv, ReLU, broadcast back to the input size."""

    def __init__(self, nin: int, nout: int) -> None:
        super().__init__()
        self.aspp_pooling = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(nin, nout, 1, bias=False), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = [x.shape[2], x.shape[3]]  # no int(): torch.fx traces this module for int8
        return F.interpolate(self.aspp_pooling(x), size=size, mode="bilinear", align_corners=True)


def _aspp_conv(nin: int, nout: int, dilation: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(nin, nout, 3, padding=dilation, dilation=dilation, bias=False), nn.BatchNorm2d(nout), nn.ReLU()
    )


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: a 1x1 branch, three dilated 3x3 branches, image pooling."""

    def __init__(self, nin: int, nout: int, atrous_rates: tuple[int, int, int] = (2, 4, 6),
                 dropout: float = 0.5) -> None:
        super().__init__()
        branches: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(nin, nout, 1, bias=False), nn.BatchNorm2d(nout), nn.ReLU())
        ]
        branches += [_aspp_conv(nin, nout, rate) for rate in atrous_rates]
        branches.append(ASPPPooling(nin, nout))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(
            nn.Conv2d(len(branches) * nout, nout, 1, bias=False), nn.BatchNorm2d(nout), nn.ReLU(), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs: List[torch.Tensor] = []
        for branch in self.convs:
            outputs.append(branch(x))
        return self.project(torch.cat(outputs, dim=1))


class PanopticDeepLabDecoder(nn.Module):
    """ASPP, then for each low-level stage: project it, upsample, concatenate, fuse (5x5 separable).

    Args:
        in_channels: channels of the deepest encoder features.
        decoder_channels: output channels.
        low_level_stages: pyramid indices fused top-down (empanada's MitoNet: ``[1]``, stride 4).
        low_level_channels: channels of those pyramid levels.
        low_level_channels_project: channels they are projected to before fusion.
    """

    def __init__(self, in_channels: int, decoder_channels: int, low_level_stages: list[int],
                 low_level_channels: list[int], low_level_channels_project: list[int],
                 atrous_rates: tuple[int, int, int] = (2, 4, 6), aspp_channels: int | None = None,
                 aspp_dropout: float = 0.5) -> None:
        super().__init__()
        aspp_channels = aspp_channels or decoder_channels
        self.aspp = ASPP(in_channels, aspp_channels, atrous_rates, aspp_dropout)
        self.low_level_stages: List[int] = list(low_level_stages)
        project, fuse = [], []
        previous = aspp_channels
        for nin, nproj in zip(low_level_channels, low_level_channels_project):
            project.append(conv_bn_act(nin, nproj, 1))
            fuse.append(separable_conv_bn_act(previous + nproj, decoder_channels, 5))
            previous = decoder_channels
        self.project = nn.ModuleList(project)
        self.fuse = nn.ModuleList(fuse)
        for module in () if on_meta(self) else self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.001)

    def forward(self, pyramid_features: List[torch.Tensor]) -> torch.Tensor:
        x = self.aspp(pyramid_features[-1])
        i = 0
        for project, fuse in zip(self.project, self.fuse):
            low = project(pyramid_features[self.low_level_stages[i]])
            size = [low.shape[2], low.shape[3]]
            x = resize_bilinear(x, size)
            x = fuse(torch.cat([x, low], dim=1))
            i += 1
        return x
