"""Faster kernels for bf16 training on a CPU, swapped in for the training forward only.

oneDNN's backward of a 1x1 convolution on bf16 NCHW tensors (the layout bf16 trains in on the
CPU, see ``trainer.uses_channels_last``) runs far below the machine's bf16 matrix throughput:
MitoNet_v1's pointwise convolutions at 64 x 64 (batch 16, 256 -> 256 channels) took 170 ms for
their backward in a training step, 8.6 GFLOP for each of the two gradients. A 1x1 convolution is
a matrix product per image, so here it runs as batched matrix products (``torch.bmm``): forward
and both gradients together 91 against 176 ms for that layer, 26 against 73 ms for a head's
256 -> 1 output convolution (docs/CPU_SPEED.md). The arithmetic is the same (bf16 products,
float32 sums); only the order of the sums differs, as between any two kernels.

Where it applies: ``nn.Conv2d`` with a 1x1 kernel, stride 1, no padding, one group, on the
CPU, while gradients are recorded and the input or weight needs one, in bf16 (autocast or bf16
tensors). Everything else (float32, inference, frozen layers, CUDA) keeps ``nn.Conv2d``'s own
forward. The swap is an instance attribute set by ``active`` for the training forward, so
state dicts, checkpoints, TorchScript export, validation and int8 tracing never see it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class _PointwiseBmm(torch.autograd.Function):
    """``y[n] = W @ x[n]`` for x (N, C, P) and W (O, C), all bf16; gradients by ``bmm`` too."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        n, c, _ = x.shape
        return torch.bmm(weight.expand(n, weight.shape[0], c), x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        n, c, _ = x.shape
        grad = grad.contiguous()
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:  # a contiguous transpose: bmm would copy a strided one per image
            grad_x = torch.bmm(weight.t().contiguous().expand(n, c, weight.shape[0]), grad)
        if ctx.needs_input_grad[1]:
            # Per image in bf16 (float32 sums inside), then the images summed in float32.
            grad_weight = torch.bmm(grad, x.transpose(1, 2)).sum(0, dtype=torch.float32).to(weight.dtype)
        return grad_x, grad_weight


def pointwise_eligible(conv: nn.Module) -> bool:
    """A plain 1x1 convolution: the only kind ``_PointwiseBmm`` computes."""
    return (type(conv) is nn.Conv2d and conv.kernel_size == (1, 1) and conv.stride == (1, 1)
            and conv.padding in ((0, 0), "valid") and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros")


def _bf16_compute(x: torch.Tensor) -> bool:
    if torch.is_autocast_enabled("cpu"):
        return torch.get_autocast_dtype("cpu") == torch.bfloat16
    return x.dtype == torch.bfloat16


def pointwise_bf16(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` through ``_PointwiseBmm`` when it applies (see the module doc), else ``conv``'s
    own forward."""
    if not (x.device.type == "cpu" and x.dim() == 4 and torch.is_grad_enabled()
            and (x.requires_grad or conv.weight.requires_grad) and _bf16_compute(x)):
        return nn.Conv2d.forward(conv, x)
    n, c, h, w = x.shape
    with torch.autocast("cpu", enabled=False):
        weight = conv.weight.to(torch.bfloat16).reshape(conv.out_channels, c)
        flat = x.to(torch.bfloat16).contiguous().reshape(n, c, h * w)
        y = _PointwiseBmm.apply(flat, weight).reshape(n, conv.out_channels, h, w)
        if conv.bias is not None:
            y = y + conv.bias.to(torch.bfloat16).reshape(1, -1, 1, 1)
    return y


class Bf16Kernels:
    """The 1x1 convolutions of a model that train through ``_PointwiseBmm`` while ``active``."""

    def __init__(self, model: nn.Module) -> None:
        self.names = [name for name, module in model.named_modules() if pointwise_eligible(module)]

    @contextlib.contextmanager
    def active(self, model: nn.Module) -> Iterator[None]:
        convs = [model.get_submodule(name) for name in self.names]
        swapped = []
        try:
            for conv in convs:
                if "forward" in vars(conv):  # something else swapped this one (e.g. frozen int8)
                    continue
                conv.forward = _bound(conv)  # an instance attribute: state_dict unchanged
                swapped.append(conv)
            yield
        finally:
            for conv in swapped:
                del conv.forward


def _bound(conv: nn.Conv2d):
    def forward(x: torch.Tensor) -> torch.Tensor:
        return pointwise_bf16(conv, x)

    return forward


def wanted(device: torch.device, precision_name: str) -> bool:
    """Training in bf16 on the CPU (the only case measured to gain)."""
    return device.type == "cpu" and precision_name == "bf16"
