"""bf16 training kernels on the CPU: 1x1 convolutions and depthwise weight gradients as matrix products."""

from __future__ import annotations

import statistics

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from empanada_desktop.backend.finetune import cpu_kernels
from empanada_desktop.backend.finetune import trainer as trainer_module
from empanada_desktop.backend.finetune.config import FinetuneConfig
from empanada_desktop.backend.finetune.loop import synthetic_batch
from empanada_desktop.backend.finetune.precision import Precision
from tests.backend.conftest import build_tiny


def _run(conv: nn.Conv2d, x0: torch.Tensor, grad: torch.Tensor, ours: bool, dtype=torch.bfloat16,
         kernel=cpu_kernels.pointwise_bf16):
    """Output and gradients (input, weight, bias) of one conv under bf16 autocast, or in float64."""
    conv.zero_grad(set_to_none=True)
    x = x0.clone().to(dtype).requires_grad_(True)
    if dtype == torch.float64:
        y = F.conv2d(x, conv.weight.double(), None if conv.bias is None else conv.bias.double(),
                     padding=conv.padding, dilation=conv.dilation, groups=conv.groups)
        grads = torch.autograd.grad(y, [x, conv.weight] + ([conv.bias] if conv.bias is not None else []), grad.double())
        return [y, *grads]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = kernel(conv, x) if ours else conv(x)
    y.backward(grad.to(y.dtype))
    return [y, x.grad, conv.weight.grad] + ([conv.bias.grad] if conv.bias is not None else [])


def _assert_no_worse_than_onednn(ours, theirs, exact) -> None:
    """Each of ours (output and gradients) is as close to float64 as oneDNN's bf16 result, or
    within bf16 rounding of it."""
    for mine, reference, truth in zip(ours, theirs, exact):
        scale = truth.abs().max().item()
        error = (mine.double() - truth).abs().max().item() / scale
        reference_error = (reference.double() - truth).abs().max().item() / scale
        assert error <= max(2 * reference_error, 2 ** -8), (error, reference_error)


@pytest.mark.parametrize("cin,cout,bias", [(24, 16, False), (16, 1, True), (9, 2, True)])
@pytest.mark.parametrize("per_image_from", [1 << 20, 1])  # the app's threshold; every weight image by image
def test_pointwise_matches_convolution_as_closely_as_bf16_allows(cin, cout, bias, per_image_from, monkeypatch):
    """Large weights multiply image by image (no copy of the weight per image), the others in
    one bmm; both ways within bf16 rounding of the convolution."""
    monkeypatch.setattr(cpu_kernels, "_PER_IMAGE_WEIGHTS", per_image_from)
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, 1, bias=bias)
    x0 = torch.randn(3, cin, 10, 12)
    grad = torch.randn(3, cout, 10, 12)
    exact = _run(conv, x0, grad, ours=False, dtype=torch.float64)
    theirs = _run(conv, x0, grad, ours=False)
    ours = _run(conv, x0, grad, ours=True)
    assert ours[0].dtype == torch.bfloat16 and ours[0].shape == theirs[0].shape and ours[0].is_contiguous()
    assert ours[2].dtype == conv.weight.dtype == torch.float32  # the float32 master weight gets its gradient
    _assert_no_worse_than_onednn(ours, theirs, exact)


def test_only_plain_1x1_convolutions_while_training_in_bf16_take_the_new_path(monkeypatch):
    calls = []
    original = cpu_kernels._PointwiseBmm.apply
    monkeypatch.setattr(cpu_kernels._PointwiseBmm, "apply", lambda *a: calls.append(1) or original(*a))
    assert not cpu_kernels.pointwise_eligible(nn.Conv2d(4, 4, 3, padding=1))
    assert not cpu_kernels.pointwise_eligible(nn.Conv2d(4, 4, 1, stride=2))
    assert not cpu_kernels.pointwise_eligible(nn.Conv2d(4, 4, 1, groups=2))
    conv = nn.Conv2d(4, 3, 1)
    assert cpu_kernels.pointwise_eligible(conv)
    x = torch.randn(2, 4, 5, 5)
    # float32, and inference in bf16: nn.Conv2d's own forward, bit for bit
    assert torch.equal(cpu_kernels.pointwise_bf16(conv, x), conv(x))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(cpu_kernels.pointwise_bf16(conv, x), conv(x))
    assert calls == []
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cpu_kernels.pointwise_bf16(conv, x)
    assert calls == [1]


