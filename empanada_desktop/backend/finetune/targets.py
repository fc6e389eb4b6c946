"""Panoptic-DeepLab training targets from instance masks, vectorised over the whole batch.

docs/EMPANADA_FORMATS.md section 5: ``sem`` = mask > 0; ``ctr_hmp`` = a 1 at each instance's
centroid ``(int(cy), int(cx))`` blurred with a Gaussian of sigma 6 (zero border) and divided by
the image's maximum; ``offsets`` = ``(cy - y, cx - x)`` inside instance k, 0 on background.

empanada loops over instances and touches the full image once per instance. Here every
instance of every image in the batch gets one id (``torch.unique``), centroids are sums by
``bincount`` and the heatmap is one separable convolution, so the cost is independent of the
number of objects.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

HEATMAP_SIGMA = 6.0


def gaussian_kernel1d(sigma: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The normalised 1D Gaussian OpenCV uses for ``ksize=(0, 0)`` on float images.

    OpenCV picks ``ksize = round(sigma * 8 + 1) | 1`` (4 sigma each side).
    """
    size = int(round(sigma * 8 + 1)) | 1
    radius = size // 2
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    return (kernel / kernel.sum()).to(dtype)


def gaussian_band(size: int, kernel: torch.Tensor) -> torch.Tensor:
    """(size, size) matrix whose product with a vector is its 1D convolution with ``kernel``
    (odd length, symmetric) with zeros outside: row i holds the kernel centred on i."""
    radius = kernel.numel() // 2
    offset = torch.arange(size, device=kernel.device).view(1, -1) - torch.arange(size, device=kernel.device).view(-1, 1)
    inside = offset.abs() <= radius
    return torch.where(inside, kernel[(offset + radius).clamp(0, kernel.numel() - 1)], torch.zeros((), dtype=kernel.dtype))


def gaussian_blur(images: torch.Tensor, sigma: float = HEATMAP_SIGMA) -> torch.Tensor:
    """Separable Gaussian blur of (B, 1, H, W) with zeros outside (cv2.BORDER_CONSTANT).

    As two matrix products with banded matrices (rows, then columns): a one-channel
    convolution with a 49-tap kernel ran at 41 ms per pass for a batch of 16 at 256 px, the
    products take a few ms (docs/CPU_SPEED.md), and the batch is built next to a training step.
    """
    kernel = gaussian_kernel1d(sigma, images.dtype).to(images.device)
    height, width = images.shape[-2:]
    rows = gaussian_band(height, kernel)
    columns = gaussian_band(width, kernel)
    return torch.matmul(torch.matmul(rows, images), columns)


def make_targets(
    masks: torch.Tensor,
    *,
    num_classes: int = 1,
    label_divisor: int = 1000,
    thing_list: Sequence[int] = (1,),
    sigma: float = HEATMAP_SIGMA,
) -> dict[str, torch.Tensor]:
    """Targets for a batch of masks.

    Args:
        masks: (B, H, W) integer labels. For binary models (``num_classes == 1``) every
            non-zero id is an instance of the one class. For multi-class models ids are
            panoptic (``class * label_divisor + instance``); only ``thing_list`` classes get
            centres and offsets.

    Returns:
        ``sem`` (B, H, W): float 0/1 for binary models, int64 class ids otherwise;
        ``ctr_hmp`` (B, 1, H, W) float32; ``offsets`` (B, 2, H, W) float32 (dy, dx).
    """
    if masks.dim() != 3:
        raise ValueError(f"masks must be (B, H, W), got {tuple(masks.shape)}")
    masks = masks.to(torch.int64)
    batch, height, width = masks.shape
    device = masks.device
    if num_classes == 1:
        sem = (masks > 0).to(torch.float32)
        instances = masks
    else:
        classes = masks // label_divisor
        sem = classes
        is_thing = torch.isin(classes, torch.as_tensor(list(thing_list), device=device))
        instances = torch.where(is_thing, masks, torch.zeros_like(masks))

    # One id per (image, label): key = b * (max + 1) + label, background keys mapped to -1.
    span = int(instances.max().item()) + 1 if instances.numel() else 1
    batch_index = torch.arange(batch, device=device).view(batch, 1, 1)
    keys = torch.where(instances > 0, batch_index * span + instances, torch.full_like(instances, -1))
    unique_keys, inverse = torch.unique(keys.view(-1), return_inverse=True)
    count = unique_keys.numel()

    ys = torch.arange(height, device=device, dtype=torch.float64).view(1, height, 1).expand(batch, height, width)
    xs = torch.arange(width, device=device, dtype=torch.float64).view(1, 1, width).expand(batch, height, width)
    pixels = torch.bincount(inverse, minlength=count).to(torch.float64)
    cy = torch.bincount(inverse, weights=ys.reshape(-1), minlength=count) / pixels
    cx = torch.bincount(inverse, weights=xs.reshape(-1), minlength=count) / pixels

    heatmap = torch.zeros(batch, 1, height, width, dtype=torch.float32, device=device)
    foreground_ids = unique_keys >= 0
    if bool(foreground_ids.any()):
        ids = unique_keys[foreground_ids]
        heatmap[ids // span, 0, cy[foreground_ids].long(), cx[foreground_ids].long()] = 1.0
        heatmap = gaussian_blur(heatmap, sigma)
        peak = heatmap.amax(dim=(1, 2, 3), keepdim=True)
        heatmap = torch.where(peak > 0, heatmap / peak.clamp_min(1e-12), heatmap)

    inside = (keys >= 0).view(-1)
    dy = torch.where(inside, cy[inverse] - ys.reshape(-1), torch.zeros((), dtype=torch.float64, device=device))
    dx = torch.where(inside, cx[inverse] - xs.reshape(-1), torch.zeros((), dtype=torch.float64, device=device))
    offsets = torch.stack([dy.view(batch, height, width), dx.view(batch, height, width)], dim=1)
    return {"sem": sem, "ctr_hmp": heatmap, "offsets": offsets.to(torch.float32)}
