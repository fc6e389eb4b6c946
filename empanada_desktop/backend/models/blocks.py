"""Small convolution blocks shared by the decoders and heads.

Module and attribute names (``sepconv``, ``head``, ``conv``) follow the ones in empanada's released
model files, so that their parameter names (and state dicts) line up with ours.
"""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import nn


def on_meta(module: nn.Module) -> bool:
    """Whether ``module`` was built on the meta device (``build_model_for_weights``): its weights
    come from a file next, so our own initialisation is skipped (on meta tensors, torch's
    ``normal_`` imports its compiler the first time: about 1.2 s)."""
    return any(parameter.is_meta for parameter in module.parameters())


def conv_bn_act(nin: int, nout: int, kernel_size: int, stride: int = 1, act: bool = True) -> nn.Sequential:
    """Convolution without bias, batch norm, and an optional ReLU."""
    layers: list[nn.Module] = [
        nn.Conv2d(nin, nout, kernel_size, stride=stride, padding=(kernel_size - 1) // 2, bias=False),
        nn.BatchNorm2d(nout),
    ]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class SeparableConv2d(nn.Module):
    """Depthwise ``kernel_size`` convolution followed by a pointwise 1x1 convolution."""

    def __init__(self, nin: int, nout: int, kernel_size: int = 3, bias: bool = False) -> None:
        super().__init__()
        self.sepconv = nn.Sequential(
            nn.Conv2d(nin, nin, kernel_size, padding=(kernel_size - 1) // 2, groups=nin, bias=bias),
            nn.Conv2d(nin, nout, 1, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sepconv(x)


def separable_conv_bn_act(
    nin: int, nout: int, kernel_size: int, activation: nn.Module | None = None
) -> nn.Sequential:
    """Separable convolution, batch norm and an activation (ReLU unless one is given)."""
    return nn.Sequential(
        SeparableConv2d(nin, nout, kernel_size),
        nn.BatchNorm2d(nout),
        activation if activation is not None else nn.ReLU(inplace=True),
    )


def conv_transpose_bn_act(nin: int, nout: int, scale: int = 2) -> nn.Sequential:
    """Learned ``scale``-times upsampling: transposed convolution, batch norm, ReLU."""
    return nn.Sequential(
        nn.ConvTranspose2d(nin, nout, scale, stride=scale, bias=False),
        nn.BatchNorm2d(nout),
        nn.ReLU(inplace=True),
    )


class Resample2d(nn.Module):
    """1x1 convolution + batch norm that maps ``nin`` channels to ``nout`` (identity if equal)."""

    def __init__(self, nin: int, nout: int) -> None:
        super().__init__()
        self.conv: nn.Module = conv_bn_act(nin, nout, 1, act=False) if nin != nout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def resize_bilinear(x: torch.Tensor, size: List[int]) -> torch.Tensor:
    """``F.interpolate`` to ``size``, bilinear with aligned corners; the same values in the same
    memory format. torch's NCHW bf16 kernel is slow on the CPU at training batch sizes (113 ms
    forward, 141 ms forward plus backward for the decoder's 16 x 256 x 16 x 16 -> 64 x 64), so
    a bf16 NCHW batch there takes another route: while it trains, two float32 matrix products
    (``_resize_separable``: 21 ms forward plus backward); otherwise channels-last and back
    (33 / 60 ms; 4 x 256 x 32 x 32 -> 128: 37.5 against 34.5 ms). float32 is left alone: there
    NCHW was faster at batch 1 (inference), and float32 training on the CPU is channels-last
    already."""
    if x.device.type == "cpu" and x.dtype == torch.bfloat16 and x.dim() == 4 and x.shape[1] > 1 and x.is_contiguous():
        if not torch.jit.is_scripting() and x.requires_grad and torch.is_grad_enabled():
            return _resize_separable(x, size)
        y = F.interpolate(x.contiguous(memory_format=torch.channels_last), size=size, mode="bilinear",
                          align_corners=True)
        return y.contiguous()
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


@torch.jit.unused
def _resize_separable(x: torch.Tensor, size: List[int]) -> torch.Tensor:
    """Bilinear resizing with aligned corners as ``rows @ x @ cols^T``, each matrix holding an
    axis' two interpolation weights per output; computed in float32 and rounded to ``x``'s
    dtype once, as torch's kernel does (outputs differ from it by at most one rounding step).
    Autograd takes the transposed products for the backward."""
    with torch.autocast("cpu", enabled=False):
        rows = bilinear_matrix(x.shape[2], size[0])
        cols = bilinear_matrix(x.shape[3], size[1])
        y = torch.matmul(rows, x.float())  # (N, C, H_out, W): a batch of small products
        return torch.matmul(y, cols.t()).to(x.dtype)  # one matrix product over all rows


def bilinear_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) float32 weights of bilinear interpolation with aligned corners along one
    axis: output i reads inputs floor(s) and floor(s) + 1 at s = i * (n_in - 1) / (n_out - 1)."""
    position = torch.arange(n_out, dtype=torch.float64) * ((n_in - 1) / max(n_out - 1, 1))
    low = position.floor().clamp(max=n_in - 1)
    frac = position - low
    low = low.long()
    high = (low + 1).clamp(max=n_in - 1)
    matrix = torch.zeros(n_out, n_in, dtype=torch.float64)
    out = torch.arange(n_out)
    matrix.index_put_((out, low), 1.0 - frac, accumulate=True)
    matrix.index_put_((out, high), frac, accumulate=True)
    return matrix.to(torch.float32)


def upsample(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Bilinear upsampling with aligned corners, as empanada uses to reach input resolution."""
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=True)


class PanopticDeepLabHead(nn.Module):
    """A 5x5 separable conv block followed by a 1x1 prediction convolution."""

    def __init__(self, nin: int, nout: int) -> None:
        super().__init__()
        self.head = nn.Sequential(separable_conv_bn_act(nin, nin, 5), nn.Conv2d(nin, nout, 1))
        for module in () if on_meta(self) else self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.001)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)
