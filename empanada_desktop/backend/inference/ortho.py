"""Ortho-plane consensus: combine the xy, xz and yz segmentations of a volume.

A voxel is kept when at least ``vote_thr`` of the three planes labelled it (with
``allow_one_view``, also when it belongs to an object that no other plane found at all). Object
identity comes from the xy result; an xz or yz object takes the id of the xy (or xz) object it
overlaps most, or a new id when it overlaps none. Everything streams over z through the
memory-mapped work files; the result replaces the xy work file in place.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from empanada_desktop.backend.events import Progress
from empanada_desktop.backend.inference.components import overlap_table
from empanada_desktop.backend.inference.volume_io import ObjectStats


class _PairCounts:
    def __init__(self):
        self.parts: list[np.ndarray] = []

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        ia, ib, n = overlap_table(np.maximum(a, 0), np.maximum(b, 0))
        if len(n):
            self.parts.append(np.stack([ia, ib, n], axis=1))

    def total(self) -> np.ndarray:
        """(k, 3) rows (a_id, b_id, voxels shared), one per pair."""
        if not self.parts:
            return np.zeros((0, 3), np.int64)
        rows = np.concatenate(self.parts)
        pairs, inverse = np.unique(rows[:, :2], axis=0, return_inverse=True)
        counts = np.bincount(inverse.ravel(), weights=rows[:, 2]).astype(np.int64)
        return np.column_stack([pairs, counts])


def _best_partner(rows: np.ndarray, n: int) -> np.ndarray:
    """For ids 0..n of the second column, the first-column id sharing most voxels (0 = none)."""
    best = np.zeros(n + 1, np.int64)
    if len(rows):
        order = np.lexsort((-rows[:, 2], rows[:, 1]))
        rows = rows[order]
        first = np.ones(len(rows), bool)
        first[1:] = rows[1:, 1] != rows[:-1, 1]
        best[rows[first, 1]] = rows[first, 0]
    return best


def _seen(rows: np.ndarray, column: int, n: int) -> np.ndarray:
    seen = np.zeros(n + 1, bool)
    if len(rows):
        seen[rows[:, column]] = True
    return seen


def consensus(works, stats: list[ObjectStats], config, stop, clock) -> Iterator[Progress]:
    """Vote the three planes into ``works[0]``; returns the merged ObjectStats (None if stopped)."""
    xy, xz, yz = works
    sa, sb, sc = stats
    ab, ac, bc = _PairCounts(), _PairCounts(), _PairCounts()
    depth = xy.shape[0]
    for z in range(depth):
        if stop():
            return None
        a, b, c = np.asarray(xy[z]), np.asarray(xz[z]), np.asarray(yz[z])
        ab.add(a, b)
        ac.add(a, c)
        bc.add(b, c)
        yield clock.tick(f"comparing planes, slice {z + 1}/{depth}")
    ab, ac, bc = ab.total(), ac.total(), bc.total()

    merged = ObjectStats()
    merged.new(sa.classes)  # xy objects keep their ids
    map_b = _best_partner(ab, sb.n)
    fresh = np.flatnonzero(map_b[1:] == 0) + 1
    if len(fresh):
        map_b[fresh] = merged.new(np.asarray(sb.classes)[fresh - 1])
    map_c = _best_partner(ac, sc.n)
    via_b = _best_partner(bc, sc.n)
    from_b = (map_c == 0) & (via_b > 0)
    map_c[from_b] = map_b[via_b[from_b]]
    fresh = np.flatnonzero(map_c[1:] == 0) + 1
    if len(fresh):
        map_c[fresh] = merged.new(np.asarray(sc.classes)[fresh - 1])
    map_b[0] = map_c[0] = 0

    lonely = None
    if config.allow_one_view:
        lonely = (
            ~(_seen(ab, 0, sa.n) | _seen(ac, 0, sa.n)),
            ~(_seen(ab, 1, sb.n) | _seen(bc, 0, sb.n)),
            ~(_seen(ac, 1, sc.n) | _seen(bc, 1, sc.n)),
        )
        for flags in lonely:
            flags[0] = False

    for z in range(depth):
        if stop():
            return None
        a, b, c = np.asarray(xy[z]), np.asarray(xz[z]), np.asarray(yz[z])
        votes = (a != 0).astype(np.int8) + (b != 0) + (c != 0)
        keep = votes >= config.vote_thr
        if lonely is not None:
            keep |= lonely[0][np.maximum(a, 0)] | lonely[1][np.maximum(b, 0)] | lonely[2][np.maximum(c, 0)]
        things = np.where(a > 0, a, np.where(b > 0, map_b[np.maximum(b, 0)], map_c[np.maximum(c, 0)]))
        stuff = np.where(a < 0, a, np.where(b < 0, b, np.minimum(c, 0)))
        result = np.where(keep, np.where(things > 0, things, stuff), 0).astype(np.int32)
        xy[z] = result
        merged.add_slice(result, "xy", z)
        yield clock.tick(f"combining planes, slice {z + 1}/{depth}")
    return merged