def test_active_swaps_for_the_block_only_and_keeps_the_state_dict():
    model = build_tiny(seed=0)
    keys = list(model.state_dict())
    kernels = cpu_kernels.TrainingKernels(model)
    eligible = [cpu_kernels.pointwise_eligible(model.get_submodule(n)) or
                cpu_kernels.depthwise_eligible(model.get_submodule(n)) or
                cpu_kernels.maxpool_eligible(model.get_submodule(n)) or
                cpu_kernels.dilated_eligible(model.get_submodule(n)) for n in kernels.names]
    assert kernels.names and all(eligible)
    assert any(cpu_kernels.depthwise_eligible(model.get_submodule(n)) for n in kernels.names)
    assert any(cpu_kernels.maxpool_eligible(model.get_submodule(n)) for n in kernels.names)  # the stem's
    assert any(cpu_kernels.dilated_eligible(model.get_submodule(n)) for n in kernels.names)  # the ASPPs'
    first = model.get_submodule(kernels.names[0])
    marker = first.forward = lambda x: x  # swapped by someone else: left alone
    with kernels.active(model):
        assert first.forward is marker
        swapped = [n for n in kernels.names[1:] if "forward" in vars(model.get_submodule(n))]
        assert swapped == kernels.names[1:]
        assert list(model.state_dict()) == keys
    assert first.forward is marker
    del first.forward
    assert not any("forward" in vars(model.get_submodule(n)) for n in kernels.names)
    with pytest.raises(RuntimeError), kernels.active(model):
        raise RuntimeError("a failing step")
    assert not any("forward" in vars(model.get_submodule(n)) for n in kernels.names)


def _gradients(precision: str, kernels: bool) -> dict[str, torch.Tensor]:
    model = build_tiny(seed=1)
    config = FinetuneConfig(model="tiny", train_dirs=["unused"], new_name="tiny_bf16", layers="all", batch_size=2,
                            patch_size=64, device="cpu", precision=precision, frozen_int8="off")
    trainer = trainer_module.Trainer(model, None, config, torch.device("cpu"), Precision(precision, "cpu"))
    assert (trainer.cpu_kernels is not None) == (precision == "bf16")  # this test's CPU may be AVX2: see below
    if not kernels:
        trainer.cpu_kernels = None
    # One memory format for all three (float32 would train channels-last: other dropout masks).
    trainer.channels_last = False
    trainer.model = trainer.forward_module = trainer.model.to(memory_format=torch.contiguous_format)
    trainer.train_mode()
    batch = synthetic_batch(2, 64, seed=0)
    torch.manual_seed(0)  # dropout and PointRend's point sampling
    total, _ = trainer.forward_loss(batch.images, batch.targets)
    total.backward()
    return {n: p.grad.float() for n, p in trainer.model.named_parameters() if p.grad is not None}


def test_bf16_training_gradients_are_as_close_to_float32_as_plain_bf16():
    reference = _gradients("fp32", kernels=False)
    plain = _gradients("bf16", kernels=False)
    ours = _gradients("bf16", kernels=True)
    assert set(ours) == set(plain) == set(reference)

    def error(grads, name):
        return ((grads[name] - reference[name]).norm() / reference[name].norm().clamp_min(1e-12)).item()

    names = [n for n in reference if reference[n].norm() > 1e-6]
    ours_median = statistics.median(error(ours, n) for n in names)
    plain_median = statistics.median(error(plain, n) for n in names)
    assert ours_median <= 1.25 * plain_median + 1e-3, (ours_median, plain_median)
    assert any(not torch.equal(ours[n], plain[n]) for n in names)  # the new path did run


