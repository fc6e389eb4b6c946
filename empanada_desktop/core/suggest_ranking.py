"""Ranking candidate patches for annotation: uncertain first, spread out, not already labelled.

Pure numpy. The backend (``backend/suggest``) measures a per-pixel uncertainty map on some
slices and turns it into :class:`Candidate` patches (a box, its mean uncertainty and an optional
feature vector from the model's encoder); this module picks ``n`` of them:

1. candidates overlapping an already-labelled patch by more than ``max_overlap`` are dropped;
2. a pool of the most uncertain candidates is kept (``pool_factor * n``, at least 32, and all
   candidates tied with the last one);
3. the first pick is the most uncertain candidate; every next pick maximises
   ``score ** (1 - diversity) * distance ** diversity``, where ``distance`` is the candidate's
   distance to the nearest patch picked so far (a greedy k-center step, weighted by
   uncertainty), mixing encoder-feature distance and distance in the volume. Candidates
   overlapping a picked patch by more than ``max_overlap`` are never picked.

Overlap is the intersection area over the smaller box's area, for boxes of the same slice of the
same plane (boxes of different slices or planes share at most a line: overlap 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from empanada_desktop.core.patches import PatchBox

DEFAULT_MAX_OVERLAP = 0.25
MIN_POOL = 32  # the greedy choice always considers at least this many candidates


@dataclass(frozen=True, eq=False)
class Candidate:
    """A patch that could be suggested.

    Attributes:
        box: where it is (plane, slice index, top-left row/col in the slice, size).
        score: its uncertainty (mean of the per-pixel map over the box; higher = ask first).
        features: an optional 1D vector describing its content (pooled encoder features);
            candidates without features are spread by position only.
        signals: the mean of each separate uncertainty signal over the box (for reports).
    """

    box: PatchBox
    score: float
    features: np.ndarray | None = None
    signals: Mapping[str, float] = field(default_factory=dict)


def box_origin_zyx(box: PatchBox) -> tuple[int, int, int]:
    """The (z, y, x) voxel of a box's top-left corner in its (Z, Y, X) volume."""
    if box.plane == "xy":
        return (box.index, box.row, box.col)
    if box.plane == "xz":
        return (box.row, box.index, box.col)
    if box.plane == "yz":
        return (box.row, box.col, box.index)
    raise ValueError(f"plane must be xy, xz or yz, not {box.plane!r}")


def box_center_zyx(box: PatchBox) -> np.ndarray:
    """The (z, y, x) centre of a box, as floats."""
    half = (box.size - 1) / 2.0
    z, y, x = box_origin_zyx(box)
    if box.plane == "xy":
        return np.array([z, y + half, x + half])
    if box.plane == "xz":
        return np.array([z + half, y, x + half])
    return np.array([z + half, y + half, x])


def overlap_fraction(a: PatchBox, b: PatchBox) -> float:
    """Intersection area over the smaller box's area; 0 for different slices or planes."""
    if a.plane != b.plane or a.index != b.index:
        return 0.0
    rows = min(a.row + a.size, b.row + b.size) - max(a.row, b.row)
    cols = min(a.col + a.size, b.col + b.size) - max(a.col, b.col)
    if rows <= 0 or cols <= 0:
        return 0.0
    return rows * cols / float(min(a.size, b.size) ** 2)


def grid_positions(length: int, size: int, stride: int) -> list[int]:
    """Start positions of windows of ``size`` every ``stride`` along ``length``, the last flush
    with the end (so the whole length is covered)."""
    if size > length:
        raise ValueError(f"window {size} is larger than the length {length}")
    stride = max(1, int(stride))
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


def window_means(values: np.ndarray, size: int, rows: Sequence[int], cols: Sequence[int]) -> np.ndarray:
    """Mean of a 2D map over the ``size`` x ``size`` windows at (rows[i], cols[j]), via an
    integral image: shape (len(rows), len(cols))."""
    values = np.asarray(values, dtype=np.float64)
    integral = np.zeros((values.shape[0] + 1, values.shape[1] + 1))
    np.cumsum(np.cumsum(values, axis=0), axis=1, out=integral[1:, 1:])
    r = np.asarray(rows, dtype=np.int64)[:, None]
    c = np.asarray(cols, dtype=np.int64)[None, :]
    total = integral[r + size, c + size] - integral[r, c + size] - integral[r + size, c] + integral[r, c]
    return total / float(size * size)


def exclude_labelled(
    candidates: Sequence[Candidate], labelled: Sequence[PatchBox], max_overlap: float = DEFAULT_MAX_OVERLAP
) -> list[int]:
    """Indices of the candidates that overlap no labelled box by more than ``max_overlap``."""
    keep = []
    by_slice: dict[tuple[str, int], list[PatchBox]] = {}
    for box in labelled:
        by_slice.setdefault((box.plane, box.index), []).append(box)
    for i, candidate in enumerate(candidates):
        others = by_slice.get((candidate.box.plane, candidate.box.index), ())
        if all(overlap_fraction(candidate.box, other) <= max_overlap for other in others):
            keep.append(i)
    return keep


