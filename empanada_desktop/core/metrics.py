"""Segmentation quality: semantic IoU, panoptic quality (PQ = SQ x RQ) and F1 at IoU 0.5.

Instances are matched one to one when their IoU is above ``iou_thr`` (0.5 by default; above 0.5
a match is unique, so no assignment problem needs solving). Everything is computed from one
contingency table of (predicted label, true label) pixel pairs built with ``np.unique``, so the
cost is one sort of the foreground pixels whatever the number of objects.

Per-image results keep raw counts (true/false positives, summed IoU, intersection and union) so
that :func:`aggregate` pools a whole validation set the way the PQ paper does, instead of
averaging per-image ratios (which over-weights images with few objects).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}")
    return pred, gt


def semantic_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of the foreground (label > 0) of two label images; 1.0 when both are empty."""
    pred, gt = _check_pair(pred, gt)
    p = pred > 0
    g = gt > 0
    union = int(np.count_nonzero(p | g))
    if union == 0:
        return 1.0
    return float(np.count_nonzero(p & g)) / union


def _contingency(pred: np.ndarray, gt: np.ndarray):
    """Areas of every label and intersections of every overlapping (pred, gt) pair."""
    p = pred.ravel()
    g = gt.ravel()
    pred_ids, pred_area = np.unique(p[p > 0], return_counts=True)
    gt_ids, gt_area = np.unique(g[g > 0], return_counts=True)
    both = (p > 0) & (g > 0)
    if not both.any():
        return pred_area, gt_area, np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64)
    # Compact labels to 0..n-1 so that the pair code cannot overflow whatever the label values.
    p_idx = np.searchsorted(pred_ids, p[both])
    g_idx = np.searchsorted(gt_ids, g[both])
    codes, inter = np.unique(p_idx.astype(np.int64) * len(gt_ids) + g_idx, return_counts=True)
    return pred_area, gt_area, codes // len(gt_ids), codes % len(gt_ids), inter


def panoptic_quality(pred_labels: np.ndarray, gt_labels: np.ndarray, iou_thr: float = 0.5) -> dict:
    """Match instances of two label images and score them.

    Args:
        pred_labels: predicted instance (or panoptic) ids, 0 = background.
        gt_labels: true instance ids, same shape.
        iou_thr: a pair matches when its IoU is strictly above this (must be >= 0.5 so that
            matches are unique).

    Returns:
        ``dict(pq, sq, rq, f1, tp, fp, fn, iou_sum, intersection, union)``. With no objects in
        either image every score is 1.0 (nothing to find, nothing found wrongly).
    """
    if iou_thr < 0.5:
        raise ValueError("iou_thr must be at least 0.5 for one-to-one matching")
    pred, gt = _check_pair(pred_labels, gt_labels)
    pred_area, gt_area, pi, gi, inter = _contingency(pred, gt)
    iou = inter / (pred_area[pi] + gt_area[gi] - inter) if len(inter) else np.empty(0)
    matched = iou > iou_thr
    tp = int(np.count_nonzero(matched))
    fp = len(pred_area) - tp
    fn = len(gt_area) - tp
    iou_sum = float(iou[matched].sum())
    fg_inter = int(np.count_nonzero((pred > 0) & (gt > 0)))
    fg_union = int(np.count_nonzero((pred > 0) | (gt > 0)))
    result = _scores(tp, fp, fn, iou_sum)
    result.update(tp=tp, fp=fp, fn=fn, iou_sum=iou_sum, intersection=fg_inter, union=fg_union)
    return result


def _scores(tp: int, fp: int, fn: int, iou_sum: float) -> dict:
    if tp + fp + fn == 0:
        return {"pq": 1.0, "sq": 1.0, "rq": 1.0, "f1": 1.0}
    sq = iou_sum / tp if tp else 0.0
    rq = tp / (tp + 0.5 * fp + 0.5 * fn)
    # F1 at the matching threshold equals RQ; both names are kept because users know both.
    return {"pq": sq * rq, "sq": sq, "rq": rq, "f1": 2 * tp / (2 * tp + fp + fn)}


def aggregate(results: Iterable[Mapping]) -> dict:
    """Pool per-image :func:`panoptic_quality` results into ``dict(iou, pq, sq, rq, f1, ...)``.

    Counts are summed over images before the ratios are taken. An empty list raises ValueError.
    """
    results = list(results)
    if not results:
        raise ValueError("no results to aggregate")
    tp = sum(int(r["tp"]) for r in results)
    fp = sum(int(r["fp"]) for r in results)
    fn = sum(int(r["fn"]) for r in results)
    iou_sum = sum(float(r["iou_sum"]) for r in results)
    inter = sum(int(r["intersection"]) for r in results)
    union = sum(int(r["union"]) for r in results)
    out = _scores(tp, fp, fn, iou_sum)
    out["iou"] = inter / union if union else 1.0
    out.update(tp=tp, fp=fp, fn=fn, images=len(results))
    return out
