"""Training augmentation, equal in effect to empanada's (docs/EMPANADA_FORMATS.md section 4).

empanada chains albumentations: random scale (factor 1 + U(-0.9, 1)), pad to the patch size
with zeros, random crop, rotation up to 180 degrees with zeros at the borders, brightness and
contrast +-0.3, horizontal and vertical flips, then normalisation. Every geometric step is an
affine map, so here they are composed into one matrix per patch and applied with a single
``grid_sample`` (bilinear for the image, nearest for the mask). That is one resampling instead
of four, costs a few milliseconds per 256 px patch in torch and needs no OpenCV.

Random parameters come from a ``numpy.random.Generator`` handed in by the caller, so a batch is
a pure function of (seed, step): this is what makes ``--resume`` reproduce an uninterrupted run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# float32 holds integers exactly up to 2**24; larger label ids are renumbered before sampling.
_MAX_EXACT_LABEL = 2**24


@dataclass(frozen=True)
class AugmentParams:
    """Ranges and probabilities (albumentations' defaults where empanada relies on them)."""

    scale_limit: tuple[float, float] = (-0.9, 1.0)
    scale_p: float = 0.5
    rotate_limit: float = 180.0
    rotate_p: float = 0.5
    brightness_limit: float = 0.3
    contrast_limit: float = 0.3
    brightness_contrast_p: float = 0.5
    hflip_p: float = 0.5
    vflip_p: float = 0.5


NO_AUGMENTATION = AugmentParams(
    scale_p=0.0, rotate_p=0.0, brightness_contrast_p=0.0, hflip_p=0.0, vflip_p=0.0
)


@dataclass(frozen=True)
class PatchTransform:
    """The random draws for one patch (kept so tests can check the geometry)."""

    scale: float
    crop_y: float
    crop_x: float
    angle_deg: float
    hflip: bool
    vflip: bool
    alpha: float  # contrast multiplier
    beta: float  # brightness offset, in units of the image maximum


def draw_transform(
    height: int, width: int, patch_size: int, rng: np.random.Generator, params: AugmentParams
) -> PatchTransform:
    """Draw the random parameters for one ``height x width`` image (fixed draw order)."""
    u = rng.random(9)
    scale = 1.0
    if u[0] < params.scale_p:
        low, high = params.scale_limit
        scale = 1.0 + low + (high - low) * u[1]
    scaled_h, scaled_w = int(round(height * scale)), int(round(width * scale))
    # Pad-if-needed centres the image; the crop offset is a whole pixel, uniform over the rest.
    crop_y = float(int(u[2] * (max(0, scaled_h - patch_size) + 1)))
    crop_x = float(int(u[3] * (max(0, scaled_w - patch_size) + 1)))
    angle = 0.0
    if u[4] < params.rotate_p:
        angle = (2 * u[5] - 1) * params.rotate_limit
    alpha, beta = 1.0, 0.0
    if u[6] < params.brightness_contrast_p:
        more = rng.random(2)
        alpha = 1.0 + (2 * more[0] - 1) * params.contrast_limit
        beta = (2 * more[1] - 1) * params.brightness_limit
    return PatchTransform(
        scale=scale,
        crop_y=crop_y,
        crop_x=crop_x,
        angle_deg=angle,
        hflip=bool(u[7] < params.hflip_p),
        vflip=bool(u[8] < params.vflip_p),
        alpha=alpha,
        beta=beta,
    )


def output_to_input_matrix(
    height: int, width: int, patch_size: int, t: PatchTransform
) -> np.ndarray:
    """3x3 matrix mapping output pixel centres (x, y, 1) to input pixel coordinates (x, y, 1).

    The forward chain is scale -> centred pad -> crop -> rotate about the patch centre -> flips;
    this is its inverse, built step by step from the output side.
    """
    p = float(patch_size)
    centre = (p - 1) / 2
    m = np.eye(3)
    # Undo the flips (they act on the final patch).
    flip = np.diag([-1.0 if t.hflip else 1.0, -1.0 if t.vflip else 1.0, 1.0])
    flip[0, 2] = p - 1 if t.hflip else 0.0
    flip[1, 2] = p - 1 if t.vflip else 0.0
    m = flip @ m
    # Undo the rotation about the patch centre.
    a = math.radians(t.angle_deg)
    cos, sin = math.cos(a), math.sin(a)
    to_centre = np.array([[1, 0, -centre], [0, 1, -centre], [0, 0, 1.0]])
    back = np.array([[1, 0, centre], [0, 1, centre], [0, 0, 1.0]])
    rot = np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1.0]])
    m = back @ rot @ to_centre @ m
    # Undo crop and centred padding: patch coordinates -> scaled-image coordinates.
    pad_y = float(max(0, patch_size - int(round(height * t.scale))) // 2)
    pad_x = float(max(0, patch_size - int(round(width * t.scale))) // 2)
    shift = np.array([[1, 0, t.crop_x - pad_x], [0, 1, t.crop_y - pad_y], [0, 0, 1.0]])
    m = shift @ m
    # Undo the scaling (pixel centres: (q + 0.5) / s - 0.5).
    s = t.scale
    unscale = np.array([[1 / s, 0, 0.5 / s - 0.5], [0, 1 / s, 0.5 / s - 0.5], [0, 0, 1.0]])
    return unscale @ m


def _normalised_theta(height: int, width: int, patch_size: int, m: np.ndarray) -> torch.Tensor:
    """Convert a pixel-space output->input matrix to ``affine_grid``'s normalised theta."""
    p = float(patch_size)
    # output normalised v -> output pixel q: q = ((v + 1) * P - 1) / 2
    from_norm = np.array([[p / 2, 0, (p - 1) / 2], [0, p / 2, (p - 1) / 2], [0, 0, 1.0]])
    # input pixel -> input normalised: u = (2 * x + 1) / W - 1
    to_norm = np.array([[2 / width, 0, 1 / width - 1], [0, 2 / height, 1 / height - 1], [0, 0, 1.0]])
    theta = to_norm @ m @ from_norm
    return torch.from_numpy(theta[:2]).to(torch.float32)


def augment_pair(
    image: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor,
    patch_size: int,
    rng: np.random.Generator,
    params: AugmentParams = AugmentParams(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment one image/mask pair into a ``patch_size`` square.

    Args:
        image: (H, W) uint8.
        mask: (H, W) integer labels (0 = background).

    Returns:
        image (1, P, P) float32 in [0, 1] (not yet normalised) and mask (P, P) int64.
    """
    image_t = torch.as_tensor(np.ascontiguousarray(image))
    mask_t = torch.as_tensor(np.ascontiguousarray(mask)).to(torch.int64)
    height, width = image_t.shape[-2:]
    if tuple(mask_t.shape) != (height, width):
        raise ValueError(f"image {tuple(image_t.shape)} and mask {tuple(mask_t.shape)} differ in shape")
    t = draw_transform(height, width, patch_size, rng, params)
    return apply_transform(image_t, mask_t, patch_size, t)


def apply_transform(
    image: torch.Tensor, mask: torch.Tensor, patch_size: int, t: PatchTransform
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply one drawn transform: image (H, W) uint8 tensor, mask (H, W) int64 tensor."""
    image_t, mask_t = image, mask
    height, width = image_t.shape[-2:]
    theta = _normalised_theta(height, width, patch_size, output_to_input_matrix(height, width, patch_size, t))
    grid = F.affine_grid(theta[None], [1, 1, patch_size, patch_size], align_corners=False)

    image_f = image_t.to(torch.float32).div(255.0)[None, None]
    out_image = F.grid_sample(image_f, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    if t.alpha != 1.0 or t.beta != 0.0:
        out_image = (out_image * t.alpha + t.beta).clamp_(0.0, 1.0)

    if int(mask_t.max()) >= _MAX_EXACT_LABEL:
        # Labels are >= 0, so background (0) stays 0 as the smallest unique value.
        _, mask_t = torch.unique(mask_t, return_inverse=True)
    out_mask = F.grid_sample(
        mask_t.to(torch.float32)[None, None], grid, mode="nearest", padding_mode="zeros", align_corners=False
    )[0, 0].to(torch.int64)
    return out_image, out_mask


def augment_batch(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    patch_size: int,
    rng: np.random.Generator,
    params: AugmentParams = AugmentParams(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a list of pairs: images (B, 1, P, P) float32 in [0, 1], masks (B, P, P) int64."""
    pairs = [augment_pair(im, mk, patch_size, rng, params) for im, mk in zip(images, masks)]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def normalize(images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """``(x - mean) / std`` for images already in [0, 1] (empanada's norms)."""
    return (images - mean) / std


def pad_to_multiple(image: np.ndarray, factor: int) -> np.ndarray:
    """Pad bottom/right with zeros so H and W are multiples of ``factor``."""
    height, width = image.shape[-2:]
    pad_h = (-height) % factor
    pad_w = (-width) % factor
    if not pad_h and not pad_w:
        return image
    widths = [(0, 0)] * (image.ndim - 2) + [(0, pad_h), (0, pad_w)]
    return np.pad(image, widths)
