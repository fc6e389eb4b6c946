"""Faster kernels for training on a CPU, swapped in for the training forward only.

bf16 trains in NCHW memory on the CPU (see ``trainer.uses_channels_last``), and there some of
oneDNN's and torch's kernels run far below the machine's bf16 matrix throughput
(docs/CPU_SPEED.md has the numbers):

- 1x1 convolutions: 61-170 ms for the backward of MitoNet_v1's 256 -> 256 pointwise layers at
  64 x 64 (batch 16), 8.6 GFLOP per gradient. A 1x1 convolution is a matrix product per image,
  so forward and both gradients run as ``torch.bmm`` (91 against 176 ms for that layer).
- the weight gradient of depthwise k x k convolutions: 146-154 ms for the decoders' and heads'
  5 x 5 layers, 0.84 GFLOP of useful work each. Here it is one batched matrix product over
  8 x 8 tiles of the output (41 ms); forward and input gradient stay oneDNN's.
- the weight gradient of dilated convolutions (the ASPPs' 3 x 3 at rates 2, 4 and 6 on the
  16 x 16 map of a 256 px patch, 2048 -> 256 channels): oneDNN 84-106 ms each, about half the
  bf16 matrix speed. Here one matrix product per kernel tap over the positions whose tap reads
  inside the map (71-88 ms); forward and input gradient stay oneDNN's.
- the stem's 3 x 3 max pooling with stride 2 (not a oneDNN kernel): torch's NCHW kernel took
  68-70 ms forward for 16 x 64 x 128 x 128 in bf16, its channels-last kernel 4.5 ms, 36 ms with
  the conversions to and from; the backward stays NCHW.

For the convolutions the arithmetic is the same kind (bf16 products, float32 sums); only the order of the sums
differs, as between any two kernels, and the errors against float64 match or beat oneDNN's.

Where it applies (``for_training``): all of the above while gradients are recorded on the CPU
in bf16 (autocast or bf16 tensors) and the layer's weight or input needs one (for the pooling:
its input); in float32 only the dilated weight gradients, and only on CPUs whose widest vectors
are AVX2 (there oneDNN's float32 kernel was the slower one). Everything else (inference, frozen
layers, CUDA, feature maps that are not a multiple of the tile) keeps the layer's own forward.
The swap is an instance attribute set by ``TrainingKernels.active`` for the training forward,
so state dicts, checkpoints, TorchScript export, validation and int8 tracing never see it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn


# From about a million weights on, ``bmm`` with the weight expanded over the batch copied the
# weight once per image first (16-33 ms per call for layer4's 2048 x 512 and 2048 x 1024 at
# 16 x 16, batch 16); a product per image reads it in place.
_PER_IMAGE_WEIGHTS = 1 << 20


def _weight_times(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``weight @ x[n]`` for every image n of x (N, C, P): one ``bmm``, or one ``mm`` per image
    for large weights."""
    n, c, p = x.shape
    if weight.numel() < _PER_IMAGE_WEIGHTS:
        return torch.bmm(weight.expand(n, weight.shape[0], c), x)
    out = torch.empty(n, weight.shape[0], p, dtype=x.dtype)
    for i in range(n):
        torch.mm(weight, x[i], out=out[i])
    return out


