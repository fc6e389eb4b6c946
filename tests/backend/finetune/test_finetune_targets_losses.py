"""Targets against a plain per-instance reference; loss parts against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from empanada_desktop.backend.finetune.losses import PanopticLoss, bootstrap_ce, offset_l1, point_labels
from empanada_desktop.backend.finetune.targets import gaussian_kernel1d, make_targets


def _reference_targets(mask: np.ndarray, sigma: float = 6.0):
    """Per-instance loop, written from the description in docs/EMPANADA_FORMATS.md section 5."""
    h, w = mask.shape
    heat = np.zeros((h, w), np.float64)
    centers = np.zeros((2, h, w), np.float64)
    for label in np.unique(mask):
        if label == 0:
            continue
        ys, xs = np.nonzero(mask == label)
        cy, cx = ys.mean(), xs.mean()
        heat[int(cy), int(cx)] = 1.0
        centers[0][mask == label] = cy
        centers[1][mask == label] = cx
    radius = int(round(sigma * 8 + 1)) // 2
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-(x**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    # Zero border: a full-size direct 2D convolution, one output pixel at a time along each axis.
    padded = np.pad(heat, radius)
    rows = np.array([[np.dot(padded[i, j : j + 2 * radius + 1], kernel) for j in range(w)] for i in range(h + 2 * radius)])
    blurred = np.array([[np.dot(rows[i : i + 2 * radius + 1, j], kernel) for j in range(w)] for i in range(h)])
    if blurred.max() > 0:
        blurred /= blurred.max()
    offsets = np.zeros((2, h, w))
    offsets[0] = centers[0] - np.arange(h)[:, None]
    offsets[1] = centers[1] - np.arange(w)[None, :]
    offsets[:, mask == 0] = 0
    return (mask > 0).astype(np.float32), blurred, offsets


def _random_masks(rng, batch=3, h=40, w=52):
    masks = np.zeros((batch, h, w), np.int64)
    for b in range(batch - 1):  # the last image stays empty
        for label in rng.choice(np.arange(1, 5000), size=6, replace=False):
            y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
            masks[b, y : y + rng.integers(2, 9), x : x + rng.integers(2, 9)] = label
    masks[0, 0:3, 0:3] = masks[0, 30:33, 40:43] = 7777  # one instance in two pieces
    return masks


def test_targets_match_per_instance_reference():
    rng = np.random.default_rng(3)
    masks = _random_masks(rng)
    out = make_targets(torch.from_numpy(masks))
    assert out["ctr_hmp"].shape == (3, 1, 40, 52) and out["offsets"].shape == (3, 2, 40, 52)
    for b in range(masks.shape[0]):
        sem, heat, offsets = _reference_targets(masks[b])
        np.testing.assert_array_equal(out["sem"][b].numpy(), sem)
        np.testing.assert_allclose(out["ctr_hmp"][b, 0].numpy(), heat, atol=1e-5)
        np.testing.assert_allclose(out["offsets"][b].numpy(), offsets, atol=1e-4)
    assert float(out["ctr_hmp"][2].abs().max()) == 0.0
    assert float(out["ctr_hmp"][0].max()) == pytest.approx(1.0)


def test_gaussian_kernel_matches_opencv_size_rule():
    kernel = gaussian_kernel1d(6.0)
    assert kernel.numel() == 49
    assert float(kernel.sum()) == pytest.approx(1.0)
    assert int(kernel.argmax()) == 24


def test_multiclass_targets_use_panoptic_ids_and_thing_list():
    mask = torch.zeros(1, 16, 16, dtype=torch.int64)
    mask[0, 2:6, 2:6] = 1 * 1000 + 1  # thing class 1
    mask[0, 10:14, 10:14] = 2 * 1000  # stuff class 2
    out = make_targets(mask, num_classes=3, label_divisor=1000, thing_list=(1,))
    assert out["sem"].dtype == torch.int64
    assert int(out["sem"][0, 3, 3]) == 1 and int(out["sem"][0, 11, 11]) == 2
    assert float(out["offsets"][0, :, 11, 11].abs().sum()) == 0.0
    assert float(out["offsets"][0, 0, 2, 2]) == pytest.approx(1.5)


def test_bootstrap_ce_means_the_hardest_pixels():
    logits = torch.tensor([[[[4.0, -4.0], [0.0, 2.0]]]])
    sem = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    per_pixel = F.binary_cross_entropy_with_logits(logits, sem.unsqueeze(1), reduction="none").reshape(-1)
    assert float(bootstrap_ce(logits, sem, 1.0)) == pytest.approx(float(per_pixel.mean()))
    top2 = per_pixel.sort(descending=True).values[:2].mean()
    assert float(bootstrap_ce(logits, sem, 0.5)) == pytest.approx(float(top2))


def test_offset_l1_counts_foreground_pixels_once_for_both_channels():
    pred = torch.zeros(1, 2, 2, 2)
    target = torch.ones(1, 2, 2, 2)
    foreground = torch.tensor([[[True, False], [False, False]]])
    assert float(offset_l1(pred, target, foreground)) == pytest.approx(2.0)
    assert float(offset_l1(pred, target, torch.zeros_like(foreground))) == 0.0


def test_point_labels_sample_nearest_in_xy_order():
    sem = torch.zeros(1, 4, 8)
    sem[0, 1, 6] = 1.0  # row 1, column 6
    coords = torch.tensor([[[(6 + 0.5) / 8, (1 + 0.5) / 4], [(1 + 0.5) / 8, (6 % 4 + 0.5) / 4]]])
    assert point_labels(sem, coords).tolist() == [[[1.0, 0.0]]]


def test_panoptic_loss_weights_and_gradients():
    torch.manual_seed(0)
    masks = torch.zeros(2, 32, 32, dtype=torch.int64)
    masks[0, 4:12, 4:12] = 1
    masks[1, 20:30, 5:9] = 3
    target = make_targets(masks)
    output = {
        "sem_logits": torch.randn(2, 1, 32, 32, requires_grad=True),
        "ctr_hmp": torch.rand(2, 1, 32, 32, requires_grad=True),
        "offsets": torch.randn(2, 2, 32, 32, requires_grad=True),
        "sem_points": torch.randn(2, 1, 10, requires_grad=True),
        "point_coords": torch.rand(2, 10, 2),
    }
    loss = PanopticLoss.from_params({"mse_weight": 200, "top_k_percent": 0.2})
    total, parts = loss(output, target)
    expected = parts["ce"] + 200 * parts["mse"] + 0.01 * parts["l1"] + parts["pointrend_ce"]
    assert float(total.detach()) == pytest.approx(float(expected), rel=1e-5)
    total.backward()
    for name in ("sem_logits", "ctr_hmp", "offsets", "sem_points"):
        assert output[name].grad is not None and float(output[name].grad.abs().sum()) > 0
    no_points = {k: v for k, v in output.items() if k not in ("sem_points", "point_coords")}
    assert "pointrend_ce" not in loss(no_points, target)[1]


@pytest.mark.parametrize("shape", [(2, 1, 40, 52), (1, 1, 20, 300), (3, 1, 64, 64)])
def test_banded_matrix_blur_equals_the_zero_padded_convolution(shape):
    """The heatmap blur runs as two matrix products; it must be the separable convolution with
    zeros outside, also for images smaller than the 49-tap kernel."""
    from empanada_desktop.backend.finetune.targets import gaussian_blur

    torch.manual_seed(0)
    images = torch.rand(shape)
    kernel = gaussian_kernel1d(6.0)
    radius = kernel.numel() // 2
    expected = F.conv2d(F.conv2d(images, kernel.view(1, 1, -1, 1), padding=(radius, 0)),
                        kernel.view(1, 1, 1, -1), padding=(0, radius))
    torch.testing.assert_close(gaussian_blur(images), expected, rtol=1e-5, atol=1e-6)