def rank_patches(
    candidates: Sequence[Candidate],
    n: int,
    *,
    labelled: Sequence[PatchBox] = (),
    max_overlap: float = DEFAULT_MAX_OVERLAP,
    diversity: float = 0.5,
    spatial_weight: float = 0.5,
    pool_factor: int = 4,
) -> list[int]:
    """Pick up to ``n`` candidates; returns their indices in rank order (see the module docstring).

    Args:
        candidates: the patches to choose from.
        n: how many to pick.
        labelled: patches already annotated; candidates overlapping them are excluded.
        max_overlap: largest allowed overlap (fraction of a box) between two picks, and between
            a pick and a labelled patch.
        diversity: 0 ranks by uncertainty alone (only the overlap rule spreads the picks); 1 is
            plain greedy k-center on the distances; in between, both must be high.
        spatial_weight: share of the distance that is distance in the volume (the rest is
            encoder-feature distance); 1 when candidates carry no features.
        pool_factor: the greedy choice considers the ``pool_factor * n`` most uncertain
            candidates; it falls back to the rest only when overlaps exhaust the pool.
    """
    if n <= 0 or not candidates:
        return []
    if not 0.0 <= diversity <= 1.0:
        raise ValueError(f"diversity must be within 0..1, not {diversity}")
    if not 0.0 <= max_overlap <= 1.0:
        raise ValueError(f"max_overlap must be within 0..1, not {max_overlap}")
    allowed = exclude_labelled(candidates, labelled, max_overlap)
    if not allowed:
        return []
    scores = np.array([float(candidates[i].score) for i in allowed])
    ranked = np.argsort(-scores, kind="stable")
    order = [allowed[i] for i in ranked]
    size = min(len(order), max(int(pool_factor) * int(n), MIN_POOL))
    cutoff = scores[ranked[size - 1]]
    size += int(np.sum(scores[ranked[size:]] >= cutoff))  # candidates tied with the last one too
    pool = order[:size]
    rest = order[len(pool):]
    picked = _greedy(candidates, pool, n, max_overlap, diversity, spatial_weight)
    for index in rest:  # the pool ran out (overlaps): continue by uncertainty alone
        if len(picked) >= n:
            break
        if all(overlap_fraction(candidates[index].box, candidates[p].box) <= max_overlap for p in picked):
            picked.append(index)
    return picked


def _distances(candidates: Sequence[Candidate], pool: Sequence[int], spatial_weight: float) -> np.ndarray:
    """Pairwise distances within the pool, each part scaled to a maximum of 1."""
    centers = np.stack([box_center_zyx(candidates[i].box) for i in pool])
    spatial = _pairwise(centers)
    feats = [candidates[i].features for i in pool]
    if any(f is None for f in feats) or spatial_weight >= 1.0:
        return _unit(spatial)
    features = np.stack([np.asarray(f, dtype=np.float64).ravel() for f in feats])
    return spatial_weight * _unit(spatial) + (1.0 - spatial_weight) * _unit(_pairwise(features))


def _pairwise(points: np.ndarray) -> np.ndarray:
    sq = np.sum(points * points, axis=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * points @ points.T
    return np.sqrt(np.maximum(d2, 0.0))


def _unit(d: np.ndarray) -> np.ndarray:
    top = float(d.max()) if d.size else 0.0
    return d / top if top > 0 else d


def _greedy(candidates, pool, n, max_overlap, diversity, spatial_weight) -> list[int]:
    scores = np.array([max(float(candidates[i].score), 0.0) for i in pool])
    top = float(scores.max())
    scores = scores / top if top > 0 else np.ones_like(scores)
    distance = _distances(candidates, pool, spatial_weight)
    nearest = np.full(len(pool), np.inf)  # distance to the nearest pick so far
    blocked = np.zeros(len(pool), bool)
    chosen: list[int] = []
    for _ in range(min(n, len(pool))):
        open_ = ~blocked
        if chosen:
            open_[chosen] = False
        if not open_.any():
            break
        if not chosen:
            gain = np.where(open_, scores, -np.inf)
        else:
            d = np.where(open_, nearest, 0.0)
            top_d = float(d.max())
            d = d / top_d if top_d > 0 else np.zeros_like(d)
            gain = np.where(open_, scores ** (1.0 - diversity) * d ** diversity, -np.inf)
        pick = int(np.argmax(gain))
        chosen.append(pick)
        nearest = np.minimum(nearest, distance[pick])
        box = candidates[pool[pick]].box
        for j in np.flatnonzero(open_):
            if overlap_fraction(box, candidates[pool[j]].box) > max_overlap:
                blocked[j] = True
    return [pool[i] for i in chosen]
