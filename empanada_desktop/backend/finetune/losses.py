"""PanopticLoss (docs/EMPANADA_FORMATS.md section 5), with empanada's weights as defaults.

total = ce_weight * BootstrapCE(sem_logits, sem)        mean of the top ``top_k_percent`` pixels
      + mse_weight * MSE(ctr_hmp)
      + l1_weight * L1(offsets) inside the foreground / foreground pixel count
      + pr_weight * BCE(sem_points, mask sampled nearest at point_coords)   (train mode only)
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F


def bootstrap_ce(logits: torch.Tensor, sem: torch.Tensor, top_k_percent: float) -> torch.Tensor:
    """Mean of the largest ``top_k_percent`` per-pixel (B)CE losses over the whole batch."""
    if logits.size(1) == 1:
        pixel_losses = F.binary_cross_entropy_with_logits(logits, sem.unsqueeze(1).to(logits.dtype), reduction="none")
    else:
        pixel_losses = F.cross_entropy(logits, sem.long(), reduction="none")
    pixel_losses = pixel_losses.reshape(-1)
    if top_k_percent >= 1.0:
        return pixel_losses.mean()
    k = max(1, int(top_k_percent * pixel_losses.numel()))
    return torch.topk(pixel_losses, k, sorted=False).values.mean()


def offset_l1(pred: torch.Tensor, target: torch.Tensor, foreground: torch.Tensor) -> torch.Tensor:
    """Sum of |pred - target| over both channels inside the foreground / foreground pixels."""
    weights = foreground.unsqueeze(1).to(pred.dtype)
    total = ((pred - target).abs() * weights).sum()
    count = weights.sum()
    return total / count if bool(count > 0) else total * 0


def point_labels(sem: torch.Tensor, point_coords: torch.Tensor) -> torch.Tensor:
    """The target at PointRend's points: nearest sample of ``sem`` (B, H, W) at (B, P, 2) in [0, 1].

    Coordinates are (x, y), as ``grid_sample`` and detectron2's ``point_sample`` use them.
    """
    grid = (2.0 * point_coords.to(torch.float32) - 1.0).unsqueeze(2)  # (B, P, 1, 2)
    sampled = F.grid_sample(sem.unsqueeze(1).to(torch.float32), grid, mode="nearest", align_corners=False)
    return sampled.squeeze(3)  # (B, 1, P)


class PanopticLoss(torch.nn.Module):
    """Weighted sum of the four Panoptic-DeepLab + PointRend losses.

    ``forward`` returns the total (a tensor to backpropagate) and the parts as floats-to-be
    (detached tensors, so no device sync happens until the caller asks for them).
    """

    def __init__(
        self,
        ce_weight: float = 1.0,
        mse_weight: float = 200.0,
        l1_weight: float = 0.01,
        pr_weight: float = 1.0,
        top_k_percent: float = 0.2,
    ) -> None:
        super().__init__()
        self.ce_weight = float(ce_weight)
        self.mse_weight = float(mse_weight)
        self.l1_weight = float(l1_weight)
        self.pr_weight = float(pr_weight)
        self.top_k_percent = float(top_k_percent)

    @classmethod
    def from_params(cls, params: object) -> PanopticLoss:
        """Build from a ``CriterionParams``-like object or a mapping (the model config's)."""
        names = ("ce_weight", "mse_weight", "l1_weight", "pr_weight", "top_k_percent")
        if params is None:
            return cls()
        if isinstance(params, Mapping):
            return cls(**{n: params[n] for n in names if n in params})
        return cls(**{n: getattr(params, n) for n in names if hasattr(params, n)})

    def forward(
        self, output: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # Losses in float32 even under autocast: top-k and sums of 1M pixels need the precision.
        sem_logits = output["sem_logits"].float()
        ce = bootstrap_ce(sem_logits, target["sem"], self.top_k_percent)
        mse = F.mse_loss(output["ctr_hmp"].float(), target["ctr_hmp"])
        # Class 0 is background for binary and panoptic (multi-class) targets alike.
        foreground = target["sem"] > 0
        l1 = offset_l1(output["offsets"].float(), target["offsets"], foreground)
        total = self.ce_weight * ce + self.mse_weight * mse + self.l1_weight * l1
        parts = {"ce": ce.detach(), "mse": mse.detach(), "l1": l1.detach()}
        if "sem_points" in output and "point_coords" in output:
            labels = point_labels(target["sem"], output["point_coords"])
            points = output["sem_points"].float()
            if points.size(1) == 1:
                pr = F.binary_cross_entropy_with_logits(points, labels)
            else:
                pr = F.cross_entropy(points, labels.squeeze(1).long())
            total = total + self.pr_weight * pr
            parts["pointrend_ce"] = pr.detach()
        parts["total"] = total.detach()
        return total, parts
