"""A tiny stand-in for a segmentation model whose answers are known from its input.

It follows empanada's model contract (forward(x, render_steps, interpolate_ins) -> dict) and
reads the image intensity back from the normalised input: pixels of at least 0.75 (191 of 255)
are foreground, the center heatmap is the intensity above 0.6 (so a blob brightest in its middle
has one center there, and the zero padding, which is the mean intensity 0.58, has none) and all
offsets are zero (every pixel joins the geometrically nearest center).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MEAN = 0.57571
STD = 0.12765


class BlobModel(nn.Module):
    def __init__(self, num_classes: int = 1):
        super().__init__()
        self.num_classes = num_classes
        self.mean = MEAN  # attributes, not globals, so that torch.jit.script takes the model
        self.std = STD
        self.scale = nn.Parameter(torch.ones(()))  # so that .to(device) and .eval() mean something

    def forward(self, x: torch.Tensor, render_steps: int = 2, interpolate_ins: bool = True):
        intensity = (x * self.std + self.mean) * self.scale
        fg = 20.0 * (intensity - 0.75)
        if self.num_classes == 1:
            sem = fg
        else:  # class 1 for mid intensities, class 2 for the brightest pixels
            sem = torch.cat([-fg, fg - 20.0 * (intensity - 0.9).clamp(min=0) * 4, 30.0 * (intensity - 0.9)], 1)
        scale = 2.0 ** (render_steps - 2)
        if scale != 1.0:
            sem = F.interpolate(sem, scale_factor=scale, mode="nearest")
        ctr = F.avg_pool2d((intensity - 0.6).clamp(min=0), 4)
        offsets = torch.zeros_like(ctr).repeat(1, 2, 1, 1)
        if interpolate_ins:
            ctr = F.interpolate(ctr, scale_factor=4.0, mode="bilinear", align_corners=True)
            offsets = F.interpolate(offsets, scale_factor=4.0, mode="bilinear", align_corners=True)
        return {"sem_logits": sem, "ctr_hmp": ctr, "offsets": offsets}


def blob_image(shape, centers, radius, peak=255, rim=160) -> np.ndarray:
    """uint8 image of discs brightest in their middle (peak) and dimmer at the rim.

    With the defaults, BlobModel finds a disc of radius 0.67 * ``radius``.
    """
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = np.zeros(shape, np.float64)
    for cy, cx in centers:
        d = np.hypot(yy - cy, xx - cx)
        disc = np.where(d <= radius, peak - (peak - rim) * d / radius, 0)
        image = np.maximum(image, disc)
    return image.astype(np.uint8)


def model_config(**engine):
    from empanada_desktop.core.model_config import ModelConfig

    return ModelConfig(
        class_names={1: "mito"}, labels=(1,), thing_list=(1,), model="fake.pth", padding_factor=16
    )


def blob_model_and_config():
    """A picklable model factory for block-wise jobs (``ModelRef(factory=...)``)."""
    return BlobModel(), model_config()
