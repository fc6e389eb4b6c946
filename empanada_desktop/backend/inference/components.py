"""Connected components and label bookkeeping in numpy (no scipy in this project).

Connected components work on horizontal runs instead of pixels: a label image of a million
pixels has only thousands of runs, runs of the same label in neighbouring rows are joined by a
vectorised union-find (hooking roots onto the smaller root, then pointer jumping until every
node points at its root). Every step is a whole-array numpy operation, so the cost is a few
passes over the image whatever the number or shape of the objects.
"""

from __future__ import annotations

import numpy as np


def _union_roots(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Root (smallest member) of the component of each of ``n`` nodes joined by edges a-b."""
    parent = np.arange(n, dtype=np.int64)
    while len(a):
        ra = parent[a]
        rb = parent[b]
        low = np.minimum(ra, rb)
        high = np.maximum(ra, rb)
        differ = low != high
        if not differ.any():
            break
        a, b, low, high = a[differ], b[differ], low[differ], high[differ]
        # Hook each larger root onto the smallest root it touches; roots only ever decrease, so
        # no cycle can form.
        np.minimum.at(parent, high, low)
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
    return parent


def connected_components(labels: np.ndarray, connectivity: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Split every label of a 2D image into its connected pieces.

    Args:
        labels: 2D integer label image, 0 = background.
        connectivity: 1 joins edge neighbours (4-connected), 2 also diagonal ones (8-connected).

    Returns:
        ``(components, source)``: int32 components numbered 1..n in raster order of their
        first pixel (0 = background), and ``source[k]`` = the original label of component k
        (``source[0] == 0``).
    """
    labels = np.ascontiguousarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"connected_components needs a 2D label image, got shape {labels.shape}")
    h, w = labels.shape
    if labels.size == 0:
        return np.zeros((h, w), np.int32), np.zeros(1, labels.dtype)
    flat = labels.ravel()
    starts = np.empty(flat.shape, bool)
    starts[0] = True
    np.not_equal(flat[1:], flat[:-1], out=starts[1:])
    starts[::w] = True  # a run never continues onto the next row
    run_of_pixel = (np.cumsum(starts) - 1).reshape(h, w)
    run_label = flat[starts]
    n_runs = len(run_label)

    pairs_a = []
    pairs_b = []
    top, bottom = labels[:-1], labels[1:]
    shifts = [(slice(None), slice(None))]
    if connectivity == 2:
        shifts += [(slice(None, -1), slice(1, None)), (slice(1, None), slice(None, -1))]
    elif connectivity != 1:
        raise ValueError("connectivity must be 1 or 2")
    for top_cols, bottom_cols in shifts:
        t = top[:, top_cols]
        s = bottom[:, bottom_cols]
        same = (t == s) & (t != 0)
        a = run_of_pixel[:-1, top_cols][same]
        b = run_of_pixel[1:, bottom_cols][same]
        if len(a) > 1:
            # Neighbouring pixels mostly repeat the same pair of runs: drop the repeats early.
            keep = np.empty(len(a), bool)
            keep[0] = True
            keep[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
            a, b = a[keep], b[keep]
        pairs_a.append(a)
        pairs_b.append(b)
    root = _union_roots(n_runs, np.concatenate(pairs_a), np.concatenate(pairs_b))

    foreground_runs = run_label != 0
    component_of_root = np.zeros(n_runs, np.int64)
    roots = np.unique(root[foreground_runs])  # sorted = raster order of first run
    component_of_root[roots] = np.arange(1, len(roots) + 1)
    component_of_run = np.where(foreground_runs, component_of_root[root], 0)
    components = component_of_run[run_of_pixel].astype(np.int32)
    source = np.zeros(len(roots) + 1, labels.dtype)
    source[1:] = run_label[roots]
    return components, source


def relabel_sequential(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumber the non-zero labels to 1..n (order of value); returns (new labels, old values)."""
    values, inverse = np.unique(labels, return_inverse=True)
    if len(values) and values[0] == 0:
        new = inverse.reshape(labels.shape)
        return new.astype(np.int32), values
    new = (inverse + 1).reshape(labels.shape)
    return new.astype(np.int32), np.concatenate([[0], values]).astype(values.dtype)


def overlap_table(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of non-zero labels (a_id, b_id) that share pixels, and how many pixels they share."""
    a = np.asarray(a).ravel()
    b = np.asarray(b).ravel()
    both = (a != 0) & (b != 0)
    if not both.any():
        empty = np.empty(0, np.int64)
        return empty, empty, empty
    a, b = a[both].astype(np.int64), b[both].astype(np.int64)
    # One integer key per pair, counted by bincount when the keys are few enough (a label image
    # of a slice against the previous slice's objects: ~6x faster than sorting the pairs),
    # else by a sort of the keys.
    if min(int(a.min()), int(b.min())) < 0:  # negative labels (stuff, elsewhere): sort the pairs
        pairs, counts = np.unique(np.stack([a, b], axis=1), axis=0, return_counts=True)
        return pairs[:, 0], pairs[:, 1], counts
    base = int(b.max()) + 1
    if int(a.max()) * base + base <= 1 << 24:
        counts = np.bincount(a * base + b)
        keys = np.flatnonzero(counts)
        counts = counts[keys]
    else:
        keys, counts = np.unique(a * base + b, return_counts=True)
    return keys // base, keys % base, counts


def label_areas(labels: np.ndarray) -> dict[int, int]:
    """Pixel count of each non-zero label."""
    values, counts = np.unique(labels[labels != 0], return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


def panoptic_ids(classes: np.ndarray, instances: np.ndarray, label_divisor: int) -> np.ndarray:
    """Final int32 label image: ``class * label_divisor + instance`` with connected instances.

    Every instance is split into its 8-connected pieces and the pieces are numbered 1, 2, ...
    per class in raster order; a class keeps at most ``label_divisor - 1`` pieces (the largest)
    so that ids never spill into the next class. Pixels without an instance get
    ``class * label_divisor`` (stuff), background stays 0.
    """
    classes = np.asarray(classes)
    components, _ = connected_components(np.asarray(instances))
    n = int(components.max(initial=0))
    out = (classes.astype(np.int64) * label_divisor) * (components == 0)
    if n == 0:
        return out.astype(np.int32)
    flat = components.ravel()
    inside = flat > 0
    component_class = np.zeros(n + 1, np.int64)
    component_class[flat[inside]] = classes.ravel()[inside]
    area = np.bincount(flat, minlength=n + 1)
    rank = np.zeros(n + 1, np.int64)
    for c in np.unique(component_class[1:]):
        members = np.flatnonzero(component_class == c)
        members = members[members > 0]
        if len(members) >= label_divisor:
            largest = np.argsort(-area[members], kind="stable")[: label_divisor - 1]
            members = np.sort(members[largest])
        rank[members] = np.arange(1, len(members) + 1)
    ids = np.where(rank > 0, component_class * label_divisor + rank, 0)
    ids[0] = 0
    out = np.where(components > 0, ids[components], out)
    return out.astype(np.int32)
