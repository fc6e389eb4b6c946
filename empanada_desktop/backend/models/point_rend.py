"""PointRend semantic head (Kirillov et al., 2020) as used by empanada's ``...PR`` models.

Training: the coarse 1/4-resolution logits are sampled at ``train_num_points`` points, most of
them where the prediction is uncertain, and a small point MLP predicts refined logits there
(``sem_points``, coordinates ``point_coords`` in [0, 1], x first as in ``grid_sample``).
Inference: the logits are upsampled 2x ``render_steps`` times; at each step the
``subdivision_num_points`` most uncertain grid cells are re-predicted by the point MLP.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from empanada_desktop.backend.models.blocks import on_meta


def uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """(N,1,...) uncertainty: -|logit| for one class, top-2 logit gap (negated) for several."""
    if logits.size(1) == 1:
        return -torch.abs(logits)
    top2 = torch.topk(logits, k=2, dim=1)[0]
    return (top2[:, 1] - top2[:, 0]).unsqueeze(1)


def point_sample(features: torch.Tensor, point_coords: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample (N,C,H,W) ``features`` at (N,P,2) [0,1] coordinates -> (N,C,P)."""
    grid = (2.0 * point_coords - 1.0).unsqueeze(2)
    return F.grid_sample(features, grid, mode="bilinear", align_corners=False).squeeze(3)


def uncertain_points_with_randomness(
    coarse_logits: torch.Tensor, num_points: int, oversample_ratio: int, importance_sample_ratio: float
) -> torch.Tensor:
    """Training points: the most uncertain of ``oversample_ratio * num_points`` random points,
    plus uniformly random ones (``1 - importance_sample_ratio`` of them)."""
    n = coarse_logits.shape[0]
    num_sampled = num_points * oversample_ratio
    candidates = torch.rand(n, num_sampled, 2, device=coarse_logits.device)
    scores = uncertainty(point_sample(coarse_logits, candidates))[:, 0, :]
    num_uncertain = int(importance_sample_ratio * num_points)
    index = torch.topk(scores, k=num_uncertain, dim=1)[1]
    chosen = torch.gather(candidates, 1, index.unsqueeze(2).expand(-1, -1, 2))
    num_random = num_points - num_uncertain
    if num_random > 0:
        chosen = torch.cat([chosen, torch.rand(n, num_random, 2, device=coarse_logits.device)], dim=1)
    return chosen


def uncertain_grid_points(uncertainty_map: torch.Tensor, num_points: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Indices (N,P) into the flattened H*W grid of the ``num_points`` most uncertain cells and
    their [0,1] (x, y) coordinates (N,P,2), taken at the cell centres."""
    n, _, h, w = uncertainty_map.shape
    num_points = min(h * w, num_points)
    index = torch.topk(uncertainty_map.reshape(n, h * w), k=num_points, dim=1)[1]
    x = ((index % w).to(torch.float32) + 0.5) / float(w)
    y = (torch.div(index, w, rounding_mode="floor").to(torch.float32) + 0.5) / float(h)
    return index, torch.stack([x, y], dim=2)


class StandardPointHead(nn.Module):
    """Point MLP as 1x1 Conv1d layers; the coarse prediction is appended to every layer's input."""

    def __init__(self, nin: int, num_classes: int, fc_dim: int, num_fc: int) -> None:
        super().__init__()
        fc_layers = []
        dim_in = nin + num_classes
        for _ in range(num_fc):
            fc_layers.append(nn.Sequential(nn.Conv1d(dim_in, fc_dim, 1), nn.ReLU(inplace=True)))
            dim_in = fc_dim + num_classes
        self.fc_layers = nn.ModuleList(fc_layers)
        self.predictor = nn.Conv1d(dim_in, num_classes, 1)
        if on_meta(self):
            return
        for layer in self.fc_layers:
            nn.init.kaiming_normal_(layer[0].weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer[0].bias)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.zeros_(self.predictor.bias)

    def forward(self, fine_features: torch.Tensor, coarse_logits: torch.Tensor) -> torch.Tensor:
        x = torch.cat([fine_features, coarse_logits], dim=1)
        for layer in self.fc_layers:
            x = torch.cat([layer(x), coarse_logits], dim=1)
        return self.predictor(x)


class PointRendSemSegHead(nn.Module):
    """Refines coarse semantic logits with point predictions from the decoder features."""

    def __init__(self, nin: int, num_classes: int, num_fc: int = 3, train_num_points: int = 1024,
                 oversample_ratio: int = 3, importance_sample_ratio: float = 0.75,
                 subdivision_steps: int = 2, subdivision_num_points: int = 8192) -> None:
        super().__init__()
        self.train_num_points = train_num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.subdivision_steps = subdivision_steps
        self.subdivision_num_points = subdivision_num_points
        self.point_head = StandardPointHead(nin, num_classes, nin, num_fc)

    def train_points(self, coarse_logits: torch.Tensor, features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Return ``(point_logits (N,C,P), point_coords (N,P,2))`` for the PointRend loss."""
        with torch.no_grad():
            coords = uncertain_points_with_randomness(
                coarse_logits.detach(), self.train_num_points, self.oversample_ratio,
                self.importance_sample_ratio,
            )
        logits = self.point_head(point_sample(features, coords), point_sample(coarse_logits, coords))
        return logits, coords

    def render(self, coarse_logits: torch.Tensor, features: torch.Tensor, steps: int) -> torch.Tensor:
        """Upsample ``coarse_logits`` 2x ``steps`` times, re-predicting the uncertain cells."""
        logits = coarse_logits
        for _ in range(steps):
            logits = F.interpolate(logits, scale_factor=2.0, mode="bilinear", align_corners=False)
            n, c, h, w = logits.shape
            index, coords = uncertain_grid_points(uncertainty(logits), self.subdivision_num_points)
            refined = self.point_head(point_sample(features, coords), point_sample(coarse_logits, coords))
            logits = logits.reshape(n, c, h * w).scatter(
                2, index.unsqueeze(1).expand(-1, c, -1), refined.to(logits.dtype)
            )
            logits = logits.reshape(n, c, h, w)
        return logits
