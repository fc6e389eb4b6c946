"""Bounded-memory volume plumbing for 3D inference: lazy slices in, labels streamed to disk.

The input is any (Z, Y, X) array-like, typically a read-only ``numpy.memmap`` of an
uncompressed TIFF, read one slice at a time. Intermediate labels go to raw ``numpy.memmap`` work
files next to the output, and the result is written slice by slice into a memory-mapped TIFF
(``tifffile.memmap``): at no point does a whole volume sit in RAM.

Work-file encoding: a positive value is a 3D object id, ``-c`` is stuff of class ``c``, 0 is
background.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

from empanada_desktop.core.atomic import atomic_path
from empanada_desktop.core.disk_space import preallocate
from empanada_desktop.core.errors import ImageReadError

AXES = {"xy": 0, "xz": 1, "yz": 2}
_LOW, _HIGH = 0.5, 99.5


def check_volume(volume, where: str = "volume"):
    """A (Z, Y, X) array-like with content, or ImageReadError saying what is wrong."""
    shape = tuple(getattr(volume, "shape", ()))
    if len(shape) == 2:
        return volume[np.newaxis]
    if len(shape) != 3:
        hint = " (an RGB stack? convert it to grayscale)" if len(shape) == 4 and shape[-1] in (3, 4) else ""
        raise ImageReadError(
            f"{where} has shape {shape}; stack inference needs one grayscale (Z, Y, X) volume{hint}"
        )
    if 0 in shape:
        raise ImageReadError(f"{where} is empty (shape {shape}); open a volume with content")
    return volume


class SliceSource:
    """Slices of a volume along a plane, as uint8, with one intensity scaling for the volume.

    Non-8-bit volumes are scaled with the 0.5th..99.5th percentiles of a sample of slices (the
    same scaling for every slice, unlike scaling each slice on its own); ``note`` says so.
    """

    def __init__(self, volume, scaling: tuple[float, float] | None = None):
        """``scaling`` (low, scale) reuses another source's intensity scaling (a block of a volume
        takes the whole volume's, so that every block is scaled alike)."""
        self.volume = volume
        self.shape = tuple(volume.shape)
        self.dtype = np.dtype(volume.dtype)
        self.note: str | None = None
        self.low = 0.0
        self.scale = 1.0
        if scaling is not None:
            self.low, self.scale = float(scaling[0]), float(scaling[1])
        elif self.dtype != np.uint8:
            if not (np.issubdtype(self.dtype, np.integer) or np.issubdtype(self.dtype, np.floating)):
                raise ImageReadError(f"volume of type {self.dtype} cannot be converted to 8-bit")
            self._fit_scaling()

    def _fit_scaling(self) -> None:
        z = self.shape[0]
        picks = np.unique(np.linspace(0, z - 1, min(z, 16)).astype(int))
        step = max(1, int(np.sqrt(self.shape[1] * self.shape[2] / 250_000)))
        sample = np.concatenate([np.asarray(self.volume[i, ::step, ::step]).ravel() for i in picks])
        sample = sample[np.isfinite(sample)] if sample.dtype.kind == "f" else sample
        kind = f"{self.dtype.itemsize * 8}-bit" + (" float" if self.dtype.kind == "f" else "")
        if sample.size == 0:
            self.note = f"{kind} volume without valid values: treated as black"
            return
        if self.dtype.kind in "iu" and sample.min() >= 0 and sample.max() <= 255:
            self.note = f"{kind} volume with values within 0..255 used as 8-bit"
            return
        low, high = np.percentile(sample, [_LOW, _HIGH])
        high = high if high > low else low + 1.0
        self.low, self.scale = float(low), 255.0 / float(high - low)
        self.note = (
            f"{kind} volume scaled to 8-bit: {low:.4g}..{high:.4g} ({_LOW}th..{_HIGH}th percentile)"
            " -> 0..255, the same for every slice"
        )

    def count(self, plane: str) -> int:
        return self.shape[AXES[plane]]

    def get(self, plane: str, index: int) -> np.ndarray:
        axis = AXES[plane]
        raw = np.asarray(self.volume[(slice(None),) * axis + (index,)])
        if self.dtype == np.uint8:
            return np.ascontiguousarray(raw)
        plane_f = (raw.astype(np.float32) - np.float32(self.low)) * np.float32(self.scale)
        np.nan_to_num(plane_f, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
        return np.clip(np.rint(plane_f), 0, 255).astype(np.uint8)


def put_slice(work: np.ndarray, plane: str, index: int, labels2d: np.ndarray) -> None:
    work[(slice(None),) * AXES[plane] + (index,)] = labels2d


def get_slice(work: np.ndarray, plane: str, index: int) -> np.ndarray:
    return np.asarray(work[(slice(None),) * AXES[plane] + (index,)])


def work_file(folder: Path, name: str, shape) -> np.memmap:
    """A zeroed int32 memory-mapped work file; its disk space is reserved first, so that a full
    disk is an OSError here rather than a crash (SIGBUS) in the middle of the run."""
    path = folder / f"{name}.raw"
    path.touch()
    preallocate(path, int(np.prod(shape)) * 4)
    return np.memmap(path, dtype=np.int32, mode="r+", shape=tuple(shape))


@dataclass
class ObjectStats:
    """Per-3D-object class, voxel count and bounding box, grown as objects appear."""

    classes: list[int] = field(default_factory=list)
    counts: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    lo: np.ndarray = field(default_factory=lambda: np.full((1, 3), np.iinfo(np.int64).max))
    hi: np.ndarray = field(default_factory=lambda: np.full((1, 3), -1, np.int64))

    @property
    def n(self) -> int:
        return len(self.classes)

    def new(self, classes) -> np.ndarray:
        """Allocate ids for new objects of the given classes; returns the ids."""
        first = self.n + 1
        self.classes.extend(int(c) for c in classes)
        grow = self.n + 1 - len(self.counts)
        if grow > 0:
            size = max(grow, len(self.counts))
            self.counts = np.concatenate([self.counts, np.zeros(size, np.int64)])
            self.lo = np.concatenate([self.lo, np.full((size, 3), np.iinfo(np.int64).max)])
            self.hi = np.concatenate([self.hi, np.full((size, 3), -1, np.int64)])
        return np.arange(first, self.n + 1)

    def add_slice(self, ids2d: np.ndarray, plane: str, index: int) -> None:
        """Count the positive ids of a slice and grow their bounding boxes."""
        ys, xs = np.nonzero(ids2d > 0)
        if len(ys) == 0:
            return
        ids = ids2d[ys, xs].astype(np.int64)
        np.add.at(self.counts, ids, 1)
        axis = AXES[plane]
        coords = [ys, xs]
        coords.insert(axis, np.full(len(ys), index))
        for dim, values in enumerate(coords):
            np.minimum.at(self.lo[:, dim], ids, values)
            np.maximum.at(self.hi[:, dim], ids, values)

    def keep_mask(self, min_size: int, min_extent: int) -> np.ndarray:
        """Boolean over ids 0..n: objects at least ``min_size`` voxels and ``min_extent`` thick."""
        n = self.n
        extent = (self.hi[: n + 1] - self.lo[: n + 1] + 1).min(axis=1)
        keep = (self.counts[: n + 1] >= min_size) & (extent >= min_extent)
        keep[0] = False
        return keep


def final_lookup(
    stats: ObjectStats, keep: np.ndarray, *, instance_ids: bool, label_divisor: int
) -> np.ndarray:
    """Map object ids 0..n to output ids: 1..N, or ``class * divisor + k`` per class.

    A class keeps at most ``label_divisor - 1`` objects (the largest) in panoptic mode.
    """
    lut = np.zeros(stats.n + 1, np.int64)
    ids = np.flatnonzero(keep)
    if instance_ids:
        lut[ids] = np.arange(1, len(ids) + 1)
        return lut
    classes = np.asarray([0] + stats.classes)
    for c in np.unique(classes[ids]):
        members = ids[classes[ids] == c]
        if len(members) >= label_divisor:
            largest = np.argsort(-stats.counts[members], kind="stable")[: label_divisor - 1]
            members = np.sort(members[largest])
        lut[members] = c * label_divisor + np.arange(1, len(members) + 1)
    return lut


def write_output(out_path: Path, work: np.ndarray, lut: np.ndarray, stuff_divisor: int, progress=None):
    """Write ``lut``-mapped work labels to an int32 TIFF, slice by slice, atomically.

    Generator: yields after each slice (for progress and cancelling) and returns the path.
    """
    shape = work.shape
    big = int(np.prod(shape)) * 4 > 2**31
    with atomic_path(out_path) as tmp:
        out = tifffile.memmap(tmp, shape=shape, dtype=np.int32, bigtiff=big, photometric="minisblack")
        preallocate(tmp, tmp.stat().st_size)  # a full disk: an OSError now, not a SIGBUS later
        for z in range(shape[0]):
            labels = np.asarray(work[z]).astype(np.int64)
            mapped = np.where(labels > 0, lut[np.clip(labels, 0, None)], -labels * stuff_divisor)
            out[z] = mapped.astype(np.int32)
            yield z
        out.flush()
        del out
    return out_path
