"""Patch geometry: random square patches, patches centred on points, flipbooks.

A volume is seen as (Z, H, W); a plane ("xy", "xz", "yz") slices it along z, y or x, giving
``n`` slices of ``rows x cols`` pixels. A ``PatchBox`` is a square of one slice of one plane.
Flipbooks (empanada's way of sampling 3D data) are 5 consecutive slices around the annotated
middle one, repeating the edge slice at the ends of the volume.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

PLANES = ("xy", "xz", "yz")
FLIPBOOK_DEPTH = 5


@dataclass(frozen=True)
class PatchBox:
    plane: str
    index: int  # slice along the plane's axis
    row: int  # top-left corner in the slice
    col: int
    size: int

    def overlaps(self, other: PatchBox) -> bool:
        return (self.plane == other.plane and self.index == other.index
                and abs(self.row - other.row) < max(self.size, other.size)
                and abs(self.col - other.col) < max(self.size, other.size))

    def to_dict(self) -> dict:
        return asdict(self)


def plane_shape(shape3d: Sequence[int], plane: str) -> tuple[int, int, int]:
    """(n_slices, rows, cols) of a (Z, H, W) volume cut along ``plane``."""
    z, h, w = (int(v) for v in shape3d)
    if plane == "xy":
        return (z, h, w)
    if plane == "xz":
        return (h, z, w)
    if plane == "yz":
        return (w, z, h)
    raise ValueError(f"plane must be one of {PLANES}, not {plane!r}")


def fit_size(size: int, rows: int, cols: int) -> int:
    """The patch size, shrunk to fit the slice if the slice is smaller."""
    return int(max(1, min(int(size), rows, cols)))


def centred_box(plane: str, index: int, center: tuple[float, float], size: int,
                rows: int, cols: int) -> PatchBox:
    """A square of ``size`` centred on (row, col), shifted to lie inside rows x cols."""
    size = fit_size(size, rows, cols)
    row = int(np.clip(int(round(center[0] - size / 2)), 0, rows - size))
    col = int(np.clip(int(round(center[1] - size / 2)), 0, cols - size))
    return PatchBox(plane, int(index), row, col, size)


def random_patches(shape3d: Sequence[int], n: int, size: int, rng: np.random.Generator, *,
                   planes: Sequence[str] = ("xy",), index: int | None = None,
                   valid_shapes: Sequence[tuple[int, int]] | None = None,
                   avoid: Sequence[PatchBox] = (), max_tries: int = 50) -> list[PatchBox]:
    """Up to ``n`` random, non-overlapping patches.

    Args:
        planes: planes to draw from (several for isotropic volumes).
        index: only this slice (else any slice).
        valid_shapes: per xy slice, the (rows, cols) that hold real pixels (a "2D stack" of
            images of different sizes padded to one shape).
        avoid: patches already picked, not to overlap.
    """
    chosen: list[PatchBox] = []
    taken = list(avoid)
    for _ in range(int(n)):
        for _try in range(max_tries):
            plane = str(planes[int(rng.integers(len(planes)))])
            n_slices, rows, cols = plane_shape(shape3d, plane)
            slice_index = int(rng.integers(n_slices)) if index is None else int(index)
            if valid_shapes is not None and plane == "xy":
                rows, cols = valid_shapes[slice_index]
            edge = fit_size(size, rows, cols)
            box = PatchBox(plane, slice_index, int(rng.integers(rows - edge + 1)),
                           int(rng.integers(cols - edge + 1)), edge)
            if not any(box.overlaps(other) for other in taken):
                chosen.append(box)
                taken.append(box)
                break
    return chosen


def patches_at_points(shape3d: Sequence[int], points: Sequence[tuple[str, int, float, float]],
                      size: int, *, n: int | None = None, rng: np.random.Generator | None = None,
                      valid_shapes: Sequence[tuple[int, int]] | None = None) -> list[PatchBox]:
    """Patches centred on clicked ``points`` [(plane, index, row, col), ...]: all, or ``n`` random."""
    points = list(points)
    if n is not None and n < len(points):
        rng = rng or np.random.default_rng()
        points = [points[i] for i in sorted(rng.choice(len(points), size=int(n), replace=False))]
    boxes = []
    for plane, index, row, col in points:
        _, rows, cols = plane_shape(shape3d, plane)
        if valid_shapes is not None and plane == "xy":
            rows, cols = valid_shapes[int(index)]
        boxes.append(centred_box(plane, index, (row, col), size, rows, cols))
    return boxes


def flipbook_indices(index: int, n_slices: int, depth: int = FLIPBOOK_DEPTH) -> list[int]:
    """The ``depth`` slice indices around ``index``, repeating the first/last slice at the ends."""
    half = depth // 2
    return [int(np.clip(index + k, 0, n_slices - 1)) for k in range(-half, depth - half)]


def _slicer(box: PatchBox, index: int) -> tuple:
    rows = slice(box.row, box.row + box.size)
    cols = slice(box.col, box.col + box.size)
    if box.plane == "xy":
        return (index, rows, cols)
    if box.plane == "xz":
        return (rows, index, cols)
    return (rows, cols, index)


def crop(volume3d: np.ndarray, box: PatchBox, index: int | None = None) -> np.ndarray:
    """The patch's pixels (reads only the patch from a memory-mapped volume)."""
    return np.array(volume3d[_slicer(box, box.index if index is None else index)])


def crop_flipbook(volume3d: np.ndarray, box: PatchBox, depth: int = FLIPBOOK_DEPTH) -> np.ndarray:
    """(depth, size, size): the patch in the slices around its own; the middle one is annotated."""
    n_slices = plane_shape(volume3d.shape, box.plane)[0]
    return np.stack([crop(volume3d, box, i) for i in flipbook_indices(box.index, n_slices, depth)])


def patch_name(stem: str, box: PatchBox) -> str:
    """A file name stem that says where the patch came from (unique per box)."""
    return f"{stem}-{box.plane}{box.index:04d}-r{box.row}-c{box.col}-s{box.size}"
