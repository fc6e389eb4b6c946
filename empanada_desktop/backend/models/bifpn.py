"""BiFPN (EfficientDet's weighted bidirectional feature pyramid) and its upsampling decoder.

Input: encoder stages 2-4 (strides 8, 16, 32); two extra levels P6, P7 (strides 64, 128) are
made by max-pool downsizing, which is why BiFPN models need inputs divisible by 128. Each BiFPN
layer runs a top-down pass (coarse to fine) and a bottom-up pass, fusing levels with
learned, ReLU-clipped, normalised weights ("fast fusion").
"""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from empanada_desktop.backend.models.blocks import (
    Resample2d,
    conv_transpose_bn_act,
    separable_conv_bn_act,
)

_EPS: float = 1e-4


def _downsize(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


def _upsize(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def _shared_after_combines(fpn_dim: int, count: int) -> nn.ModuleList:
    """One separable conv block reused at every level of a pass, as in empanada's BiFPN.

    The released files list it under each index (``after_combines.0`` .. ``.3``) in their state
    dict, but it is one set of weights; ``named_parameters`` reports it once.
    """
    block = separable_conv_bn_act(fpn_dim, fpn_dim, 3, activation=nn.SiLU(inplace=True))
    return nn.ModuleList([block] * count)


class _FPNPass(nn.Module):
    """What both BiFPN passes hold: a resampling per level, the shared after-combine blocks and
    the fusion weights. ``pyramid_nins``: channels of the levels the pass resamples."""

    def __init__(self, pyramid_nins: list[int], fpn_dim: int) -> None:
        super().__init__()
        self.resamplings = nn.ModuleList([Resample2d(nin, fpn_dim) for nin in pyramid_nins])
        self.after_combines = _shared_after_combines(fpn_dim, len(pyramid_nins))
        self.weights = nn.Parameter(torch.ones(len(pyramid_nins) + 1))
        self.eps = _EPS


class TopDownFPN(_FPNPass):
    """Coarse-to-fine pass. ``pyramid_nins``: channels of levels 2..L counted from the coarsest."""

    def forward(self, features: List[torch.Tensor]) -> List[torch.Tensor]:
        """``features`` ordered coarsest first; returns the same order."""
        weights = F.relu(self.weights)
        weights = weights / (weights.sum() + self.eps)
        outputs: List[torch.Tensor] = [features[0]]
        i = 0
        for resampling, after_combine in zip(self.resamplings, self.after_combines):
            finer = resampling(features[i + 1])
            w1 = weights[i]
            w2 = weights[i + 1]
            fused = (w1 * _upsize(outputs[-1]) + w2 * finer) / (w1 + w2 + self.eps)
            outputs.append(after_combine(fused))
            i += 1
        return outputs


class BottomUpFPN(_FPNPass):
    """Fine-to-coarse pass over the top-down outputs plus the layer's (resampled) inputs."""

    def forward(self, inputs: List[torch.Tensor], top_down: List[torch.Tensor]) -> List[torch.Tensor]:
        """``inputs``: the layer's inputs for levels 2..L (finest first); ``top_down``: finest first."""
        weights = F.relu(self.weights)
        weights = weights / (weights.sum() + self.eps)
        outputs: List[torch.Tensor] = [top_down[0]]
        last = len(self.resamplings) - 1
        i = 0
        for resampling, after_combine in zip(self.resamplings, self.after_combines):
            coarser_input = resampling(inputs[i])
            w1 = weights[i]
            w2 = weights[i + 1]
            if i < last:
                w3 = weights[i + 2]
                numerator = w1 * _downsize(outputs[-1]) + w2 * coarser_input + w3 * top_down[i + 1]
                denominator = w1 + w2 + w3 + self.eps
            else:  # the coarsest level has no top-down feature of its own
                numerator = w1 * _downsize(outputs[-1]) + w2 * coarser_input
                denominator = w1 + w2 + self.eps
            outputs.append(after_combine(numerator / denominator))
            i += 1
        return outputs


class BiFPNLayer(nn.Module):
    def __init__(self, pyramid_nins: list[int], fpn_dim: int) -> None:
        super().__init__()
        self.top_down_fpn = TopDownFPN(pyramid_nins[::-1][1:], fpn_dim)
        self.bottom_up_fpn = BottomUpFPN(pyramid_nins[1:], fpn_dim)

    def forward(self, features: List[torch.Tensor]) -> List[torch.Tensor]:
        """``features`` finest first; returns fpn_dim-channel features, finest first."""
        top_down = self.top_down_fpn(_reversed(features))
        return self.bottom_up_fpn(features[1:], _reversed(top_down))


def _reversed(items: List[torch.Tensor]) -> List[torch.Tensor]:
    out: List[torch.Tensor] = []
    for i in range(len(items) - 1, -1, -1):
        out.append(items[i])
    return out


class BiFPN(nn.Module):
    """``num_layers`` BiFPN layers over encoder levels P3-P5 plus derived P6, P7."""

    def __init__(self, pyramid_nins: list[int], fpn_dim: int, num_layers: int = 3) -> None:
        super().__init__()
        self.p6_resample = Resample2d(pyramid_nins[-1], fpn_dim)
        nins = list(pyramid_nins) + [fpn_dim, fpn_dim]
        self.bifpns = nn.ModuleList(
            [BiFPNLayer(nins if i == 0 else [fpn_dim] * len(nins), fpn_dim) for i in range(num_layers)]
        )

    def forward(self, features: List[torch.Tensor]) -> List[torch.Tensor]:
        p6 = _downsize(self.p6_resample(features[-1]))
        p7 = _downsize(p6)
        pyramid = features + [p6, p7]
        for layer in self.bifpns:
            pyramid = layer(pyramid)
        return pyramid


class BiFPNDecoder(nn.Module):
    """Learned 2x upsampling from the coarsest level, concatenating each finer level on the way."""

    def __init__(self, fpn_dim: int, n_fpn_scales: int = 5) -> None:
        super().__init__()
        self.upsamplings = nn.ModuleList(
            [conv_transpose_bn_act(fpn_dim if i == 0 else 2 * fpn_dim, fpn_dim) for i in range(n_fpn_scales)]
        )
        self.fusion = separable_conv_bn_act(2 * fpn_dim, fpn_dim, 5)

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        """``features`` coarsest first, ``n_fpn_scales + 1`` of them."""
        x = features[0]
        i = 1
        for upsample in self.upsamplings:
            x = torch.cat([upsample(x), features[i]], dim=1)
            i += 1
        return self.fusion(x)