@pytest.mark.parametrize("k,shape", [(5, (2, 6, 16, 24)), (3, (3, 4, 8, 8)), (5, (1, 3, 8, 40))])
def test_depthwise_weight_gradient_by_tiles_equals_the_convolution_gradient(k, shape):
    """float64 in, float64 out: the tiled product must be the exact gradient, border included."""
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64)
    grad = torch.randn(shape, dtype=torch.float64)
    weight = torch.randn(shape[1], 1, k, k, dtype=torch.float64)
    expected = torch.ops.aten.convolution_backward(grad, x, weight, None, [1, 1], [k // 2, k // 2], [1, 1], False,
                                                   [0, 0], shape[1], [False, True, False])[1]
    torch.testing.assert_close(cpu_kernels.depthwise_weight_gradient(x, grad, k).double(), expected,
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("kind", ["depthwise", "dilated"])
def test_weight_gradient_kernels_match_convolution_as_closely_as_bf16_allows(kind, bias):
    torch.manual_seed(0)
    if kind == "depthwise":
        conv, shape = nn.Conv2d(12, 12, 5, padding=2, groups=12, bias=bias), (4, 12, 16, 24)
        eligible, kernel = cpu_kernels.depthwise_eligible, cpu_kernels.depthwise_bf16
    else:
        conv, shape = nn.Conv2d(24, 8, 3, padding=4, dilation=4, bias=bias), (4, 24, 16, 16)
        eligible, kernel = cpu_kernels.dilated_eligible, cpu_kernels.dilated_kernel
    assert eligible(conv)
    x0 = torch.randn(shape)
    grad = torch.randn(shape[0], conv.out_channels, *shape[2:])
    exact = _run(conv, x0, grad, ours=False, dtype=torch.float64)
    theirs = _run(conv, x0, grad, ours=False)
    ours = _run(conv, x0, grad, ours=True, kernel=kernel)
    if not bias:
        assert torch.equal(ours[0], theirs[0])  # the forward is oneDNN's own
    _assert_no_worse_than_onednn(ours, theirs, exact)


def test_depthwise_path_only_where_it_was_measured(monkeypatch):
    calls = []
    original = cpu_kernels._DepthwiseTiles.apply
    monkeypatch.setattr(cpu_kernels._DepthwiseTiles, "apply", lambda *a: calls.append(1) or original(*a))
    assert not cpu_kernels.depthwise_eligible(nn.Conv2d(4, 4, 5, padding=1, groups=4))  # not 'same'
    assert not cpu_kernels.depthwise_eligible(nn.Conv2d(4, 8, 5, padding=2, groups=4))  # multiplier 2
    assert not cpu_kernels.depthwise_eligible(nn.Conv2d(4, 4, 5, padding=2, groups=2))
    assert not cpu_kernels.depthwise_eligible(nn.Conv2d(4, 4, 5, padding=2, groups=4, stride=2))
    conv = nn.Conv2d(4, 4, 5, padding=2, groups=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cpu_kernels.depthwise_bf16(conv, torch.randn(1, 4, 12, 16))  # 12 rows: not a multiple of 8
        conv.weight.requires_grad_(False)
        cpu_kernels.depthwise_bf16(conv, torch.randn(1, 4, 16, 16, requires_grad=True))  # frozen weight
        conv.weight.requires_grad_(True)
        assert calls == []
        cpu_kernels.depthwise_bf16(conv, torch.randn(1, 4, 16, 16))
    assert calls == [1]
    x = torch.randn(1, 4, 16, 16)
    assert torch.equal(cpu_kernels.depthwise_bf16(conv, x), conv(x))  # float32: nn.Conv2d itself


@pytest.mark.parametrize("k,s,p,shape", [(3, 2, 1, (2, 5, 17, 12)), (2, 2, 0, (1, 3, 8, 9)), (5, 3, 2, (1, 2, 13, 13))])
def test_max_pooling_gives_torchs_values_and_gradients_exactly(k, s, p, shape):
    """Values from torch's channels-last kernel, gradients from its NCHW backward with those
    winners: both must be bit for bit what nn.MaxPool2d gives, ties included."""
    torch.manual_seed(0)
    pool = nn.MaxPool2d(k, s, p)
    assert cpu_kernels.maxpool_eligible(pool)
    for values in (torch.randn(shape), torch.randint(0, 3, shape).float()):  # the second: many ties
        base = values.to(torch.bfloat16)
        ours_in = base.clone().requires_grad_(True)
        theirs_in = base.clone().requires_grad_(True)
        ours = cpu_kernels.maxpool_bf16(pool, ours_in)
        theirs = pool(theirs_in)
        assert ours.is_contiguous() and torch.equal(ours, theirs)
        grad = torch.randn(theirs.shape).to(torch.bfloat16)
        ours.backward(grad)
        theirs.backward(grad)
        assert ours_in.grad.is_contiguous() and torch.equal(ours_in.grad, theirs_in.grad)


def test_max_pooling_path_only_for_bf16_batches_that_need_a_gradient(monkeypatch):
    calls = []
    original = cpu_kernels._MaxPoolChannelsLast.apply
    monkeypatch.setattr(cpu_kernels._MaxPoolChannelsLast, "apply", lambda *a: calls.append(1) or original(*a))
    assert not cpu_kernels.maxpool_eligible(nn.MaxPool2d(3, 2, 1, ceil_mode=True))
    assert not cpu_kernels.maxpool_eligible(nn.MaxPool2d(3, 2, 1, dilation=2))
    assert not cpu_kernels.maxpool_eligible(nn.MaxPool2d((3, 2), 2))
    assert not cpu_kernels.maxpool_eligible(nn.AvgPool2d(3, 2, 1))
    pool = nn.MaxPool2d(3, 2, 1)
    x = torch.randn(1, 2, 8, 8)
    cpu_kernels.maxpool_bf16(pool, x.requires_grad_(True))  # float32
    cpu_kernels.maxpool_bf16(pool, x.detach().to(torch.bfloat16))  # inference (no gradient wanted)
    assert calls == []
    cpu_kernels.maxpool_bf16(pool, x.detach().to(torch.bfloat16).requires_grad_(True))
    assert calls == [1]


@pytest.mark.parametrize("shape,cout,k,d", [((2, 5, 9, 11), 3, 3, 2), ((3, 4, 8, 8), 6, 3, 4), ((1, 3, 7, 13), 2, 5, 2),
                                            ((2, 3, 6, 6), 3, 3, 6), ((2, 3, 6, 6), 3, 3, 7)])
def test_dilated_weight_gradient_by_taps_equals_the_convolution_gradient(shape, cout, k, d):
    """float64 in, float64 out: exact, including taps that read only padding (d >= the map)."""
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64)
    grad = torch.randn(shape[0], cout, *shape[2:], dtype=torch.float64)
    weight = torch.zeros(cout, shape[1], k, k, dtype=torch.float64)
    pad = d * (k // 2)
    expected = torch.ops.aten.convolution_backward(grad, x, weight, None, [1, 1], [pad, pad], [d, d], False, [0, 0],
                                                   1, [False, True, False])[1]
    ours = cpu_kernels.dilated_weight_gradient(x, grad, k, d)
    assert ours.shape == expected.shape and ours.is_contiguous()
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)


def test_dilated_path_only_where_it_was_measured(monkeypatch):
    calls = []
    original = cpu_kernels._DilatedTaps.apply
    monkeypatch.setattr(cpu_kernels._DilatedTaps, "apply", lambda *a: calls.append(1) or original(*a))
    assert not cpu_kernels.dilated_eligible(nn.Conv2d(4, 4, 3, padding=1))  # dilation 1: oneDNN was faster
    assert not cpu_kernels.dilated_eligible(nn.Conv2d(4, 4, 3, padding=1, dilation=2))  # not 'same'
    assert not cpu_kernels.dilated_eligible(nn.Conv2d(4, 4, 3, padding=2, dilation=2, stride=2))
    assert not cpu_kernels.dilated_eligible(nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2))
    conv = nn.Conv2d(4, 4, 3, padding=2, dilation=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        conv.weight.requires_grad_(False)
        cpu_kernels.dilated_kernel(conv, torch.randn(1, 4, 8, 8, requires_grad=True))  # frozen weight
        conv.weight.requires_grad_(True)
        with torch.no_grad():
            cpu_kernels.dilated_kernel(conv, torch.randn(1, 4, 8, 8))  # inference
        assert calls == []
        cpu_kernels.dilated_kernel(conv, torch.randn(1, 4, 8, 8))
    assert calls == [1]
    conv.double()
    cpu_kernels.dilated_kernel(conv, torch.randn(1, 4, 8, 8, dtype=torch.float64))  # float64: its own forward
    assert calls == [1]


@pytest.mark.parametrize("channels_last", [False, True])
def test_dilated_kernel_in_float32_gives_the_convolutions_gradients(channels_last):
    """float32 training (channels-last on the CPU) through the per-tap weight gradient: the same
    output as the convolution, gradients equal within float32 rounding, layouts kept."""
    torch.manual_seed(0)
    conv = nn.Conv2d(12, 6, 3, padding=2, dilation=2)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    conv = conv.to(memory_format=layout)
    x0 = torch.randn(3, 12, 10, 9).contiguous(memory_format=layout)
    grad = torch.randn(3, 6, 10, 9).contiguous(memory_format=layout)
    results = []
    for kernel in (nn.Conv2d.forward, cpu_kernels.dilated_kernel):
        conv.zero_grad(set_to_none=True)
        x = x0.clone().requires_grad_(True)
        y = kernel(conv, x)
        y.backward(grad)
        results.append((y, x.grad, conv.weight.grad, conv.bias.grad))
    for theirs, ours in zip(*results):
        assert ours.dtype == torch.float32
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    assert results[1][2].is_contiguous(memory_format=layout)


def test_training_kernels_by_device_precision_and_cpu_kind(monkeypatch):
    from empanada_desktop.backend import cpu

    model = build_tiny(seed=0)
    cpu_device = torch.device("cpu")
    assert cpu_kernels.for_training(model, torch.device("cuda"), "bf16") is None
    bf16 = cpu_kernels.for_training(model, cpu_device, "bf16")
    kinds = {type(model.get_submodule(n)).__name__ for n in bf16.names}
    assert kinds == {"Conv2d", "MaxPool2d"}
    for kind, expected in (("AVX2", True), ("AVX-512", False), ("AVX-512 BF16", False), ("AMX", False)):
        monkeypatch.setattr(cpu, "cpu_capability_info", lambda kind=kind: type("C", (), {"kind": kind})())
        fp32 = cpu_kernels.for_training(model, cpu_device, "fp32")
        assert (fp32 is not None) == expected, kind
        if fp32 is not None:  # only the dilated convolutions
            assert fp32.names and all(cpu_kernels.dilated_eligible(model.get_submodule(n)) for n in fp32.names)


def test_dilated_weight_gradient_reuses_the_input_layout_only_while_the_input_is_unchanged():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    grad = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    first = cpu_kernels.dilated_weight_gradient(x, grad, 3, 2)
    kept = x._images_innermost[1]
    assert torch.equal(cpu_kernels.dilated_weight_gradient(x, grad, 3, 2), first)
    assert x._images_innermost[1] is kept  # the same tensor, unchanged: reused
    x.mul_(2)  # an in-place change: laid out again
    weight = torch.zeros(4, 3, 3, 3, dtype=torch.float64)
    expected = torch.ops.aten.convolution_backward(grad, x, weight, None, [1, 1], [2, 2], [2, 2], False, [0, 0], 1,
                                                   [False, True, False])[1]
    torch.testing.assert_close(cpu_kernels.dilated_weight_gradient(x, grad, 3, 2), expected, rtol=1e-12, atol=1e-12)