class _PointwiseBmm(torch.autograd.Function):
    """``y[n] = W @ x[n]`` for x (N, C, P) and W (O, C), all bf16; gradients by matrix products
    too."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return _weight_times(weight, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:  # a contiguous transpose: bmm would copy a strided one per image
            grad_x = _weight_times(weight.t().contiguous(), grad)
        if ctx.needs_input_grad[1]:
            # Per image in bf16 (float32 sums inside), then the images summed in float32.
            if weight.numel() < _PER_IMAGE_WEIGHTS:
                grad_weight = torch.bmm(grad, x.transpose(1, 2)).sum(0, dtype=torch.float32)
            else:
                grad_weight = torch.zeros(weight.shape, dtype=torch.float32)
                for i in range(x.shape[0]):
                    grad_weight += torch.mm(grad[i], x[i].t())
            grad_weight = grad_weight.to(weight.dtype)
        return grad_x, grad_weight


DEPTHWISE_TILE = 8


class _DepthwiseTiles(torch.autograd.Function):
    """A depthwise k x k convolution (stride 1, padding k // 2; bf16) whose weight gradient is
    one batched matrix product over tiles: oneDNN took 146-154 ms for MitoNet's 5 x 5 layers at
    64 x 64 (256 channels, batch 16), this 41 ms. The forward and the input gradient stay
    oneDNN's."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return F.conv2d(x, weight, None, 1, weight.shape[-1] // 2, 1, x.shape[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        k = weight.shape[-1]
        grad = grad.contiguous()
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(grad, x, weight, None, [1, 1], [k // 2, k // 2], [1, 1], False,
                                                         [0, 0], x.shape[1], [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            grad_weight = depthwise_weight_gradient(x, grad, k).to(weight.dtype)
        return grad_x, grad_weight


def depthwise_weight_gradient(x: torch.Tensor, grad: torch.Tensor, k: int, tile: int = DEPTHWISE_TILE) -> torch.Tensor:
    """Weight gradient (C, 1, k, k) of a depthwise k x k convolution with zero padding k // 2,
    for input ``x`` and output gradient ``grad`` (N, C, H, W; H and W multiples of ``tile``).

    The output is cut into tiles of ``tile`` x ``tile`` positions; tile position p of every
    tile of every image reads the input at p + (ky, kx) of that tile's halo of
    (tile + k - 1)^2 input pixels. One matrix product per channel, (positions x tiles) times
    (tiles x halo pixels), sums over all images and tiles at once (float32 sums inside); the
    k * k * tile^2 entries that pair a position with its own tap are then added up in float32.
    """
    n, c, h, w = x.shape
    r = k // 2
    side = tile + 2 * r
    rows, cols = h // tile, w // tile
    # grad^T per channel: (C, tile*tile positions, N*rows*cols tiles)
    g = grad.reshape(n, c, rows, tile, cols, tile).permute(1, 3, 5, 0, 2, 4).reshape(c, tile * tile, n * rows * cols)
    halos = F.pad(x, (r, r, r, r)).unfold(2, side, tile).unfold(3, side, tile)  # N, C, rows, cols, side, side
    halos = halos.permute(1, 0, 2, 3, 4, 5).reshape(c, n * rows * cols, side * side)
    products = torch.bmm(g, halos)  # (C, tile*tile, side*side)
    yy, xx = torch.meshgrid(torch.arange(tile), torch.arange(tile), indexing="ij")
    ky, kx = torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij")
    position = (yy * tile + xx).reshape(1, -1)
    tap = (yy.reshape(1, -1) + ky.reshape(-1, 1)) * side + xx.reshape(1, -1) + kx.reshape(-1, 1)
    index = (position * side * side + tap).reshape(-1).to(x.device)
    picked = products.reshape(c, -1)[:, index].reshape(c, k * k, tile * tile)
    return picked.sum(-1, dtype=torch.promote_types(x.dtype, torch.float32)).reshape(c, 1, k, k)


class _DilatedTaps(torch.autograd.Function):
    """A k x k convolution with dilation d and 'same' padding (stride 1; bf16, or float32 in
    either memory format) whose weight gradient is one matrix product per tap (``dilated_weight_gradient``); the forward and the
    input gradient stay oneDNN's."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, dilation: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.dilation = dilation
        pad = dilation * (weight.shape[-1] // 2)
        return F.conv2d(x, weight, None, 1, pad, dilation, 1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        d = ctx.dilation
        pad = d * (weight.shape[-1] // 2)
        grad = grad.contiguous(memory_format=torch.channels_last if _channels_last(x) else torch.contiguous_format)
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(grad, x, weight, None, [1, 1], [pad, pad], [d, d], False,
                                                         [0, 0], 1, [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            grad_weight = dilated_weight_gradient(x, grad, weight.shape[-1], d).to(weight.dtype)
            if _channels_last(weight):
                grad_weight = grad_weight.contiguous(memory_format=torch.channels_last)
        return grad_x, grad_weight, None


def dilated_weight_gradient(x: torch.Tensor, grad: torch.Tensor, k: int, d: int) -> torch.Tensor:
    """Weight gradient (O, C, k, k) of a k x k convolution with dilation ``d``, stride 1 and
    zero padding d * (k // 2), for input ``x`` (N, C, H, W) and output gradient ``grad``
    (N, O, H, W).

    With the images innermost, (C, H, W, N), a tap's shift (dy, dx) is one constant offset of
    the flat index, so each tap is one matrix product over a contiguous range of positions
    (float32 sums inside, one rounding): the rows whose tap reads inside the map, and for
    dx != 0 whole rows with the gradient zeroed at the columns whose tap would read outside.
    At large dilations many taps read mostly padding, which these ranges skip.
    """
    n, c, h, w = x.shape
    o = grad.shape[1]
    total = h * w * n
    r = k // 2
    inputs = _images_innermost(x).view(c, total)
    grads = grad.permute(1, 2, 3, 0).contiguous()  # (O, H, W, N)
    by_dx = {}
    for j in range(k):
        dx = (j - r) * d
        if dx == 0 or abs(dx) >= w:
            by_dx[dx] = grads.view(o, total)
            continue
        masked = grads.clone()
        if dx > 0:
            masked[:, :, w - dx:] = 0  # columns whose tap reads past the right edge
        else:
            masked[:, :, :-dx] = 0  # ... past the left edge
        by_dx[dx] = masked.view(o, total)
    result = torch.zeros(k, k, o, c, dtype=torch.promote_types(x.dtype, grad.dtype))
    for i in range(k):
        dy = (i - r) * d
        first, last = max(0, -dy), min(h, h - dy)  # output rows whose tap row is inside
        for j in range(k):
            dx = (j - r) * d
            if last <= first or abs(dx) >= w:
                continue  # the tap reads only padding
            shift = (dy * w + dx) * n
            start, stop = max(first * w * n, -shift), min(last * w * n, total - shift)
            torch.mm(by_dx[dx][:, start:stop], inputs[:, start + shift:stop + shift].t(), out=result[i, j])
    return result.permute(2, 3, 0, 1).contiguous()


def _images_innermost(x: torch.Tensor) -> torch.Tensor:
    """``x`` (N, C, H, W) as a contiguous (C, H, W, N). The ASPPs' three dilated convolutions of
    both decoders read the same encoder output, so the copy (4.5 ms for 16 x 2048 x 16 x 16)
    is kept on that tensor for as long as it lives and is unchanged."""
    kept = getattr(x, "_images_innermost", None)
    if kept is not None and kept[0] == x._version:
        return kept[1]
    layout = x.permute(1, 2, 3, 0).contiguous()
    x._images_innermost = (x._version, layout)
    return layout


def dilated_eligible(conv: nn.Module) -> bool:
    """A dense k x k convolution (k odd) with dilation >= 2, stride 1 and 'same' zero padding:
    the ASPPs' and a dilated ResNet stage's."""
    if type(conv) is not nn.Conv2d:
        return False
    k, d = conv.kernel_size[0], conv.dilation[0]
    return (conv.kernel_size == (k, k) and k % 2 == 1 and k > 1 and conv.dilation == (d, d) and d >= 2
            and conv.stride == (1, 1) and conv.padding == (d * (k // 2),) * 2 and conv.groups == 1
            and conv.padding_mode == "zeros")


def dilated_kernel(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` with the per-tap weight gradient when its weight trains on the CPU in bf16 or
    float32 (``TrainingKernels`` swaps it in for float32 only where that was measured faster),
    else ``conv``'s own forward."""
    if not (x.device.type == "cpu" and x.dim() == 4 and torch.is_grad_enabled() and conv.weight.requires_grad):
        return nn.Conv2d.forward(conv, x)
    dtype = torch.bfloat16 if _bf16_compute(x) else x.dtype
    if dtype not in (torch.bfloat16, torch.float32) or conv.weight.dtype != torch.float32:
        return nn.Conv2d.forward(conv, x)
    layout = torch.channels_last if _channels_last(x) else torch.contiguous_format
    with torch.autocast("cpu", enabled=False):
        y = _DilatedTaps.apply(x.to(dtype).contiguous(memory_format=layout), conv.weight.to(dtype), conv.dilation[0])
        if conv.bias is not None:
            y = y + conv.bias.to(dtype).reshape(1, -1, 1, 1)
    return y


class _MaxPoolChannelsLast(torch.autograd.Function):
    """``F.max_pool2d`` of a bf16 NCHW batch computed by torch's channels-last kernel (its NCHW
    one took 68-70 ms forward for the stem's 16 x 64 x 128 x 128; channels-last with both
    conversions 36 ms). Values and winner positions are torch's own, so the backward is
    torch's NCHW one (6 ms), fed those positions."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, k: int, s: int, p: int) -> torch.Tensor:
        values, indices = torch.ops.aten.max_pool2d_with_indices(x.contiguous(memory_format=torch.channels_last),
                                                                 [k, k], [s, s], [p, p], [1, 1], False)
        ctx.save_for_backward(x, indices.contiguous())
        ctx.window = (k, s, p)
        return values.contiguous()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, indices = ctx.saved_tensors
        k, s, p = ctx.window
        grad_x = torch.ops.aten.max_pool2d_with_indices_backward(grad.contiguous(), x, [k, k], [s, s], [p, p], [1, 1],
                                                                 False, indices)
        return grad_x, None, None, None


def maxpool_eligible(pool: nn.Module) -> bool:
    """A square max pooling without dilation, floor mode and with padding at most half the
    window, as ResNet's stem has."""
    if type(pool) is not nn.MaxPool2d or pool.return_indices or pool.ceil_mode:
        return False
    k, s, p, d = (pool.kernel_size, pool.stride, pool.padding, pool.dilation)
    return all(isinstance(v, int) for v in (k, s, p, d)) and d == 1 and 0 <= p <= k // 2 and s >= 1


def maxpool_bf16(pool: nn.MaxPool2d, x: torch.Tensor) -> torch.Tensor:
    """``pool(x)`` through ``_MaxPoolChannelsLast`` for a bf16 NCHW batch on the CPU that needs
    a gradient, else the module's own forward."""
    if not (x.device.type == "cpu" and x.dim() == 4 and torch.is_grad_enabled() and x.requires_grad
            and x.dtype == torch.bfloat16 and x.is_contiguous()):
        return nn.MaxPool2d.forward(pool, x)
    return _MaxPoolChannelsLast.apply(x, pool.kernel_size, pool.stride, pool.padding)


def depthwise_eligible(conv: nn.Module) -> bool:
    """A depthwise k x k convolution (k odd) with stride 1 and 'same' zero padding."""
    if type(conv) is not nn.Conv2d:
        return False
    k = conv.kernel_size[0]
    return (conv.kernel_size == (k, k) and k % 2 == 1 and k > 1 and conv.groups == conv.in_channels
            == conv.out_channels and conv.stride == (1, 1) and conv.padding == (k // 2, k // 2)
            and conv.dilation == (1, 1) and conv.padding_mode == "zeros")


def depthwise_bf16(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` with the tiled weight gradient when it applies (bf16 training, the weight
    trains, height and width multiples of the tile), else ``conv``'s own forward."""
    if not (x.device.type == "cpu" and x.dim() == 4 and torch.is_grad_enabled() and conv.weight.requires_grad
            and x.shape[2] % DEPTHWISE_TILE == 0 and x.shape[3] % DEPTHWISE_TILE == 0 and _bf16_compute(x)):
        return nn.Conv2d.forward(conv, x)
    with torch.autocast("cpu", enabled=False):
        y = _DepthwiseTiles.apply(x.to(torch.bfloat16).contiguous(), conv.weight.to(torch.bfloat16))
        if conv.bias is not None:
            y = y + conv.bias.to(torch.bfloat16).reshape(1, -1, 1, 1)
    return y


def pointwise_eligible(conv: nn.Module) -> bool:
    """A plain 1x1 convolution: the only kind ``_PointwiseBmm`` computes."""
    return (type(conv) is nn.Conv2d and conv.kernel_size == (1, 1) and conv.stride == (1, 1)
            and conv.padding in ((0, 0), "valid") and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros")


def _channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


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


_BF16_KERNELS = ((pointwise_eligible, pointwise_bf16), (depthwise_eligible, depthwise_bf16),
                 (dilated_eligible, dilated_kernel), (maxpool_eligible, maxpool_bf16))
# float32 on a CPU whose widest vectors are AVX2: oneDNN's float32 weight gradient of the ASPPs'
# dilated convolutions took 269-305 ms per rate there, the per-tap products 213-260 ms (on
# AVX-512 it was the other way round: 140-186 against 190-226 ms).
_FP32_AVX2_KERNELS = ((dilated_eligible, dilated_kernel),)


class TrainingKernels:
    """The layers of a model that train through the functions above while ``active``."""

    def __init__(self, model: nn.Module, kernels=_BF16_KERNELS) -> None:
        self.kernels = kernels
        self.names = [name for name, module in model.named_modules()
                      if any(eligible(module) for eligible, _ in kernels)]

    @contextlib.contextmanager
    def active(self, model: nn.Module) -> Iterator[None]:
        layers = [model.get_submodule(name) for name in self.names]
        swapped = []
        try:
            for layer in layers:
                if "forward" in vars(layer):  # something else swapped this one (e.g. frozen int8)
                    continue
                layer.forward = self._bound(layer)  # an instance attribute: state_dict unchanged
                swapped.append(layer)
            yield
        finally:
            for layer in swapped:
                del layer.forward

    def _bound(self, layer: nn.Module):
        kernel = next(kernel for eligible, kernel in self.kernels if eligible(layer))

        def forward(x: torch.Tensor) -> torch.Tensor:
            return kernel(layer, x)

        return forward


def for_training(model: nn.Module, device: torch.device, precision_name: str) -> TrainingKernels | None:
    """The kernels measured to gain for this device and precision: all of them for bf16 on the
    CPU, the dilated weight gradients for float32 on an AVX2 CPU; else None."""
    if device.type != "cpu":
        return None
    if precision_name == "bf16":
        return TrainingKernels(model, _BF16_KERNELS)
    if precision_name == "fp32":
        from empanada_desktop.backend.cpu import cpu_capability_info

        if cpu_capability_info().kind == "AVX2":
            return TrainingKernels(model, _FP32_AVX2_KERNELS)
    return None
