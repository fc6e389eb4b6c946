"""Panoptic-DeepLab post-processing in torch (docs/EMPANADA_FORMATS.md section 6), CPU or CUDA.

From the model's outputs to two maps: the semantic class of every pixel and an instance id for
every pixel of a thing class. Steps:

1. semantic: sigmoid >= confidence for one channel, argmax of the softmax for several (the
   channel index is the class id, 0 = background);
2. centers: heatmap values above the center threshold that equal the max-pool of their
   ``nms_kernel`` window;
3. grouping: each thing pixel goes to the center nearest to (its coordinate + its offset). Only
   thing pixels are grouped, in chunks of pixels so that the (pixels x centers) distance block
   stays under a fixed number of elements whatever the image size;
4. merge: each instance takes the majority class of its pixels; stuff regions smaller than
   ``stuff_area`` become void; at most ``max_objects`` instances per class (the most confident
   centers).

Coordinates: the center heatmap and offsets come on a coarse grid (1/4 of the model input, or
the model input itself for fine boundaries). ``cell`` is how many output pixels one grid cell
covers, ``unit`` how many model-input pixels (the unit of the offsets) one grid step is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Largest (pixels x centers) distance block computed at once: 16 M floats = 64 MB.
GROUPING_BLOCK_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class PostprocessParams:
    confidence_thr: float = 0.5
    center_confidence_thr: float = 0.1
    nms_kernel: int = 3
    thing_list: tuple[int, ...] = (1,)
    stuff_area: int = 64
    void_label: int = 0
    max_objects: int = 100_000


def semantic_probabilities(sem_logits: torch.Tensor) -> torch.Tensor:
    """(C, H, W) logits -> probabilities: sigmoid for one channel, softmax for several."""
    if sem_logits.shape[0] == 1:
        return torch.sigmoid(sem_logits.float())
    return torch.softmax(sem_logits.float(), dim=0)


def harden(probs: torch.Tensor, confidence_thr: float) -> torch.Tensor:
    """(C, H, W) probabilities -> (H, W) long class ids (0 = background)."""
    if probs.shape[0] == 1:
        return (probs[0] >= confidence_thr).long()
    return torch.argmax(probs, dim=0)


def find_centers(
    ctr_hmp: torch.Tensor, threshold: float, nms_kernel: int, max_centers: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Local maxima of a (H, W) center heatmap above ``threshold``.

    Returns ``(centers (K, 2) long as (y, x), scores (K,))`` sorted by raster position. With
    ``max_centers`` only the highest-scoring ones are kept.
    """
    hmp = ctr_hmp.float()
    hmp = torch.where(hmp > threshold, hmp, torch.full_like(hmp, -1.0))
    pooled = F.max_pool2d(hmp[None, None], nms_kernel, stride=1, padding=nms_kernel // 2)[0, 0]
    if nms_kernel % 2 == 0:
        pooled = pooled[: hmp.shape[0], : hmp.shape[1]]
    peaks = (hmp == pooled) & (hmp > 0)
    centers = torch.nonzero(peaks)
    scores = hmp[peaks]
    if max_centers is not None and len(scores) > max_centers:
        keep = torch.topk(scores, max_centers).indices.sort().values
        centers, scores = centers[keep], scores[keep]
    return centers, scores


def group_pixels(
    centers: torch.Tensor, offsets: torch.Tensor, mask: torch.Tensor, unit: float = 1.0
) -> torch.Tensor:
    """Instance id (1..K) of every masked pixel of the grid; 0 elsewhere.

    Args:
        centers: (K, 2) grid coordinates (y, x) of the centers, K >= 1.
        offsets: (2, H, W) offsets (dy, dx) in model-input pixels.
        mask: (H, W) bool, the pixels to group.
        unit: model-input pixels per grid step.
    """
    ids = torch.zeros(mask.shape, dtype=torch.long, device=offsets.device)
    pixels = torch.nonzero(mask)
    if len(pixels) == 0 or len(centers) == 0:
        return ids
    targets = pixels.to(offsets.dtype) * unit + offsets[:, pixels[:, 0], pixels[:, 1]].T
    ctr = centers.to(offsets.dtype) * unit
    chunk = max(1, GROUPING_BLOCK_ELEMENTS // len(ctr))
    nearest = torch.empty(len(pixels), dtype=torch.long, device=offsets.device)
    for start in range(0, len(pixels), chunk):
        t = targets[start : start + chunk]
        dy = t[:, None, 0] - ctr[None, :, 0]
        dx = t[:, None, 1] - ctr[None, :, 1]
        nearest[start : start + chunk] = torch.argmin(dy * dy + dx * dx, dim=1)
    ids[pixels[:, 0], pixels[:, 1]] = nearest + 1
    return ids


def _upsample_cells(cells: torch.Tensor, cell: int, shape: tuple[int, int]) -> torch.Tensor:
    if cell > 1:
        cells = cells.repeat_interleave(cell, dim=0).repeat_interleave(cell, dim=1)
    return cells[: shape[0], : shape[1]]


def _thing_mask(classes: torch.Tensor, thing_list) -> torch.Tensor:
    things = torch.tensor(list(thing_list), dtype=classes.dtype, device=classes.device)
    return torch.isin(classes, things)


def instance_cells(
    ctr_hmp: torch.Tensor,
    offsets: torch.Tensor,
    thing_mask: torch.Tensor,
    *,
    cell: int,
    unit: float,
    params: PostprocessParams,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Group the thing pixels of the output into instances.

    Args:
        ctr_hmp: (h, w) heatmap on the grid; offsets: (2, h, w).
        thing_mask: (H, W) bool at output resolution, H <= h * cell.

    Returns:
        ``(instances (H, W) long 1..K, scores (K,))`` where ``scores[k-1]`` is center k's
        heatmap value.
    """
    max_centers = params.max_objects * max(1, len(params.thing_list))
    centers, scores = find_centers(
        ctr_hmp, params.center_confidence_thr, params.nms_kernel, max_centers
    )
    shape = tuple(thing_mask.shape)
    if len(centers) == 0 or not bool(thing_mask.any()):
        return torch.zeros(shape, dtype=torch.long, device=thing_mask.device), scores
    # A grid cell needs grouping when any output pixel it covers is a thing pixel.
    h, w = ctr_hmp.shape
    padded = torch.zeros((h * cell, w * cell), dtype=torch.float32, device=thing_mask.device)
    padded[: shape[0], : shape[1]] = thing_mask.float()
    cell_mask = F.max_pool2d(padded[None, None], cell)[0, 0] > 0 if cell > 1 else padded > 0
    cells = group_pixels(centers, offsets, cell_mask.to(offsets.device), unit)
    instances = _upsample_cells(cells.to(thing_mask.device), cell, shape)
    return instances * thing_mask, scores


def merge_panoptic(
    classes: torch.Tensor,
    instances: torch.Tensor,
    scores: torch.Tensor,
    params: PostprocessParams,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Vote a class for each instance, filter stuff by area, cap instances per class.

    Returns ``(classes, instances)``: every pixel of an instance carries the instance's class;
    instances are renumbered 1..n per image (0 = none); small stuff regions and thing pixels
    without an instance become ``void_label``.
    """
    device = classes.device
    n_classes = int(classes.max().item()) + 1 if classes.numel() else 1
    thing_mask = _thing_mask(classes, params.thing_list) if params.thing_list else None
    out_classes = classes.clone()
    if thing_mask is not None:
        out_classes[thing_mask] = params.void_label
    n_instances = int(instances.max().item()) if instances.numel() else 0
    out_instances = torch.zeros_like(instances)
    if thing_mask is not None and n_instances > 0:
        inside = instances > 0
        codes = instances[inside] * n_classes + classes[inside]
        votes = torch.bincount(codes, minlength=(n_instances + 1) * n_classes)
        votes = votes.view(n_instances + 1, n_classes)
        area = votes.sum(dim=1)
        vote_class = torch.argmax(votes, dim=1)  # ties: the lower class id, deterministic
        present = area > 0
        present[0] = False
        keep = torch.zeros_like(present)
        for thing_class in params.thing_list:
            members = torch.nonzero(present & (vote_class == thing_class)).flatten()
            if len(members) > params.max_objects:
                best = torch.topk(scores[members - 1], params.max_objects).indices
                members = members[best]
            keep[members] = True
        new_id = torch.cumsum(keep.long(), dim=0) * keep
        out_instances = new_id[instances]
        kept_pixels = out_instances > 0
        out_classes[kept_pixels] = vote_class[instances][kept_pixels]
    # Stuff: non-thing classes keep their regions when large enough.
    stuff_classes = [c for c in range(1, n_classes) if c not in set(params.thing_list)]
    if stuff_classes and params.stuff_area > 0:
        area = torch.bincount(classes.flatten(), minlength=n_classes)
        for c in stuff_classes:
            if 0 < int(area[c]) < params.stuff_area:
                out_classes[classes == c] = params.void_label
    return out_classes.to(device), out_instances


def postprocess(
    probs: torch.Tensor,
    ctr_hmp: torch.Tensor | None,
    offsets: torch.Tensor | None,
    *,
    cell: int,
    unit: float,
    params: PostprocessParams,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(C, H, W) probabilities + grid heatmap/offsets -> (classes, instances), both (H, W) long.

    With an empty ``thing_list`` (semantic only) the heatmap and offsets are not used.
    """
    classes = harden(probs, params.confidence_thr)
    if not params.thing_list or ctr_hmp is None or offsets is None:
        return merge_panoptic(classes, torch.zeros_like(classes), torch.zeros(0), params)
    thing_mask = _thing_mask(classes, params.thing_list)
    instances, scores = instance_cells(
        ctr_hmp.reshape(ctr_hmp.shape[-2:]), offsets.reshape(2, *offsets.shape[-2:]), thing_mask,
        cell=cell, unit=unit, params=params,
    )
    return merge_panoptic(classes, instances, scores.to(classes.device), params)
