"""Counting the floating-point operations torch runs, to turn seconds into GFLOP/s.

``count_flops(fn, *args)`` runs ``fn`` once under ``torch.utils.flop_counter.FlopCounterMode`` and
returns what it counted: matrix products and convolutions (2 operations per multiply-add), in
the forward and in any backward run inside ``fn``. Element-wise work (activations, batch norm,
losses) is not counted; in a CNN it is a small share of the arithmetic, though not of the time.
Tensors and modules on the "meta" device are counted without computing anything.

torch 2.14's formula for a convolution's backward ignores ``groups`` in the weight gradient, so
a depthwise 3x3 conv of C channels (the DeepLab decoder has them) counts C times its real
work; ``count_flops`` replaces it: each of the input and weight gradients costs one forward.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation,
                         transposed, _output_padding, _groups, output_mask, out_shape=None, **_) -> int:
    forward = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed=transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Operations counted while ``fn(*args, **kwargs)`` runs (works for TorchScript modules too)."""
    mapping = {torch.ops.aten.convolution_backward: _conv_backward_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn(*args, **kwargs)
    return int(counter.get_total_flops())


def gflops_per_second(flops: float, seconds: float) -> float:
    return flops / seconds / 1e9 if seconds > 0 else float("nan")
